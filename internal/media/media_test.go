package media

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

func TestOwned(t *testing.T) {
	s, err := Open(t.TempDir(), bytes.Repeat([]byte{1}, 32), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := s.Put(42, "image/png", strings.NewReader("\x89PNG\r\n\x1a\n"), 1<<10)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		url    string
		tenant conv.TenantID
		want   bool
	}{
		{s.URL(key), 42, true},
		{s.URL(key), 43, false},
		{"http://169.254.169.254" + s.URL(key), 42, false},
		{"//evil.example" + s.URL(key), 42, false},
		{"/v1/media/42/../../etc/passwd", 42, false},
		{"/v1/other/" + key, 42, false},
	} {
		if got := Owned(tc.url, tc.tenant); got != tc.want {
			t.Errorf("Owned(%q, %d) = %v, want %v", tc.url, tc.tenant, got, tc.want)
		}
	}
}

// TestPutFixedExtensions: the common types get the same extension on
// every machine, whatever its MIME table lists first.
func TestPutFixedExtensions(t *testing.T) {
	s, err := Open(t.TempDir(), bytes.Repeat([]byte("k"), 32), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for typ, want := range map[string]string{"image/jpeg": ".jpg", "text/html; charset=utf-8": ".html",
		"message/rfc822": ".eml", "application/x-unknown-thing": ".bin"} {
		key, _, err := s.Put(1, typ, strings.NewReader("x"), 10)
		if err != nil || !strings.HasSuffix(key, want) {
			t.Errorf("Put(%s) = %q, %v; want a key ending %s", typ, key, err, want)
		}
	}
}
