package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/api"
	"github.com/switchboard-hq/switchboard/core/auth"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/store/memory"
)

type server struct {
	url    string
	tenant conv.TenantID
	ready  *error
	now    *time.Time
}

func newServer(t *testing.T) server {
	t.Helper()
	ctx := context.Background()
	st, ids := testenv.SQLiteStore(t)
	now := time.Now()
	svc, err := auth.New(auth.Config{Store: st, Limiter: memory.NewLimiter(memory.Config{}), IDs: ids, PerAccount: 5, TTL: time.Hour,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	tenant := conv.NewID[conv.TenantID](ids)
	if err := st.CreateTenant(ctx, conv.Tenant{ID: tenant, Name: "acme", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateAgent(ctx, tenant, auth.NewAgent{Email: "Ann@Example.com", Name: "Ann", Password: "correct horse battery"}); err != nil {
		t.Fatal(err)
	}
	var readyErr error
	srv, err := api.New(api.Config{Auth: svc, Checks: []api.Check{{Name: "store", Fn: func(context.Context) error { return readyErr }}}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return server{url: hs.URL, tenant: tenant, ready: &readyErr, now: &now}
}

func do(t *testing.T, method, url, bearer, body string) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, resp.Header
}

func TestLoginTokenLifecycle(t *testing.T) {
	s := newServer(t)
	code, body, _ := do(t, "POST", s.url+"/v1/auth/login", "", `{"tenant":"acme","email":"ann@example.com","password":"correct horse battery"}`)
	if code != 200 {
		t.Fatalf("login = %d %v", code, body)
	}
	token, _ := body["token"].(string)
	if !strings.HasPrefix(token, "sb_") {
		t.Fatalf("token %q", token)
	}
	if code, me, _ := do(t, "GET", s.url+"/v1/auth/me", token, ""); code != 200 || me["email"] != "Ann@Example.com" || me["password_hash"] != nil {
		t.Fatalf("me = %d %v", code, me)
	}
	// By tenant id works as well as by name.
	if code, _, _ := do(t, "POST", s.url+"/v1/auth/login", "", `{"tenant":"`+s.tenant.String()+`","email":"ann@example.com","password":"correct horse battery"}`); code != 200 {
		t.Fatalf("login by tenant id = %d", code)
	}
	if code, _, _ := do(t, "POST", s.url+"/v1/auth/logout", token, ""); code != 204 {
		t.Fatalf("logout = %d", code)
	}
	if code, _, _ := do(t, "GET", s.url+"/v1/auth/me", token, ""); code != 401 {
		t.Fatalf("revoked token answered %d, want 401", code)
	}
	// Expiry.
	_, body, _ = do(t, "POST", s.url+"/v1/auth/login", "", `{"tenant":"acme","email":"ann@example.com","password":"correct horse battery"}`)
	token = body["token"].(string)
	*s.now = s.now.Add(2 * time.Hour)
	if code, _, _ := do(t, "GET", s.url+"/v1/auth/me", token, ""); code != 401 {
		t.Fatalf("expired token answered %d, want 401", code)
	}
}

func TestLoginFailuresAreUniformAndLimited(t *testing.T) {
	s := newServer(t)
	tests := []struct{ name, body string }{
		{"wrong password", `{"tenant":"acme","email":"ann@example.com","password":"wrong password!"}`},
		{"unknown email", `{"tenant":"acme","email":"bob@example.com","password":"correct horse battery"}`},
		{"unknown tenant", `{"tenant":"nope","email":"ann@example.com","password":"correct horse battery"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := do(t, "POST", s.url+"/v1/auth/login", "", tc.body)
			e, _ := body["error"].(map[string]any)
			if code != 401 || e["code"] != "unauthorized" || e["message"] != "wrong tenant, email or password" {
				t.Fatalf("= %d %v", code, body)
			}
		})
	}
	// PerAccount is 5 per window; one wrong attempt above counted.
	var last int
	var hdr http.Header
	for range 5 {
		last, _, hdr = do(t, "POST", s.url+"/v1/auth/login", "", `{"tenant":"acme","email":"ann@example.com","password":"wrong password!"}`)
	}
	if last != 429 || hdr.Get("Retry-After") == "" {
		t.Fatalf("after too many attempts = %d (Retry-After %q), want 429", last, hdr.Get("Retry-After"))
	}
}

func TestBadRequests(t *testing.T) {
	s := newServer(t)
	tests := []struct {
		name, body string
		code       int
	}{
		{"not json", `{`, 400},
		{"missing fields", `{"tenant":"acme"}`, 400},
		{"unknown field", `{"tenant":"acme","email":"a@b.c","password":"xxxxxxxx","admin":true}`, 400},
		{"too large", `{"tenant":"` + strings.Repeat("a", api.MaxBody) + `"}`, 413},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code, body, _ := do(t, "POST", s.url+"/v1/auth/login", "", tc.body); code != tc.code {
				t.Fatalf("= %d %v, want %d", code, body, tc.code)
			}
		})
	}
	if code, _, _ := do(t, "GET", s.url+"/v1/auth/me", "sb_1_garbage", ""); code != 401 {
		t.Fatalf("garbage token = %d", code)
	}
}

func TestReadiness(t *testing.T) {
	s := newServer(t)
	if code, body, _ := do(t, "GET", s.url+"/readyz", "", ""); code != 200 || body["status"] != "ready" {
		t.Fatalf("readyz = %d %v", code, body)
	}
	*s.ready = errors.New("store: connection refused")
	code, body, _ := do(t, "GET", s.url+"/readyz", "", "")
	checks, _ := body["checks"].(map[string]any)
	if code != 503 || checks["store"] != "store: connection refused" {
		t.Fatalf("readyz with store down = %d %v", code, body)
	}
	if code, _, _ := do(t, "GET", s.url+"/healthz", "", ""); code != 200 {
		t.Fatalf("healthz = %d", code)
	}
}
