package wire

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
)

// addGoldenSeeds adds every testdata push to a fuzz target's corpus, on
// top of the committed testdata/fuzz/<Name>/ files.
func addGoldenSeeds(f *testing.F, add func(body []byte, isJSON bool)) {
	f.Helper()
	for _, in := range goldenInputs(f) {
		body, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		add(body, formatOf(in) == FormatJSON)
	}
}

func fuzzFormat(isJSON bool) Format {
	if isJSON {
		return FormatJSON
	}
	return FormatXML
}

// FuzzParse: no input panics Parse or Normalize; every error has a kind;
// whatever normalizes is valid for core ingest; parsing is deterministic.
func FuzzParse(f *testing.F) {
	addGoldenSeeds(f, func(b []byte, j bool) { f.Add(b, j) })
	f.Fuzz(func(t *testing.T, body []byte, isJSON bool) {
		format := fuzzFormat(isJSON)
		p, err := Parse(body, format)
		if err != nil {
			if !kindOK(err) || p != (Push{}) {
				t.Fatalf("Parse error %v with push %+v", err, p)
			}
			return
		}
		again, _ := Parse(body, format)
		if again != p {
			t.Fatal("Parse is not deterministic")
		}
		if _, err := ParseEnvelope(body, format); err != nil && !kindOK(err) {
			t.Fatalf("ParseEnvelope error without a kind: %v", err)
		}
		n, err := Normalize(p)
		if err != nil {
			if !kindOK(err) {
				t.Fatalf("Normalize error without a kind: %v", err)
			}
			return
		}
		checkNormalized(t, n)
	})
}

// FuzzDecrypt: no string panics Decrypt, and every failure has a kind;
// and Encrypt then Decrypt gives back any message with the current key.
func FuzzDecrypt(f *testing.F) {
	f.Add(docEncrypt, []byte(docMsg))
	f.Add("", []byte{})
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", []byte{0})
	c := newTestCipher(f)
	f.Fuzz(func(t *testing.T, encrypted string, msg []byte) {
		got, idx, err := c.Decrypt(encrypted)
		if err != nil {
			if !kindOK(err) || got != nil || idx != -1 {
				t.Fatalf("Decrypt = %q, %d, %v", got, idx, err)
			}
		} else if idx < 0 || idx >= c.Keys() {
			t.Fatalf("key index %d", idx)
		}

		if len(msg) > MaxBody/2 {
			return
		}
		enc, err := c.Encrypt(msg, nil)
		if err != nil {
			t.Fatal(err)
		}
		back, idx, err := c.Decrypt(enc)
		if err != nil || idx != 0 || !bytes.Equal(back, msg) {
			t.Fatalf("round trip of %d bytes: %q, key %d, %v", len(msg), back, idx, err)
		}
	})
}

// FuzzDecryptParse runs the whole inbound path. outer is a body as it
// might arrive (almost always refused at the envelope or the signature);
// inner is sealed the way WeChat seals a push, so the fuzzer explores
// decrypt → parse → normalize with bytes that get through decryption.
func FuzzDecryptParse(f *testing.F) {
	c := newTestCipher(f)
	const ts = "1716182400"
	now := unix(1716182400)
	sealed := sealRequest(f, c, FormatXML, []byte("<xml></xml>"), ts)
	f.Add(sealed.body, []byte("<xml></xml>"), false)
	addGoldenSeeds(f, func(b []byte, j bool) {
		f.Add(envelopeBody(fuzzFormat(j), "gh_3f2a1b9c8d7e", "AAAA"), b, j)
	})
	f.Fuzz(func(t *testing.T, outer, inner []byte, isJSON bool) {
		format := fuzzFormat(isJSON)

		// As sent, with a signature that matches whatever Encrypt it holds.
		if env, err := ParseEnvelope(outer, format); err == nil {
			r := request{body: outer, format: format, timestamp: ts, nonce: "n", msgSignature: Sign(testToken, ts, "n", env.Encrypt)}
			n, _, err := handle(c, testToken, r, now)
			if err != nil && !kindOK(err) {
				t.Fatalf("outer: error without a kind: %v", err)
			}
			if err == nil {
				checkNormalized(t, n)
			}
		}

		// Sealed like a real push: decryption must return inner exactly,
		// and the rest must behave as on the plaintext.
		if len(inner) > MaxBody/2 {
			return
		}
		r := sealRequest(t, c, format, inner, ts)
		n, plain, err := handle(c, testToken, r, now)
		if !bytes.Equal(plain, inner) {
			t.Fatalf("decrypted %q, sealed %q (err %v)", plain, inner, err)
		}
		p, perr := Parse(inner, format)
		var want Normalized
		if perr == nil {
			want, perr = Normalize(p)
		}
		if (err == nil) != (perr == nil) {
			t.Fatalf("through the path: %v; on the plaintext: %v", err, perr)
		}
		if err != nil {
			if !kindOK(err) {
				t.Fatalf("error without a kind: %v", err)
			}
			return
		}
		checkNormalized(t, n)
		a, _ := json.Marshal(n)
		b, _ := json.Marshal(want)
		if !bytes.Equal(a, b) {
			t.Fatalf("through the path %s, on the plaintext %s", a, b)
		}
	})
}
