package wire

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/silenceper/wechat/v2/util"
	"github.com/switchboard-hq/switchboard/core/conv"
)

// The documentation's worked example decrypts to the documented message,
// and encrypting the documented reply with the documented random prefix
// gives the documented ciphertext, byte for byte.
func TestCipherDocExample(t *testing.T) {
	c, err := NewCipher(docAppID, docEncodingAESKey)
	if err != nil {
		t.Fatal(err)
	}
	msg, idx, err := c.Decrypt(docEncrypt)
	if err != nil {
		t.Fatalf("Decrypt: %v", err)
	}
	if string(msg) != docMsg || idx != 0 {
		t.Fatalf("Decrypt = %q (key %d), want %q (key 0)", msg, idx, docMsg)
	}
	if len(msg) != 167 {
		t.Fatalf("msg_len = %d, the documentation says 167", len(msg))
	}
	// The random prefix and sizes the documentation states.
	ct, _ := base64.StdEncoding.DecodeString(docEncrypt)
	plain := rawOpen(t, docEncodingAESKey, ct)
	if len(ct) != 224 || string(plain[:16]) != docRandom || len(plain)-int(plain[len(plain)-1]) != 205 {
		t.Fatalf("ciphertext %d bytes, random %q, FullStr %d bytes; want 224, %q, 205",
			len(ct), plain[:16], len(plain)-int(plain[len(plain)-1]), docRandom)
	}

	enc, err := c.Encrypt([]byte(docReplyMsg), strings.NewReader(docReplyRandom))
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	if enc != docReplyEncrypt {
		t.Fatalf("Encrypt = %s\nwant      %s", enc, docReplyEncrypt)
	}
	if got := Sign(docToken, docReplyTimestamp, docNonce, enc); got != docReplyMsgSignature {
		t.Fatalf("reply MsgSignature = %s, want %s", got, docReplyMsgSignature)
	}
}

// The whole documented request: JSON envelope, msg_signature, decryption,
// then the debug_demo event, which this package does not know and keeps
// as an unsupported-event text.
func TestDocExampleEndToEnd(t *testing.T) {
	c, err := NewCipher(docAppID, docEncodingAESKey)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{
    "ToUserName": "gh_97417a04a28d",
    "Encrypt": "` + docEncrypt + `"
}`)
	n, plain, err := handle(c, docToken, request{body: body, format: FormatJSON, timestamp: docTimestamp, nonce: docNonce, msgSignature: docMsgSignature}, unix(1714112445+30))
	if err != nil {
		t.Fatalf("handle: %v", err)
	}
	if string(plain) != docMsg {
		t.Fatalf("plaintext %q", plain)
	}
	checkNormalized(t, n)
	if n.ExternalID != "evt:o9AgO5Kd5ggOC-bXrbNODIiE3bGY:1714112445:debug_demo:" || n.Parts[0].Text != "[unsupported WeChat event: debug_demo]" || n.OpensWindow {
		t.Fatalf("Normalized = %+v", n)
	}
}

func TestNewCipher(t *testing.T) {
	tests := []struct {
		name  string
		appID string
		keys  []string
		ok    bool
	}{
		{"one key", testAppID, []string{testKeyCurrent}, true},
		{"current and previous", testAppID, []string{testKeyCurrent, testKeyPrevious}, true},
		{"letters and digits only", testAppID, []string{docEncodingAESKey}, true},
		{"low bits of the last character set", testAppID, []string{strings.Repeat("A", 42) + "B"}, true},
		{"no key", testAppID, nil, false},
		{"empty app id", "", []string{testKeyCurrent}, false},
		{"app id too long", strings.Repeat("w", 129), []string{testKeyCurrent}, false},
		{"42 characters", testAppID, []string{testKeyCurrent[:42]}, false},
		{"44 characters", testAppID, []string{testKeyCurrent + "A"}, false},
		{"with its '=' (44)", testAppID, []string{testKeyCurrent + "="}, false},
		{"not base64", testAppID, []string{strings.Repeat("*", 43)}, false},
		{"URL-safe alphabet", testAppID, []string{strings.ReplaceAll(strings.ReplaceAll(testKeyCurrent, "+", "-"), "/", "_")}, false},
		{"bad previous key", testAppID, []string{testKeyCurrent, "short"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewCipher(tt.appID, tt.keys...)
			if tt.ok {
				if err != nil || c.Keys() != len(tt.keys) {
					t.Fatalf("NewCipher = %v, %v", c, err)
				}
				return
			}
			if !errors.Is(err, conv.ErrInvalid) {
				t.Fatalf("NewCipher error = %v, want conv.ErrInvalid", err)
			}
			for _, k := range tt.keys {
				if len(k) > 8 && strings.Contains(err.Error(), k) {
					t.Fatalf("error %q reveals a key", err)
				}
			}
		})
	}
}

func TestCipherRoundTrip(t *testing.T) {
	c := newTestCipher(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n <= 300; n++ {
		msg := make([]byte, n)
		for i := range msg {
			msg[i] = byte(rng.Uint32())
		}
		enc, err := c.Encrypt(msg, nil)
		if err != nil {
			t.Fatalf("len %d: Encrypt: %v", n, err)
		}
		got, idx, err := c.Decrypt(enc)
		if err != nil || idx != 0 || !bytes.Equal(got, msg) {
			t.Fatalf("len %d: Decrypt = %x, %d, %v", n, got, idx, err)
		}
	}
}

// Encrypt pads to 32 bytes, so every pad length 1..32 occurs and
// decrypts; a 16-byte padder would produce only 1..16.
func TestCipherPadLengths(t *testing.T) {
	c := newTestCipher(t)
	seen := map[int]bool{}
	for n := 0; n < 32; n++ {
		enc, err := c.Encrypt(make([]byte, n), nil)
		if err != nil {
			t.Fatal(err)
		}
		ct, _ := base64.StdEncoding.DecodeString(enc)
		if len(ct)%32 != 0 {
			t.Fatalf("len %d: ciphertext of %d bytes is not whole 32-byte blocks", n, len(ct))
		}
		plain := rawOpen(t, testKeyCurrent, ct)
		pad := int(plain[len(plain)-1])
		seen[pad] = true
		if _, _, err := c.Decrypt(enc); err != nil {
			t.Fatalf("pad %d: %v", pad, err)
		}
	}
	for p := 1; p <= 32; p++ {
		if !seen[p] {
			t.Errorf("pad length %d never produced", p)
		}
	}
}

func TestCipherKeyRotation(t *testing.T) {
	oldOnly := newTestCipher(t, testKeyPrevious)
	rotated := newTestCipher(t, testKeyCurrent, testKeyPrevious)
	newOnly := newTestCipher(t, testKeyCurrent)
	msg := []byte("<xml><Content><![CDATA[sent before the key changed]]></Content></xml>")

	enc, err := oldOnly.Encrypt(msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, idx, err := rotated.Decrypt(enc)
	if err != nil || idx != 1 || !bytes.Equal(got, msg) {
		t.Fatalf("previous key: Decrypt = %q, key %d, %v; want key 1", got, idx, err)
	}
	if _, _, err := newOnly.Decrypt(enc); err == nil {
		t.Fatal("a cipher without the previous key decrypted it")
	}

	// Encrypt uses the current key: the old-key-only cipher cannot read it.
	enc, err = rotated.Encrypt(msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, idx, err := newOnly.Decrypt(enc); err != nil || idx != 0 {
		t.Fatalf("current key: key %d, %v", idx, err)
	}
	if _, _, err := oldOnly.Decrypt(enc); err == nil {
		t.Fatal("Encrypt used the previous key")
	}
}

// Our Cipher and silenceper/wechat's util agree in both directions, over
// every length 0..100, lengths that put the plaintext on either side of
// 32-byte block boundaries, and random lengths.
func TestCipherMatchesSilenceper(t *testing.T) {
	c := newTestCipher(t, testKeyCurrent)
	rng := rand.New(rand.NewPCG(3, 4))
	var lengths []int
	for n := 0; n <= 100; n++ {
		lengths = append(lengths, n)
	}
	over := prefixLen + len(testAppID) // plaintext = over + len(msg)
	for k := 1; k <= 70; k++ {
		for d := -2; d <= 2; d++ {
			if n := 32*k - over + d; n >= 0 {
				lengths = append(lengths, n)
			}
		}
	}
	for range 200 {
		lengths = append(lengths, rng.IntN(8192))
	}
	for _, n := range lengths {
		msg := make([]byte, n)
		for i := range msg {
			msg[i] = byte(rng.Uint32())
		}
		random := make([]byte, 16)
		for i := range random {
			random[i] = byte(rng.Uint32())
		}

		theirs, err := util.EncryptMsg(random, msg, testAppID, testKeyCurrent)
		if err != nil {
			t.Fatalf("len %d: util.EncryptMsg: %v", n, err)
		}
		got, _, err := c.Decrypt(string(theirs))
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("len %d: ours cannot read theirs: %v", n, err)
		}

		ours, err := c.Encrypt(msg, bytes.NewReader(random))
		if err != nil {
			t.Fatal(err)
		}
		if ours != string(theirs) {
			t.Fatalf("len %d: same random prefix, different ciphertext", n)
		}
		gotRandom, got, err := util.DecryptMsg(testAppID, ours, testKeyCurrent)
		if err != nil || !bytes.Equal(got, msg) || !bytes.Equal(gotRandom, random) {
			t.Fatalf("len %d: theirs cannot read ours: %v", n, err)
		}
	}
}

// Every pad byte outside 1..32 is refused, as is padding whose bytes
// disagree; the errors say so and wrap conv.ErrInvalid.
func TestDecryptBadPadding(t *testing.T) {
	c := newTestCipher(t, testKeyCurrent)
	// 20 + 3 + 18 = 41 bytes of content; 64 bytes in all leaves 23 for padding.
	content := frame([]byte("0123456789abcdef"), []byte("hey"), testAppID)
	block := make([]byte, 64)
	copy(block, content)

	for v := 0; v <= 255; v++ {
		if v >= 1 && v <= 32 {
			continue
		}
		b := bytes.Clone(block)
		b[63] = byte(v)
		_, _, err := c.Decrypt(rawSeal(t, testKeyCurrent, b))
		if !errors.Is(err, ErrBadPadding) || !errors.Is(err, conv.ErrInvalid) {
			t.Fatalf("pad byte %d: err = %v, want ErrBadPadding", v, err)
		}
	}

	// Pad of 23 with one byte wrong, at each position.
	for i := 41; i < 63; i++ {
		b := bytes.Clone(block)
		for j := 41; j < 64; j++ {
			b[j] = 23
		}
		b[i] = 22
		if _, _, err := c.Decrypt(rawSeal(t, testKeyCurrent, b)); !errors.Is(err, ErrBadPadding) {
			t.Fatalf("inconsistent pad at %d: err = %v", i, err)
		}
	}

	// Every pad value 1..32 is accepted when the bytes agree and what it
	// leaves is well formed (the message absorbs the rest of the block).
	for p := 1; p <= 32; p++ {
		msg := bytes.Repeat([]byte{'m'}, 96-p-prefixLen-len(testAppID))
		b := append(frame([]byte("0123456789abcdef"), msg, testAppID), bytes.Repeat([]byte{byte(p)}, p)...)
		got, _, err := c.Decrypt(rawSeal(t, testKeyCurrent, b))
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("pad %d: %q, %v", p, got, err)
		}
	}
}

func TestDecryptRejects(t *testing.T) {
	c := newTestCipher(t, testKeyCurrent)
	good, err := c.Encrypt([]byte(strings.Repeat("x", 100)), nil)
	if err != nil {
		t.Fatal(err)
	}
	goodCT, _ := base64.StdEncoding.DecodeString(good)
	random := []byte("0123456789abcdef")
	withLen := func(n uint32, msg []byte) string {
		b := frame(random, msg, testAppID)
		binary.BigEndian.PutUint32(b[16:20], n)
		return rawSeal(t, testKeyCurrent, pad32(b))
	}
	other := newTestCipher(t, testKeyOther)
	otherApp, err := NewCipher("wx0000000000000000", testKeyCurrent)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := otherApp.Encrypt([]byte("for the other app"), nil)
	underOtherKey, _ := other.Encrypt([]byte("hello"), nil)

	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", ErrBadLength},
		{"not base64", "!!!!", ErrBadBase64},
		{"URL-safe base64 character", "-" + good[1:], ErrBadBase64},
		{"missing base64 padding", strings.TrimRight(base64.StdEncoding.EncodeToString(goodCT[:47]), "="), ErrBadBase64},
		{"one AES block", base64.StdEncoding.EncodeToString(goodCT[:16]), ErrBadLength},
		{"not whole blocks", base64.StdEncoding.EncodeToString(goodCT[:len(goodCT)-1]), ErrBadLength},
		{"truncated by a block", base64.StdEncoding.EncodeToString(goodCT[:len(goodCT)-16]), conv.ErrInvalid},
		{"truncated by two blocks", base64.StdEncoding.EncodeToString(goodCT[:len(goodCT)-32]), conv.ErrInvalid},
		{"too large", strings.Repeat("AAAA", MaxBody), ErrBadLength},
		{"length field 2^32-1", withLen(0xFFFFFFFF, []byte("hi")), ErrBadLength},
		{"length field one past the end", withLen(uint32(2+len(testAppID)+1), []byte("hi")), ErrBadLength},
		{"length field covers the app id", withLen(uint32(2+len(testAppID)), []byte("hi")), ErrAppIDMismatch},
		{"all padding", rawSeal(t, testKeyCurrent, bytes.Repeat([]byte{32}, 32)), ErrBadLength},
		{"shorter than the prefix", rawSeal(t, testKeyCurrent, append(make([]byte, 19), bytes.Repeat([]byte{13}, 13)...)), ErrBadLength},
		{"wrong app id", foreign, ErrAppIDMismatch},
		{"another key", underOtherKey, conv.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, idx, err := c.Decrypt(tt.in)
			if !errors.Is(err, tt.want) || msg != nil || idx != -1 {
				t.Fatalf("Decrypt = %q, %d, %v; want %v", msg, idx, err, tt.want)
			}
		})
	}
	// App id mismatch is a refusal, not malformed input.
	_, _, err = c.Decrypt(foreign)
	if !errors.Is(err, conv.ErrForbidden) || errors.Is(err, conv.ErrInvalid) {
		t.Fatalf("app id mismatch kind: %v", err)
	}
}

func TestEncryptRandomFailure(t *testing.T) {
	c := newTestCipher(t)
	if _, err := c.Encrypt([]byte("x"), iotest.ErrReader(fmt.Errorf("entropy gone"))); !errors.Is(err, conv.ErrUnavailable) {
		t.Fatalf("err = %v, want conv.ErrUnavailable", err)
	}
	if _, err := c.Encrypt([]byte("x"), strings.NewReader("short")); err == nil {
		t.Fatal("a 5-byte random source was accepted")
	}
	if _, err := c.Encrypt(make([]byte, MaxBody+1), nil); !errors.Is(err, conv.ErrInvalid) {
		t.Fatalf("oversized message: %v", err)
	}
}

// frame is random ‖ len ‖ msg ‖ appID, unpadded.
func frame(random, msg []byte, appID string) []byte {
	b := make([]byte, 0, prefixLen+len(msg)+len(appID))
	b = append(b, random...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(msg)))
	b = append(b, msg...)
	return append(b, appID...)
}

// pad32 applies WeChat's PKCS#7 padding to 32 bytes.
func pad32(b []byte) []byte {
	p := 32 - len(b)%32
	return append(b, bytes.Repeat([]byte{byte(p)}, p)...)
}

// rawSeal encrypts whole AES blocks as given, no padding added, so tests
// can build any plaintext Decrypt will see.
func rawSeal(t testing.TB, encodingAESKey string, plain []byte) string {
	t.Helper()
	key, err := DecodeAESKey(encodingAESKey)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(key)
	out := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, key[:16]).CryptBlocks(out, plain)
	return base64.StdEncoding.EncodeToString(out)
}

// rawOpen decrypts whole blocks and leaves the padding on.
func rawOpen(t testing.TB, encodingAESKey string, ct []byte) []byte {
	t.Helper()
	key, err := DecodeAESKey(encodingAESKey)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(key)
	out := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, key[:16]).CryptBlocks(out, ct)
	return out
}

// One Cipher serves every request of a channel at once.
func TestCipherConcurrent(t *testing.T) {
	c := newTestCipher(t)
	done := make(chan error)
	for g := range 8 {
		go func() {
			for i := range 50 {
				msg := []byte(fmt.Sprintf("goroutine %d message %d", g, i))
				enc, err := c.Encrypt(msg, nil)
				if err == nil {
					var got []byte
					got, _, err = c.Decrypt(enc)
					if err == nil && !bytes.Equal(got, msg) {
						err = fmt.Errorf("got %q, want %q", got, msg)
					}
				}
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
