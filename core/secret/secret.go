// Package secret seals channel secrets at rest with AES-256-GCM under a
// master key that lives outside the database.
//
// A Keyring holds one current key, which seals, and any number of old keys,
// which still open. Each sealed value names its key by a short fingerprint,
// so rotation is: make a new key current, keep the old ones, re-seal every
// secret (`switchboard keys rotate`), then drop the old keys.
//
// Sealed format: "v1:" + key fingerprint (8 hex) + ":" + base64url(nonce ||
// ciphertext || tag). The associated data binds the value to its place
// (tenant, table, row, field), so a ciphertext copied elsewhere fails to open.
//
// Keys come from SWITCHBOARD_MASTER_KEY (comma-separated base64 keys, the
// first current) or from a key file with one base64 key per line (the first
// current). A file-backed keyring re-reads its file when it meets a sealed
// value under a key it does not know, so a running server keeps working
// after another process rotated the keys.
package secret

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// KeySize is the AES-256 key length in bytes.
const KeySize = 32

// EnvVar names the environment variable holding master keys.
const EnvVar = "SWITCHBOARD_MASTER_KEY"

const prefix = "v1:"

type key struct {
	id   string
	aead cipher.AEAD
}

// Keyring seals with its current key and opens with any of its keys. It is
// safe for concurrent use.
type Keyring struct {
	mu   sync.RWMutex
	keys []key // keys[0] is current
	path string
}

// NewKeyring builds a keyring from raw 32-byte keys, the first current.
func NewKeyring(raw ...[]byte) (*Keyring, error) {
	keys, err := buildKeys(raw)
	if err != nil {
		return nil, err
	}
	return &Keyring{keys: keys}, nil
}

func buildKeys(raw [][]byte) ([]key, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("secret: %w: no master key", conv.ErrInvalid)
	}
	keys := make([]key, 0, len(raw))
	for i, r := range raw {
		if len(r) != KeySize {
			return nil, fmt.Errorf("secret: %w: master key %d is %d bytes, want %d", conv.ErrInvalid, i+1, len(r), KeySize)
		}
		block, err := aes.NewCipher(r)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(r)
		keys = append(keys, key{id: hex.EncodeToString(sum[:4]), aead: aead})
	}
	return keys, nil
}

// ParseKeys decodes comma- or newline-separated base64 keys, ignoring blank
// lines and lines starting with '#'.
func ParseKeys(text string) ([][]byte, error) {
	var out [][]byte
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for _, f := range strings.Split(line, ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			b, err := base64.StdEncoding.DecodeString(f)
			if err != nil {
				return nil, fmt.Errorf("secret: %w: master key %d is not base64 (generate one with: head -c32 /dev/urandom | base64)", conv.ErrInvalid, len(out)+1)
			}
			out = append(out, b)
		}
	}
	return out, nil
}

// Load returns the keyring from SWITCHBOARD_MASTER_KEY when set, else from
// keyFile. If keyFile does not exist and create is true, a new random key is
// written there with mode 0600 (the embedded default's first start); created
// reports that.
func Load(keyFile string, create bool) (k *Keyring, created bool, err error) {
	if env := os.Getenv(EnvVar); env != "" {
		raw, err := ParseKeys(env)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", EnvVar, err)
		}
		k, err := NewKeyring(raw...)
		return k, false, err
	}
	if keyFile == "" {
		return nil, false, fmt.Errorf("secret: %w: set %s or a key file", conv.ErrInvalid, EnvVar)
	}
	if _, err := os.Stat(keyFile); errors.Is(err, fs.ErrNotExist) && create {
		if err := writeNewKeyFile(keyFile); err != nil {
			return nil, false, err
		}
		created = true
	}
	k = &Keyring{path: keyFile}
	if err := k.reload(); err != nil {
		return nil, false, err
	}
	return k, created, nil
}

func writeNewKeyFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("secret: create key dir: %w", err)
	}
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil // another process won the race; use its key
	}
	if err != nil {
		return fmt.Errorf("secret: create key file: %w", err)
	}
	_, err = fmt.Fprintf(f, "# Switchboard master key. Back it up: without it channel secrets cannot be read.\n%s\n", base64.StdEncoding.EncodeToString(raw))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (k *Keyring) reload() error {
	b, err := os.ReadFile(k.path)
	if err != nil {
		return fmt.Errorf("secret: read key file: %w", err)
	}
	raw, err := ParseKeys(string(b))
	if err != nil {
		return fmt.Errorf("%s: %w", k.path, err)
	}
	keys, err := buildKeys(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", k.path, err)
	}
	k.mu.Lock()
	k.keys = keys
	k.mu.Unlock()
	return nil
}

// File returns the key file backing k, or "" for an environment keyring.
func (k *Keyring) File() string { return k.path }

// CurrentID returns the fingerprint of the current key.
func (k *Keyring) CurrentID() string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.keys[0].id
}

// Seal encrypts plaintext under the current key, bound to aad.
func (k *Keyring) Seal(plaintext []byte, aad string) (string, error) {
	k.mu.RLock()
	cur := k.keys[0]
	k.mu.RUnlock()
	nonce := make([]byte, cur.aead.NonceSize(), cur.aead.NonceSize()+len(plaintext)+cur.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	sealed := cur.aead.Seal(nonce, nonce, plaintext, []byte(aad))
	return prefix + cur.id + ":" + base64.RawURLEncoding.EncodeToString(sealed), nil
}

// ErrUnknownKey means a sealed value names a key this keyring does not hold.
var ErrUnknownKey = errors.New("secret: sealed under an unknown master key")

// Open decrypts a value made by Seal with the same aad.
func (k *Keyring) Open(sealed, aad string) ([]byte, error) {
	id, body, err := split(sealed)
	if err != nil {
		return nil, err
	}
	kk, ok := k.find(id)
	if !ok && k.path != "" {
		if err := k.reload(); err != nil {
			return nil, err
		}
		kk, ok = k.find(id)
	}
	if !ok {
		return nil, fmt.Errorf("%w %s", ErrUnknownKey, id)
	}
	ns := kk.aead.NonceSize()
	if len(body) < ns+kk.aead.Overhead() {
		return nil, fmt.Errorf("secret: %w: sealed value too short", conv.ErrInvalid)
	}
	pt, err := kk.aead.Open(nil, body[:ns], body[ns:], []byte(aad))
	if err != nil {
		return nil, fmt.Errorf("secret: %w: cannot open (wrong key or moved value)", conv.ErrInvalid)
	}
	return pt, nil
}

// Current reports whether sealed was made with the current key.
func (k *Keyring) Current(sealed string) bool {
	id, _, err := split(sealed)
	return err == nil && id == k.CurrentID()
}

func (k *Keyring) find(id string) (key, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	for _, kk := range k.keys {
		if kk.id == id {
			return kk, true
		}
	}
	return key{}, false
}

func split(sealed string) (id string, body []byte, err error) {
	rest, ok := strings.CutPrefix(sealed, prefix)
	if !ok {
		return "", nil, fmt.Errorf("secret: %w: not a sealed value", conv.ErrInvalid)
	}
	id, enc, ok := strings.Cut(rest, ":")
	if !ok || len(id) != 8 {
		return "", nil, fmt.Errorf("secret: %w: malformed sealed value", conv.ErrInvalid)
	}
	body, err = base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return "", nil, fmt.Errorf("secret: %w: malformed sealed value", conv.ErrInvalid)
	}
	return id, body, nil
}

// Rotate makes a fresh random key current in the key file, keeping the old
// keys after it so existing values still open. It returns the new key's
// fingerprint. An environment keyring cannot rotate itself: the operator
// puts the new key first in SWITCHBOARD_MASTER_KEY instead.
func (k *Keyring) Rotate() (string, error) {
	if k.path == "" {
		return "", fmt.Errorf("secret: %w: keys come from %s; put a new key first in it (head -c32 /dev/urandom | base64), keep the old ones after it, then run keys rotate again", conv.ErrInvalid, EnvVar)
	}
	old, err := os.ReadFile(k.path)
	if err != nil {
		return "", fmt.Errorf("secret: read key file: %w", err)
	}
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# Switchboard master keys, current first. Back them up: without them channel secrets cannot be read.\n%s\n", base64.StdEncoding.EncodeToString(raw))
	for _, line := range strings.Split(string(old), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			buf.WriteString(l + "\n")
		}
	}
	tmp := k.path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o600); err != nil {
		return "", fmt.Errorf("secret: write key file: %w", err)
	}
	if err := os.Rename(tmp, k.path); err != nil {
		return "", fmt.Errorf("secret: replace key file: %w", err)
	}
	if err := k.reload(); err != nil {
		return "", err
	}
	return k.CurrentID(), nil
}
