package wire

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Format is the body format a channel is configured for in WeChat's
// console. Official Accounts always push XML; Mini Programs push XML or
// JSON.
type Format uint8

// Formats. The zero Format is invalid, so a config that forgot to set one
// fails loudly instead of defaulting.
const (
	FormatXML Format = iota + 1
	FormatJSON
)

// String returns "xml" or "json".
func (f Format) String() string {
	switch f {
	case FormatXML:
		return "xml"
	case FormatJSON:
		return "json"
	}
	return fmt.Sprintf("Format(%d)", uint8(f))
}

// ParseFormat reads a config value: "xml" or "json", any case.
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "xml":
		return FormatXML, nil
	case "json":
		return FormatJSON, nil
	}
	return 0, fmt.Errorf("wire.ParseFormat: %w: format %q is neither xml nor json", conv.ErrInvalid, conv.Shorten(s, 32))
}

// Envelope is the outer body of a push in compatible and safe mode:
// <xml><ToUserName/><Encrypt/></xml> or {"ToUserName","Encrypt"}. In
// compatible mode the same body also carries the plaintext fields, which
// no signature covers: use only what Encrypt decrypts to.
type Envelope struct {
	ToUserName string
	Encrypt    string
}

// Push is one inbound push, any type, with WeChat's fields as the raw
// strings it sent: numbers (CreateTime, MsgId, coordinates) stay text so
// nothing is lost to float64 (a MsgId is a 64-bit number) and Normalize
// decides what is valid. A field WeChat did not send is empty.
type Push struct {
	ToUserName   string // the account's original id (gh_…) or the app id
	FromUserName string // the sender's openid
	CreateTime   string // Unix seconds
	MsgType      string // text, image, voice, video, shortvideo, location, link, miniprogrampage, event, …

	Content string // text
	MsgID   string // MsgId: every user message; absent on events

	PicURL       string // PicUrl: image
	MediaID      string // MediaId: image, voice, video, shortvideo
	Format       string // voice codec: amr, speex, …
	Recognition  string // voice transcript, when speech recognition is on
	ThumbMediaID string // ThumbMediaId: video, shortvideo, miniprogrampage

	LocationX string // Location_X: latitude of a location message
	LocationY string // Location_Y: longitude of a location message
	Scale     string // map zoom
	Label     string // place name

	Title       string // link, miniprogrampage
	Description string // link
	URL         string // Url: link

	Event     string // MsgType=event: subscribe, unsubscribe, SCAN, LOCATION, CLICK, VIEW, user_enter_tempsession, …
	EventKey  string // qrscene_… (subscribe), scene value (SCAN), menu key (CLICK), URL (VIEW)
	Ticket    string // QR code ticket (subscribe by QR, SCAN)
	Latitude  string // LOCATION event
	Longitude string // LOCATION event
	Precision string // LOCATION event

	SessionFrom string // user_enter_tempsession: the session-from of the contact button

	AppID    string // AppId: miniprogrampage
	PagePath string // miniprogrampage
	ThumbURL string // ThumbUrl: miniprogrampage

	Encrypt string // compatible and safe mode: the ciphertext of the whole push
}

// field numbers a Push field for the parsers.
type field uint8

const (
	fToUserName field = iota
	fFromUserName
	fCreateTime
	fMsgType
	fContent
	fMsgID
	fPicURL
	fMediaID
	fFormat
	fRecognition
	fThumbMediaID
	fLocationX
	fLocationY
	fScale
	fLabel
	fTitle
	fDescription
	fURL
	fEvent
	fEventKey
	fTicket
	fLatitude
	fLongitude
	fPrecision
	fSessionFrom
	fAppID
	fPagePath
	fThumbURL
	fEncrypt
	numFields
)

// fields maps WeChat's element and key names, matched exactly (case
// matters: encoding/json's case-insensitive matching would let
// "fromusername" stand in for "FromUserName").
var fields = map[string]field{
	"ToUserName":   fToUserName,
	"FromUserName": fFromUserName,
	"CreateTime":   fCreateTime,
	"MsgType":      fMsgType,
	"Content":      fContent,
	"MsgId":        fMsgID,
	"PicUrl":       fPicURL,
	"MediaId":      fMediaID,
	"Format":       fFormat,
	"Recognition":  fRecognition,
	"ThumbMediaId": fThumbMediaID,
	"Location_X":   fLocationX,
	"Location_Y":   fLocationY,
	"Scale":        fScale,
	"Label":        fLabel,
	"Title":        fTitle,
	"Description":  fDescription,
	"Url":          fURL,
	"Event":        fEvent,
	"EventKey":     fEventKey,
	"Ticket":       fTicket,
	"Latitude":     fLatitude,
	"Longitude":    fLongitude,
	"Precision":    fPrecision,
	"SessionFrom":  fSessionFrom,
	"AppId":        fAppID,
	"PagePath":     fPagePath,
	"ThumbUrl":     fThumbURL,
	"Encrypt":      fEncrypt,
}

func (p *Push) at(f field) *string {
	switch f {
	case fToUserName:
		return &p.ToUserName
	case fFromUserName:
		return &p.FromUserName
	case fCreateTime:
		return &p.CreateTime
	case fMsgType:
		return &p.MsgType
	case fContent:
		return &p.Content
	case fMsgID:
		return &p.MsgID
	case fPicURL:
		return &p.PicURL
	case fMediaID:
		return &p.MediaID
	case fFormat:
		return &p.Format
	case fRecognition:
		return &p.Recognition
	case fThumbMediaID:
		return &p.ThumbMediaID
	case fLocationX:
		return &p.LocationX
	case fLocationY:
		return &p.LocationY
	case fScale:
		return &p.Scale
	case fLabel:
		return &p.Label
	case fTitle:
		return &p.Title
	case fDescription:
		return &p.Description
	case fURL:
		return &p.URL
	case fEvent:
		return &p.Event
	case fEventKey:
		return &p.EventKey
	case fTicket:
		return &p.Ticket
	case fLatitude:
		return &p.Latitude
	case fLongitude:
		return &p.Longitude
	case fPrecision:
		return &p.Precision
	case fSessionFrom:
		return &p.SessionFrom
	case fAppID:
		return &p.AppID
	case fPagePath:
		return &p.PagePath
	case fThumbURL:
		return &p.ThumbURL
	case fEncrypt:
		return &p.Encrypt
	}
	return new(string) // unreachable: fields holds only the numbers above
}

// Parse decodes a push body of either format. It is bounded and strict
// about shape, lenient about content:
//
//   - a body over MaxBody bytes is rejected before any decoding;
//   - XML: one <xml> root; known fields are text (CDATA or escaped) with no
//     child elements; unknown elements, whole subtrees included, are
//     skipped (WeChat adds fields and nested events over time); a DOCTYPE
//     or any other <!…> directive, a processing instruction other than the
//     leading <?xml?>, a non-UTF-8 encoding, stray text inside <xml> and
//     anything but whitespace or comments after </xml> are errors.
//     encoding/xml expands only the five predefined entities and character
//     references, so there is no external-entity or entity-bomb surface.
//   - JSON: one object; known keys are strings or numbers (a number keeps
//     its literal text, so 64-bit MsgIds survive), null is empty; unknown
//     keys are skipped; anything after the object is an error.
//   - in both, names match exactly and a known field given twice is an
//     error, so two parsers can never disagree about which value counts.
//
// Every error wraps conv.ErrInvalid.
func Parse(body []byte, f Format) (Push, error) {
	var p Push
	if len(body) > MaxBody {
		return p, fmt.Errorf("wire.Parse: %w: body of %d bytes exceeds %d", conv.ErrInvalid, len(body), MaxBody)
	}
	var err error
	switch f {
	case FormatXML:
		err = parseXML(body, &p)
	case FormatJSON:
		err = parseJSON(body, &p)
	default:
		err = fmt.Errorf("%w: unknown format %s", conv.ErrInvalid, f)
	}
	if err != nil {
		return Push{}, fmt.Errorf("wire.Parse %s: %w", f, err)
	}
	return p, nil
}

// ParseEnvelope decodes the outer body of an encrypted push with the same
// rules as Parse and returns its ToUserName and Encrypt. A body without
// Encrypt is an error (conv.ErrInvalid): the request claimed encryption.
func ParseEnvelope(body []byte, f Format) (Envelope, error) {
	p, err := Parse(body, f)
	if err != nil {
		return Envelope{}, fmt.Errorf("wire.ParseEnvelope: %w", err)
	}
	if strings.TrimSpace(p.Encrypt) == "" {
		return Envelope{}, fmt.Errorf("wire.ParseEnvelope %s: %w: no Encrypt field", f, conv.ErrInvalid)
	}
	// Encrypt stays byte for byte as sent: msg_signature covers it so.
	return Envelope{ToUserName: p.ToUserName, Encrypt: p.Encrypt}, nil
}

func parseXML(body []byte, p *Push) error {
	d := xml.NewDecoder(bytes.NewReader(body))
	d.Strict = true
	// No CharsetReader: an encoding other than UTF-8 is refused.
	var seen [numFields]bool
	const (
		before = iota
		inside
		after
	)
	state := before
	for {
		tok, err := d.Token()
		if err == io.EOF {
			if state != after {
				return fmt.Errorf("%w: body ends before </xml>", conv.ErrInvalid)
			}
			return nil
		}
		if err != nil {
			return xmlErr(err)
		}
		switch t := tok.(type) {
		case xml.Comment:
			// Harmless anywhere.
		case xml.ProcInst:
			if state != before || t.Target != "xml" {
				return fmt.Errorf("%w: unexpected processing instruction <?%s?>", conv.ErrInvalid, conv.Shorten(t.Target, 32))
			}
		case xml.Directive:
			return fmt.Errorf("%w: DOCTYPE and other <!…> directives are not accepted", conv.ErrInvalid)
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				switch state {
				case before:
					return fmt.Errorf("%w: text before <xml>", conv.ErrInvalid)
				case inside:
					return fmt.Errorf("%w: stray text inside <xml>", conv.ErrInvalid)
				default:
					return fmt.Errorf("%w: trailing data after </xml>", conv.ErrInvalid)
				}
			}
		case xml.StartElement:
			switch state {
			case before:
				if t.Name.Space != "" || t.Name.Local != "xml" {
					return fmt.Errorf("%w: root element is <%s>, want <xml>", conv.ErrInvalid, conv.Shorten(t.Name.Local, 32))
				}
				state = inside
			case inside:
				fi, known := fields[t.Name.Local]
				if !known || t.Name.Space != "" {
					if err := d.Skip(); err != nil {
						return xmlErr(err)
					}
					continue
				}
				if seen[fi] {
					return fmt.Errorf("%w: element <%s> given twice", conv.ErrInvalid, t.Name.Local)
				}
				seen[fi] = true
				v, err := xmlText(d, t.Name.Local)
				if err != nil {
					return err
				}
				*p.at(fi) = v
			default:
				return fmt.Errorf("%w: trailing element <%s> after </xml>", conv.ErrInvalid, conv.Shorten(t.Name.Local, 32))
			}
		case xml.EndElement:
			// Strict mode matches end tags to start tags, so this closes <xml>.
			state = after
		}
	}
}

// xmlText reads the text of a leaf element up to its end tag. CDATA
// sections arrive as CharData like escaped text.
func xmlText(d *xml.Decoder, name string) (string, error) {
	var b strings.Builder
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return "", fmt.Errorf("%w: body ends inside <%s>", conv.ErrInvalid, name)
		}
		if err != nil {
			return "", xmlErr(err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			b.Write(t)
		case xml.Comment:
		case xml.EndElement:
			return b.String(), nil
		case xml.StartElement:
			return "", fmt.Errorf("%w: <%s> has a child element <%s>", conv.ErrInvalid, name, conv.Shorten(t.Name.Local, 32))
		default:
			return "", fmt.Errorf("%w: unexpected markup inside <%s>", conv.ErrInvalid, name)
		}
	}
}

func xmlErr(err error) error {
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%w: xml line %d: %s", conv.ErrInvalid, se.Line, conv.Shorten(se.Msg, 128))
	}
	return fmt.Errorf("%w: xml: %s", conv.ErrInvalid, conv.Shorten(err.Error(), 128))
}

func parseJSON(body []byte, p *Push) error {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	tok, err := d.Token()
	if err != nil {
		return jsonErr(err)
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("%w: body is not a JSON object", conv.ErrInvalid)
	}
	var seen [numFields]bool
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return jsonErr(err)
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("%w: object key is not a string", conv.ErrInvalid)
		}
		var raw json.RawMessage
		if err := d.Decode(&raw); err != nil {
			return jsonErr(err)
		}
		fi, known := fields[key]
		if !known {
			continue
		}
		if seen[fi] {
			return fmt.Errorf("%w: key %q given twice", conv.ErrInvalid, key)
		}
		seen[fi] = true
		v, err := jsonScalar(raw)
		if err != nil {
			return fmt.Errorf("%w: key %q: %s", conv.ErrInvalid, key, err)
		}
		*p.at(fi) = v
	}
	if tok, err := d.Token(); err != nil || tok != json.Delim('}') {
		return fmt.Errorf("%w: object not closed", conv.ErrInvalid)
	}
	if _, err := d.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data after the JSON object", conv.ErrInvalid)
	}
	return nil
}

// jsonScalar turns a value into the text WeChat would have put in XML: a
// string's contents, a number's literal, "" for null.
func jsonScalar(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", errors.New("empty value")
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", errors.New("bad string")
		}
		return s, nil
	case c == '-' || (c >= '0' && c <= '9'):
		// The decoder has validated the literal already.
		return string(raw), nil
	case bytes.Equal(raw, []byte("null")):
		return "", nil
	}
	return "", errors.New("want a string or a number")
}

func jsonErr(err error) error {
	return fmt.Errorf("%w: json: %s", conv.ErrInvalid, conv.Shorten(err.Error(), 128))
}
