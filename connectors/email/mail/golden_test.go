package mail

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// testOwn are the domains the golden mails treat as ours.
var testOwn = OwnDomains{"acme.example", "mail.acme.example"}

var testKey = []byte("test-key-0123456789abcdef")

type goldenAttachment struct {
	Filename    string `json:"filename,omitempty"`
	ContentType string `json:"content_type"`
	ContentID   string `json:"content_id,omitempty"`
	Inline      bool   `json:"inline,omitempty"`
	Size        int    `json:"size"`
	SHA256      string `json:"sha256"`
}

// goldenView is a Message with attachment bytes replaced by size and hash.
type goldenView struct {
	*Message
	Attachments []goldenAttachment `json:"attachments,omitempty"`
}

func goldenJSON(t *testing.T, m *Message) []byte {
	t.Helper()
	v := goldenView{Message: m}
	for _, a := range m.Attachments {
		sum := sha256.Sum256(a.Data)
		v.Attachments = append(v.Attachments, goldenAttachment{
			Filename: a.Filename, ContentType: a.ContentType, ContentID: a.ContentID, Inline: a.Inline,
			Size: len(a.Data), SHA256: hex.EncodeToString(sum[:]),
		})
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

func parseFile(t *testing.T, name string) *Message {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name+".eml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := Parse(f, DefaultLimits, testOwn)
	if err != nil {
		t.Fatalf("Parse(%s): %v", name, err)
	}
	return m
}

// TestGolden parses every testdata mail and compares with its golden JSON;
// the checks below pin the properties each case exists for, so a golden file
// refreshed with -update cannot silently accept a regression on them.
func TestGolden(t *testing.T) {
	cases := []struct {
		name  string
		check func(t *testing.T, m *Message)
	}{
		{"plain_ascii", func(t *testing.T, m *Message) {
			want(t, "from", m.From, Address{Name: "Jane Doe", Email: "Jane.Doe@example.com"})
			want(t, "id", m.MessageID, "<CAF3x9Lk2=Q8m@mail.example.com>")
			want(t, "auto", m.Auto, AutoNone)
			contains(t, "text", m.Text, "still has not\narrived")
		}},
		{"gbk", func(t *testing.T, m *Message) {
			want(t, "subject", m.Subject, "订单 1234 还没有收到")
			want(t, "from", m.From, Address{Name: "张喆", Email: "zhangzhe@example.cn"})
			want(t, "to", m.To[0].Name, "Acme 客服")
			contains(t, "text", m.Text, "物流一直显示“已揽收”")
		}},
		{"big5", func(t *testing.T, m *Message) {
			want(t, "subject", m.Subject, "訂單 5678 的發票問題")
			want(t, "from name", m.From.Name, "陳怡君")
			contains(t, "text", m.Text, "「宏達科技股份有限公司」")
		}},
		{"gb18030", func(t *testing.T, m *Message) {
			want(t, "subject", m.Subject, "关于退款 𠮷野家 😊")
			want(t, "from name", m.From.Name, "李娜")
			contains(t, "text", m.Text, "𠮷野家店买的礼品卡要退款 😊，金额 €20")
		}},
		{"iso2022jp", func(t *testing.T, m *Message) {
			want(t, "subject", m.Subject, "注文の確認")
			want(t, "from name", m.From.Name, "山田太郎")
			contains(t, "text", m.Text, "配送状況を教えてください")
		}},
		{"nested", func(t *testing.T, m *Message) {
			if len(m.Attachments) != 2 {
				t.Fatalf("attachments = %d, want 2", len(m.Attachments))
			}
			img, pdf := m.Attachments[0], m.Attachments[1]
			want(t, "img", [3]any{img.ContentType, img.ContentID, img.Inline}, [3]any{"image/png", "part1.photo@example.org", true})
			want(t, "pdf", [3]any{pdf.ContentType, pdf.Filename, pdf.Inline}, [3]any{"application/pdf", "invoice-1234.pdf", false})
			if !bytes.HasPrefix(img.Data, []byte("\x89PNG")) || !bytes.HasPrefix(pdf.Data, []byte("%PDF-1.4")) {
				t.Error("attachment bytes not decoded")
			}
			contains(t, "html", m.HTML, `src="cid:part1.photo@example.org"`)
			absent(t, "html", m.HTML, "margin:0")
			want(t, "cc", len(m.Cc), 2)
			contains(t, "text", m.Text, "cracked lid")
		}},
		{"gmail_reply", func(t *testing.T, m *Message) {
			want(t, "text", m.Text, "Thanks, the new tracking number works. It says delivery on Friday.\n\nJane")
			contains(t, "quoted", m.Quoted, "> Sorry for the wait.")
			want(t, "refs", len(m.References), 2)
			if c, ok := ParseToken(m.InReplyTo, "mail.acme.example", testKey); !ok || c != 301234567890123456 {
				t.Errorf("token in In-Reply-To: %v %v", c, ok)
			}
		}},
		{"outlook_reply", func(t *testing.T, m *Message) {
			contains(t, "text", m.Text, "quoted 1.200 £ (GBP)")
			absent(t, "text", m.Text, "Original Message")
			contains(t, "quoted", m.Quoted, "-----Original Message-----")
			contains(t, "quoted", m.Quoted, "please find the invoice attached.")
			absent(t, "html", m.HTML, "<style")
		}},
		{"foxmail_reply", func(t *testing.T, m *Message) {
			want(t, "subject", m.Subject, "回复：回复：订单 9012 退款")
			want(t, "normalized", NormalizeSubject(m.Subject), "订单 9012 退款")
			want(t, "text", m.Text, "好的，收到了，谢谢！")
			contains(t, "quoted", m.Quoted, "原始邮件")
			contains(t, "quoted", m.Quoted, "退款已经处理")
			contains(t, "html", m.HTML, "原始邮件")
		}},
		{"html_xss", func(t *testing.T, m *Message) {
			for _, bad := range []string{"<script", "alert(", "onerror", "onload", "onclick", "javascript:", "<style",
				"<iframe", "<form", "<input", "<select", "<option", "<button", "<object", "<base", "<meta", "style=", "/admin/delete-all", "hidden title"} {
				absent(t, "html", m.HTML, bad)
				absent(t, "text", m.Text, bad)
			}
			if bad := unsafeHTML(m.HTML); bad != "" {
				t.Errorf("html keeps %s", bad)
			}
			contains(t, "html", m.HTML, `href="https://prizes.example.net/claim"`)
			contains(t, "text", m.Text, "Please confirm your account.")
		}},
		{"auto_reply", func(t *testing.T, m *Message) { want(t, "auto", m.Auto, AutoSubmitted) }},
		{"mailing_list", func(t *testing.T, m *Message) { want(t, "auto", m.Auto, AutoList) }},
		{"dsn_bounce", func(t *testing.T, m *Message) {
			if m.Bounce == nil {
				t.Fatal("no bounce")
			}
			want(t, "bounce", *m.Bounce, Bounce{
				OriginalMessageID: "<sb.301234567890123456.301234567890123999.6eamlxuqkj5ovgsx@mail.acme.example>",
				Recipient:         "jane.doe@example.invalid",
				Action:            "failed",
				Status:            "5.1.1",
				Diagnostic:        "550 5.1.1 <jane.doe@example.invalid>: Recipient address rejected: User unknown",
			})
			if !m.Bounce.Failed() {
				t.Error("Failed() = false")
			}
			if m.Auto == AutoNone {
				t.Error("a bounce is automatic mail")
			}
			want(t, "attachments", len(m.Attachments), 0)
		}},
		{"header_injection", func(t *testing.T, m *Message) {
			want(t, "subject", m.Subject, "Hello Bcc: victim@example.com Body")
			want(t, "from name", m.From.Name, "Eve Bcc: victim@example.com")
			want(t, "reply-to name", m.ReplyTo[0].Name, "Eve X-Injected: yes")
			want(t, "filename", m.Attachments[0].Filename, "passwd X-Foo: bar")
			checkClean(t, m)
		}},
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "*.eml"))
	if len(files) != len(cases) {
		t.Errorf("%d testdata mails, %d cases: every mail needs a case", len(files), len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := parseFile(t, tc.name)
			checkClean(t, m)
			tc.check(t, m)
			got := goldenJSON(t, m)
			testenv.Golden(t, filepath.Join("testdata", tc.name+".golden.json"), got)
		})
	}
}

func want[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

func contains(t *testing.T, what, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Errorf("%s does not contain %q:\n%s", what, sub, s)
	}
}

func absent(t *testing.T, what, s, sub string) {
	t.Helper()
	if strings.Contains(strings.ToLower(s), strings.ToLower(sub)) {
		t.Errorf("%s contains %q:\n%s", what, sub, s)
	}
}

// checkClean asserts the header invariant: no value taken from a header
// holds a control character.
func checkClean(t testing.TB, m *Message) {
	t.Helper()
	bad := func(field, v string) {
		for _, r := range v {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
				t.Errorf("%s has control character %U: %q", field, r, v)
				return
			}
		}
	}
	bad("Message-ID", m.MessageID)
	bad("In-Reply-To", m.InReplyTo)
	for _, r := range m.References {
		bad("References", r)
	}
	bad("Subject", m.Subject)
	for _, a := range append(append(append([]Address{m.From}, m.ReplyTo...), m.To...), m.Cc...) {
		bad("name", a.Name)
		bad("email", a.Email)
	}
	for _, a := range m.Attachments {
		bad("filename", a.Filename)
		bad("content type", a.ContentType)
		bad("content id", a.ContentID)
	}
	if b := m.Bounce; b != nil {
		for _, v := range []string{b.OriginalMessageID, b.Recipient, b.Action, b.Status, b.Diagnostic} {
			bad("bounce", v)
		}
	}
}
