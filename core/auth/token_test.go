package auth

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math"
	"regexp"
	"strings"
	"testing"

	"github.com/switchboard-hq/switchboard/core/conv"
)

func TestNewTokenRoundTrip(t *testing.T) {
	format := regexp.MustCompile(`^sb_[1-9][0-9]*_[A-Za-z0-9_-]{43}$`)
	seen := map[string]bool{}
	for _, tenant := range []conv.TenantID{1, 42, 7301345123456789012, math.MaxInt64} {
		bearer, hash, err := NewToken(tenant)
		if err != nil {
			t.Fatalf("NewToken(%s): %v", tenant, err)
		}
		if !format.MatchString(bearer) || !strings.HasPrefix(bearer, "sb_"+tenant.String()+"_") {
			t.Fatalf("NewToken(%s) = %q, want sb_%s_<43 base64url chars>", tenant, bearer, tenant)
		}
		if sum := sha256.Sum256([]byte(bearer)); !bytes.Equal(hash, sum[:]) {
			t.Fatalf("hash is not SHA-256 of the bearer")
		}
		gotTenant, gotHash, err := ParseToken(bearer)
		if err != nil || gotTenant != tenant || !bytes.Equal(gotHash, hash) {
			t.Fatalf("ParseToken(NewToken(%s)) = %s, %x, %v; want %s, %x", tenant, gotTenant, gotHash, err, tenant, hash)
		}
		secret := bearer[strings.IndexByte(bearer[3:], '_')+4:]
		if seen[secret] {
			t.Fatal("secret repeated")
		}
		seen[secret] = true
	}
}

func TestNewTokenInvalidTenant(t *testing.T) {
	for _, tenant := range []conv.TenantID{0, -1, math.MinInt64} {
		bearer, hash, err := NewToken(tenant)
		if !errors.Is(err, conv.ErrInvalid) || bearer != "" || hash != nil {
			t.Fatalf("NewToken(%d) = %q, %x, %v; want ErrInvalid", tenant, bearer, hash, err)
		}
	}
}

func TestParseTokenMalformed(t *testing.T) {
	const secret = "oKGio6SlpqeoqaqrrK2ur7CxsrO0tba3uLm6u7y9vr8" // 32 bytes, canonical
	if _, _, err := ParseToken("sb_42_" + secret); err != nil {
		t.Fatalf("the base case must be valid: %v", err)
	}
	tests := []struct{ name, bearer string }{
		{"empty", ""},
		{"prefix only", "sb_"},
		{"no tenant", "sb__" + secret},
		{"no secret", "sb_42_"},
		{"no separator", "sb_42" + secret},
		{"wrong prefix", "sk_42_" + secret},
		{"upper-case prefix", "SB_42_" + secret},
		{"Bearer scheme left in", "Bearer sb_42_" + secret},
		{"tenant zero", "sb_0_" + secret},
		{"leading zero", "sb_042_" + secret},
		{"negative tenant", "sb_-42_" + secret},
		{"plus sign", "sb_+42_" + secret},
		{"tenant overflows int64", "sb_9223372036854775808_" + secret},
		{"tenant with 20 digits", "sb_12345678901234567890_" + secret},
		{"secret one short", "sb_42_" + secret[1:]},
		{"secret one long", "sb_42_" + secret + "A"},
		{"padding", "sb_42_" + secret[:42] + "="},
		{"standard alphabet", "sb_42_" + secret[:10] + "+" + secret[11:]},
		{"non-canonical last char", "sb_42_" + secret[:42] + "B"},
		{"newline in secret", "sb_42_" + secret[:20] + "\n" + secret[21:]},
		{"trailing newline", "sb_42_" + secret + "\n"},
		{"leading space", " sb_42_" + secret},
		{"non-ASCII digit", "sb_4٢_" + secret},
		{"very long", "sb_42_" + strings.Repeat("A", 10000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tenant, hash, err := ParseToken(tt.bearer)
			if !errors.Is(err, conv.ErrUnauthorized) || tenant != 0 || hash != nil {
				t.Fatalf("ParseToken = %s, %x, %v; want ErrUnauthorized", tenant, hash, err)
			}
			if strings.Contains(err.Error(), secret[:10]) {
				t.Fatalf("error echoes the token: %v", err)
			}
		})
	}
}
