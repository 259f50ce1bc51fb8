package mail

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"mime"
	netmail "net/mail"
	"strings"
	"time"
	"unicode/utf8"

	message "github.com/emersion/go-message"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Outgoing is one mail we send. Subject handling ("Re: ") is the caller's;
// so is the Message-ID (MessageIDFor). Ids are accepted with or without
// angle brackets.
type Outgoing struct {
	From        Address
	To, Cc      []Address
	Subject     string
	MessageID   string
	InReplyTo   string
	References  []string
	Text, HTML  string
	Attachments []Attachment // Inline with a ContentID: referenced from HTML as cid:
	Date        time.Time    // zero: now
}

// Bytes renders o as an RFC 5322 message with CRLF line ends:
//   - text only: text/plain; with HTML: multipart/alternative;
//   - inline attachments (Inline and ContentID set, HTML present) go with the
//     HTML in multipart/related; other attachments make it multipart/mixed;
//   - non-ASCII subject and names as RFC 2047 UTF-8 words, file names as
//     RFC 2231 parameters;
//   - References cut to 20 ids, the first and the last 19.
//
// It refuses, with an error wrapping conv.ErrInvalid, any header value with
// CR, LF or another control character — a subject or a name copied from an
// inbound mail must never add a header — and any address that does not
// parse. Auto-Submitted is not set: an agent's reply is a person's mail.
func (o Outgoing) Bytes() ([]byte, error) {
	b, err := o.bytes()
	if err != nil {
		return nil, fmt.Errorf("mail.Outgoing.Bytes: %w", err)
	}
	return b, nil
}

func (o Outgoing) bytes() ([]byte, error) {
	var h message.Header
	if err := o.header(&h); err != nil {
		return nil, err
	}
	for i, a := range o.Attachments {
		for _, v := range []string{a.Filename, a.ContentType, a.ContentID} {
			if err := checkValue(fmt.Sprintf("attachment %d", i), v); err != nil {
				return nil, err
			}
		}
	}

	var inline, files []Attachment
	for _, a := range o.Attachments {
		if a.Inline && a.ContentID != "" && o.HTML != "" {
			inline = append(inline, a)
		} else {
			files = append(files, a)
		}
	}

	var buf bytes.Buffer
	var err error
	switch {
	case len(files) > 0:
		setMultipart(&h, "multipart/mixed")
		err = writeMultipart(&buf, h, func(w *message.Writer) error {
			if err := o.writeBody(w, inline); err != nil {
				return err
			}
			for _, a := range files {
				if err := writeAttachment(w, a); err != nil {
					return err
				}
			}
			return nil
		})
	default:
		err = o.writeBodyTop(&buf, h, inline)
	}
	if err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// header sets the top-level fields, refusing unsafe values.
func (o Outgoing) header(h *message.Header) error {
	from, err := formatAddresses("From", []Address{o.From})
	if err != nil {
		return err
	}
	if o.From.Email == "" {
		return fmt.Errorf("%w: From is empty", conv.ErrInvalid)
	}
	if len(o.To) == 0 {
		return fmt.Errorf("%w: no recipient", conv.ErrInvalid)
	}
	to, err := formatAddresses("To", o.To)
	if err != nil {
		return err
	}
	cc, err := formatAddresses("Cc", o.Cc)
	if err != nil {
		return err
	}
	if err := checkValue("Subject", o.Subject); err != nil {
		return err
	}
	mid, err := outID("Message-ID", o.MessageID)
	if err != nil {
		return err
	}
	irt, err := outID("In-Reply-To", o.InReplyTo)
	if err != nil {
		return err
	}
	var refs []string
	for _, r := range o.References {
		id, err := outID("References", r)
		if err != nil {
			return err
		}
		if id != "" {
			refs = append(refs, id)
		}
	}
	refs = trimIDs(refs, maxOutRefs)

	date := o.Date
	if date.IsZero() {
		date = time.Now()
	}
	// go-message writes fields last-added first: added in reverse so the
	// wire order is Date, From, To, Cc, Subject, ids, MIME-Version.
	h.Set("MIME-Version", "1.0")
	if len(refs) > 0 {
		h.Set("References", strings.Join(refs, " "))
	}
	if irt != "" {
		h.Set("In-Reply-To", irt)
	}
	if mid != "" {
		h.Set("Message-Id", mid)
	}
	h.Set("Subject", encodeText(o.Subject))
	if cc != "" {
		h.Set("Cc", cc)
	}
	h.Set("To", to)
	h.Set("From", from)
	h.Set("Date", date.Format(time.RFC1123Z))
	return nil
}

// checkValue refuses control characters in a value bound for a header.
func checkValue(field, v string) error {
	if !utf8.ValidString(v) {
		return fmt.Errorf("%w: %s is not UTF-8", conv.ErrInvalid, field)
	}
	for _, r := range v {
		if r < 0x20 && r != '\t' || r == 0x7f || r == '\u2028' || r == '\u2029' || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("%w: %s contains a control character (%U)", conv.ErrInvalid, field, r)
		}
	}
	return nil
}

func formatAddresses(field string, as []Address) (string, error) {
	var parts []string
	for _, a := range as {
		if err := checkValue(field, a.Name); err != nil {
			return "", err
		}
		if err := checkValue(field, a.Email); err != nil {
			return "", err
		}
		if a.Email == "" && a.Name == "" {
			continue
		}
		p, err := netmail.ParseAddress(a.Email)
		if err != nil || p.Address != a.Email || p.Name != "" {
			return "", fmt.Errorf("%w: %s address %q", conv.ErrInvalid, field, a.Email)
		}
		// net/mail quotes ASCII names and Q-encodes UTF-8 ones.
		parts = append(parts, (&netmail.Address{Name: a.Name, Address: a.Email}).String())
	}
	return strings.Join(parts, ", "), nil
}

// outID returns "<id>" or "" for an empty id; an id that is not one token
// is refused.
func outID(field, id string) (string, error) {
	if err := checkValue(field, id); err != nil {
		return "", err
	}
	if strings.TrimSpace(id) == "" {
		return "", nil
	}
	b := bracket(unbracket(id))
	if b == "" || !strings.Contains(b, "@") {
		return "", fmt.Errorf("%w: %s %q is not a message id", conv.ErrInvalid, field, id)
	}
	return b, nil
}

// encodeText RFC 2047-encodes a header text that is not plain ASCII, or that
// holds "=?" and would otherwise be decoded as an encoded-word by the reader.
func encodeText(s string) string {
	if strings.Contains(s, "=?") {
		// mime's encoders leave ASCII alone; B-encode by hand, in
		// rune-aligned chunks that keep each word under 75 characters.
		var words []string
		for s != "" {
			n := 0
			for n < len(s) {
				_, size := utf8.DecodeRuneInString(s[n:])
				if n+size > 45 {
					break
				}
				n += size
			}
			words = append(words, "=?utf-8?b?"+base64.StdEncoding.EncodeToString([]byte(s[:n]))+"?=")
			s = s[n:]
		}
		return strings.Join(words, " ")
	}
	return mime.QEncoding.Encode("utf-8", s)
}

func setMultipart(h *message.Header, mt string) {
	h.Set("Content-Type", mime.FormatMediaType(mt, nil))
}

func writeMultipart(buf *bytes.Buffer, h message.Header, parts func(*message.Writer) error) error {
	w, err := message.CreateWriter(buf, h)
	if err != nil {
		return err
	}
	if err := parts(w); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// writeBodyTop writes a message with no file attachments: the body is the root.
func (o Outgoing) writeBodyTop(buf *bytes.Buffer, h message.Header, inline []Attachment) error {
	switch {
	case o.HTML == "":
		setText(&h, "text/plain")
		return writeLeaf(buf, h, o.Text)
	case len(inline) > 0:
		setMultipart(&h, "multipart/related")
		return writeMultipart(buf, h, func(w *message.Writer) error { return o.writeRelated(w, inline) })
	default:
		setMultipart(&h, "multipart/alternative")
		return writeMultipart(buf, h, o.writeAlternative)
	}
}

// writeBody writes the body as one part of a multipart/mixed.
func (o Outgoing) writeBody(w *message.Writer, inline []Attachment) error {
	var h message.Header
	switch {
	case o.HTML == "":
		setText(&h, "text/plain")
		return createLeaf(w, h, o.Text)
	case len(inline) > 0:
		setMultipart(&h, "multipart/related")
		pw, err := w.CreatePart(h)
		if err != nil {
			return err
		}
		if err := o.writeRelated(pw, inline); err != nil {
			return err
		}
		return pw.Close()
	default:
		setMultipart(&h, "multipart/alternative")
		pw, err := w.CreatePart(h)
		if err != nil {
			return err
		}
		if err := o.writeAlternative(pw); err != nil {
			return err
		}
		return pw.Close()
	}
}

func (o Outgoing) writeRelated(w *message.Writer, inline []Attachment) error {
	var h message.Header
	setMultipart(&h, "multipart/alternative")
	pw, err := w.CreatePart(h)
	if err != nil {
		return err
	}
	if err := o.writeAlternative(pw); err != nil {
		return err
	}
	if err := pw.Close(); err != nil {
		return err
	}
	for _, a := range inline {
		if err := writeAttachment(w, a); err != nil {
			return err
		}
	}
	return nil
}

func (o Outgoing) writeAlternative(w *message.Writer) error {
	var th, hh message.Header
	setText(&th, "text/plain")
	if err := createLeaf(w, th, o.Text); err != nil {
		return err
	}
	setText(&hh, "text/html")
	return createLeaf(w, hh, o.HTML)
}

func setText(h *message.Header, mt string) {
	h.Set("Content-Type", mime.FormatMediaType(mt, map[string]string{"charset": "utf-8"}))
	h.Set("Content-Transfer-Encoding", "quoted-printable")
}

func writeLeaf(buf *bytes.Buffer, h message.Header, body string) error {
	w, err := message.CreateWriter(buf, h)
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(crlf(body))); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

func createLeaf(w *message.Writer, h message.Header, body string) error {
	pw, err := w.CreatePart(h)
	if err != nil {
		return err
	}
	if _, err := pw.Write([]byte(crlf(body))); err != nil {
		pw.Close()
		return err
	}
	return pw.Close()
}

// crlf gives text bodies CRLF line ends, as RFC 5322 wants on the wire.
func crlf(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.ReplaceAll(s, "\n", "\r\n")
}

func writeAttachment(w *message.Writer, a Attachment) error {
	var h message.Header
	mt := a.ContentType
	if mt == "" {
		mt = "application/octet-stream"
	}
	if _, _, err := mime.ParseMediaType(mt); err != nil {
		return fmt.Errorf("%w: attachment content type %q", conv.ErrInvalid, mt)
	}
	params := map[string]string{}
	if a.Filename != "" {
		params["filename"] = a.Filename
	}
	disp := "attachment"
	if a.Inline {
		disp = "inline"
	}
	h.Set("Content-Type", mt)
	h.Set("Content-Disposition", mime.FormatMediaType(disp, params))
	if a.ContentID != "" {
		cid := bracket(unbracket(a.ContentID))
		if cid == "" {
			return fmt.Errorf("%w: attachment content id %q", conv.ErrInvalid, a.ContentID)
		}
		h.Set("Content-Id", cid)
	}
	h.Set("Content-Transfer-Encoding", "base64")
	pw, err := w.CreatePart(h)
	if err != nil {
		return err
	}
	if _, err := pw.Write(a.Data); err != nil {
		pw.Close()
		return err
	}
	return pw.Close()
}
