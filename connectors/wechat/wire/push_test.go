package wire

import (
	"errors"
	"strings"
	"testing"

	"github.com/switchboard-hq/switchboard/core/conv"
)

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name   string
		format Format
		body   string
		want   Push
	}{
		{
			name:   "CDATA and plain text",
			format: FormatXML,
			body:   `<xml><FromUserName><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></FromUserName><CreateTime>1716182400</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[a <b> & ]]]]><![CDATA[> c]]></Content><MsgId>24581703528912345</MsgId></xml>`,
			want:   Push{FromUserName: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", CreateTime: "1716182400", MsgType: "text", Content: "a <b> & ]]> c", MsgID: "24581703528912345"},
		},
		{
			name:   "escaped text, declaration, comments and whitespace",
			format: FormatXML,
			body:   "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- pushed -->\n<xml>\n  <Content>fish &amp; chips &#x263A;</Content><!-- c -->\n</xml>\n<!-- end -->\n",
			want:   Push{Content: "fish & chips ☺"},
		},
		{
			name:   "unknown elements and nested subtrees are skipped",
			format: FormatXML,
			body:   `<xml><Event>scancode_push</Event><ScanCodeInfo><ScanType>qrcode</ScanType><ScanResult><![CDATA[x]]></ScanResult></ScanCodeInfo><SendPicsInfo><Count>1</Count><PicList><item><PicMd5Sum>abc</PicMd5Sum></item></PicList></SendPicsInfo><EventKey>K</EventKey></xml>`,
			want:   Push{Event: "scancode_push", EventKey: "K"},
		},
		{
			name:   "names are case-sensitive: <content> is not Content",
			format: FormatXML,
			body:   `<xml><content>lower</content></xml>`,
			want:   Push{},
		},
		{
			name:   "a namespaced element is not a field",
			format: FormatXML,
			body:   `<xml xmlns:x="urn:x"><x:Content>ns</x:Content></xml>`,
			want:   Push{},
		},
		{
			name:   "attributes are ignored",
			format: FormatXML,
			body:   `<xml a="1"><Content lang="zh">hi</Content></xml>`,
			want:   Push{Content: "hi"},
		},
		{
			name:   "every listed field",
			format: FormatXML,
			body: `<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime><MsgType>c</MsgType>` +
				`<Content>d</Content><MsgId>2</MsgId><PicUrl>e</PicUrl><MediaId>f</MediaId><Format>g</Format><Recognition>h</Recognition>` +
				`<ThumbMediaId>i</ThumbMediaId><Location_X>3</Location_X><Location_Y>4</Location_Y><Scale>5</Scale><Label>j</Label>` +
				`<Title>k</Title><Description>l</Description><Url>m</Url><Event>n</Event><EventKey>o</EventKey><Ticket>p</Ticket>` +
				`<Latitude>6</Latitude><Longitude>7</Longitude><Precision>8</Precision><SessionFrom>q</SessionFrom><AppId>r</AppId>` +
				`<PagePath>s</PagePath><ThumbUrl>t</ThumbUrl><Encrypt>u</Encrypt></xml>`,
			want: Push{ToUserName: "a", FromUserName: "b", CreateTime: "1", MsgType: "c", Content: "d", MsgID: "2", PicURL: "e",
				MediaID: "f", Format: "g", Recognition: "h", ThumbMediaID: "i", LocationX: "3", LocationY: "4", Scale: "5", Label: "j",
				Title: "k", Description: "l", URL: "m", Event: "n", EventKey: "o", Ticket: "p", Latitude: "6", Longitude: "7",
				Precision: "8", SessionFrom: "q", AppID: "r", PagePath: "s", ThumbURL: "t", Encrypt: "u"},
		},
		{
			name:   "JSON numbers keep their digits beyond 2^53",
			format: FormatJSON,
			body:   `{"CreateTime": 1716182400, "MsgId": 9007199254740993, "Latitude": 23.137466, "Location_X": -0.5}`,
			want:   Push{CreateTime: "1716182400", MsgID: "9007199254740993", Latitude: "23.137466", LocationX: "-0.5"},
		},
		{
			name:   "JSON strings, numbers as strings, null",
			format: FormatJSON,
			body:   `{"MsgId": "49d72d67b16d115e7935ac386f2f0fa41535298877_1555684067", "CreateTime": "1555684067", "Content": "测试\n\u263a", "Title": null}`,
			want:   Push{MsgID: "49d72d67b16d115e7935ac386f2f0fa41535298877_1555684067", CreateTime: "1555684067", Content: "测试\n☺"},
		},
		{
			name:   "JSON unknown keys of any shape are skipped",
			format: FormatJSON,
			body:   `{"debug_str": "hello", "ScanCodeInfo": {"ScanType": "qrcode", "List": [1, {"a": null}]}, "flag": true, "Event": "x"}`,
			want:   Push{Event: "x"},
		},
		{
			name:   "JSON keys are case-sensitive",
			format: FormatJSON,
			body:   `{"fromusername": "spoof", "FROMUSERNAME": "spoof"}`,
			want:   Push{},
		},
		{
			name:   "JSON surrounding whitespace",
			format: FormatJSON,
			body:   " \n{\"Content\":\"x\"}\n\n",
			want:   Push{Content: "x"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.body), tt.format)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got != tt.want {
				t.Fatalf("Parse =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	big := "<xml><Content>" + strings.Repeat("a", MaxBody) + "</Content></xml>"
	tests := []struct {
		name   string
		format Format
		body   string
	}{
		{"over MaxBody", FormatXML, big},
		{"over MaxBody JSON", FormatJSON, `{"Content":"` + strings.Repeat("a", MaxBody) + `"}`},
		{"no format", 0, `<xml></xml>`},
		{"empty", FormatXML, ``},
		{"not closed", FormatXML, `<xml><Content>hi</Content>`},
		{"field not closed", FormatXML, `<xml><Content>hi`},
		{"wrong root", FormatXML, `<root><Content>hi</Content></root>`},
		{"DOCTYPE", FormatXML, `<!DOCTYPE xml [<!ENTITY a "aaaa">]><xml><Content>&a;</Content></xml>`},
		{"external entity", FormatXML, `<!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml><Content>&x;</Content></xml>`},
		{"undefined entity", FormatXML, `<xml><Content>&x;</Content></xml>`},
		{"processing instruction", FormatXML, `<xml><?php echo 1; ?><Content>hi</Content></xml>`},
		{"text before the root", FormatXML, `junk<xml></xml>`},
		{"trailing text", FormatXML, `<xml></xml>junk`},
		{"second root", FormatXML, `<xml></xml><xml><Content>again</Content></xml>`},
		{"stray text in xml", FormatXML, `<xml>stray<Content>hi</Content></xml>`},
		{"duplicate field", FormatXML, `<xml><FromUserName>a</FromUserName><FromUserName>b</FromUserName></xml>`},
		{"duplicate Encrypt", FormatXML, `<xml><Encrypt>a</Encrypt><Encrypt>b</Encrypt></xml>`},
		{"child element in a field", FormatXML, `<xml><Content><b>bold</b></Content></xml>`},
		{"mismatched tags", FormatXML, `<xml><Content>hi</Title></xml>`},
		{"GBK declared", FormatXML, `<?xml version="1.0" encoding="GBK"?><xml><Content>hi</Content></xml>`},
		{"invalid UTF-8", FormatXML, "<xml><Content>\xff\xfe</Content></xml>"},
		{"JSON not an object", FormatJSON, `["Content"]`},
		{"JSON string", FormatJSON, `"x"`},
		{"JSON empty", FormatJSON, ``},
		{"JSON duplicate key", FormatJSON, `{"FromUserName":"a","FromUserName":"b"}`},
		{"JSON trailing object", FormatJSON, `{"Content":"a"}{"Content":"b"}`},
		{"JSON trailing garbage", FormatJSON, `{"Content":"a"} x`},
		{"JSON not closed", FormatJSON, `{"Content":"a"`},
		{"JSON bool field", FormatJSON, `{"Content":true}`},
		{"JSON object field", FormatJSON, `{"Content":{"a":1}}`},
		{"JSON array field", FormatJSON, `{"MsgId":[1]}`},
		{"JSON bad number", FormatJSON, `{"MsgId":01}`},
		{"JSON trailing comma", FormatJSON, `{"Content":"a",}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.body), tt.format)
			if !errors.Is(err, conv.ErrInvalid) {
				t.Fatalf("Parse = %+v, %v; want conv.ErrInvalid", p, err)
			}
			if p != (Push{}) {
				t.Fatalf("a failed Parse returned fields: %+v", p)
			}
		})
	}
}

func TestParseEnvelope(t *testing.T) {
	tests := []struct {
		name   string
		format Format
		body   string
		want   Envelope
		ok     bool
	}{
		{"safe mode XML", FormatXML, `<xml><ToUserName><![CDATA[gh_3f2a1b9c8d7e]]></ToUserName><Encrypt><![CDATA[` + docEncrypt + `]]></Encrypt></xml>`,
			Envelope{"gh_3f2a1b9c8d7e", docEncrypt}, true},
		{"compatible mode XML: plaintext fields beside Encrypt", FormatXML,
			`<xml><ToUserName><![CDATA[gh_3f2a1b9c8d7e]]></ToUserName><FromUserName><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></FromUserName><CreateTime>1716182400</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content><MsgId>1</MsgId><Encrypt><![CDATA[` + docEncrypt + `]]></Encrypt></xml>`,
			Envelope{"gh_3f2a1b9c8d7e", docEncrypt}, true},
		{"safe mode JSON", FormatJSON, `{"ToUserName":"gh_97417a04a28d","Encrypt":"` + docEncrypt + `"}`,
			Envelope{"gh_97417a04a28d", docEncrypt}, true},
		{"Encrypt kept as sent, newlines included", FormatXML, "<xml><Encrypt>\n" + docEncrypt + "\n</Encrypt></xml>", Envelope{"", "\n" + docEncrypt + "\n"}, true},
		{"no Encrypt", FormatXML, `<xml><ToUserName>gh_3f2a1b9c8d7e</ToUserName></xml>`, Envelope{}, false},
		{"blank Encrypt", FormatJSON, `{"Encrypt":"  "}`, Envelope{}, false},
		{"two Encrypts", FormatXML, `<xml><Encrypt>a</Encrypt><Encrypt>b</Encrypt></xml>`, Envelope{}, false},
		{"not XML", FormatXML, `{"Encrypt":"a"}`, Envelope{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseEnvelope([]byte(tt.body), tt.format)
			if tt.ok != (err == nil) || got != tt.want {
				t.Fatalf("ParseEnvelope = %+v, %v", got, err)
			}
			if err != nil && !errors.Is(err, conv.ErrInvalid) {
				t.Fatalf("error kind: %v", err)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Format
		ok   bool
	}{
		{"xml", FormatXML, true}, {"JSON", FormatJSON, true}, {" json ", FormatJSON, true},
		{"", 0, false}, {"yaml", 0, false},
	} {
		got, err := ParseFormat(tt.in)
		if got != tt.want || tt.ok != (err == nil) {
			t.Errorf("ParseFormat(%q) = %v, %v", tt.in, got, err)
		}
		if tt.ok && got.String() != strings.ToLower(strings.TrimSpace(tt.in)) {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
	if s := Format(9).String(); s != "Format(9)" {
		t.Errorf("unknown format prints %q", s)
	}
}
