package smtpsend

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// checkAddress accepts one envelope address: valid UTF-8, no control
// character, space or angle bracket (it goes inside <…> on a command
// line), exactly one @ with text on both sides, at most maxAddrLen bytes.
func checkAddress(a string) error {
	switch {
	case a == "":
		return errors.New("empty address")
	case len(a) > maxAddrLen:
		return fmt.Errorf("address longer than %d bytes", maxAddrLen)
	case !utf8.ValidString(a):
		return fmt.Errorf("address %q is not UTF-8", a)
	}
	for _, r := range a {
		if r <= ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' || r == '<' || r == '>' {
			return fmt.Errorf("address %q has a control character, space or angle bracket", a)
		}
	}
	local, domain, ok := strings.Cut(a, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") {
		return fmt.Errorf("address %q does not have one @ between a local part and a domain", a)
	}
	return nil
}

// dedup checks every recipient and drops repeats (same local part, same
// domain ignoring case), keeping the first spelling and the order.
func dedup(rcpts []string) ([]string, error) {
	if len(rcpts) == 0 {
		return nil, errors.New("no recipient")
	}
	seen := make(map[string]bool, len(rcpts))
	out := make([]string, 0, len(rcpts))
	for _, r := range rcpts {
		if err := checkAddress(r); err != nil {
			return nil, err
		}
		i := strings.LastIndexByte(r, '@')
		key := r[:i] + "@" + strings.ToLower(r[i+1:])
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, r)
	}
	return out, nil
}
