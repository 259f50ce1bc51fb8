package wxapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"testing"

	"github.com/switchboard-hq/switchboard/core/conv"
)

func TestRetryable(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"busy", &APIError{Code: -1}, true},
		{"per-minute limit", fmt.Errorf("wrapped: %w", &APIError{Code: 45011}), true},
		{"daily quota", &APIError{Code: 45009}, false},
		{"reply window", &APIError{Code: 45015}, false},
		{"reply count", &APIError{Code: 45047}, false},
		{"openid", &APIError{Code: 40003}, false},
		{"unfollowed", &APIError{Code: 43004}, false},
		{"unauthorized api", &APIError{Code: 48001}, false},
		{"ip allow list", &APIError{Code: 40164}, false},
		{"token rejected after retry", &APIError{Code: 40001}, false},
		{"HTTP 500", &HTTPError{Status: 500}, true},
		{"HTTP 503", &HTTPError{Status: 503}, true},
		{"HTTP 429", &HTTPError{Status: 429}, true},
		{"HTTP 404", &HTTPError{Status: 404}, false},
		{"network", &transportError{Path: "/p", Err: &url.Error{Op: "Post", URL: "u", Err: io.ErrUnexpectedEOF}}, true},
		{"deadline", &transportError{Path: "/p", Err: &url.Error{Op: "Post", URL: "u", Err: context.DeadlineExceeded}}, true},
		{"canceled", &transportError{Path: "/p", Err: &url.Error{Op: "Post", URL: "u", Err: context.Canceled}}, false},
		{"circuit open", fmt.Errorf("%w: x", ErrCircuitOpen), true},
		{"too large", &TooLargeError{Size: 2, Max: 1}, false},
		{"plain", errors.New("x"), false},
		{"conv unavailable", fmt.Errorf("garbled: %w", conv.ErrUnavailable), true},
		{"invalid", fmt.Errorf("x: %w", conv.ErrInvalid), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Retryable(tc.err); got != tc.want {
				t.Fatalf("Retryable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestReasonDefault(t *testing.T) {
	cases := []struct {
		name string
		err  APIError
		want string
	}{
		{"rid stripped", APIError{Code: 45002, Msg: "content size out of limit rid: 6543-aa"}, "errcode 45002: content size out of limit"},
		{"hint stripped", APIError{Code: 40008, Msg: "invalid message type hint: [abc]"}, "errcode 40008: invalid message type"},
		{"no message", APIError{Code: 12345}, "errcode 12345"},
		{"known code ignores errmsg", APIError{Code: 45015, Msg: "whatever"}, "45015: outside the 48-hour reply window"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Reason(); got != tc.want {
				t.Fatalf("Reason() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCleanMsg(t *testing.T) {
	cases := []struct {
		name, in, want string
		secrets        []string
	}{
		{"token scrubbed", "bad token TOK123 here", "bad token [redacted] here", []string{"TOK123"}},
		{"empty secret ignored", "abc", "abc", []string{""}},
		{"control characters", "a\nb\x1bc", "a b c", nil},
		{"invalid utf-8", "a\xffb", "a?b", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := cleanMsg(tc.in, tc.secrets...); got != tc.want {
				t.Fatalf("cleanMsg(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	t.Run("capped", func(t *testing.T) {
		got := cleanMsg(strings.Repeat("汉", 500))
		if len(got) > maxMsgBytes+len("…") || !strings.HasSuffix(got, "…") {
			t.Fatalf("len %d", len(got))
		}
	})
}

func TestRedactURL(t *testing.T) {
	cases := []struct{ in, want string }{
		{"https://api.weixin.qq.com/cgi-bin/token?grant_type=client_credential&appid=a&secret=S", "https://api.weixin.qq.com/cgi-bin/token"},
		{"http://u:p@proxy/wx/cgi-bin/message/custom/send?access_token=T#f", "http://proxy/wx/cgi-bin/message/custom/send"},
		{"::", "(unparsable URL)"},
	}
	for _, tc := range cases {
		if got := redactURL(tc.in); got != tc.want {
			t.Errorf("redactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCleanFilename(t *testing.T) {
	cases := []struct{ in, want string }{
		{"a.png", "a.png"},
		{"../../etc/passwd", "passwd"},
		{`C:\x\y.JPG`, "y.JPG"},
		{"a\"b\x00c.mp3", "abc.mp3"},
		{"..", ""},
		{"", ""},
		{strings.Repeat("x", 300) + ".png", strings.Repeat("x", maxFilenameBytes-4) + ".png"},
	}
	for _, tc := range cases {
		if got := cleanFilename(tc.in); got != tc.want {
			t.Errorf("cleanFilename(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
