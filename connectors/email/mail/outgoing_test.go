package mail

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

func baseOutgoing() Outgoing {
	return Outgoing{
		From:      Address{Name: "Acme 客服", Email: "support@acme.example"},
		To:        []Address{{Name: "李伟", Email: "liwei@example.cn"}},
		Cc:        []Address{{Name: "O'Brien, Pat", Email: "pat@example.com"}},
		Subject:   "回复：订单 1234 还没有收到",
		MessageID: MessageIDFor("mail.acme.example", 301234567890123456, 301234567890124000, testKey),
		InReplyTo: "<CAF3x9Lk2=Q8m@mail.example.com>",
		References: []string{
			"<first@example.com>", "CAF3x9Lk2=Q8m@mail.example.com",
		},
		Text: "您好，\n\n包裹已经重新发出。\n\n-- \nAcme 客服",
		Date: time.Date(2024, 3, 5, 18, 2, 0, 0, time.FixedZone("CST", 8*3600)),
	}
}

// TestOutgoingRoundTrip: what Bytes writes, Parse reads back field for field.
func TestOutgoingRoundTrip(t *testing.T) {
	png := []byte("\x89PNG\r\n\x1a\nfake")
	pdf := bytes.Repeat([]byte("%PDF-1.4 binary \x00\xff "), 200)
	cases := []struct {
		name     string
		edit     func(o *Outgoing)
		wantType string // top-level media type
	}{
		{"text only", func(o *Outgoing) {}, "text/plain"},
		{"text and html", func(o *Outgoing) { o.HTML = "<p>您好，</p><p>包裹已经重新发出。</p>" }, "multipart/alternative"},
		{"inline image", func(o *Outgoing) {
			o.HTML = `<p>见图 <img src="cid:logo.1@acme.example"></p>`
			o.Attachments = []Attachment{{ContentType: "image/png", ContentID: "logo.1@acme.example", Inline: true, Data: png}}
		}, "multipart/related"},
		{"attachment", func(o *Outgoing) {
			o.Attachments = []Attachment{{Filename: "发票 1234.pdf", ContentType: "application/pdf", Data: pdf}}
		}, "multipart/mixed"},
		{"everything", func(o *Outgoing) {
			o.HTML = `<p>见图 <img src="cid:logo.1@acme.example"></p>`
			o.Attachments = []Attachment{
				{ContentType: "image/png", ContentID: "logo.1@acme.example", Inline: true, Data: png},
				{Filename: "invoice.pdf", ContentType: "application/pdf", Data: pdf},
			}
		}, "multipart/mixed"},
		{"ascii subject with encoded-word lookalike", func(o *Outgoing) { o.Subject = "Re: =?utf-8?q?not_a_word?= literally" }, "text/plain"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := baseOutgoing()
			tc.edit(&o)
			raw, err := o.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			head, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
			for i, c := range head {
				if c >= 0x80 {
					t.Fatalf("non-ASCII byte in header at %d:\n%s", i, head)
				}
			}
			if !bytes.Contains(head, []byte("Content-Type: "+tc.wantType)) {
				t.Errorf("header lacks Content-Type %s:\n%s", tc.wantType, head)
			}
			if bytes.Contains(bytes.ToLower(head), []byte("auto-submitted")) {
				t.Error("an agent reply must not carry Auto-Submitted")
			}
			m, err := Parse(bytes.NewReader(raw), DefaultLimits, nil)
			if err != nil {
				t.Fatal(err)
			}
			want(t, "subject", m.Subject, o.Subject)
			want(t, "from", m.From, o.From)
			want(t, "to", fmt.Sprint(m.To), fmt.Sprint(o.To))
			want(t, "cc", fmt.Sprint(m.Cc), fmt.Sprint(o.Cc))
			want(t, "message id", m.MessageID, o.MessageID)
			want(t, "in-reply-to", m.InReplyTo, o.InReplyTo)
			want(t, "references", strings.Join(m.References, " "), "<first@example.com> <CAF3x9Lk2=Q8m@mail.example.com>")
			if !m.Date.Equal(o.Date) {
				t.Errorf("date = %v, want %v", m.Date, o.Date)
			}
			want(t, "text+quoted", m.Text+"\n\n"+m.Quoted, o.Text)
			if o.HTML != "" && m.HTML != o.HTML {
				t.Errorf("html = %q, want %q", m.HTML, o.HTML)
			}
			if len(m.Attachments) != len(o.Attachments) {
				t.Fatalf("attachments = %d, want %d", len(m.Attachments), len(o.Attachments))
			}
			for i, a := range o.Attachments {
				g := m.Attachments[i]
				want(t, "filename", g.Filename, a.Filename)
				want(t, "content type", g.ContentType, a.ContentType)
				want(t, "content id", g.ContentID, a.ContentID)
				want(t, "inline", g.Inline, a.Inline)
				if !bytes.Equal(g.Data, a.Data) {
					t.Errorf("attachment %d data differs", i)
				}
			}
			if c, ok := ParseToken(m.MessageID, "mail.acme.example", testKey); !ok || c != 301234567890123456 {
				t.Errorf("token = %v, %v", c, ok)
			}
		})
	}
}

// TestOutgoingRefusesControlCharacters: a CR or LF in any header value is an
// error, never a header of its own.
func TestOutgoingRefusesControlCharacters(t *testing.T) {
	cases := []struct {
		name string
		edit func(o *Outgoing)
	}{
		{"subject CRLF", func(o *Outgoing) { o.Subject = "Hello\r\nBcc: victim@example.com" }},
		{"subject LF", func(o *Outgoing) { o.Subject = "Hello\nX: y" }},
		{"subject CR", func(o *Outgoing) { o.Subject = "Hello\rX: y" }},
		{"subject NUL", func(o *Outgoing) { o.Subject = "Hello\x00" }},
		{"subject NEL", func(o *Outgoing) { o.Subject = "Hello\u0085X: y" }},
		{"from name", func(o *Outgoing) { o.From.Name = "Acme\r\nBcc: v@example.com" }},
		{"from email", func(o *Outgoing) { o.From.Email = "support@acme.example\r\nBcc: v@example.com" }},
		{"to name", func(o *Outgoing) { o.To[0].Name = "Li\nWei" }},
		{"to email", func(o *Outgoing) { o.To[0].Email = "liwei@example.cn\n" }},
		{"cc name", func(o *Outgoing) { o.Cc[0].Name = "Pat\r\n" }},
		{"message id", func(o *Outgoing) { o.MessageID = "<a@b>\r\nBcc: v@example.com" }},
		{"in-reply-to", func(o *Outgoing) { o.InReplyTo = "<a@b>\nX: y" }},
		{"references", func(o *Outgoing) { o.References = append(o.References, "<a@b>\r\nX: y") }},
		{"attachment filename", func(o *Outgoing) {
			o.Attachments = []Attachment{{Filename: "a.pdf\r\nX: y", ContentType: "application/pdf"}}
		}},
		{"attachment content type", func(o *Outgoing) {
			o.Attachments = []Attachment{{Filename: "a.pdf", ContentType: "application/pdf\r\nX: y"}}
		}},
		{"attachment content id", func(o *Outgoing) {
			o.Attachments = []Attachment{{ContentID: "a@b\r\nX: y", Inline: true, ContentType: "image/png"}}
		}},
		{"invalid UTF-8 subject", func(o *Outgoing) { o.Subject = "\xff\xfe" }},
		{"address with display part", func(o *Outgoing) { o.To[0].Email = "Evil <evil@example.com>" }},
		{"not an address", func(o *Outgoing) { o.To[0].Email = "nobody" }},
		{"no recipient", func(o *Outgoing) { o.To = nil }},
		{"id with space", func(o *Outgoing) { o.InReplyTo = "<a b@c>" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := baseOutgoing()
			tc.edit(&o)
			raw, err := o.Bytes()
			if !errors.Is(err, conv.ErrInvalid) {
				t.Fatalf("Bytes = %v, want conv.ErrInvalid; output:\n%s", err, raw)
			}
		})
	}
}

func TestOutgoingEncodesNonASCII(t *testing.T) {
	o := baseOutgoing()
	raw, err := o.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	head, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	for _, w := range []string{"Subject: =?utf-8?", "From: =?utf-8?", "To: =?utf-8?", `Cc: "O'Brien, Pat" <pat@example.com>`} {
		if !bytes.Contains(head, []byte(w)) {
			t.Errorf("header lacks %q:\n%s", w, head)
		}
	}
}

// TestOutgoingReferencesTrimmed: a long chain keeps its root and the last 19.
func TestOutgoingReferencesTrimmed(t *testing.T) {
	o := baseOutgoing()
	o.References = nil
	for i := 0; i < 50; i++ {
		o.References = append(o.References, fmt.Sprintf("<r%d@example.com>", i))
	}
	raw, err := o.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(bytes.NewReader(raw), DefaultLimits, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.References) != 20 || m.References[0] != "<r0@example.com>" || m.References[1] != "<r31@example.com>" || m.References[19] != "<r49@example.com>" {
		t.Errorf("references = %v", m.References)
	}
}
