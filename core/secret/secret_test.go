package secret

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchboard-hq/switchboard/core/conv"
)

func randKey(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, KeySize)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSealOpen(t *testing.T) {
	k, err := NewKeyring(randKey(t))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := k.Seal([]byte("s3cret-app-secret"), "tenant=1;channel=2;field=app_secret")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "s3cret") {
		t.Fatalf("sealed value contains plaintext: %s", sealed)
	}
	got, err := k.Open(sealed, "tenant=1;channel=2;field=app_secret")
	if err != nil || string(got) != "s3cret-app-secret" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	tests := []struct {
		name, sealed, aad string
	}{
		{"moved to another field", sealed, "tenant=1;channel=2;field=token"},
		{"moved to another tenant", sealed, "tenant=9;channel=2;field=app_secret"},
		{"not sealed", "plain", "x"},
		{"truncated", sealed[:12], "tenant=1;channel=2;field=app_secret"},
		{"tampered", sealed[:len(sealed)-2] + "AA", "tenant=1;channel=2;field=app_secret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := k.Open(tc.sealed, tc.aad); err == nil {
				t.Fatal("opened, want error")
			}
		})
	}
}

func TestRotationOldKeysStillOpen(t *testing.T) {
	oldKey, newKey := randKey(t), randKey(t)
	old, _ := NewKeyring(oldKey)
	sealedOld, _ := old.Seal([]byte("v"), "a")
	both, err := NewKeyring(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	if both.Current(sealedOld) {
		t.Fatal("value under old key reported current")
	}
	if got, err := both.Open(sealedOld, "a"); err != nil || string(got) != "v" {
		t.Fatalf("old value under rotated ring: %q %v", got, err)
	}
	sealedNew, _ := both.Seal([]byte("v"), "a")
	if !both.Current(sealedNew) {
		t.Fatal("fresh value not current")
	}
	if _, err := old.Open(sealedNew, "a"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("old ring opening new value: %v, want ErrUnknownKey", err)
	}
}

func TestLoadCreatesKeyFileAndRotateReloads(t *testing.T) {
	t.Setenv(EnvVar, "")
	path := filepath.Join(t.TempDir(), "data", "master.key")
	k, created, err := Load(path, true)
	if err != nil || !created {
		t.Fatalf("Load = %v, created %v", err, created)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
	sealed, _ := k.Seal([]byte("v"), "a")

	// A second process (the CLI) rotates; the first (the server) must still
	// open values sealed by the new key, by re-reading the file.
	cli, created, err := Load(path, true)
	if err != nil || created {
		t.Fatalf("second Load = %v, created %v", err, created)
	}
	if _, err := cli.Rotate(); err != nil {
		t.Fatal(err)
	}
	sealedNew, _ := cli.Seal([]byte("w"), "b")
	if got, err := k.Open(sealedNew, "b"); err != nil || string(got) != "w" {
		t.Fatalf("server opening value sealed after rotation: %q %v", got, err)
	}
	if got, err := cli.Open(sealed, "a"); err != nil || string(got) != "v" {
		t.Fatalf("rotated ring opening old value: %q %v", got, err)
	}
	if k.Current(sealed) {
		t.Fatal("pre-rotation value still current after reload")
	}
}

func TestLoadFromEnv(t *testing.T) {
	a, b := randKey(t), randKey(t)
	t.Setenv(EnvVar, base64.StdEncoding.EncodeToString(a)+","+base64.StdEncoding.EncodeToString(b))
	k, created, err := Load("", false)
	if err != nil || created {
		t.Fatalf("Load = %v %v", err, created)
	}
	onlyA, _ := NewKeyring(a)
	if k.CurrentID() != onlyA.CurrentID() {
		t.Fatal("first key in env is not current")
	}
	if _, err := k.Rotate(); !errors.Is(err, conv.ErrInvalid) {
		t.Fatalf("Rotate on env ring: %v, want ErrInvalid with instructions", err)
	}
	for name, env := range map[string]string{
		"not base64": "!!!",
		"short key":  base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 16)),
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(EnvVar, env)
			if _, _, err := Load("", false); !errors.Is(err, conv.ErrInvalid) {
				t.Fatalf("Load = %v, want ErrInvalid", err)
			}
		})
	}
}
