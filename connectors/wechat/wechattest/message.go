package wechattest

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// Message is one push WeChat sends to a webhook: a user message or an
// event. The builders below fill it for each documented type; set other
// fields directly for the rarer shapes (Ticket of a QR subscribe, Latitude
// of a LOCATION event, MsgType "shortvideo"). XML and JSON render it in
// WeChat's element order.
type Message struct {
	ToUserName   string // the account's original id (gh_…)
	FromUserName string // the user's openid
	CreateTime   int64
	MsgType      string
	MsgID        int64

	Content      string  // text
	PicURL       string  // image
	MediaID      string  // image, voice, video
	Format       string  // voice
	Recognition  string  // voice, when speech recognition is on
	ThumbMediaID string  // video, miniprogrampage
	LocationX    float64 // location
	LocationY    float64
	Scale        int
	Label        string
	Title        string // link, miniprogrampage
	Description  string // link
	URL          string // link
	AppID        string // miniprogrampage
	PagePath     string
	ThumbURL     string

	Event       string // MsgType "event"
	EventKey    string
	Ticket      string  // subscribe by QR code, SCAN
	Latitude    float64 // LOCATION event
	Longitude   float64
	Precision   float64
	SessionFrom string // user_enter_tempsession
}

// Text is a text message.
func Text(to, from, content string, msgID, createTime int64) Message {
	return Message{ToUserName: to, FromUserName: from, CreateTime: createTime, MsgType: "text", Content: content, MsgID: msgID}
}

// Image is an image message (PicUrl is WeChat's copy; MediaId fetches it
// through media/get).
func Image(to, from, picURL, mediaID string, msgID, createTime int64) Message {
	return Message{ToUserName: to, FromUserName: from, CreateTime: createTime, MsgType: "image", PicURL: picURL, MediaID: mediaID, MsgID: msgID}
}

// Voice is a voice message; recognition "" leaves the element out, as when
// speech recognition is off.
func Voice(to, from, mediaID, format, recognition string, msgID, createTime int64) Message {
	return Message{ToUserName: to, FromUserName: from, CreateTime: createTime, MsgType: "voice", MediaID: mediaID, Format: format, Recognition: recognition, MsgID: msgID}
}

// Video is a video message (set MsgType "shortvideo" for a short video).
func Video(to, from, mediaID, thumbMediaID string, msgID, createTime int64) Message {
	return Message{ToUserName: to, FromUserName: from, CreateTime: createTime, MsgType: "video", MediaID: mediaID, ThumbMediaID: thumbMediaID, MsgID: msgID}
}

// Location is a location message (x is latitude, y longitude).
func Location(to, from string, x, y float64, scale int, label string, msgID, createTime int64) Message {
	return Message{ToUserName: to, FromUserName: from, CreateTime: createTime, MsgType: "location", LocationX: x, LocationY: y, Scale: scale, Label: label, MsgID: msgID}
}

// Link is a link message.
func Link(to, from, title, description, url string, msgID, createTime int64) Message {
	return Message{ToUserName: to, FromUserName: from, CreateTime: createTime, MsgType: "link", Title: title, Description: description, URL: url, MsgID: msgID}
}

// MiniProgramPage is a mini-program card a user sent in a mini program's
// customer-service session.
func MiniProgramPage(to, from, title, appID, pagePath, thumbURL, thumbMediaID string, msgID, createTime int64) Message {
	return Message{ToUserName: to, FromUserName: from, CreateTime: createTime, MsgType: "miniprogrampage", Title: title, AppID: appID, PagePath: pagePath, ThumbURL: thumbURL, ThumbMediaID: thumbMediaID, MsgID: msgID}
}

// Event is an event push: subscribe (eventKey "qrscene_…" when by QR),
// unsubscribe, SCAN, CLICK, VIEW, LOCATION….
func Event(to, from, event, eventKey string, createTime int64) Message {
	return Message{ToUserName: to, FromUserName: from, CreateTime: createTime, MsgType: "event", Event: event, EventKey: eventKey}
}

// UserEnterTempSession is the mini-program event sent when a user opens a
// customer-service session.
func UserEnterTempSession(to, from, sessionFrom string, createTime int64) Message {
	return Message{ToUserName: to, FromUserName: from, CreateTime: createTime, MsgType: "event", Event: "user_enter_tempsession", SessionFrom: sessionFrom}
}

type field struct {
	name string
	val  string
	num  bool // a bare number: no CDATA in XML, no quotes in JSON
}

func fs(name, v string) field { return field{name: name, val: v} }
func fi(name string, v int64) field {
	return field{name: name, val: strconv.FormatInt(v, 10), num: true}
}
func ff(name string, v float64) field {
	return field{name: name, val: strconv.FormatFloat(v, 'f', -1, 64), num: true}
}

// fields lists the elements of m in the order WeChat sends them.
func (m Message) fields() []field {
	out := []field{fs("ToUserName", m.ToUserName), fs("FromUserName", m.FromUserName), fi("CreateTime", m.CreateTime), fs("MsgType", m.MsgType)}
	msgID := fi("MsgId", m.MsgID)
	switch m.MsgType {
	case "text":
		out = append(out, fs("Content", m.Content), msgID)
	case "image":
		out = append(out, fs("PicUrl", m.PicURL), fs("MediaId", m.MediaID), msgID)
	case "voice":
		out = append(out, fs("MediaId", m.MediaID), fs("Format", m.Format))
		if m.Recognition != "" {
			out = append(out, fs("Recognition", m.Recognition))
		}
		out = append(out, msgID)
	case "video", "shortvideo":
		out = append(out, fs("MediaId", m.MediaID), fs("ThumbMediaId", m.ThumbMediaID), msgID)
	case "location":
		out = append(out, ff("Location_X", m.LocationX), ff("Location_Y", m.LocationY), fi("Scale", int64(m.Scale)), fs("Label", m.Label), msgID)
	case "link":
		out = append(out, fs("Title", m.Title), fs("Description", m.Description), fs("Url", m.URL), msgID)
	case "miniprogrampage":
		out = append(out, msgID, fs("Title", m.Title), fs("AppId", m.AppID), fs("PagePath", m.PagePath), fs("ThumbUrl", m.ThumbURL), fs("ThumbMediaId", m.ThumbMediaID))
	case "event":
		out = append(out, fs("Event", m.Event))
		switch m.Event {
		case "CLICK", "VIEW", "SCAN":
			out = append(out, fs("EventKey", m.EventKey))
		default:
			if m.EventKey != "" {
				out = append(out, fs("EventKey", m.EventKey))
			}
		}
		if m.Ticket != "" {
			out = append(out, fs("Ticket", m.Ticket))
		}
		switch m.Event {
		case "LOCATION":
			out = append(out, ff("Latitude", m.Latitude), ff("Longitude", m.Longitude), ff("Precision", m.Precision))
		case "user_enter_tempsession":
			out = append(out, fs("SessionFrom", m.SessionFrom))
		}
	default:
		if m.MsgID != 0 {
			out = append(out, msgID)
		}
	}
	return out
}

// XML renders m as WeChat's push XML: strings in CDATA, numbers bare, one
// element per line.
func (m Message) XML() []byte {
	var b bytes.Buffer
	b.WriteString("<xml>")
	for i, f := range m.fields() {
		if i > 0 {
			b.WriteByte('\n')
		}
		writeXMLElem(&b, f)
	}
	b.WriteString("\n</xml>")
	return b.Bytes()
}

// JSON renders m as a mini program's JSON push, keys in WeChat's order.
func (m Message) JSON() []byte {
	return jsonObject(m.fields())
}

// Render renders m in format f.
func (m Message) Render(f Format) []byte {
	if f == FormatJSON {
		return m.JSON()
	}
	return m.XML()
}

func writeXMLElem(b *bytes.Buffer, f field) {
	b.WriteString("<" + f.name + ">")
	if f.num {
		b.WriteString(f.val)
	} else {
		b.WriteString(cdata(f.val))
	}
	b.WriteString("</" + f.name + ">")
}

// cdata wraps s in CDATA, splitting any "]]>" inside it across two
// sections the way XML requires.
func cdata(s string) string {
	return "<![CDATA[" + strings.ReplaceAll(s, "]]>", "]]]]><![CDATA[>") + "]]>"
}

func jsonObject(fields []field) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(jsonString(f.name))
		b.WriteByte(':')
		if f.num {
			b.WriteString(f.val)
		} else {
			b.Write(jsonString(f.val))
		}
	}
	b.WriteByte('}')
	return b.Bytes()
}

// jsonString encodes s without HTML escaping (WeChat sends < and & as is).
func jsonString(s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}
