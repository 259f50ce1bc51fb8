package mail

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	netmail "net/mail"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/textproto"
	htmlcharset "golang.org/x/net/html/charset"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// readSlack is what a bufio.Reader may pull past a header block before the
// parser sees the blank line; it is added to MaxHeaderBytes so a header of
// exactly the limit still passes.
const readSlack = 8 << 10

// Parse reads one RFC 5322 message from r and returns its bounded,
// normalized form. It stops at the first limit passed, without reading the
// rest: ErrTooLarge (message, header block or part over its size) or
// ErrTooComplex (parts, depth); both wrap conv.ErrInvalid, as does a header
// that cannot be parsed. A damaged multipart structure is not an error: the
// parts read so far are kept and Message.Truncated is set.
func Parse(r io.Reader, l Limits, own OwnDomains) (*Message, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	p := &parser{l: l.withDefaults(), size: &sizeLimit{r: r}}
	p.size.left = p.l.MaxBytes
	m, err := p.parse(own)
	if err != nil {
		return nil, fmt.Errorf("mail.Parse: %w", err)
	}
	return m, nil
}

type parser struct {
	l     Limits
	size  *sizeLimit
	parts int

	msg     *Message
	charset string // the top-level charset, for raw 8-bit header bytes
	plain   []string
	html    []string
}

// limitErr turns a tripped limit reader into the error it stands for; go-message
// formats some read errors with %v, so the trip is recorded, not unwrapped.
func (p *parser) limitErr(g *headerGate) error {
	if p.size.tripped {
		return fmt.Errorf("%w: message over %d bytes", ErrTooLarge, p.l.MaxBytes)
	}
	if g != nil && g.tripped {
		return fmt.Errorf("%w: header block over %d bytes", ErrTooLarge, p.l.MaxHeaderBytes)
	}
	return nil
}

// ParseHeader reads only the top-level header of a message: the envelope
// fields (ids, subject, date, addresses) and Auto, cleaned as Parse cleans
// them, with no body, attachments or Bounce. It is for a mail whose body
// was not downloaded (over the size limit: the IMAP server hands the header
// alone) or that Parse refused, to still say who sent it and what it
// answers. The header block is bounded by MaxHeaderBytes; nothing after
// it is read.
func ParseHeader(r io.Reader, l Limits, own OwnDomains) (*Message, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	p := &parser{l: l.withDefaults(), size: &sizeLimit{r: r}}
	p.size.left = p.l.MaxBytes
	h, _, err := p.top()
	if err != nil {
		return nil, fmt.Errorf("mail.ParseHeader: %w", err)
	}
	p.msg.Auto = classify(h, p.msg, own)
	return p.msg, nil
}

// top reads the message's header into p.msg and returns it with the reader
// positioned at the body.
func (p *parser) top() (textproto.Header, *bufio.Reader, error) {
	gate := &headerGate{r: p.size}
	br := bufio.NewReaderSize(gate, 4096)
	gate.arm(int64(p.l.MaxHeaderBytes) + readSlack)
	h, err := textproto.ReadHeader(br)
	gate.disarm()
	if lerr := p.limitErr(gate); lerr != nil {
		return h, nil, lerr
	}
	if err != nil {
		return h, nil, fmt.Errorf("%w: header: %v", conv.ErrInvalid, err)
	}
	if h.Len() == 0 {
		return h, nil, fmt.Errorf("%w: no header", conv.ErrInvalid)
	}
	p.msg = &Message{}
	if _, params := contentType(h); params != nil {
		p.charset = params["charset"]
	}
	p.header(h)
	return h, br, nil
}

func (p *parser) parse(own OwnDomains) (*Message, error) {
	h, br, err := p.top()
	if err != nil {
		return nil, err
	}
	if err := p.entity(h, br, 0, ""); err != nil {
		return nil, err
	}
	p.body()
	p.msg.Auto = classify(h, p.msg, own)
	return p.msg, nil
}

// header fills the envelope fields of the message from the top-level header.
func (p *parser) header(h textproto.Header) {
	m := p.msg
	m.Subject = decodeHeaderText(h.Get("Subject"), p.charset)
	m.MessageID = firstID(h.Get("Message-Id"))
	m.InReplyTo = firstID(h.Get("In-Reply-To"))
	m.References = trimIDs(parseIDs(h.Get("References")), maxInboundRefs)
	if d, err := netmail.ParseDate(cleanHeader(h.Get("Date"))); err == nil {
		m.Date = d
	}
	if from := p.addresses(h.Get("From")); len(from) > 0 {
		m.From = from[0]
	} else if s := p.addresses(h.Get("Sender")); len(s) > 0 {
		m.From = s[0]
	}
	m.ReplyTo = p.addresses(h.Get("Reply-To"))
	m.To = p.addresses(h.Get("To"))
	m.Cc = p.addresses(h.Get("Cc"))
}

// entity handles one MIME entity and, for a multipart, its children. parent
// is the media type of the enclosing multipart ("" at the root).
func (p *parser) entity(h textproto.Header, body io.Reader, depth int, parent string) error {
	p.parts++
	if p.parts > p.l.MaxParts {
		return fmt.Errorf("%w: more than %d parts", ErrTooComplex, p.l.MaxParts)
	}
	if depth > p.l.MaxDepth {
		return fmt.Errorf("%w: nested deeper than %d", ErrTooComplex, p.l.MaxDepth)
	}
	mt, params := contentType(h)
	if strings.HasPrefix(mt, "multipart/") && params["boundary"] != "" {
		return p.multipart(mt, params, body, depth)
	}
	if strings.HasPrefix(mt, "multipart/") {
		mt = "text/plain" // no boundary: read what is there as text
	}
	return p.leaf(h, mt, params, body, parent)
}

func (p *parser) multipart(mt string, params map[string]string, body io.Reader, depth int) error {
	if mt == "multipart/report" && strings.EqualFold(params["report-type"], "delivery-status") && p.msg.Bounce == nil {
		p.msg.Bounce = &Bounce{}
	}
	gate := &headerGate{r: body}
	mr := textproto.NewMultipartReader(gate, params["boundary"])
	for {
		// The gate is armed only while NextPart reads a boundary line and a
		// part header; the part bodies were drained below, unarmed.
		gate.arm(int64(p.l.MaxHeaderBytes) + readSlack)
		part, err := mr.NextPart()
		gate.disarm()
		if lerr := p.limitErr(gate); lerr != nil {
			return lerr
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			p.msg.Truncated = true
			return nil
		}
		if err := p.entity(part.Header, part, depth+1, mt); err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, part); err != nil {
			if lerr := p.limitErr(gate); lerr != nil {
				return lerr
			}
			p.msg.Truncated = true
			return nil
		}
	}
}

func (p *parser) leaf(h textproto.Header, mt string, params map[string]string, body io.Reader, parent string) error {
	data, err := p.read(h, body)
	if err != nil {
		return err
	}
	if p.msg.Bounce != nil && p.report(mt, data) {
		return nil
	}
	disp, dparams := disposition(h)
	filename := dparams["filename"]
	if filename == "" {
		filename = params["name"]
	}
	filename = cleanFilename(filename)

	if (mt == "text/plain" || mt == "text/html") && disp != "attachment" && filename == "" {
		text := p.text(mt, params, data)
		if mt == "text/plain" {
			p.plain = append(p.plain, text)
		} else {
			p.html = append(p.html, text)
		}
		return nil
	}
	if parent == "multipart/alternative" && strings.HasPrefix(mt, "text/") && mt != "text/calendar" {
		return nil // text/enriched, text/watch-html: other renderings of the same body
	}
	cid := cleanHeader(h.Get("Content-Id"))
	cid = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(cid, "<"), ">"))
	p.msg.Attachments = append(p.msg.Attachments, Attachment{
		Filename:    filename,
		ContentType: mt,
		ContentID:   cid,
		Inline:      disp == "inline" || (disp == "" && cid != ""),
		Data:        data,
	})
	return nil
}

// read returns the transfer-decoded body of a leaf, at most
// MaxAttachmentBytes. A damaged encoding keeps what decoded before the damage.
func (p *parser) read(h textproto.Header, body io.Reader) ([]byte, error) {
	var dec io.Reader
	switch strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))) {
	case "base64":
		dec = base64.NewDecoder(base64.StdEncoding, &base64Filter{r: body})
	case "quoted-printable":
		dec = quotedprintable.NewReader(body)
	default:
		dec = body
	}
	data, err := io.ReadAll(io.LimitReader(dec, p.l.MaxAttachmentBytes+1))
	if lerr := p.limitErr(nil); lerr != nil {
		return nil, lerr
	}
	if int64(len(data)) > p.l.MaxAttachmentBytes {
		return nil, fmt.Errorf("%w: a part over %d bytes", ErrTooLarge, p.l.MaxAttachmentBytes)
	}
	if err != nil {
		// Damaged encoding or a multipart cut short: keep what decoded.
		p.msg.Truncated = p.msg.Truncated || !isDecodeError(err)
	}
	return data, nil
}

func isDecodeError(err error) bool {
	var ce base64.CorruptInputError
	return errors.As(err, &ce) || strings.Contains(err.Error(), "quotedprintable")
}

// text decodes a text part to clean UTF-8 with LF line ends.
func (p *parser) text(mt string, params map[string]string, data []byte) string {
	var s string
	switch cs := params["charset"]; {
	case cs != "":
		s = decodeBytes(cs, data)
	case utf8.Valid(data):
		s = string(data)
	case mt == "text/html":
		// No declared charset: let <meta charset> or content sniffing decide.
		_, name, _ := htmlcharset.DetermineEncoding(data, "text/html")
		s = decodeBytes(name, data)
	default:
		s = strings.ToValidUTF8(string(data), "\uFFFD")
	}
	s = cleanBody(s)
	if mt == "text/plain" && strings.EqualFold(params["format"], "flowed") {
		s = unflow(s, strings.EqualFold(params["delsp"], "yes"))
	}
	return s
}

// body assembles Text, Quoted and HTML from the text parts collected.
func (p *parser) body() {
	m := p.msg
	html := strings.Join(p.html, "\n")
	if html != "" {
		m.HTML = sanitizeHTML(html)
	}
	text := strings.Join(p.plain, "\n")
	if strings.TrimSpace(text) == "" && m.HTML != "" {
		text = htmlToText(m.HTML)
	}
	m.Text, m.Quoted = foldQuotes(text)
}

// contentType returns the lower-case media type and its parameters, with
// "text/plain" for a missing or unparseable header (RFC 2045 default).
func contentType(h textproto.Header) (string, map[string]string) {
	v := h.Get("Content-Type")
	if v == "" {
		return "text/plain", map[string]string{}
	}
	mt, params, err := mime.ParseMediaType(v)
	if err != nil && mt == "" {
		return "text/plain", map[string]string{}
	}
	if params == nil {
		params = map[string]string{}
	}
	return strings.ToLower(mt), params
}

func disposition(h textproto.Header) (string, map[string]string) {
	v := h.Get("Content-Disposition")
	if v == "" {
		return "", map[string]string{}
	}
	d, params, err := mime.ParseMediaType(v)
	if params == nil || err != nil && d == "" {
		params = map[string]string{}
	}
	return strings.ToLower(d), params
}

// cleanFilename decodes encoded-words (common from Chinese clients, against
// RFC 2231), keeps only the base name and caps it at 255 bytes.
func cleanFilename(s string) string {
	s = decodeHeaderText(s, "")
	s = strings.ReplaceAll(s, `\`, "/")
	s = path.Base("/" + s)
	if s == "/" || s == "." || s == ".." {
		return ""
	}
	for len(s) > 255 {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// addresses parses an address list leniently: net/mail first, then a
// per-item fallback that takes what is between angle brackets.
func (p *parser) addresses(raw string) []Address {
	if strings.TrimSpace(raw) == "" {
		return nil
	}
	if !utf8.ValidString(raw) && p.charset != "" {
		raw = decodeBytes(p.charset, []byte(raw))
	}
	raw = strings.ToValidUTF8(raw, "\uFFFD")
	ap := netmail.AddressParser{WordDecoder: wordDecoder}
	var out []Address
	if list, err := ap.ParseList(raw); err == nil {
		for _, a := range list {
			out = appendAddress(out, a.Name, a.Address)
		}
		return out
	}
	for _, item := range splitAddressList(raw) {
		if a, err := ap.Parse(item); err == nil {
			out = appendAddress(out, a.Name, a.Address)
			continue
		}
		name, email := item, ""
		if i := strings.LastIndexByte(item, '<'); i >= 0 {
			if j := strings.IndexByte(item[i:], '>'); j > 0 {
				name, email = item[:i], item[i+1:i+j]
			}
		} else if strings.Contains(item, "@") && !strings.ContainsAny(strings.TrimSpace(item), " \t") {
			name, email = "", item
		}
		name = strings.Trim(strings.TrimSpace(name), `"'`)
		out = appendAddress(out, name, email)
	}
	return out
}

const maxAddresses = 200

func appendAddress(out []Address, name, email string) []Address {
	if len(out) >= maxAddresses {
		return out
	}
	if strings.Contains(name, "=?") {
		if d, err := wordDecoder.DecodeHeader(name); err == nil {
			name = d
		}
	}
	email = cleanEmail(email)
	if email == "" {
		return out
	}
	return append(out, Address{Name: cleanHeader(name), Email: email})
}

// cleanEmail keeps an address only if it looks like one: no spaces or
// control characters, an @ with both sides, at most 320 bytes. The domain is
// lower-cased; the local part is left as sent.
func cleanEmail(s string) string {
	s = strings.TrimSpace(cleanHeader(s))
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 || len(s) > 320 || strings.ContainsAny(s, " <>,;\"") {
		return ""
	}
	return s[:at] + "@" + strings.ToLower(s[at+1:])
}

// splitAddressList splits on commas outside quotes and angle brackets.
func splitAddressList(s string) []string {
	var out []string
	quoted, angle, start := false, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == '<' && !quoted:
			angle = true
		case c == '>' && !quoted:
			angle = false
		case c == ',' && !quoted && !angle:
			out = append(out, s[start:i])
			start = i + 1
		}
		if len(out) >= maxAddresses {
			return out
		}
	}
	return append(out, s[start:])
}

// base64Filter drops everything that is not base64 alphabet, so folded,
// indented or CRLF-broken bodies decode.
type base64Filter struct{ r io.Reader }

func (f *base64Filter) Read(p []byte) (int, error) {
	for {
		n, err := f.r.Read(p)
		k := 0
		for _, c := range p[:n] {
			if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=' {
				p[k] = c
				k++
			}
		}
		if k > 0 || err != nil {
			return k, err
		}
	}
}

// unflow joins RFC 3676 soft line breaks (a line ending in a space).
func unflow(s string, delsp bool) string {
	lines := strings.Split(s, "\n")
	var b strings.Builder
	for i, l := range lines {
		soft := strings.HasSuffix(l, " ") && l != "-- " && i < len(lines)-1
		if soft && delsp {
			l = l[:len(l)-1]
		}
		b.WriteString(l)
		if !soft && i < len(lines)-1 {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

var errNoHeader = errors.New("no header")

// headerOf reads the header block at the start of data (a returned message
// in a bounce), bounded by MaxHeaderBytes.
func (p *parser) headerOf(data []byte) (textproto.Header, error) {
	if len(data) > p.l.MaxHeaderBytes+readSlack {
		data = data[:p.l.MaxHeaderBytes+readSlack]
	}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(data)))
	if h.Len() == 0 {
		if err == nil {
			err = errNoHeader
		}
		return h, err
	}
	return h, nil
}
