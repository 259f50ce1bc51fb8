package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Bearer tokens look like sb_<tenant id>_<43 chars of base64url>. The prefix
// lets secret scanners spot a leaked token; the tenant id routes the lookup
// to the right tenant's rows (and Postgres RLS context) before anything is
// trusted, and the 32 random bytes are the secret. Only the SHA-256 of the
// whole bearer is stored: the secret has 256 bits of entropy, so a fast
// unsalted hash is enough and a database leak yields no usable token.
const (
	tokenPrefix     = "sb_"
	tokenSecretLen  = 32
	tokenSecretText = 43 // base64.RawURLEncoding.EncodedLen(tokenSecretLen)
	maxTenantDigits = 19 // math.MaxInt64
	maxTokenLen     = len(tokenPrefix) + maxTenantDigits + 1 + tokenSecretText
)

var b64url = base64.RawURLEncoding.Strict()

// NewToken makes a bearer token for tenant and the hash to store for it.
func NewToken(tenant conv.TenantID) (bearer string, hash []byte, err error) {
	if tenant <= 0 {
		return "", nil, fmt.Errorf("auth.NewToken %s: %w: tenant id must be positive", tenant, conv.ErrInvalid)
	}
	secret := make([]byte, tokenSecretLen)
	if _, err := rand.Read(secret); err != nil {
		return "", nil, fmt.Errorf("auth.NewToken: %w", err)
	}
	bearer = tokenPrefix + tenant.String() + "_" + b64url.EncodeToString(secret)
	sum := sha256.Sum256([]byte(bearer))
	return bearer, sum[:], nil
}

// ParseToken checks bearer's format and returns its tenant and the hash to
// look it up by. It says nothing about whether the token exists: that is the
// store's answer. Every malformed input is the same conv.ErrUnauthorized,
// and the input is never echoed, since it may be a real token with a typo.
func ParseToken(bearer string) (tenant conv.TenantID, hash []byte, err error) {
	unauth := fmt.Errorf("auth.ParseToken: %w: malformed bearer token", conv.ErrUnauthorized)
	if len(bearer) > maxTokenLen || len(bearer) < len(tokenPrefix) || bearer[:len(tokenPrefix)] != tokenPrefix {
		return 0, nil, unauth
	}
	rest := bearer[len(tokenPrefix):]
	// Digits never contain '_', so the first one ends the tenant id; the
	// secret's own alphabet may contain '_'.
	n := 0
	for n < len(rest) && n <= maxTenantDigits && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	if n == 0 || n > maxTenantDigits || rest[0] == '0' || n == len(rest) || rest[n] != '_' {
		return 0, nil, unauth
	}
	id, err := strconv.ParseInt(rest[:n], 10, 64)
	if err != nil {
		return 0, nil, unauth
	}
	secret := rest[n+1:]
	if len(secret) != tokenSecretText || !isBase64URL(secret) {
		return 0, nil, unauth
	}
	// Strict decoding rejects non-zero padding bits, so each secret has
	// exactly one spelling (and one hash).
	if raw, err := b64url.DecodeString(secret); err != nil || len(raw) != tokenSecretLen {
		return 0, nil, unauth
	}
	sum := sha256.Sum256([]byte(bearer))
	return conv.TenantID(id), sum[:], nil
}

// isBase64URL checks the alphabet by hand because the base64 decoder skips
// '\r' and '\n' instead of rejecting them.
func isBase64URL(s string) bool {
	for i := range len(s) {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
