package wire

import (
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// MaxBody caps a webhook body. WeChat pushes are a few KiB even in
// compatible mode (plaintext fields plus their ciphertext, about 3× the
// message); 64 KiB leaves room and bounds every parser here.
const MaxBody = 64 << 10

// DefaultSkew is the freshness window the connector should pass to
// CheckTimestamp. WeChat retries a push three times within about 15 s of
// the first try, each with a new timestamp, so five minutes only tolerates
// clock drift.
const DefaultSkew = 5 * time.Minute

// Sign returns hex(sha1(concat(sort(parts)))): WeChat's "signature" (token,
// timestamp, nonce) and "msg_signature" (the same plus Encrypt). The caller's
// slice is not reordered.
func Sign(parts ...string) string {
	sum := signSum(parts)
	return hex.EncodeToString(sum[:])
}

func signSum(parts []string) [sha1.Size]byte {
	sorted := slices.Clone(parts)
	slices.Sort(sorted)
	h := sha1.New()
	for _, p := range sorted {
		h.Write([]byte(p))
	}
	var sum [sha1.Size]byte
	h.Sum(sum[:0])
	return sum
}

// Verify reports whether signature is Sign(parts...). The digests are
// compared in constant time, so response timing does not reveal how many
// leading bytes of a forged signature were right. The hex may be upper or
// lower case; anything that is not 40 hex digits is false.
func Verify(signature string, parts ...string) bool {
	if len(signature) != 2*sha1.Size {
		return false
	}
	var got [sha1.Size]byte
	if _, err := hex.Decode(got[:], []byte(signature)); err != nil {
		return false
	}
	want := signSum(parts)
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// CheckTimestamp parses ts, a decimal Unix time in seconds as WeChat puts
// in its query strings, and rejects one more than skew away from now in
// either direction: the official samples never check freshness, which
// lets a captured push be replayed forever. A malformed ts wraps
// conv.ErrInvalid; a stale or future one wraps conv.ErrUnauthorized (the
// request cannot be authenticated as fresh).
func CheckTimestamp(ts string, now time.Time, skew time.Duration) error {
	sec, err := parseUnix(ts)
	if err != nil {
		return fmt.Errorf("wire.CheckTimestamp: %w", err)
	}
	if skew < 0 {
		skew = -skew
	}
	// Compare in seconds: time.Unix of a huge value would overflow Sub.
	d := sec - now.Unix()
	if d < 0 {
		d = -d
	}
	if d > int64(skew/time.Second) {
		return fmt.Errorf("wire.CheckTimestamp: timestamp %d is %ds away from now (allowed %s): %w", sec, d, skew, conv.ErrUnauthorized)
	}
	return nil
}

// parseUnix accepts 1 to 12 ASCII digits: a positive Unix time in seconds
// up to year ~33658, with no sign, space or exponent, so the value cannot
// overflow anything it is compared with.
func parseUnix(s string) (int64, error) {
	if s == "" {
		return 0, fmt.Errorf("%w: empty timestamp", conv.ErrInvalid)
	}
	if len(s) > 12 {
		return 0, fmt.Errorf("%w: timestamp %q too long", conv.ErrInvalid, conv.Shorten(s, 32))
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: timestamp %q is not decimal", conv.ErrInvalid, conv.Shorten(s, 32))
		}
		n = n*10 + int64(c-'0')
	}
	if n == 0 {
		return 0, fmt.Errorf("%w: zero timestamp", conv.ErrInvalid)
	}
	return n, nil
}
