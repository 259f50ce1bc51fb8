package mail

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestParseHeader reads what an IMAP server hands for a mail over the size
// limit (BODY[HEADER]: the header block alone) and a mail Parse refuses, and
// gets the same envelope Parse gets from the whole mail.
func TestParseHeader(t *testing.T) {
	for _, name := range []string{"gbk", "gmail_reply", "nested", "auto_reply"} {
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", name+".eml"))
			if err != nil {
				t.Fatal(err)
			}
			full := parseFile(t, name)
			end := bytes.Index(raw, []byte("\r\n\r\n"))
			if end < 0 {
				t.Fatal("no header end")
			}
			h, err := ParseHeader(bytes.NewReader(raw[:end+4]), DefaultLimits, testOwn)
			if err != nil {
				t.Fatalf("ParseHeader: %v", err)
			}
			want(t, "from", h.From, full.From)
			want(t, "subject", h.Subject, full.Subject)
			want(t, "message id", h.MessageID, full.MessageID)
			want(t, "in-reply-to", h.InReplyTo, full.InReplyTo)
			want(t, "auto", h.Auto, full.Auto)
			want(t, "text", h.Text, "")
			if len(h.Attachments) != 0 {
				t.Errorf("attachments = %d, want none", len(h.Attachments))
			}
		})
	}

	t.Run("refused by Parse", func(t *testing.T) {
		// Too many parts for Parse; the header still says who wrote.
		var b strings.Builder
		b.WriteString("From: Jane <jane@example.com>\nSubject: many files\nMessage-ID: <many@example.com>\n" +
			"Content-Type: multipart/mixed; boundary=b\n\n")
		for range 30 {
			b.WriteString("--b\nContent-Type: text/plain\n\nx\n")
		}
		b.WriteString("--b--\n")
		l := Limits{MaxParts: 10}
		if _, err := Parse(strings.NewReader(b.String()), l, nil); !errors.Is(err, ErrTooComplex) {
			t.Fatalf("Parse = %v, want ErrTooComplex", err)
		}
		h, err := ParseHeader(strings.NewReader(b.String()), l, nil)
		if err != nil {
			t.Fatalf("ParseHeader: %v", err)
		}
		want(t, "from", h.From, Address{Name: "Jane", Email: "jane@example.com"})
		want(t, "id", h.MessageID, "<many@example.com>")
	})

	t.Run("header over the limit", func(t *testing.T) {
		raw := "From: a@example.com\nX-Junk: " + strings.Repeat("x", 100<<10) + "\n\nbody\n"
		_, err := ParseHeader(strings.NewReader(raw), Limits{MaxHeaderBytes: 1 << 10}, nil)
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("ParseHeader = %v, want ErrTooLarge", err)
		}
	})
}
