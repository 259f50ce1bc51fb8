package auth

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// FuzzParseToken: bearer tokens arrive from anyone on the internet. Seeds
// are in testdata/fuzz/FuzzParseToken.
func FuzzParseToken(f *testing.F) {
	f.Fuzz(func(t *testing.T, bearer string) {
		tenant, hash, err := ParseToken(bearer)
		if err != nil {
			if !errors.Is(err, conv.ErrUnauthorized) || tenant != 0 || hash != nil {
				t.Fatalf("ParseToken(%q) = %s, %x, %v; failures must be bare ErrUnauthorized", bearer, tenant, hash, err)
			}
			return
		}
		if len(bearer) > maxTokenLen || tenant <= 0 {
			t.Fatalf("ParseToken(%q) accepted length %d, tenant %s", bearer, len(bearer), tenant)
		}
		if sum := sha256.Sum256([]byte(bearer)); !bytes.Equal(hash, sum[:]) {
			t.Fatalf("ParseToken(%q): hash is not SHA-256 of the bearer", bearer)
		}
		// Accepted tokens are canonical: rebuilding from the parts gives the
		// same bytes, so one secret cannot be spelt two ways.
		prefix := tokenPrefix + tenant.String() + "_"
		if len(bearer) != len(prefix)+tokenSecretText || bearer[:len(prefix)] != prefix {
			t.Fatalf("ParseToken(%q) accepted a non-canonical tenant part", bearer)
		}
		raw, err := b64url.DecodeString(bearer[len(prefix):])
		if err != nil || len(raw) != tokenSecretLen || b64url.EncodeToString(raw) != bearer[len(prefix):] {
			t.Fatalf("ParseToken(%q) accepted a non-canonical secret", bearer)
		}
	})
}

// FuzzParsePHC: stored hashes are trusted more than request bytes, but a
// corrupt or planted row must fail cleanly, never panic or ask argon2 for
// unbounded memory. Seeds are in testdata/fuzz/FuzzParsePHC.
func FuzzParsePHC(f *testing.F) {
	f.Fuzz(func(t *testing.T, encoded string) {
		p, err := parsePHC(encoded)
		if err != nil {
			if !errors.Is(err, conv.ErrInvalid) {
				t.Fatalf("parsePHC(%q): %v, want ErrInvalid", encoded, err)
			}
			if !NeedsRehash(encoded) {
				t.Fatalf("NeedsRehash(%q) = false for an unparseable hash", encoded)
			}
			return
		}
		switch {
		case p.memory > maxArgonMemory, p.memory < 8*uint32(p.threads),
			p.time < 1, p.time > maxArgonTime,
			p.threads < 1, p.threads > maxArgonThreads,
			len(p.salt) < minSaltLen, len(p.salt) > maxSaltLen,
			len(p.key) < minKeyLen, len(p.key) > maxKeyLen:
			t.Fatalf("parsePHC(%q) accepted out-of-bounds parameters %+v", encoded, p)
		}
		if got := p.String(); got != encoded {
			t.Fatalf("parsePHC(%q).String() = %q: accepted a non-canonical spelling", encoded, got)
		}
	})
}
