package wire

import (
	"os"
	"testing"
)

// BenchmarkTextPush measures one typical safe-mode text push through
// msg_signature, freshness, decryption, parsing and normalization.
func BenchmarkTextPush(b *testing.B) {
	body, err := os.ReadFile("testdata/text.xml")
	if err != nil {
		b.Fatal(err)
	}
	c := newTestCipher(b)
	const ts = "1716182400"
	r := sealRequest(b, c, FormatXML, body, ts)
	now := unix(1716182400)
	b.SetBytes(int64(len(r.body)))
	b.ReportAllocs()
	for b.Loop() {
		n, _, err := handle(c, testToken, r, now)
		if err != nil || len(n.Parts) != 1 {
			b.Fatal(err)
		}
	}
}
