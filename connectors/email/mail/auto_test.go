package mail

import (
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	const person = "From: Jane <jane@example.com>\r\nTo: support@acme.example\r\nMessage-ID: <x@example.com>\r\n"
	cases := []struct {
		name, header string
		want         AutoKind
	}{
		{"person", person, AutoNone},
		{"auto-submitted no", person + "Auto-Submitted: no\r\n", AutoNone},
		{"auto-replied", person + "Auto-Submitted: auto-replied\r\n", AutoSubmitted},
		{"auto-generated", person + "Auto-Submitted: auto-generated\r\n", AutoSubmitted},
		{"x-autoreply", person + "X-Autoreply: yes\r\n", AutoSubmitted},
		{"precedence bulk", person + "Precedence: bulk\r\n", AutoPrecedence},
		{"precedence list", person + "Precedence: List\r\n", AutoPrecedence},
		{"precedence junk", person + "Precedence: junk\r\n", AutoPrecedence},
		{"precedence first-class", person + "Precedence: first-class\r\n", AutoNone},
		{"list-unsubscribe", person + "List-Unsubscribe: <mailto:u@example.com>\r\n", AutoList},
		{"list-id", person + "List-Id: <news.example.com>\r\n", AutoList},
		{"x-auto-response-suppress", person + "X-Auto-Response-Suppress: All\r\n", AutoResponseSuppress},
		{"x-loop", person + "X-Loop: helpdesk@example.com\r\n", AutoXLoop},
		{"null return-path", person + "Return-Path: <>\r\n", AutoNullSender},
		{"normal return-path", person + "Return-Path: <jane@example.com>\r\n", AutoNone},
		{"mailer-daemon", "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.com>\r\n", AutoRoleSender},
		{"postmaster", "From: postmaster@example.com\r\n", AutoRoleSender},
		{"noreply", "From: Shop <noreply@shop.example>\r\n", AutoRoleSender},
		{"no-reply with tag", "From: no-reply+orders@shop.example\r\n", AutoRoleSender},
		{"role in return-path", person + "Return-Path: <mailer-daemon@example.com>\r\n", AutoRoleSender},
		{"colleague at our domain", "From: Acme <jane@ACME.example>\r\nMessage-ID: <abc.123@acme.example>\r\n", AutoNone},
		{"own message id", "From: Jane <jane@example.com>\r\nMessage-ID: <sb.1.2.abc@mail.acme.example>\r\n", AutoOwnDomain},
		{"own message id wins", "From: support@acme.example\r\nMessage-ID: <sb.1.2.abc@acme.example>\r\nAuto-Submitted: auto-replied\r\n", AutoOwnDomain},
		{"token shape under another domain", "From: jane@example.com\r\nMessage-ID: <sb.1.2.abc@example.com>\r\n", AutoNone},
		{"subdomain is not own", "From: jane@sub.acme.example.org\r\n", AutoNone},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse(strings.NewReader(tc.header+"Subject: x\r\n\r\nbody\r\n"), DefaultLimits, testOwn)
			if err != nil {
				t.Fatal(err)
			}
			want(t, "auto", m.Auto, tc.want)
		})
	}
}

func TestParseLenient(t *testing.T) {
	cases := []struct {
		name  string
		raw   string
		check func(t *testing.T, m *Message)
	}{
		{"raw GBK subject with declared charset", "From: a@example.cn\r\nSubject: \xb6\xa9\xb5\xa5\r\nContent-Type: text/plain; charset=gbk\r\n\r\n\xc4\xe3\xba\xc3\r\n", func(t *testing.T, m *Message) {
			want(t, "subject", m.Subject, "订单")
			want(t, "text", m.Text, "你好")
		}},
		{"unparseable From falls back", "From: =?gbk?B?1cXIzQ==?= zhang@example.cn <zhang@example.cn>\r\n\r\nx", func(t *testing.T, m *Message) {
			want(t, "email", m.From.Email, "zhang@example.cn")
		}},
		{"unknown charset kept readable", "From: a@b.example\r\nContent-Type: text/plain; charset=x-unknown-42\r\n\r\nhello\r\n", func(t *testing.T, m *Message) {
			want(t, "text", m.Text, "hello")
		}},
		{"bad base64 keeps prefix", "From: a@b.example\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQ=\r\n!!!!\r\n", func(t *testing.T, m *Message) {
			want(t, "text", m.Text, "hello world")
		}},
		{"unterminated multipart", "From: a@b.example\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\nContent-Type: text/plain\r\n\r\nhi there", func(t *testing.T, m *Message) {
			want(t, "text", m.Text, "hi there")
		}},
		{"format flowed", "From: a@b.example\r\nContent-Type: text/plain; charset=utf-8; format=flowed\r\n\r\nThis is a long \r\nline.\r\n-- \r\nsig\r\n", func(t *testing.T, m *Message) {
			want(t, "text", m.Text, "This is a long line.")
			want(t, "quoted", m.Quoted, "-- \nsig")
		}},
		{"filename RFC 2231 and traversal", "From: a@b.example\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename*=utf-8''..%2F..%2F%E5%8F%91%E7%A5%A8.pdf\r\n\r\nx\r\n--q--\r\n", func(t *testing.T, m *Message) {
			want(t, "filename", m.Attachments[0].Filename, "发票.pdf")
		}},
		{"bidi override stripped from filename", "From: a@b.example\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*=utf-8''invoice%E2%80%AEfdp.exe\r\n\r\nx\r\n--q--\r\n", func(t *testing.T, m *Message) {
			want(t, "filename", m.Attachments[0].Filename, "invoicefdp.exe")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse(strings.NewReader(tc.raw), DefaultLimits, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkClean(t, m)
			tc.check(t, m)
		})
	}
}

func TestParseRejects(t *testing.T) {
	cases := []struct{ name, raw string }{
		{"empty", ""},
		{"no header", "\r\nbody"},
		{"garbage header line", "this is not a header\r\n\r\nbody"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if m, err := Parse(strings.NewReader(tc.raw), DefaultLimits, nil); err == nil {
				t.Errorf("Parse = %+v, want an error", m)
			}
		})
	}
}
