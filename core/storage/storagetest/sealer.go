package storagetest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// Sealer is a storage.Sealer for tests: AES-256-GCM under named random keys,
// one of them current. Sealed text is "<key id>.<base64url(nonce|ciphertext)>",
// so Current can tell which key made it. It records every associated data
// string it sealed with, so the suite can check what stores bind secrets to.
// It is safe for concurrent use.
type Sealer struct {
	mu      sync.Mutex
	keys    map[string]cipher.AEAD
	current string
	n       int
	aads    []string
}

// NewSealer returns a sealer with one key, "k1", current.
func NewSealer() *Sealer {
	s := &Sealer{keys: make(map[string]cipher.AEAD)}
	s.Rotate()
	return s
}

// Rotate adds a new random key, makes it current and returns its id. Older
// keys still open what they sealed until Forget.
func (s *Sealer) Rotate() string {
	key := make([]byte, 32)
	rand.Read(key) // never fails: crypto/rand aborts the program instead
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // a 32-byte key is always valid
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	id := fmt.Sprintf("k%d", s.n)
	s.keys[id] = aead
	s.current = id
	return id
}

// Forget drops key id, so what it sealed no longer opens.
func (s *Sealer) Forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.keys, id)
}

// AADs returns the associated data of every Seal so far, in call order.
func (s *Sealer) AADs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.aads...)
}

// Seal encrypts plaintext under the current key, bound to aad.
func (s *Sealer) Seal(plaintext []byte, aad string) (string, error) {
	s.mu.Lock()
	id, aead := s.current, s.keys[s.current]
	s.aads = append(s.aads, aad)
	s.mu.Unlock()
	if aead == nil {
		return "", errors.New("storagetest.Sealer: current key was forgotten")
	}
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	out := aead.Seal(nonce, nonce, plaintext, []byte(aad))
	return id + "." + base64.RawURLEncoding.EncodeToString(out), nil
}

// Open decrypts sealed; it fails if the key is unknown or aad differs from
// the one it was sealed with.
func (s *Sealer) Open(sealed string, aad string) ([]byte, error) {
	id, body, found := strings.Cut(sealed, ".")
	if !found {
		return nil, errors.New("storagetest.Sealer: malformed sealed value")
	}
	s.mu.Lock()
	aead := s.keys[id]
	s.mu.Unlock()
	if aead == nil {
		return nil, fmt.Errorf("storagetest.Sealer: unknown key %q", id)
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil || len(raw) < aead.NonceSize() {
		return nil, errors.New("storagetest.Sealer: malformed sealed value")
	}
	pt, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(aad))
	if err != nil {
		return nil, fmt.Errorf("storagetest.Sealer: open: %w", err)
	}
	return pt, nil
}

// Current reports whether sealed was made with the current key.
func (s *Sealer) Current(sealed string) bool {
	id, _, _ := strings.Cut(sealed, ".")
	s.mu.Lock()
	defer s.mu.Unlock()
	return id == s.current
}
