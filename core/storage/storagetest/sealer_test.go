package storagetest

import (
	"strings"
	"testing"

	"github.com/switchboard-hq/switchboard/core/storage"
)

var _ storage.Sealer = (*Sealer)(nil)

func TestSealerRoundTripAndAAD(t *testing.T) {
	s := NewSealer()
	sealed, err := s.Seal([]byte("hunter2"), "a")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "hunter2") {
		t.Fatalf("sealed text contains the plaintext: %s", sealed)
	}
	if pt, err := s.Open(sealed, "a"); err != nil || string(pt) != "hunter2" {
		t.Fatalf("Open = %q, %v", pt, err)
	}
	tests := []struct {
		name, sealed, aad string
	}{
		{"other aad", sealed, "b"},
		{"tampered", sealed[:len(sealed)-2] + "AA", "a"},
		{"unknown key", "k9" + sealed[2:], "a"},
		{"malformed", "garbage", "a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Open(tc.sealed, tc.aad); err == nil {
				t.Fatal("opened")
			}
		})
	}
	if got := s.AADs(); len(got) != 1 || got[0] != "a" {
		t.Fatalf("AADs = %v", got)
	}
}

func TestSealerRotation(t *testing.T) {
	s := NewSealer()
	old, _ := s.Seal([]byte("x"), "a")
	if !s.Current(old) {
		t.Fatal("fresh ciphertext not current")
	}
	k2 := s.Rotate()
	if s.Current(old) {
		t.Fatal("old ciphertext current after Rotate")
	}
	if _, err := s.Open(old, "a"); err != nil {
		t.Fatalf("old key forgotten by Rotate: %v", err)
	}
	s.Forget("k1")
	if _, err := s.Open(old, "a"); err == nil {
		t.Fatal("opened with a forgotten key")
	}
	fresh, _ := s.Seal([]byte("y"), "a")
	if !strings.HasPrefix(fresh, k2+".") || !s.Current(fresh) {
		t.Fatalf("fresh ciphertext %q not under %s", fresh, k2)
	}
}
