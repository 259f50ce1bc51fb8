package wire

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// goldenInputs lists testdata/*.xml and testdata/*.json (not the goldens).
func goldenInputs(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, pat := range []string{"testdata/*.xml", "testdata/*.json"} {
		m, err := filepath.Glob(pat)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range m {
			if !strings.HasSuffix(p, ".golden.json") {
				out = append(out, p)
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no testdata inputs")
	}
	return out
}

func formatOf(path string) Format {
	if filepath.Ext(path) == ".json" {
		return FormatJSON
	}
	return FormatXML
}

// Each testdata push, parsed and normalized, matches its .golden.json byte
// for byte. Refresh with: go test ./connectors/wechat/wire -update
func TestGolden(t *testing.T) {
	for _, in := range goldenInputs(t) {
		name := strings.TrimSuffix(filepath.Base(in), filepath.Ext(in))
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Parse(body, formatOf(in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			n, err := Normalize(p)
			if err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			checkNormalized(t, n)
			got, err := json.MarshalIndent(n, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			testenv.Golden(t, filepath.Join("testdata", name+".golden.json"), got)
		})
	}
}

// The same pushes arrive intact through encryption: what the handler
// decrypts normalizes exactly as the plaintext does.
func TestGoldenThroughSafeMode(t *testing.T) {
	c := newTestCipher(t)
	for _, in := range goldenInputs(t) {
		body, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		f := formatOf(in)
		p, _ := Parse(body, f)
		want, err := Normalize(p)
		if err != nil {
			t.Fatal(err)
		}
		ts := p.CreateTime
		got, plain, err := handle(c, testToken, sealRequest(t, c, f, body, ts), want.SentAt)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if !bytes.Equal(plain, body) {
			t.Fatalf("%s: decrypted body differs", in)
		}
		a, _ := json.Marshal(got)
		b, _ := json.Marshal(want)
		if !bytes.Equal(a, b) {
			t.Fatalf("%s: through safe mode %s, plaintext %s", in, a, b)
		}
	}
}
