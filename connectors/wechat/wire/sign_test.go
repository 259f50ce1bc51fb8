package wire

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

func TestSign(t *testing.T) {
	tests := []struct {
		name  string
		parts []string
		want  string
	}{
		// The documentation's examples (see helpers_test.go for the source).
		{"doc GET verification", []string{"AAAAA", "1714036504", "1514711492"}, "f464b24fc39322e44b38aa78f5edd27bd1441696"},
		{"doc plaintext POST", []string{"AAAAA", "1714037059", "486452656"}, "899cf89e464efb63f54ddac96b0a0a235f53aa78"},
		{"doc safe-mode signature", []string{docToken, docTimestamp, docNonce}, docSignature},
		{"doc msg_signature", []string{docToken, docTimestamp, docNonce, docEncrypt}, docMsgSignature},
		{"doc reply MsgSignature", []string{docToken, docReplyTimestamp, docNonce, docReplyEncrypt}, docReplyMsgSignature},
		{"order does not matter", []string{docEncrypt, docNonce, docToken, docTimestamp}, docMsgSignature},
		{"nothing is sha1 of empty", nil, "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := slices.Clone(tt.parts)
			if got := Sign(tt.parts...); got != tt.want {
				t.Errorf("Sign = %s, want %s", got, tt.want)
			}
			if !slices.Equal(before, tt.parts) {
				t.Errorf("Sign reordered the caller's slice: %q", tt.parts)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	parts := []string{docToken, docTimestamp, docNonce, docEncrypt}
	flipped := []byte(docMsgSignature)
	flipped[39] ^= 1 // '3' -> '2'
	tests := []struct {
		name      string
		signature string
		parts     []string
		want      bool
	}{
		{"doc msg_signature", docMsgSignature, parts, true},
		{"upper-case hex", strings.ToUpper(docMsgSignature), parts, true},
		{"one bit off", string(flipped), parts, false},
		{"signature without Encrypt", docSignature, parts, false},
		{"Encrypt tampered", docMsgSignature, []string{docToken, docTimestamp, docNonce, docEncrypt + "A"}, false},
		{"another token", docMsgSignature, []string{"BBBBB", docTimestamp, docNonce, docEncrypt}, false},
		{"empty", "", parts, false},
		{"short", docMsgSignature[:39], parts, false},
		{"long", docMsgSignature + "0", parts, false},
		{"not hex", strings.Repeat("z", 40), parts, false},
		{"hex of the digest's prefix", docMsgSignature[:20], parts, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Verify(tt.signature, tt.parts...); got != tt.want {
				t.Errorf("Verify = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCheckTimestamp(t *testing.T) {
	now := time.Unix(1716182400, 0)
	skew := 5 * time.Minute
	tests := []struct {
		name string
		ts   string
		want error // nil, conv.ErrInvalid or conv.ErrUnauthorized
	}{
		{"now", "1716182400", nil},
		{"299 s ago", "1716182101", nil},
		{"exactly the skew ago", "1716182100", nil},
		{"exactly the skew ahead", "1716182700", nil},
		{"one second too old", "1716182099", conv.ErrUnauthorized},
		{"one second too far ahead", "1716182701", conv.ErrUnauthorized},
		{"an hour ago", "1716178800", conv.ErrUnauthorized},
		{"far future", "999999999999", conv.ErrUnauthorized},
		{"far past", "1", conv.ErrUnauthorized},
		{"leading zeros", "01716182400", nil},
		{"empty", "", conv.ErrInvalid},
		{"zero", "0", conv.ErrInvalid},
		{"negative", "-1716182400", conv.ErrInvalid},
		{"plus sign", "+1716182400", conv.ErrInvalid},
		{"space", " 1716182400", conv.ErrInvalid},
		{"fraction", "1716182400.5", conv.ErrInvalid},
		{"exponent", "1.7e9", conv.ErrInvalid},
		{"letters", "abc", conv.ErrInvalid},
		{"milliseconds (13 digits)", "1716182400000", conv.ErrInvalid},
		{"overflow", "99999999999999999999999", conv.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckTimestamp(tt.ts, now, skew)
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("CheckTimestamp(%q) = %v, want nil", tt.ts, err)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("CheckTimestamp(%q) = %v, want %v", tt.ts, err, tt.want)
			}
		})
	}
}
