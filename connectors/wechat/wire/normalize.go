package wire

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// ReplyWindow is how long after an interaction that opens it WeChat accepts
// customer-service messages to the user.
const ReplyWindow = 48 * time.Hour

// Bounds on what Normalize accepts or keeps.
const (
	// FieldLimit is conv's per-field limit on Part fields and Scene
	// (conv keeps it unexported; a test pins the two together).
	FieldLimit = 2048
	// maxOpenID bounds FromUserName; openids are 28 characters.
	maxOpenID = 128
	// maxMsgID bounds MsgId; WeChat's are up to 20 digits, the mini
	// program cloud form a 52-character string.
	maxMsgID = 64
	// maxEvent bounds the Event name.
	maxEvent = 64
	// maxEventKey is the longest EventKey kept verbatim in an ExternalID;
	// a longer one (a VIEW URL) is replaced by its SHA-256.
	maxEventKey = 256
	// maxUnix is 9999-12-31T23:59:59Z, the last second encoding/json can
	// write as RFC 3339.
	maxUnix = 253402300799
)

// Normalized is what the connector turns into a conv.Inbound: it adds the
// tenant, the channel and the identity kind, downloads Media and replaces
// each MediaID with the stored URL.
type Normalized struct {
	// ExternalID is the dedup key within the channel: "msg:OPENID:MSGID"
	// for messages, "evt:OPENID:CREATETIME:EVENT:EVENTKEY" for events (an
	// EventKey over 256 bytes is replaced by "sha256:" and its hex digest,
	// and a message without MsgId is keyed on its time, type and a digest
	// of its content). Always at most conv.MaxExternalID bytes.
	ExternalID string `json:"external_id"`
	// OpenID is FromUserName: the user's id within this one app.
	OpenID string `json:"open_id"`
	// Parts is exactly one part that passes conv.ValidateParts.
	Parts []conv.Part `json:"parts"`
	// System marks events: recorded on the conversation, nothing for an
	// agent to answer.
	System bool `json:"system,omitempty"`
	// Scene is where the user came from: the "qrscene_…" key of a follow
	// by QR code, "qrscene_" + the scene of a SCAN (so both name a QR code
	// the same way), the menu key of a CLICK, the SessionFrom of a mini
	// program contact button.
	Scene string `json:"scene,omitempty"`
	// SentAt is CreateTime in UTC.
	SentAt time.Time `json:"sent_at"`
	// OpensWindow: this interaction (re)opens WeChat's 48-hour reply
	// window (ReplyWindow): any user message, subscribe, SCAN, CLICK,
	// user_enter_tempsession. Not unsubscribe, VIEW, a LOCATION report or
	// an event this package does not know.
	OpensWindow bool `json:"opens_window"`
	// Unsubscribed: the user unfollowed; sends to them will fail (43004).
	Unsubscribed bool `json:"unsubscribed,omitempty"`
	// Media lists the media ids to fetch with media/get: the MediaId of an
	// image, voice, video or shortvideo. Temporary media expire after 3
	// days.
	Media []string `json:"media,omitempty"`
}

// Normalize maps a decoded push to the conversation model. Fields meant
// for people (Content, titles, labels, URLs, keys) are made valid UTF-8
// and truncated at a rune boundary to conv's limits; identifiers
// (FromUserName, MsgId, MediaId, ThumbMediaId, AppId) that are malformed
// or too long are an error instead, because a truncated id would silently
// name something else. Errors wrap conv.ErrInvalid.
//
// An unknown MsgType becomes a text part "[unsupported WeChat message
// type: X]" (plus any Content), an unknown event the text
// "[unsupported WeChat event: X]": nothing the user did is dropped. A
// known type missing what it needs (an image without MediaId, a location
// without valid coordinates) is malformed and an error.
func Normalize(p Push) (Normalized, error) {
	n, err := normalize(p)
	if err != nil {
		return Normalized{}, fmt.Errorf("wire.Normalize: %w", err)
	}
	return n, nil
}

func normalize(p Push) (Normalized, error) {
	var n Normalized
	if err := checkID("FromUserName", p.FromUserName, maxOpenID, true); err != nil {
		return n, err
	}
	if strings.TrimSpace(p.CreateTime) == "" {
		return n, fmt.Errorf("%w: no CreateTime", conv.ErrInvalid)
	}
	sec, err := parseUnix(strings.TrimSpace(p.CreateTime))
	if err != nil {
		return n, fmt.Errorf("CreateTime: %w", err)
	}
	if sec > maxUnix {
		return n, fmt.Errorf("%w: CreateTime %d is after year 9999", conv.ErrInvalid, sec)
	}
	msgType := strings.ToLower(strings.TrimSpace(p.MsgType))
	if msgType == "" {
		return n, fmt.Errorf("%w: no MsgType", conv.ErrInvalid)
	}
	n.OpenID = p.FromUserName
	n.SentAt = time.Unix(sec, 0).UTC()
	created := strconv.FormatInt(sec, 10)

	var part conv.Part
	if msgType == "event" {
		part, err = n.event(p, created)
	} else {
		part, err = n.message(p, msgType, created)
	}
	if err != nil {
		return Normalized{}, err
	}
	n.Parts = []conv.Part{part}
	if err := conv.ValidateParts(n.Parts); err != nil {
		// A safety net: the mapping above is built to pass.
		return Normalized{}, err
	}
	if len(n.ExternalID) > conv.MaxExternalID {
		return Normalized{}, fmt.Errorf("%w: external id longer than %d bytes", conv.ErrInvalid, conv.MaxExternalID)
	}
	return n, nil
}

// message maps a user message. Every user message opens the reply window.
func (n *Normalized) message(p Push, msgType, created string) (conv.Part, error) {
	n.OpensWindow = true
	if p.MsgID != "" {
		if err := checkID("MsgId", p.MsgID, maxMsgID, false); err != nil {
			return conv.Part{}, err
		}
		n.ExternalID = "msg:" + p.FromUserName + ":" + p.MsgID
	} else {
		// WeChat sends a MsgId with every user message; should one come
		// without, key it on what redelivery repeats exactly.
		n.ExternalID = "msg:" + p.FromUserName + ":" + created + ":" + conv.Shorten(msgType, maxEvent) + ":" + digest(p)
	}

	switch msgType {
	case "text":
		return conv.Part{Type: conv.PartText, Text: bodyText(p.Content, "[empty message]")}, nil

	case "image":
		if err := checkMedia("MediaId", p.MediaID); err != nil {
			return conv.Part{}, err
		}
		n.Media = []string{p.MediaID}
		return conv.Part{Type: conv.PartImage, MediaID: p.MediaID, Thumb: bounded(p.PicURL)}, nil

	case "voice":
		if err := checkMedia("MediaId", p.MediaID); err != nil {
			return conv.Part{}, err
		}
		n.Media = []string{p.MediaID}
		return conv.Part{Type: conv.PartAudio, MediaID: p.MediaID, MIME: voiceMIME(p.Format), Text: text(p.Recognition)}, nil

	case "video", "shortvideo":
		if err := checkMedia("MediaId", p.MediaID); err != nil {
			return conv.Part{}, err
		}
		if err := checkOptionalID("ThumbMediaId", p.ThumbMediaID); err != nil {
			return conv.Part{}, err
		}
		n.Media = []string{p.MediaID}
		return conv.Part{Type: conv.PartVideo, MediaID: p.MediaID, Thumb: p.ThumbMediaID}, nil

	case "location":
		lat, err := coord("Location_X", p.LocationX, 90)
		if err != nil {
			return conv.Part{}, err
		}
		lng, err := coord("Location_Y", p.LocationY, 180)
		if err != nil {
			return conv.Part{}, err
		}
		return conv.Part{Type: conv.PartLocation, Lat: lat, Lng: lng, Label: bounded(p.Label)}, nil

	case "link":
		part := conv.Part{Type: conv.PartCard, Title: bounded(p.Title), Description: bounded(p.Description), URL: bounded(p.URL)}
		if strings.TrimSpace(part.Title) == "" && strings.TrimSpace(part.URL) == "" {
			return conv.Part{}, fmt.Errorf("%w: link without Title or Url", conv.ErrInvalid)
		}
		return part, nil

	case "miniprogrampage":
		if err := checkOptionalID("ThumbMediaId", p.ThumbMediaID); err != nil {
			return conv.Part{}, err
		}
		if err := checkOptionalID("AppId", p.AppID); err != nil {
			return conv.Part{}, err
		}
		part := conv.Part{Type: conv.PartCard, Title: bounded(p.Title), AppID: p.AppID, Page: bounded(p.PagePath),
			Thumb: bounded(p.ThumbURL), MediaID: p.ThumbMediaID}
		if strings.TrimSpace(part.Title) == "" && strings.TrimSpace(part.Page) == "" {
			return conv.Part{}, fmt.Errorf("%w: miniprogrampage without Title or PagePath", conv.ErrInvalid)
		}
		return part, nil
	}

	// Keep whatever readable content came along: nothing the user sent is
	// dropped, even when this package cannot represent it.
	t := "[unsupported WeChat message type: " + conv.Shorten(clean(p.MsgType), maxEvent) + "]"
	for _, v := range []string{p.Content, p.Title, p.Description, p.URL} {
		if strings.TrimSpace(v) != "" {
			t += "\n" + clean(v)
		}
	}
	return conv.Part{Type: conv.PartText, Text: text(t)}, nil
}

// event maps an event to one system text part.
func (n *Normalized) event(p Push, created string) (conv.Part, error) {
	if p.Event == "" {
		return conv.Part{}, fmt.Errorf("%w: event without Event", conv.ErrInvalid)
	}
	if err := checkID("Event", p.Event, maxEvent, true); err != nil {
		return conv.Part{}, err
	}
	n.System = true
	key := p.EventKey
	if len(key) > maxEventKey || !utf8.ValidString(key) {
		sum := sha256.Sum256([]byte(key))
		key = "sha256:" + hex.EncodeToString(sum[:])
	}
	n.ExternalID = "evt:" + p.FromUserName + ":" + created + ":" + p.Event + ":" + key

	ev := strings.ToLower(p.Event)
	ek := clean(strings.TrimSpace(p.EventKey))
	var t string
	switch ev {
	case "subscribe":
		n.OpensWindow = true
		n.Scene = bounded(ek)
		if scene, ok := strings.CutPrefix(ek, "qrscene_"); ok && scene != "" {
			t = "Followed the account by scanning QR scene " + scene
		} else {
			t = "Followed the account"
		}
	case "unsubscribe":
		n.Unsubscribed = true
		t = "Unfollowed the account"
	case "scan":
		n.OpensWindow = true
		if ek != "" {
			n.Scene = bounded("qrscene_" + ek)
		}
		t = join("Scanned QR scene", ek)
	case "click":
		n.OpensWindow = true
		n.Scene = bounded(ek)
		t = join("Clicked menu", ek)
	case "view":
		t = join("Opened menu link", ek)
	case "location":
		lat, err := coord("Latitude", p.Latitude, 90)
		if err != nil {
			return conv.Part{}, err
		}
		lng, err := coord("Longitude", p.Longitude, 180)
		if err != nil {
			return conv.Part{}, err
		}
		t = "Reported location " + ftoa(lat) + ", " + ftoa(lng)
		if prec, err := strconv.ParseFloat(strings.TrimSpace(p.Precision), 64); err == nil && prec >= 0 && !math.IsInf(prec, 0) {
			t += " (precision " + ftoa(prec) + ")"
		}
	case "user_enter_tempsession":
		n.OpensWindow = true
		sf := clean(strings.TrimSpace(p.SessionFrom))
		n.Scene = bounded(sf)
		t = join("Opened customer service from", sf)
		if sf == "" {
			t = "Opened customer service"
		}
	default:
		t = "[unsupported WeChat event: " + join(p.Event, ek) + "]"
	}
	return conv.Part{Type: conv.PartText, Text: text(t), Event: "wechat." + ev}, nil
}

// digest identifies a push's content for a dedup key when MsgId is missing.
func digest(p Push) string {
	h := sha256.New()
	for f := field(0); f < numFields; f++ {
		v := *p.at(f)
		var l [8]byte
		for i := range l {
			l[i] = byte(uint64(len(v)) >> (8 * i))
		}
		h.Write(l[:])
		h.Write([]byte(v))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// checkID accepts printable ASCII without spaces, up to max bytes. With
// noColon, ':' is refused too: the value sits inside a ':'-separated key.
func checkID(name, v string, max int, noColon bool) error {
	if v == "" {
		return fmt.Errorf("%w: no %s", conv.ErrInvalid, name)
	}
	if len(v) > max {
		return fmt.Errorf("%w: %s longer than %d bytes", conv.ErrInvalid, name, max)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c >= 0x7f || (noColon && c == ':') {
			return fmt.Errorf("%w: %s %q has a character outside printable ASCII", conv.ErrInvalid, name, conv.Shorten(clean(v), 32))
		}
	}
	return nil
}

// checkMedia checks a required media id.
func checkMedia(name, v string) error {
	if v == "" {
		return fmt.Errorf("%w: no %s", conv.ErrInvalid, name)
	}
	return checkID(name, v, FieldLimit, false)
}

// checkOptionalID checks an id that may be absent.
func checkOptionalID(name, v string) error {
	if v == "" {
		return nil
	}
	return checkID(name, v, FieldLimit, false)
}

// coord parses a latitude (limit 90) or longitude (limit 180).
func coord(name, v string, limit float64) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	// ParseFloat accepts "NaN" and "Inf"; NaN would also slip through a
	// range check (every comparison is false) and break JSON encoding.
	if err != nil || math.IsNaN(f) || f < -limit || f > limit {
		return 0, fmt.Errorf("%w: %s %q is not a coordinate within ±%g", conv.ErrInvalid, name, conv.Shorten(clean(v), 32), limit)
	}
	return f, nil
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// voiceMIME maps WeChat's voice Format to a MIME type.
func voiceMIME(format string) string {
	f := strings.ToLower(strings.TrimSpace(format))
	switch f {
	case "":
		return ""
	case "amr":
		return "audio/amr"
	case "speex":
		return "audio/speex"
	}
	if len(f) > 32 {
		return "application/octet-stream"
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '+') {
			return "application/octet-stream"
		}
	}
	return "audio/" + f
}

// join appends a detail to a sentence when there is one.
func join(sentence, detail string) string {
	if detail == "" {
		return sentence
	}
	return sentence + " " + detail
}

// bodyText is a message's text, or placeholder when it would be blank.
func bodyText(s, placeholder string) string {
	t := text(s)
	if strings.TrimSpace(t) == "" {
		return placeholder
	}
	return t
}

// clean makes s valid UTF-8.
func clean(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// text bounds a text to conv.MaxTextRune runes.
func text(s string) string { return truncRunes(clean(s), conv.MaxTextRune) }

// bounded cuts a Part field to FieldLimit bytes.
func bounded(s string) string { return conv.Clip(clean(s), FieldLimit) }

// truncRunes cuts s to at most n runes.
func truncRunes(s string, n int) string {
	if len(s) <= n { // fast path: never more runes than bytes
		return s
	}
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos]
		}
		i++
	}
	return s
}
