package api

import (
	"strings"
	"testing"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// FuzzReplyEmail: whatever an agent's client sends as subject and
// recipients, an accepted email part is a valid conv part whose values are
// single lines (they become mail headers).
func FuzzReplyEmail(f *testing.F) {
	f.Add("Re: Kettle", "Cus <cus@x.example>", "bob@x.example")
	f.Add("Hi\r\nBcc: a@b", "a@b\nBcc: c@d", "")
	f.Add("", "=?utf-8?q?a=0D=0Ab?= <a@b>", `"Doe, J" <j@d>`)
	f.Add(strings.Repeat("s", MaxSubject+1), "<a@b>", "(comment) a@b")
	f.Fuzz(func(t *testing.T, subject, to, cc string) {
		p, err := replyEmail(conv.Part{Type: conv.PartEmail, Email: &conv.Email{Subject: subject, To: []string{to}, Cc: []string{cc, to}}})
		if err != nil {
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("accepted %q %q %q into an invalid part: %v", subject, to, cc, err)
		}
		e := p.Email
		for _, v := range append(append([]string{e.Subject}, e.To...), e.Cc...) {
			if strings.ContainsAny(v, "\r\n") {
				t.Fatalf("accepted a line break: %+v", e)
			}
		}
		if e.From != "" || e.MessageID != "" || e.HTML != "" {
			t.Fatalf("accepted headers the channel writes: %+v", e)
		}
	})
}
