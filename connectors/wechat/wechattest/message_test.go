package wechattest

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/switchboard-hq/switchboard/internal/testenv"
)

func goldenMessages() []struct {
	name string
	msg  Message
} {
	qr := Event("gh_abc", "o1", "subscribe", "qrscene_123123", 1348831860)
	qr.Ticket = "TICKET"
	loc := Event("gh_abc", "o1", "LOCATION", "", 1348831860)
	loc.Latitude, loc.Longitude, loc.Precision = 23.137466, 113.352425, 119.385040
	short := Video("gh_abc", "o1", "media_id", "thumb_media_id", 1234567890123456, 1357290913)
	short.MsgType = "shortvideo"
	return []struct {
		name string
		msg  Message
	}{
		{"text", Text("gh_abc", "o1", "this is a test", 1234567890123456, 1348831860)},
		{"text_cdata_end", Text("gh_abc", "o1", "a]]>b <c> & \"d\"", 1, 1348831860)},
		{"image", Image("gh_abc", "o1", "http://mmbiz.qpic.cn/pic", "media_id", 1234567890123456, 1348831860)},
		{"voice", Voice("gh_abc", "o1", "media_id", "amr", "", 1234567890123456, 1357290913)},
		{"voice_recognition", Voice("gh_abc", "o1", "media_id", "amr", "腾讯微信团队", 1234567890123456, 1357290913)},
		{"video", Video("gh_abc", "o1", "media_id", "thumb_media_id", 1234567890123456, 1357290913)},
		{"shortvideo", short},
		{"location", Location("gh_abc", "o1", 23.134521, 113.358803, 20, "位置信息", 1234567890123456, 1351776360)},
		{"link", Link("gh_abc", "o1", "公众平台官网链接", "公众平台官网链接", "url", 1234567890123456, 1351776360)},
		{"miniprogrampage", MiniProgramPage("gh_mp", "m1", "title", "wxmp", "pages/index/index", "http://thumb", "thumb_media_id", 1234567890123456, 1482048670)},
		{"event_subscribe", Event("gh_abc", "o1", "subscribe", "", 1348831860)},
		{"event_subscribe_qr", qr},
		{"event_click", Event("gh_abc", "o1", "CLICK", "MENU_KEY", 1348831860)},
		{"event_location", loc},
		{"user_enter_tempsession", UserEnterTempSession("gh_mp", "m1", "sessionFrom", 1482048670)},
	}
}

func TestMessageGolden(t *testing.T) {
	for _, tc := range goldenMessages() {
		t.Run(tc.name, func(t *testing.T) {
			for ext, got := range map[string][]byte{".xml": tc.msg.XML(), ".json": tc.msg.JSON()} {
				testenv.Golden(t, filepath.Join("testdata", "messages", tc.name+ext), got)
			}
		})
	}
}

// TestMessageRoundTrip checks the rendered documents mean what the fields
// say, independently of the golden bytes.
func TestMessageRoundTrip(t *testing.T) {
	for _, tc := range goldenMessages() {
		t.Run(tc.name, func(t *testing.T) {
			var x struct {
				ToUserName, FromUserName, MsgType, Content, Event, EventKey, Title string
				CreateTime, MsgId                                                  int64
				LocationX                                                          float64 `xml:"Location_X"`
			}
			if err := xml.Unmarshal(tc.msg.XML(), &x); err != nil {
				t.Fatalf("XML does not parse: %v\n%s", err, tc.msg.XML())
			}
			m := tc.msg
			if x.ToUserName != m.ToUserName || x.FromUserName != m.FromUserName || x.MsgType != m.MsgType ||
				x.Content != m.Content || x.Event != m.Event || x.EventKey != m.EventKey || x.Title != m.Title ||
				x.CreateTime != m.CreateTime || x.LocationX != m.LocationX {
				t.Fatalf("XML parsed to %+v, from %+v", x, m)
			}
			if m.MsgType != "event" && x.MsgId != m.MsgID {
				t.Fatalf("MsgId %d, want %d", x.MsgId, m.MsgID)
			}
			var j map[string]any
			dec := json.NewDecoder(bytes.NewReader(tc.msg.JSON()))
			dec.UseNumber()
			if err := dec.Decode(&j); err != nil {
				t.Fatalf("JSON does not parse: %v\n%s", err, tc.msg.JSON())
			}
			if j["FromUserName"] != m.FromUserName || j["Content"] != nilIfEmpty(m.MsgType == "text", m.Content) {
				t.Fatalf("JSON %v from %+v", j, m)
			}
			if n, ok := j["CreateTime"].(json.Number); !ok || n.String() != strconv.FormatInt(m.CreateTime, 10) {
				t.Fatalf("CreateTime %v is not a bare number", j["CreateTime"])
			}
		})
	}
}

func nilIfEmpty(present bool, s string) any {
	if !present {
		return nil
	}
	return s
}

// TestTextMatchesDocs compares with the text message example in WeChat's
// receiving-messages documentation, whitespace between elements aside.
func TestTextMatchesDocs(t *testing.T) {
	const doc = `<xml>
  <ToUserName><![CDATA[toUser]]></ToUserName>
  <FromUserName><![CDATA[fromUser]]></FromUserName>
  <CreateTime>1348831860</CreateTime>
  <MsgType><![CDATA[text]]></MsgType>
  <Content><![CDATA[this is a test]]></Content>
  <MsgId>1234567890123456</MsgId>
</xml>`
	between := regexp.MustCompile(`>\s+<`)
	got := between.ReplaceAllString(string(Text("toUser", "fromUser", "this is a test", 1234567890123456, 1348831860).XML()), "><")
	if want := between.ReplaceAllString(doc, "><"); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	const docJSON = `{"ToUserName":"toUser","FromUserName":"fromUser","CreateTime":1482048670,"MsgType":"text","Content":"this is a test","MsgId":1234567890123456}`
	if got := Text("toUser", "fromUser", "this is a test", 1234567890123456, 1482048670).JSON(); string(got) != docJSON {
		t.Fatalf("got  %s\nwant %s", got, docJSON)
	}
}
