package mail

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/net/html"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// FuzzParse feeds arbitrary bytes to Parse under small limits. Invariants:
// no panic; an error wraps conv.ErrInvalid; a result has no control
// character in any header value, at most MaxParts attachments, valid UTF-8
// text, and sanitized HTML with no script or event handler. The committed
// corpus (testdata/fuzz/FuzzParse, written by TestGenerate -gen) holds every
// golden mail and miniature bombs.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.eml"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	l := Limits{MaxBytes: 256 << 10, MaxParts: 20, MaxDepth: 5, MaxHeaderBytes: 8 << 10, MaxAttachmentBytes: 128 << 10}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(bytes.NewReader(b), l, testOwn)
		checkHeaderAgrees(t, b, l, m, err)
		if err != nil {
			if !errors.Is(err, conv.ErrInvalid) {
				t.Fatalf("error %v does not wrap conv.ErrInvalid", err)
			}
			if m != nil {
				t.Fatal("message returned with an error")
			}
			return
		}
		checkClean(t, m)
		if len(m.Attachments) > l.MaxParts {
			t.Fatalf("%d attachments over MaxParts %d", len(m.Attachments), l.MaxParts)
		}
		for _, a := range m.Attachments {
			if int64(len(a.Data)) > l.MaxAttachmentBytes {
				t.Fatalf("attachment of %d bytes over the limit", len(a.Data))
			}
		}
		for what, s := range map[string]string{"text": m.Text, "quoted": m.Quoted, "html": m.HTML} {
			if !utf8.ValidString(s) {
				t.Fatalf("%s is not valid UTF-8", what)
			}
		}
		if bad := unsafeHTML(m.HTML); bad != "" {
			t.Fatalf("html keeps %s: %s", bad, m.HTML)
		}
	})
}

// checkHeaderAgrees: ParseHeader never panics, fails only with
// conv.ErrInvalid, returns clean values, and reads the same envelope
// fields as Parse whenever Parse succeeds.
func checkHeaderAgrees(t *testing.T, b []byte, l Limits, m *Message, err error) {
	t.Helper()
	h, herr := ParseHeader(bytes.NewReader(b), l, testOwn)
	if herr != nil {
		if !errors.Is(herr, conv.ErrInvalid) {
			t.Fatalf("ParseHeader error %v does not wrap conv.ErrInvalid", herr)
		}
		if err == nil {
			t.Fatalf("ParseHeader failed (%v) where Parse succeeded", herr)
		}
		return
	}
	checkClean(t, h)
	if h.Text != "" || h.HTML != "" || len(h.Attachments) > 0 || h.Bounce != nil {
		t.Fatalf("ParseHeader read a body: %+v", h)
	}
	if err != nil {
		return
	}
	if h.MessageID != m.MessageID || h.InReplyTo != m.InReplyTo || h.Subject != m.Subject ||
		h.From != m.From || !h.Date.Equal(m.Date) || h.Auto != m.Auto ||
		strings.Join(h.References, " ") != strings.Join(m.References, " ") || len(h.To) != len(m.To) {
		t.Fatalf("ParseHeader = %+v\nParse = %+v", h, m)
	}
}

// unsafeHTML tokenizes sanitized HTML as a browser would and names the first
// thing the policy should have removed, or returns "".
func unsafeHTML(s string) string {
	z := html.NewTokenizer(strings.NewReader(s))
	for {
		switch z.Next() {
		case html.ErrorToken:
			return ""
		case html.StartTagToken, html.SelfClosingTagToken:
			name, more := z.TagName()
			switch string(name) {
			case "script", "style", "iframe", "object", "embed", "form", "input", "select", "option", "textarea", "base", "meta", "link", "svg", "math":
				return "<" + string(name) + ">"
			}
			for more {
				var k, v []byte
				k, v, more = z.TagAttr()
				key := strings.ToLower(string(k))
				val := strings.ToLower(strings.Map(func(r rune) rune {
					if r <= ' ' {
						return -1
					}
					return r
				}, string(v)))
				if strings.HasPrefix(key, "on") || key == "style" {
					return "attribute " + key
				}
				if (key == "href" || key == "src" || key == "action" || key == "formaction") &&
					(strings.HasPrefix(val, "javascript:") || strings.HasPrefix(val, "vbscript:") || strings.HasPrefix(val, "data:")) {
					return key + "=" + val
				}
			}
		}
	}
}
