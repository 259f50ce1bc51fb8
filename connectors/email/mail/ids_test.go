package mail

import (
	"strings"
	"testing"

	"github.com/switchboard-hq/switchboard/core/conv"
)

func TestTokenRoundTrip(t *testing.T) {
	const domain = "mail.acme.example"
	cases := []struct {
		name string
		c    conv.ConversationID
		m    conv.MessageID
	}{
		{"typical", 301234567890123456, 301234567890123999},
		{"small", 1, 0},
		{"max", 1<<63 - 1, 1<<63 - 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := MessageIDFor(domain, tc.c, tc.m, testKey)
			if !strings.HasPrefix(id, "<sb.") || !strings.HasSuffix(id, "@"+domain+">") {
				t.Fatalf("id = %q", id)
			}
			if bracket(unbracket(id)) != id {
				t.Fatalf("id %q is not a valid msg-id", id)
			}
			for _, form := range []string{id, unbracket(id), strings.ToUpper(id[:len(id)-len(domain)-2]) + "@" + strings.ToUpper(domain) + ">"} {
				c, ok := ParseToken(form, domain, testKey)
				if !ok || c != tc.c {
					t.Errorf("ParseToken(%q) = %v, %v; want %v, true", form, c, ok, tc.c)
				}
				c, m, ok := ParseTokenMessage(form, domain, testKey)
				if !ok || c != tc.c || m != tc.m {
					t.Errorf("ParseTokenMessage(%q) = %v, %v, %v; want %v, %v, true", form, c, m, ok, tc.c, tc.m)
				}
			}
		})
	}
}

func TestTokenRejects(t *testing.T) {
	const domain = "mail.acme.example"
	good := MessageIDFor(domain, 301234567890123456, 301234567890123999, testKey)
	local := unbracket(good)[:strings.LastIndexByte(unbracket(good), '@')]
	f := strings.Split(local, ".") // sb, conv, msg, mac
	flip := func(s string) string {
		b := []byte(s)
		if b[0] == 'a' {
			b[0] = 'b'
		} else {
			b[0] = 'a'
		}
		return string(b)
	}
	cases := []struct {
		name, id, domain string
		key              []byte
	}{
		{"tampered mac", "<sb." + f[1] + "." + f[2] + "." + flip(f[3]) + "@" + domain + ">", domain, testKey},
		{"other conversation, same mac", "<sb.301234567890123457." + f[2] + "." + f[3] + "@" + domain + ">", domain, testKey},
		{"other message, same mac", "<sb." + f[1] + ".301234567890124000." + f[3] + "@" + domain + ">", domain, testKey},
		{"other domain", strings.Replace(good, domain, "evil.example", 1), domain, testKey},
		{"checked against other domain", good, "acme.example", testKey},
		{"other key", good, domain, []byte("another-key-0123456789")},
		{"short key", MessageIDFor(domain, 5, 6, []byte("short")), domain, []byte("short")},
		{"leading zero", "<sb.0" + f[1] + "." + f[2] + "." + f[3] + "@" + domain + ">", domain, testKey},
		{"missing part", "<sb." + f[1] + "." + f[3] + "@" + domain + ">", domain, testKey},
		{"not ours", "<CAF3x9Lk2=Q8m@mail.example.com>", domain, testKey},
		{"empty", "", domain, testKey},
		{"negative", "<sb.-1." + f[2] + "." + f[3] + "@" + domain + ">", domain, testKey},
		{"huge", "<sb." + strings.Repeat("9", 600) + "@" + domain + ">", domain, testKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if c, ok := ParseToken(tc.id, tc.domain, tc.key); ok {
				t.Errorf("ParseToken(%q) = %v, true; want false", tc.id, c)
			}
			if c, m, ok := ParseTokenMessage(tc.id, tc.domain, tc.key); ok {
				t.Errorf("ParseTokenMessage(%q) = %v, %v, true; want false", tc.id, c, m)
			}
		})
	}
}

func TestNormalizeSubject(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"plain", "Order 1234", "Order 1234"},
		{"re", "Re: Order 1234", "Order 1234"},
		{"upper and repeated", "RE: RE: Fwd: FW: Order 1234", "Order 1234"},
		{"no space", "Re:Order 1234", "Order 1234"},
		{"space before colon", "Re : Order", "Order"},
		{"counter", "Re[2]: Order", "Order"},
		{"chinese", "回复：答复: 转发：订单 1234", "订单 1234"},
		{"traditional", "回覆: 轉寄：訂單", "訂單"},
		{"mixed", "Re: 回复: Fw: 订单", "订单"},
		{"spaces collapsed", "  Re:   Order\t 1234  ", "Order 1234"},
		{"word starting with re kept", "Refund for order", "Refund for order"},
		{"prefix in the middle kept", "Order Re: 1234", "Order Re: 1234"},
		{"only prefix", "Re:", ""},
		{"control characters", "Re: Order\r\n1234", "Order 1234"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want(t, "NormalizeSubject("+tc.in+")", NormalizeSubject(tc.in), tc.want)
		})
	}
}

func TestParseIDs(t *testing.T) {
	cases := []struct {
		name, in string
		want     []string
	}{
		{"one", "<a@b>", []string{"<a@b>"}},
		{"folded list", "<a@b>\r\n <c@d>\t<e@f>", []string{"<a@b>", "<c@d>", "<e@f>"}},
		{"bare", "a@b", []string{"<a@b>"}},
		{"comment", "<a@b> (Jane's message of Tuesday)", []string{"<a@b>"}},
		{"space inside dropped", "<a b@c> <d@e>", []string{"<d@e>"}},
		{"empty", "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := parseIDs(tc.in)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("parseIDs(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
