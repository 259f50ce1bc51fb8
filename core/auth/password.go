package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Argon2id parameters for new hashes: RFC 9106's second recommended option
// (64 MiB, 3 passes) with 2 lanes for a 2-core node. Cost measured with
// BenchmarkHashPassword on the 2-core Xeon dev VM (go1.26.8, other builds
// running): 150-180 ms per hash, 330 ms at the worst of the load. That is
// the price of every login and, with argonSlots hashes in flight, 64 MiB of
// RAM each. Raising these is safe: old hashes carry their own parameters,
// still verify, and NeedsRehash flags them for an upgrade at the next
// successful login.
const (
	argonMemory  = 64 * 1024 // KiB
	argonTime    = 3
	argonThreads = 2
	argonKeyLen  = 32
	argonSaltLen = 16
)

// Password length bounds in bytes. The minimum follows NIST SP 800-63B; the
// maximum bounds the work an unauthenticated caller can make us do.
const (
	MinPasswordLen = 8
	MaxPasswordLen = 1024
)

// Bounds on parameters read back from a stored hash. A hostile or corrupt
// row must not make CheckPassword allocate gigabytes or spin for minutes;
// the caps leave room to raise the constants above 4x.
const (
	maxArgonMemory  = 256 * 1024 // KiB
	maxArgonTime    = 16
	maxArgonThreads = 16
	minSaltLen      = 8 // RFC 9106 minimum
	maxSaltLen      = 64
	minKeyLen       = 16
	maxKeyLen       = 64
	maxEncodedLen   = 256 // the longest valid string within the caps is 207
)

// argonSlots caps concurrent argon2 runs (see doc.go).
var argonSlots = make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))

// phc is a parsed "$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<key>".
type phc struct {
	memory, time uint32
	threads      uint8
	salt, key    []byte
}

var b64 = base64.RawStdEncoding.Strict()

func (p phc) String() string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.memory, p.time, p.threads, b64.EncodeToString(p.salt), b64.EncodeToString(p.key))
}

func (p phc) derive(password string) []byte {
	argonSlots <- struct{}{}
	defer func() { <-argonSlots }()
	return argon2.IDKey([]byte(password), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
}

// HashPassword hashes password with argon2id and a fresh 16-byte salt.
func HashPassword(password string) (string, error) {
	if err := checkPasswordLen("auth.HashPassword", password, true); err != nil {
		return "", err
	}
	return hashWith(password, phc{
		memory: argonMemory, time: argonTime, threads: argonThreads,
		salt: make([]byte, argonSaltLen), key: make([]byte, argonKeyLen),
	})
}

// hashWith hashes password with p's cost and lengths and a fresh salt.
func hashWith(password string, p phc) (string, error) {
	p.salt = make([]byte, len(p.salt))
	if _, err := rand.Read(p.salt); err != nil {
		return "", fmt.Errorf("auth.HashPassword: salt: %w", err)
	}
	p.key = p.derive(password)
	return p.String(), nil
}

// CheckPassword reports whether password matches encoded, a string from
// HashPassword with any parameters within the parser's bounds. A malformed
// encoded string, or a password over MaxPasswordLen, is conv.ErrInvalid.
// Short passwords are checked, not rejected: the minimum may have been lower
// when they were set.
func CheckPassword(encoded, password string) (bool, error) {
	if err := checkPasswordLen("auth.CheckPassword", password, false); err != nil {
		return false, err
	}
	p, err := parsePHC(encoded)
	if err != nil {
		return false, fmt.Errorf("auth.CheckPassword: stored hash: %w", err)
	}
	return subtle.ConstantTimeCompare(p.derive(password), p.key) == 1, nil
}

// NeedsRehash reports whether encoded was not made with the current
// parameters (or cannot be parsed), so the caller should store a new hash
// after the next successful CheckPassword.
func NeedsRehash(encoded string) bool {
	p, err := parsePHC(encoded)
	return err != nil || p.memory != argonMemory || p.time != argonTime || p.threads != argonThreads ||
		len(p.salt) != argonSaltLen || len(p.key) != argonKeyLen
}

func checkPasswordLen(op, password string, checkMin bool) error {
	switch {
	case checkMin && len(password) < MinPasswordLen:
		return fmt.Errorf("%s: %w: password is too short: it must be at least %d bytes", op, conv.ErrInvalid, MinPasswordLen)
	case len(password) > MaxPasswordLen:
		return fmt.Errorf("%s: %w: password is too long: it must be at most %d bytes", op, conv.ErrInvalid, MaxPasswordLen)
	}
	return nil
}

// parsePHC parses the one form String writes: fields in that order, decimal
// numbers without leading zeros or signs, unpadded canonical base64. It never
// echoes the input, which holds a password hash, in its errors.
func parsePHC(s string) (phc, error) {
	bad := func(why string) (phc, error) {
		return phc{}, fmt.Errorf("%w: malformed argon2id hash: %s", conv.ErrInvalid, why)
	}
	if len(s) > maxEncodedLen {
		return bad("too long")
	}
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" {
		return bad("want $argon2id$v=19$m=,t=,p=$salt$hash")
	}
	if f[1] != "argon2id" {
		return bad("not argon2id")
	}
	if f[2] != "v="+strconv.Itoa(argon2.Version) {
		return bad("unsupported version")
	}
	ps := strings.Split(f[3], ",")
	if len(ps) != 3 {
		return bad("want parameters m=,t=,p=")
	}
	var nums [3]uint32
	for i, name := range []string{"m=", "t=", "p="} {
		v, ok := strings.CutPrefix(ps[i], name)
		if !ok {
			return bad("want parameters m=,t=,p= in that order")
		}
		n, ok := parseDecimal(v)
		if !ok {
			return bad("parameter " + name + " is not a decimal number")
		}
		nums[i] = n
	}
	var p phc
	m, t, threads := nums[0], nums[1], nums[2]
	switch {
	case threads < 1 || threads > maxArgonThreads:
		return bad("p out of range")
	case t < 1 || t > maxArgonTime:
		return bad("t out of range")
	case m < 8*threads || m > maxArgonMemory: // RFC 9106: at least 8 KiB per lane
		return bad("m out of range")
	}
	p.memory, p.time, p.threads = m, t, uint8(threads)
	if !isBase64Std(f[4]) || !isBase64Std(f[5]) {
		return bad("salt and hash must be unpadded standard base64")
	}
	var err error
	if p.salt, err = b64.DecodeString(f[4]); err != nil || len(p.salt) < minSaltLen || len(p.salt) > maxSaltLen {
		return bad("bad salt")
	}
	if p.key, err = b64.DecodeString(f[5]); err != nil || len(p.key) < minKeyLen || len(p.key) > maxKeyLen {
		return bad("bad hash")
	}
	return p, nil
}

// parseDecimal accepts 1 to 10 ASCII digits without a leading zero that fit
// in a uint32, so every number has exactly one spelling.
func parseDecimal(s string) (uint32, bool) {
	if len(s) == 0 || len(s) > 10 || (s[0] == '0' && len(s) > 1) {
		return 0, false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil
}

// isBase64Std checks the alphabet by hand because the base64 decoder skips
// '\r' and '\n' instead of rejecting them.
func isBase64Std(s string) bool {
	for i := range len(s) {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}
