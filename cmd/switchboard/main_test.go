package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/secret"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// cli runs one command line in-process against data dir.
func cli(t *testing.T, data string, args ...string) (map[string]any, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), append(args, "--data", data), &out, &errb)
	if err != nil {
		return nil, err
	}
	var v map[string]any
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatalf("%v: output is not JSON: %v\n%s", args, err, out.String())
	}
	return v, nil
}

func mustCLI(t *testing.T, data string, args ...string) map[string]any {
	t.Helper()
	v, err := cli(t, data, args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return v
}

func TestAdminCommands(t *testing.T) {
	t.Setenv(secret.EnvVar, "")
	data := t.TempDir()
	tenant := mustCLI(t, data, "tenant", "create", "--name", "acme")
	if tenant["name"] != "acme" || tenant["id"] == "" {
		t.Fatalf("tenant create = %v", tenant)
	}
	if st, err := os.Stat(filepath.Join(data, "master.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("master key: %v %v", st, err)
	}
	if _, err := cli(t, data, "tenant", "create", "--name", "acme"); !errors.Is(err, conv.ErrConflict) {
		t.Fatalf("duplicate tenant: %v, want conflict", err)
	}
	list := mustCLI(t, data, "tenant", "list")
	if ts, _ := list["tenants"].([]any); len(ts) != 1 {
		t.Fatalf("tenant list = %v", list)
	}
	agent := mustCLI(t, data, "agent", "create", "--tenant", "acme", "--email", "ann@example.com", "--name", "Ann", "--password", "correct horse battery")
	if agent["email"] != "ann@example.com" || agent["password_hash"] != nil {
		t.Fatalf("agent create = %v", agent)
	}
	const secretValue = "hunter2-very-secret-app-secret"
	var out bytes.Buffer
	err := run(context.Background(), []string{"channel", "create", "--data", data, "--tenant", tenant["id"].(string), "--kind", "wechat_oa",
		"--name", "Official Account", "--config", `{"app_id":"wx123","app_secret":"` + secretValue + `","token":"tok-value-123"}`}, &out, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), secretValue) || strings.Contains(out.String(), "tok-value-123") {
		t.Fatalf("channel create echoed a secret:\n%s", out.String())
	}
	var ch map[string]any
	json.Unmarshal(out.Bytes(), &ch)
	if ch["webhook_path"] != "/v1/hooks/wechat/"+ch["id"].(string) {
		t.Fatalf("channel create = %v", ch)
	}
	if fields, _ := ch["secret_fields"].([]any); len(fields) != 2 {
		t.Fatalf("secret_fields = %v", ch["secret_fields"])
	}
	if !strings.Contains(out.String(), "wx123") {
		t.Fatalf("non-secret config missing from output:\n%s", out.String())
	}
	chans := mustCLI(t, data, "channel", "list", "--tenant", "acme")
	if cs, _ := chans["channels"].([]any); len(cs) != 1 {
		t.Fatalf("channel list = %v", chans)
	}
	assertNotOnDisk(t, data, secretValue)

	// Rotate the channel's EncodingAESKey: the new key current, the old one
	// still accepted; then disable and enable it.
	const oldKey, newKey = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	id := ch["id"].(string)
	upd := mustCLI(t, data, "channel", "update", "--tenant", "acme", "--channel", id, "--name", "OA (rotated)",
		"--config", `{"encoding_aes_key":"`+newKey+`","previous_encoding_aes_key":"`+oldKey+`","api_base":"http://egress:8080/wx"}`)
	fields, _ := upd["secret_fields"].([]any)
	if upd["name"] != "OA (rotated)" || len(fields) != 4 || strings.Contains(fmt.Sprint(upd), newKey) || !strings.Contains(fmt.Sprint(upd["config"]), "egress") {
		t.Fatalf("channel update = %v, want the new name, api_base, 4 secret fields and no secret echoed", upd)
	}
	if _, err := cli(t, data, "channel", "update", "--tenant", "acme", "--channel", id, "--config", `{"encoding_aes_key":"short"}`); !errors.Is(err, conv.ErrInvalid) {
		t.Fatalf("update with a malformed key = %v, want ErrInvalid", err)
	}
	if off := mustCLI(t, data, "channel", "disable", "--tenant", "acme", "--channel", id); off["disabled"] != true {
		t.Fatalf("channel disable = %v", off)
	}
	if on := mustCLI(t, data, "channel", "enable", "--tenant", "acme", "--channel", id); on["disabled"] != nil {
		t.Fatalf("channel enable = %v", on)
	}
	assertNotOnDisk(t, data, newKey)

	rot := mustCLI(t, data, "keys", "rotate")
	if rot["resealed"] != float64(4) {
		t.Fatalf("keys rotate = %v, want 4 secrets resealed", rot)
	}
	assertNotOnDisk(t, data, secretValue)
	if dl := mustCLI(t, data, "deadletters"); dl["deadletters"] == nil {
		t.Fatalf("deadletters = %v", dl)
	}
	if mig := mustCLI(t, data, "migrate"); mig["applied"] == nil {
		t.Fatalf("migrate = %v", mig)
	}

	bad := []struct {
		name string
		args []string
		kind error
	}{
		{"unknown kind", []string{"channel", "create", "--tenant", "acme", "--kind", "fax", "--name", "x"}, conv.ErrInvalid},
		{"config not json", []string{"channel", "create", "--tenant", "acme", "--kind", "test", "--name", "x", "--config", "{"}, conv.ErrInvalid},
		{"unknown tenant", []string{"channel", "create", "--tenant", "nope", "--kind", "test", "--name", "x"}, conv.ErrNotFound},
		{"short password", []string{"agent", "create", "--tenant", "acme", "--email", "b@example.com", "--name", "B", "--password", "short"}, conv.ErrInvalid},
		{"bad email", []string{"agent", "create", "--tenant", "acme", "--email", "not-an-email", "--name", "B", "--password", "long enough pw"}, conv.ErrInvalid},
		{"unknown flag", []string{"tenant", "list", "--bogus"}, conv.ErrInvalid},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := cli(t, data, tc.args...); !errors.Is(err, tc.kind) {
				t.Fatalf("= %v, want %v", err, tc.kind)
			}
		})
	}
}

// assertNotOnDisk fails if any file under dir contains s.
func assertNotOnDisk(t *testing.T, dir, s string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(s)) {
			t.Fatalf("%s contains the plaintext secret", p)
		}
		return nil
	})
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestServeEmbeddedDefault starts the real server on its embedded default,
// waits for /readyz, logs in over HTTP, and shuts it down as SIGTERM would.
func TestServeEmbeddedDefault(t *testing.T) {
	t.Setenv(secret.EnvVar, "")
	data := t.TempDir()
	addr := freeAddr(t)
	ctx, stop := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "--data", data, "--addr", addr}, &bytes.Buffer{}, &stderr) }()
	defer func() {
		stop()
		<-done
	}()
	testenv.WaitFor(t, 60*time.Second, "/readyz", func() bool {
		select {
		case err := <-done:
			t.Fatalf("serve exited early: %v\n%s", err, stderr.String())
		default:
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	if !strings.Contains(stderr.String(), "tenant create --name acme") {
		t.Fatalf("first start did not print next steps:\n%s", stderr.String())
	}
	// Admin commands work against the running server's store.
	mustCLI(t, data, "tenant", "create", "--name", "acme")
	mustCLI(t, data, "agent", "create", "--tenant", "acme", "--email", "ann@example.com", "--name", "Ann", "--password", "correct horse battery")
	resp, err := http.Post("http://"+addr+"/v1/auth/login", "application/json",
		strings.NewReader(`{"tenant":"acme","email":"ann@example.com","password":"correct horse battery"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("login against the running server = %d", resp.StatusCode)
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v on shutdown", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not shut down")
	}
	if !strings.Contains(stderr.String(), "stopped") {
		t.Fatalf("no graceful stop logged:\n%s", stderr.String())
	}
	done <- nil
}

func TestIngestWriters(t *testing.T) {
	for _, c := range []struct {
		postgres string
		flag     int
		want     int // 0: refused
	}{
		{"", 0, 1},
		{"", 1, 1},
		{"", 2, 0}, // SQLite has one writer
		{"postgres://db/x", 0, 2},
		{"postgres://db/x", 8, 8},
		{"postgres://db/x", 65, 0},
		{"postgres://db/x", -1, 0},
	} {
		cfg := config{Postgres: c.postgres, IngestWriters: c.flag}
		got, err := cfg.ingestWriters()
		if c.want == 0 {
			if !errors.Is(err, conv.ErrInvalid) {
				t.Errorf("postgres %q, --ingest-writers %d: got %d, %v; want ErrInvalid", c.postgres, c.flag, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("postgres %q, --ingest-writers %d: got %d, %v; want %d", c.postgres, c.flag, got, err, c.want)
		}
	}

	// serve refuses it before it opens anything: the data dir stays empty.
	data := t.TempDir()
	err := run(context.Background(), []string{"serve", "--data", data, "--ingest-writers", "3"}, &bytes.Buffer{}, &bytes.Buffer{})
	if !errors.Is(err, conv.ErrInvalid) || !strings.Contains(err.Error(), "single writer") {
		t.Fatalf("serve --ingest-writers 3 on SQLite = %v, want ErrInvalid naming the single writer", err)
	}
	if entries, _ := os.ReadDir(data); len(entries) != 0 {
		t.Errorf("refused serve left %d entries in the data dir", len(entries))
	}
}
