package wire

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Sizes of WeChat's message encryption.
const (
	// EncodingAESKeyLen is the length of an EncodingAESKey: base64 of the
	// 32-byte AES key without its trailing "=".
	EncodingAESKeyLen = 43
	// padBlock is WeChat's PKCS#7 block: 32 bytes, the key size, not the
	// 16-byte AES block. Pad bytes are therefore 1..32.
	padBlock = 32
	// prefixLen is the 16 random bytes plus the 4-byte message length.
	prefixLen = 20
	// maxAppID bounds the app id (appid "wx…" and corpid are 18 bytes).
	maxAppID = 128
	// maxCiphertext bounds what Decrypt accepts: a pushed Encrypt field
	// comes from a body of at most MaxBody bytes.
	maxCiphertext = MaxBody
)

// Errors Decrypt returns, each wrapped with detail. All but ErrAppIDMismatch
// wrap conv.ErrInvalid (the bytes are not a WeChat ciphertext for any of our
// keys). ErrAppIDMismatch wraps conv.ErrForbidden: the message decrypted
// with our key and is well formed, but it was made for another app — the
// same EncodingAESKey configured on two apps, or a push replayed from one
// to another; it is authentic but not ours to accept.
//
// The kinds are for logs and metrics. The HTTP edge must answer all of them
// the same way, and must check msg_signature before calling Decrypt, so
// that no one without the token can use these answers as a padding oracle.
var (
	ErrBadBase64     = fmt.Errorf("bad base64: %w", conv.ErrInvalid)
	ErrBadPadding    = fmt.Errorf("bad padding: %w", conv.ErrInvalid)
	ErrBadLength     = fmt.Errorf("bad length: %w", conv.ErrInvalid)
	ErrAppIDMismatch = fmt.Errorf("app id mismatch: %w", conv.ErrForbidden)
)

// Cipher encrypts and decrypts WeChat message bodies for one app. It is
// safe for concurrent use.
type Cipher struct {
	appID []byte
	keys  []aesKey
}

type aesKey struct {
	block cipher.Block
	iv    [aes.BlockSize]byte
}

// NewCipher takes the app id (the AppID of an Official Account or Mini
// Program, the CorpID for WeCom) and one or more EncodingAESKeys. The first
// key is current: Encrypt uses it and Decrypt tries it first. The others
// are previous keys Decrypt still accepts, so that a business can
// regenerate its key in WeChat's console while pushes encrypted under the
// old one (retries, in-flight messages) still arrive.
//
// A key must be 43 characters of standard base64 that decode, with "="
// appended, to 32 bytes. The decoding is not strict about the two unused
// low bits of the last character, like WeChat's own samples: keys are
// drawn from 62 characters, so those bits are often set.
func NewCipher(appID string, keys ...string) (*Cipher, error) {
	if appID == "" {
		return nil, fmt.Errorf("wire.NewCipher: %w: empty app id", conv.ErrInvalid)
	}
	if len(appID) > maxAppID {
		return nil, fmt.Errorf("wire.NewCipher: %w: app id longer than %d bytes", conv.ErrInvalid, maxAppID)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("wire.NewCipher: %w: no EncodingAESKey", conv.ErrInvalid)
	}
	c := &Cipher{appID: []byte(appID), keys: make([]aesKey, 0, len(keys))}
	for i, k := range keys {
		raw, err := DecodeAESKey(k)
		if err != nil {
			// Never echo the key: it is a secret.
			return nil, fmt.Errorf("wire.NewCipher: key %d: %w", i, err)
		}
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, fmt.Errorf("wire.NewCipher: key %d: %w: %v", i, conv.ErrInvalid, err)
		}
		ak := aesKey{block: block}
		copy(ak.iv[:], raw[:aes.BlockSize])
		c.keys = append(c.keys, ak)
	}
	return c, nil
}

// DecodeAESKey turns an EncodingAESKey into the 32-byte AES key. Its error
// never contains the key.
func DecodeAESKey(encodingAESKey string) ([]byte, error) {
	if len(encodingAESKey) != EncodingAESKeyLen {
		return nil, fmt.Errorf("%w: EncodingAESKey must be %d characters, got %d", conv.ErrInvalid, EncodingAESKeyLen, len(encodingAESKey))
	}
	raw, err := base64.StdEncoding.DecodeString(encodingAESKey + "=")
	if err != nil || len(raw) != 32 {
		return nil, fmt.Errorf("%w: EncodingAESKey is not base64 of a 32-byte key", conv.ErrInvalid)
	}
	return raw, nil
}

// Keys returns how many keys the cipher holds (current plus previous).
func (c *Cipher) Keys() int { return len(c.keys) }

// Decrypt opens an Encrypt field: base64, then AES-256-CBC with IV =
// key[:16], then random(16) ‖ len(4, big endian) ‖ msg ‖ AppID with
// PKCS#7 padding to 32 bytes. Every length is checked before it is used
// to slice, so no input can panic. keyIndex says which key worked: 0 is
// current, 1.. are previous keys, so the connector can log that WeChat is
// still using an old one; it is -1 with an error.
//
// If no key works, the error is the current key's (the previous keys'
// failures are almost always noise from decrypting with the wrong key).
func (c *Cipher) Decrypt(encrypted string) (msg []byte, keyIndex int, err error) {
	if len(encrypted) > base64.StdEncoding.EncodedLen(maxCiphertext) {
		return nil, -1, fmt.Errorf("wire.Decrypt: %w: %d base64 characters, more than %d bytes of ciphertext", ErrBadLength, len(encrypted), maxCiphertext)
	}
	ct, err := base64.StdEncoding.Strict().DecodeString(encrypted)
	if err != nil {
		return nil, -1, fmt.Errorf("wire.Decrypt: %w", ErrBadBase64)
	}
	// The smallest valid plaintext is prefix + 1-byte app id + padding,
	// one 32-byte block; the AES layer needs whole 16-byte blocks.
	if len(ct) < padBlock || len(ct)%aes.BlockSize != 0 {
		return nil, -1, fmt.Errorf("wire.Decrypt: %w: ciphertext of %d bytes is not a whole number of AES blocks of at least %d bytes", ErrBadLength, len(ct), padBlock)
	}
	buf := make([]byte, len(ct))
	var first error
	for i := range c.keys {
		msg, err := c.open(&c.keys[i], ct, buf)
		if err == nil {
			return msg, i, nil
		}
		if i == 0 {
			first = err
		}
	}
	if len(c.keys) > 1 {
		return nil, -1, fmt.Errorf("wire.Decrypt (current key; %d previous keys also failed): %w", len(c.keys)-1, first)
	}
	return nil, -1, fmt.Errorf("wire.Decrypt: %w", first)
}

// open decrypts ct with one key into buf (len(buf) == len(ct)) and unpacks
// it. The returned msg aliases buf only when err is nil, and then the
// caller does not reuse buf.
func (c *Cipher) open(k *aesKey, ct, buf []byte) ([]byte, error) {
	cipher.NewCBCDecrypter(k.block, k.iv[:]).CryptBlocks(buf, ct)

	// PKCS#7 with a 32-byte block: the last byte says how many bytes of
	// padding there are, 1..32, and all of them hold that value.
	n := len(buf)
	pad := int(buf[n-1])
	if pad < 1 || pad > padBlock {
		return nil, fmt.Errorf("%w: pad byte %d outside 1..%d", ErrBadPadding, pad, padBlock)
	}
	var diff byte
	for _, b := range buf[n-pad:] {
		diff |= b ^ byte(pad)
	}
	if diff != 0 {
		return nil, fmt.Errorf("%w: pad bytes differ", ErrBadPadding)
	}
	plain := buf[:n-pad]

	if len(plain) < prefixLen {
		return nil, fmt.Errorf("%w: %d bytes of plaintext, shorter than the %d-byte prefix", ErrBadLength, len(plain), prefixLen)
	}
	body := plain[prefixLen:]
	// Compare as uint64: a length field near 2^32 must not wrap an int.
	msgLen := uint64(binary.BigEndian.Uint32(plain[16:prefixLen]))
	if msgLen > uint64(len(body)) {
		return nil, fmt.Errorf("%w: message length field %d exceeds the %d bytes that follow it", ErrBadLength, msgLen, len(body))
	}
	m := int(msgLen)
	if subtle.ConstantTimeCompare(body[m:], c.appID) != 1 {
		return nil, fmt.Errorf("%w: the message names another app id", ErrAppIDMismatch)
	}
	return body[:m:m], nil
}

// Encrypt seals msg with the current key as WeChat expects in an encrypted
// reply: random(16) from r (crypto/rand when r is nil) ‖ len(msg) ‖ msg ‖
// AppID, PKCS#7-padded to 32 bytes, AES-256-CBC with IV = key[:16], base64.
// A message over MaxBody bytes is refused (conv.ErrInvalid); a failing r is
// conv.ErrUnavailable. Sign the result with the token, a timestamp and a
// nonce for the reply's MsgSignature.
func (c *Cipher) Encrypt(msg []byte, r io.Reader) (string, error) {
	if len(msg) > maxCiphertext {
		return "", fmt.Errorf("wire.Encrypt: %w: message of %d bytes is larger than %d", conv.ErrInvalid, len(msg), maxCiphertext)
	}
	if r == nil {
		r = rand.Reader
	}
	size := prefixLen + len(msg) + len(c.appID)
	pad := padBlock - size%padBlock // 1..32: a full block when already aligned
	buf := make([]byte, size+pad)
	if _, err := io.ReadFull(r, buf[:16]); err != nil {
		return "", fmt.Errorf("wire.Encrypt: random prefix: %w: %w", conv.ErrUnavailable, err)
	}
	binary.BigEndian.PutUint32(buf[16:prefixLen], uint32(len(msg)))
	copy(buf[prefixLen:], msg)
	copy(buf[prefixLen+len(msg):], c.appID)
	for i := size; i < len(buf); i++ {
		buf[i] = byte(pad)
	}
	k := &c.keys[0]
	cipher.NewCBCEncrypter(k.block, k.iv[:]).CryptBlocks(buf, buf)
	return base64.StdEncoding.EncodeToString(buf), nil
}
