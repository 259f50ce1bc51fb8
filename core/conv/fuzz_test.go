package conv

import (
	"strconv"
	"testing"
)

// FuzzIDText: ids parse only from canonical non-negative decimals and
// always render back to the same text.
func FuzzIDText(f *testing.F) {
	for _, s := range []string{"0", "42", "9007199254740993", "-1", "1e3", "", "０"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var id MessageID
		if err := id.UnmarshalText([]byte(s)); err != nil {
			return
		}
		if s == "" {
			return
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v != int64(id) || v < 0 {
			t.Fatalf("accepted %q as %d", s, id)
		}
		back, _ := id.MarshalText()
		if v2, _ := strconv.ParseInt(string(back), 10, 64); v2 != v {
			t.Fatalf("%q rendered back as %q", s, back)
		}
	})
}
