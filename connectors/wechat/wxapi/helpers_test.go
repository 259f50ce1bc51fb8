package wxapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/connectors/wechat/wechattest"
	"github.com/switchboard-hq/switchboard/store/memory"
)

// The shape of the cluster leases this package is meant to run on.
var _ Lease = (*memory.Leases)(nil)

var t0 = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)

const (
	oaApp, oaSecret = "wxoa", "oasecret-0123456789"
	mpApp, mpSecret = "wxmp", "mpsecret-0123456789"
	user1           = "o1"
)

// syncBuffer is a log sink for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// recorder is a RoundTripper that remembers every access token sent in a
// query and every force_refresh asked of stable_token, so tests can look
// for tokens where they must not be.
type recorder struct {
	mu     sync.Mutex
	tokens map[string]bool
	forces []bool
	hold   chan struct{} // if set, token requests wait until it is closed
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	if tok := req.URL.Query().Get("access_token"); tok != "" {
		r.tokens[tok] = true
	}
	hold := r.hold
	r.mu.Unlock()
	if hold != nil && (strings.HasSuffix(req.URL.Path, PathStableToken) || strings.HasSuffix(req.URL.Path, PathToken)) {
		select {
		case <-hold:
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
	}
	if strings.HasSuffix(req.URL.Path, PathStableToken) && req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(b))
		var v struct {
			Force bool `json:"force_refresh"`
		}
		_ = json.Unmarshal(b, &v)
		r.mu.Lock()
		r.forces = append(r.forces, v.Force)
		r.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(req)
}

func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for t := range r.tokens {
		out = append(out, t)
	}
	return out
}

func (r *recorder) forceRefreshes() []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bool(nil), r.forces...)
}

// env is a fake WeChat on a manual clock with an Official Account and a
// mini program, each with user o1, plus the shared state two nodes use.
type env struct {
	fake   *wechattest.Server
	clk    *wechattest.Clock
	cache  *MemoryCache
	leases *memory.Leases
	rec    *recorder
	hc     *http.Client
	logs   *syncBuffer
	log    *slog.Logger
}

func newEnv(t *testing.T, cfg wechattest.Config) *env {
	t.Helper()
	clk := wechattest.NewClock(t0)
	cfg.Now = clk.Now
	fake := wechattest.Start(t, cfg)
	fake.AddApp(oaApp, oaSecret)
	fake.AddMiniProgram(mpApp, mpSecret)
	fake.AddUser(oaApp, user1, "union-1")
	fake.AddUser(mpApp, user1, "")
	rec := &recorder{tokens: make(map[string]bool)}
	logs := &syncBuffer{}
	return &env{
		fake:   fake,
		clk:    clk,
		cache:  NewMemoryCache(),
		leases: memory.NewLeases(memory.Config{}),
		rec:    rec,
		hc:     &http.Client{Transport: rec, Timeout: 10 * time.Second},
		logs:   logs,
		log:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// tokens is one node's provider for app, sharing the env's cache and leases.
func (e *env) tokens(t *testing.T, app, holder string, mod func(*TokensConfig)) *SharedTokens {
	t.Helper()
	secret := oaSecret
	if app == mpApp {
		secret = mpSecret
	}
	cfg := TokensConfig{
		AppID: app, Secret: secret, APIBase: e.fake.URL(), HTTPClient: e.hc,
		Cache: e.cache, Lease: e.leases, Holder: holder, Now: e.clk.Now,
		RefreshJitter: -1, Logger: e.log,
	}
	if mod != nil {
		mod(&cfg)
	}
	st, err := NewSharedTokens(cfg)
	if err != nil {
		t.Fatalf("NewSharedTokens: %v", err)
	}
	return st
}

// client is a Client for app with its own node's SharedTokens.
func (e *env) client(t *testing.T, app, kind string, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		AppID: app, Kind: kind, APIBase: e.fake.URL(), HTTPClient: e.hc,
		Tokens: e.tokens(t, app, "node-"+app, nil), Logger: e.log, Now: e.clk.Now,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// open gives user1 a fresh reply window on app.
func (e *env) open(app string) { e.fake.Interact(app, user1, e.clk.Now()) }

// assertNoSecrets fails if a token this test used, or a secret, shows in
// the logs or in any of texts.
func (e *env) assertNoSecrets(t *testing.T, texts ...string) {
	t.Helper()
	secrets := append(e.rec.seen(), oaSecret, mpSecret)
	if len(e.rec.seen()) == 0 {
		t.Fatal("no access token was used: the check would prove nothing")
	}
	logs := e.logs.String()
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("a token or secret appears in the logs:\n%s", logs)
		}
		for _, txt := range texts {
			if strings.Contains(txt, s) {
				t.Errorf("a token or secret appears in %q", txt)
			}
		}
	}
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
