package email_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/switchboard-hq/switchboard/internal/testenv"

	"github.com/switchboard-hq/switchboard/connectors/email"
	"github.com/switchboard-hq/switchboard/connectors/email/imapwatch"
	"github.com/switchboard-hq/switchboard/connectors/email/mail"
	"github.com/switchboard-hq/switchboard/core/conv"
)

// goldenChannel is the channel the golden mails were written to: acme's
// support, whose Message-IDs are under mail.acme.example with testKey.
func goldenChannel(t *testing.T, e *env) conv.Channel {
	t.Helper()
	return e.channel(t, map[string]any{
		"imap_addr": "imap.acme.example:993", "username": "support@acme.example", "password": "pw",
		"smtp_addr": "smtp.acme.example:587", "from_address": "support@acme.example", "from_name": "Acme Support",
		"message_id_domain": "mail.acme.example", "thread_key": testKey, "reopen_window": "72h",
	})
}

func readGoldenMail(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("mail", "testdata", name+".eml"))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func receive(t *testing.T, e *env, c *email.Connector, ch conv.Channel, m imapwatch.Mail) email.Received {
	t.Helper()
	r, err := email.Receive(context.Background(), c, ch, m)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if r.In != nil {
		if err := r.In.Validate(); err != nil {
			t.Fatalf("envelope does not validate: %v", err)
		}
	}
	return r
}

// goldenView is an envelope with every media URL replaced by the hash and
// size of what is stored there (URLs are random and signed).
func goldenView(t *testing.T, e *env, r email.Received) []byte {
	t.Helper()
	stored := func(u string) string {
		if u == "" {
			return ""
		}
		b := e.readMedia(t, u)
		sum := sha256.Sum256(b)
		return fmt.Sprintf("media:%s:%d", hex.EncodeToString(sum[:8]), len(b))
	}
	var v struct {
		In       *conv.Inbound  `json:"inbound"`
		Delivery *conv.Delivery `json:"delivery,omitempty"`
	}
	if r.In != nil {
		in := *r.In
		in.Parts = nil
		for _, p := range r.In.Parts {
			p.URL = stored(p.URL)
			if p.Email != nil {
				em := *p.Email
				em.Raw, em.HTML = stored(em.Raw), stored(em.HTML)
				p.Email = &em
			}
			in.Parts = append(in.Parts, p)
		}
		in.TenantID, in.ChannelID = 0, 0
		v.In = &in
	}
	if r.Delivery != nil {
		d := *r.Delivery
		d.TenantID, d.At = 0, time.Time{}
		v.Delivery = &d
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestGolden maps every golden mail of the mail package to an envelope and
// compares it with testdata/<name>.golden.json; the checks pin what each
// case is for, so that a refresh with -update cannot accept a regression.
func TestGolden(t *testing.T) {
	e := newEnv(t)
	c := e.connector(t, "node-a")
	ch := goldenChannel(t, e)
	const token = "<sb.301234567890123456.301234567890123999.6eamlxuqkj5ovgsx@mail.acme.example>"
	cases := []struct {
		name  string
		check func(t *testing.T, r email.Received, em *conv.Email)
	}{
		{"plain_ascii", func(t *testing.T, r email.Received, em *conv.Email) {
			want(t, "from", r.In.From, conv.Identity{Kind: "email", ExternalID: "jane.doe@example.com"})
			want(t, "from name", r.In.FromName, "Jane Doe")
			want(t, "system", r.In.System, false)
			want(t, "keys", r.In.Thread.Keys, []string{"<CAF3x9Lk2=Q8m@mail.example.com>"})
			want(t, "weak", r.In.Thread.Weak, "jane.doe@example.com\n"+mail.NormalizeSubject(em.Subject))
			want(t, "weak window", r.In.Thread.WeakWindow, 72*time.Hour)
			want(t, "parts", len(r.In.Parts), 2)
			contains(t, "text", r.In.Parts[1].Text, "still has not\narrived")
		}},
		{"gmail_reply", func(t *testing.T, r email.Received, em *conv.Email) {
			want(t, "conversation", r.In.Thread.Conversation, conv.ConversationID(301234567890123456))
			// In-Reply-To, then References newest first, once each.
			want(t, "refs", r.In.Thread.Refs, []string{token, "<CAF3x9Lk2=Q8m@mail.example.com>"})
			contains(t, "quoted", em.Quoted, "> Sorry for the wait.")
			want(t, "text", r.In.Parts[1].Text, "Thanks, the new tracking number works. It says delivery on Friday.\n\nJane")
		}},
		{"foxmail_reply", func(t *testing.T, r email.Received, em *conv.Email) {
			want(t, "conversation", r.In.Thread.Conversation, conv.ConversationID(301234567890123456))
			want(t, "from", r.In.From.ExternalID, "liuyang@qq.com")
		}},
		{"outlook_reply", func(t *testing.T, r email.Received, em *conv.Email) {
			// No usable ids: the subject is the only thread.
			want(t, "conversation", r.In.Thread.Conversation, conv.ConversationID(0))
			want(t, "weak", r.In.Thread.Weak, "peter.novak@contoso.example\nInvoice 2024-0311")
			contains(t, "quoted", em.Quoted, "-----Original Message-----")
			if !strings.Contains(string(e.readMedia(t, em.HTML)), "quoted 1.200") {
				t.Error("stored HTML is not the mail's")
			}
		}},
		{"nested", func(t *testing.T, r email.Received, em *conv.Email) {
			if len(r.In.Parts) != 4 {
				t.Fatalf("parts = %d, want email, text, image, pdf", len(r.In.Parts))
			}
			img, pdf := r.In.Parts[2], r.In.Parts[3]
			want(t, "image", [4]any{img.Type, img.MediaID, img.MIME, img.Name}, [4]any{conv.PartImage, "cid:part1.photo@example.org", "image/png", "lid.png"})
			want(t, "pdf", [4]any{pdf.Type, pdf.MediaID, pdf.MIME, pdf.Name}, [4]any{conv.PartFile, "", "application/pdf", "invoice-1234.pdf"})
			if b := e.readMedia(t, img.URL); !bytes.HasPrefix(b, []byte("\x89PNG")) || int64(len(b)) != img.Size {
				t.Errorf("stored image: %d bytes, part says %d", len(b), img.Size)
			}
			if b := e.readMedia(t, pdf.URL); !bytes.HasPrefix(b, []byte("%PDF-1.4")) {
				t.Error("stored pdf is not the attachment")
			}
			contains(t, "stored html", string(e.readMedia(t, em.HTML)), `src="cid:part1.photo@example.org"`)
			want(t, "cc", em.Cc, []string{"Ops <ops@example.org>", "li.na@example.org"})
			want(t, "from", em.From, `"Wang, Fang" <fang.wang@example.org>`)
		}},
		{"dsn_bounce", func(t *testing.T, r email.Received, em *conv.Email) {
			want(t, "system", r.In.System, true)
			want(t, "auto", em.Auto, "auto-submitted")
			want(t, "conversation", r.In.Thread.Conversation, conv.ConversationID(301234567890123456))
			want(t, "weak", r.In.Thread.Weak, "")
			if r.Delivery == nil {
				t.Fatal("no delivery report for the bounced reply")
			}
			want(t, "delivery", [2]any{r.Delivery.MessageID, r.Delivery.Status}, [2]any{conv.MessageID(301234567890123999), conv.MsgFailed})
			want(t, "reason", r.Delivery.Reason, "bounced by jane.doe@example.invalid: 5.1.1 550 5.1.1 <jane.doe@example.invalid>: Recipient address rejected: User unknown")
		}},
		{"auto_reply", func(t *testing.T, r email.Received, em *conv.Email) {
			want(t, "system", r.In.System, true)
			want(t, "auto", em.Auto, "auto-submitted")
			want(t, "weak", r.In.Thread.Weak, "")
			want(t, "conversation", r.In.Thread.Conversation, conv.ConversationID(301234567890123456))
			if r.Delivery != nil {
				t.Error("an auto-reply is not a bounce")
			}
		}},
		{"mailing_list", func(t *testing.T, r email.Received, em *conv.Email) {
			want(t, "system", r.In.System, true)
			want(t, "auto", em.Auto, "list")
		}},
		{"header_injection", func(t *testing.T, r email.Received, em *conv.Email) {
			for _, s := range append([]string{em.Subject, em.From, r.In.FromName}, em.To...) {
				if strings.ContainsAny(s, "\r\n") {
					t.Errorf("line break kept in %q", s)
				}
			}
		}},
		{"html_xss", func(t *testing.T, r email.Received, em *conv.Email) {
			h := strings.ToLower(string(e.readMedia(t, em.HTML)))
			for _, bad := range []string{"<script", "onerror", "javascript:"} {
				if strings.Contains(h, bad) {
					t.Errorf("stored HTML keeps %s", bad)
				}
			}
		}},
		{"gbk", func(t *testing.T, r email.Received, em *conv.Email) {
			want(t, "subject", em.Subject, "订单 1234 还没有收到")
			want(t, "from", em.From, "张喆 <zhangzhe@example.cn>")
		}},
		{"gb18030", func(t *testing.T, r email.Received, em *conv.Email) {
			want(t, "subject", em.Subject, "关于退款 𠮷野家 😊")
		}},
		{"big5", func(t *testing.T, r email.Received, em *conv.Email) {
			want(t, "from name", r.In.FromName, "陳怡君")
		}},
		{"iso2022jp", func(t *testing.T, r email.Received, em *conv.Email) {
			want(t, "subject", em.Subject, "注文の確認")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := readGoldenMail(t, tc.name)
			r := receive(t, e, c, ch, imapwatch.Mail{UIDValidity: 7, UID: 1, Size: int64(len(raw)), Raw: raw})
			if r.In == nil {
				t.Fatal("the mail was not ingested")
			}
			sum := sha256.Sum256(raw)
			want(t, "external id", r.In.ExternalID, "sha256:"+hex.EncodeToString(sum[:]))
			em := r.In.Parts[0].Email
			if r.In.Parts[0].Type != conv.PartEmail || em == nil || r.In.Parts[1].Type != conv.PartText {
				t.Fatalf("parts start %s, %s; want email, text", r.In.Parts[0].Type, r.In.Parts[1].Type)
			}
			if !bytes.Equal(e.readMedia(t, em.Raw), raw) {
				t.Error("the raw mail is not stored as received")
			}
			if r.Unreadable || em.Error != "" {
				t.Errorf("readable mail marked unreadable: %q", em.Error)
			}
			tc.check(t, r, em)

			got := goldenView(t, e, r)
			testenv.Golden(t, filepath.Join("testdata", tc.name+".golden.json"), got)
		})
	}
}

func TestOwnMailIgnored(t *testing.T) {
	e := newEnv(t)
	c := e.connector(t, "node-a")
	ch := goldenChannel(t, e)
	for _, tc := range []struct{ name, head string }{
		{"from our address", "From: Acme Support <Support@Acme.Example>\r\nMessage-ID: <x1@elsewhere.example>\r\n"},
		{"our Message-ID domain", "From: someone@elsewhere.example\r\nMessage-ID: <sb.1.2.abc@mail.acme.example>\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := []byte(tc.head + "To: support@acme.example\r\nSubject: loop\r\n\r\nhello\r\n")
			if r := receive(t, e, c, ch, imapwatch.Mail{UIDValidity: 1, UID: 1, Raw: raw}); r.In != nil || r.Delivery != nil {
				t.Fatalf("our own mail was ingested: %+v", r.In)
			}
		})
	}
	// The same mail from a customer is ingested: the check above is not
	// refusing everything.
	raw := []byte("From: someone@elsewhere.example\r\nMessage-ID: <x2@elsewhere.example>\r\nSubject: hi\r\n\r\nhello\r\n")
	if r := receive(t, e, c, ch, imapwatch.Mail{UIDValidity: 1, UID: 2, Raw: raw}); r.In == nil {
		t.Fatal("a customer's mail was not ingested")
	}

	// Message-IDs under the from_address's own domain (the default): people
	// write from that domain too, so only our address and our tokens mark
	// our own mail.
	shared := e.channel(t, map[string]any{
		"imap_addr": "imap.acme.example:993", "username": "support@acme.example", "password": "pw",
		"smtp_addr": "smtp.acme.example:587", "from_address": "support@acme.example", "thread_key": testKey,
	})
	for _, tc := range []struct {
		name, head string
		ours       bool
	}{
		{"a colleague", "From: bob@acme.example\r\nMessage-ID: <b1@acme.example>\r\n", false},
		{"our address", "From: support@ACME.example\r\nMessage-ID: <b2@acme.example>\r\n", true},
		{"our token", "From: relay@elsewhere.example\r\nMessage-ID: " + mail.MessageIDFor("acme.example", 5, 6, []byte(testKey)) + "\r\n", true},
		{"a made-up token", "From: eve@elsewhere.example\r\nMessage-ID: " + mail.MessageIDFor("acme.example", 5, 6, []byte("another-key-0123456789")) + "\r\n", false},
	} {
		t.Run("shared domain, "+tc.name, func(t *testing.T) {
			raw := []byte(tc.head + "Subject: s\r\n\r\nbody\r\n")
			r := receive(t, e, c, shared, imapwatch.Mail{UIDValidity: 1, UID: 3, Raw: raw})
			if (r.In == nil) != tc.ours {
				t.Fatalf("ingested = %v, want %v", r.In != nil, !tc.ours)
			}
		})
	}
}

func TestUnreadable(t *testing.T) {
	e := newEnv(t)
	c := e.connector(t, "node-a")
	ch := goldenChannel(t, e)

	t.Run("too many parts", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("From: Jane <jane@example.com>\r\nSubject: many\r\nMessage-ID: <many@example.com>\r\n" +
			"Content-Type: multipart/mixed; boundary=b\r\n\r\n")
		for range 150 {
			b.WriteString("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n")
		}
		b.WriteString("--b--\r\n")
		raw := []byte(b.String())
		r := receive(t, e, c, ch, imapwatch.Mail{UIDValidity: 1, UID: 1, Raw: raw})
		if r.In == nil || !r.Unreadable {
			t.Fatalf("unreadable mail: %+v", r)
		}
		em := r.In.Parts[0].Email
		contains(t, "error", em.Error, "too many parts")
		contains(t, "text", r.In.Parts[1].Text, "This mail could not be read: it has too many parts")
		want(t, "from", r.In.From.ExternalID, "jane@example.com")
		want(t, "keys", r.In.Thread.Keys, []string{"<many@example.com>"})
		if !bytes.Equal(e.readMedia(t, em.Raw), raw) {
			t.Error("raw mail not kept")
		}
	})

	t.Run("no header at all", func(t *testing.T) {
		raw := []byte("\x00\x01 not a mail\r\n")
		r := receive(t, e, c, ch, imapwatch.Mail{UIDValidity: 1, UID: 2, Raw: raw})
		if r.In == nil || !r.Unreadable {
			t.Fatalf("unreadable mail: %+v", r)
		}
		want(t, "from", r.In.From, email.EmailIdentity(email.UnknownSender))
		if !bytes.Equal(e.readMedia(t, r.In.Parts[0].Email.Raw), raw) {
			t.Error("raw mail not kept")
		}
		if r.In.Thread == nil || r.In.Thread.Weak != "" || len(r.In.Thread.Refs) != 0 {
			t.Errorf("thread = %+v, want a conversation of its own", r.In.Thread)
		}
	})
}

func TestTooLarge(t *testing.T) {
	e := newEnv(t)
	c := e.connector(t, "node-a")
	ch := goldenChannel(t, e)
	head := []byte("From: Jane <jane@example.com>\r\nSubject: Re: scans\r\nMessage-ID: <big@example.com>\r\n" +
		"In-Reply-To: <sb.301234567890123456.301234567890123999.6eamlxuqkj5ovgsx@mail.acme.example>\r\n\r\n")
	r := receive(t, e, c, ch, imapwatch.Mail{UIDValidity: 9, UID: 42, Size: 40 << 20, TooLarge: true, Header: head})
	if r.In == nil {
		t.Fatal("not ingested")
	}
	want(t, "external id", r.In.ExternalID, "uid:9:42")
	want(t, "from", r.In.From.ExternalID, "jane@example.com")
	want(t, "conversation", r.In.Thread.Conversation, conv.ConversationID(301234567890123456))
	contains(t, "text", r.In.Parts[1].Text, "40 MiB, over the channel's limit of 25 MiB")
	want(t, "raw", r.In.Parts[0].Email.Raw, "")

	r = receive(t, e, c, ch, imapwatch.Mail{UIDValidity: 9, UID: 43, Size: 40 << 20, TooLarge: true})
	if r.In == nil || r.In.From != email.EmailIdentity(email.UnknownSender) {
		t.Fatalf("too large without header: %+v", r.In)
	}
}

func TestLongMail(t *testing.T) {
	e := newEnv(t)
	c := e.connector(t, "node-a")
	ch := goldenChannel(t, e)
	long := strings.Repeat("长文本 long text. ", 2000) // 32,000 runes
	var b strings.Builder
	b.WriteString("From: jane@example.com\r\nSubject: files\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n")
	b.WriteString("--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + long + "\r\n")
	for i := range 30 {
		fmt.Fprintf(&b, "--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=f%02d.pdf\r\n\r\n%%PDF-%d\r\n", i, i)
	}
	b.WriteString("--b--\r\n")
	r := receive(t, e, c, ch, imapwatch.Mail{UIDValidity: 1, UID: 1, Raw: []byte(b.String())})
	if len(r.In.Parts) != conv.MaxParts {
		t.Fatalf("parts = %d, want %d", len(r.In.Parts), conv.MaxParts)
	}
	text := r.In.Parts[1].Text
	if n := utf8.RuneCountInString(text); n > conv.MaxTextRune {
		t.Fatalf("text of %d runes", n)
	}
	contains(t, "text", text, "all of it is in the attached message.txt")
	// email, text, message.txt, then 17 of the 30 files.
	contains(t, "text", text, "[13 more attachments are in the original mail.]")
	full := r.In.Parts[2]
	want(t, "full text part", [2]any{full.Name, full.Type}, [2]any{"message.txt", conv.PartFile})
	if got := strings.TrimSpace(string(e.readMedia(t, full.URL))); got != strings.TrimSpace(long) {
		t.Errorf("message.txt holds %d bytes, want the whole text (%d)", len(got), len(long))
	}
	want(t, "last file", r.In.Parts[conv.MaxParts-1].Name, "f16.pdf")
}

func want[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if !bytes.Equal(g, w) {
		t.Errorf("%s = %s, want %s", what, g, w)
	}
}

func contains(t *testing.T, what, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Errorf("%s = %q, want it to contain %q", what, s, sub)
	}
}

// FuzzReceive: whatever bytes arrive, the mapping never fails (its only
// errors are the media store's), never panics, and gives an envelope core
// accepts, with the raw bytes kept: a mail never blocks the mailbox.
func FuzzReceive(f *testing.F) {
	names, _ := filepath.Glob(filepath.Join("mail", "testdata", "*.eml"))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("From: a@b.c\r\nSubject: =?utf-8?b?DQpCY2M6IHhAeS56?=\r\nIn-Reply-To: <sb.1.2.abc@mail.acme.example>\r\n\r\nhi"))
	f.Add([]byte("\x00\xff"))
	e := newEnv(f)
	c := e.connector(f, "node-a", func(c *email.Config) { c.Logger = nil })
	ch := e.channel(f, map[string]any{
		"imap_addr": "imap.acme.example:993", "username": "support@acme.example", "password": "pw",
		"smtp_addr": "smtp.acme.example:587", "from_address": "support@acme.example",
		"message_id_domain": "mail.acme.example", "thread_key": testKey, "max_size": 64 << 10,
	})
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := email.Receive(context.Background(), c, ch, imapwatch.Mail{UIDValidity: 1, UID: 1, Size: int64(len(raw)), Raw: raw})
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		if r.In == nil {
			return // our own mail
		}
		if err := r.In.Validate(); err != nil {
			t.Fatalf("envelope refused by core: %v", err)
		}
		em := r.In.Parts[0].Email
		if r.In.Parts[0].Type != conv.PartEmail || em == nil || em.Raw == "" {
			t.Fatalf("first part %+v, want the email part with the raw mail", r.In.Parts[0])
		}
		if r.In.Thread == nil || !strings.HasPrefix(r.In.ExternalID, "sha256:") {
			t.Fatalf("envelope without thread or content key: %+v", r.In)
		}
	})
}
