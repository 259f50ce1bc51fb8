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
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/store/memory"
)

type server struct {
	url    string
	tenant conv.TenantID
	ready  *error
	now    *time.Time
}

// acme is a SQLite store holding the tenant "acme" and its agent Ann
// (password "correct horse battery"), and the auth service over it.
type acme struct {
	st     storage.Store
	ids    *conv.IDGen
	auth   *auth.Service
	tenant conv.TenantID
	ann    conv.Agent
}

// newAcme makes an acme; cfg is the auth configuration but for Store,
// Limiter and IDs, which it fills in.
func newAcme(t *testing.T, cfg auth.Config) acme {
	t.Helper()
	ctx := context.Background()
	a := acme{}
	a.st, a.ids = testenv.SQLiteStore(t)
	cfg.Store, cfg.Limiter, cfg.IDs = a.st, memory.NewLimiter(memory.Config{}), a.ids
	var err error
	if a.auth, err = auth.New(cfg); err != nil {
		t.Fatal(err)
	}
	a.tenant = conv.NewID[conv.TenantID](a.ids)
	if err := a.st.CreateTenant(ctx, conv.Tenant{ID: a.tenant, Name: "acme", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if a.ann, err = a.auth.CreateAgent(ctx, a.tenant, auth.NewAgent{Email: "Ann@Example.com", Name: "Ann", Password: "correct horse battery"}); err != nil {
		t.Fatal(err)
	}
	return a
}

// console is a Console over a's store with one-node live state, replies
// going to replies and events nowhere.
func (a acme) console(t *testing.T, replies api.Replier) *api.Console {
	t.Helper()
	tl, err := memory.NewTimelines(memory.TimelinesConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return &api.Console{Store: a.st, Replies: replies, Events: noEvents{}, Timelines: tl, Fanout: memory.NewFanout(),
		Presence: memory.NewPresence(memory.Config{}), Dispatch: noDrain{}}
}

// loginAnn logs Ann in at the server at url and returns her token.
func loginAnn(t *testing.T, url string) string {
	t.Helper()
	code, out, _ := do(t, "POST", url+"/v1/auth/login", "", `{"tenant":"acme","email":"ann@example.com","password":"correct horse battery"}`)
	if code != 200 {
		t.Fatalf("login = %d %v", code, out)
	}
	return out["token"].(string)
}

func newServer(t *testing.T) server {
	t.Helper()
	now := time.Now()
	a := newAcme(t, auth.Config{PerAccount: 5, TTL: time.Hour, Now: func() time.Time { return now }})
	svc, tenant := a.auth, a.tenant
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
