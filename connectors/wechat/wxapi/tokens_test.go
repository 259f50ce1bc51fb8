package wxapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/connectors/wechat/wechattest"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/store/memory"
)

const tokenTTL = 7200 * time.Second

// TestTwoNodesShareOneToken: providers on two "nodes" sharing one cache
// and one lease, hammered concurrently, make WeChat issue one token.
func TestTwoNodesShareOneToken(t *testing.T) {
	e := newEnv(t, wechattest.Config{})
	// Hold the first token request until every caller of node a has looked
	// at the empty cache, so that they all want a refresh at once.
	hold := make(chan struct{})
	e.rec.hold = hold
	counted := &countingCache{TokenCache: e.cache}
	a := e.tokens(t, oaApp, "node-a", func(c *TokensConfig) { c.Cache = counted })
	b := e.tokens(t, oaApp, "node-b", nil)
	ctx := ctxT(t)

	const n = 32
	got := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		p := a
		if i%2 == 1 {
			p = b
		}
		wg.Go(func() { got[i], errs[i] = p.Token(ctx) })
	}
	// Node a's callers each read once, then queue behind the refresher,
	// which reads once more under the lease.
	testenv.WaitFor(t, 10*time.Second, "node a's callers to read the cache", func() bool { return counted.n.Load() >= n/2+1 })
	close(hold)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || got[i] == "" || got[i] != got[0] {
			t.Fatalf("caller %d got %q, %v; caller 0 got %q", i, got[i], errs[i], got[0])
		}
	}
	if n := e.fake.TokenIssued(); n != 1 {
		t.Fatalf("WeChat issued %d tokens, want 1", n)
	}
	// stable_token answers a repeat with the same token: count the asks too.
	if n := e.fake.Calls(PathStableToken); n != 1 {
		t.Fatalf("%d stable_token calls, want 1", n)
	}

	// Clients on both nodes send with that one token.
	ca := e.client(t, oaApp, KindOA, func(c *Config) { c.Tokens = a })
	cb := e.client(t, oaApp, KindOA, func(c *Config) { c.Tokens = b })
	e.open(oaApp)
	for i, c := range []*Client{ca, cb, ca, cb} {
		wg.Go(func() {
			if err := c.SendText(ctx, user1, fmt.Sprint("m", i)); err != nil {
				t.Errorf("send %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	for _, s := range e.fake.Sent() {
		if s.Token != got[0] {
			t.Fatal("a send used another token")
		}
	}
	if n := e.fake.TokenIssued(); n != 1 {
		t.Fatalf("WeChat issued %d tokens, want 1", n)
	}
	e.assertNoSecrets(t)
}

func TestTokenRejectedRefreshesOnceAndRetries(t *testing.T) {
	e := newEnv(t, wechattest.Config{})
	st := e.tokens(t, oaApp, "node-a", nil)
	c := e.client(t, oaApp, KindOA, func(c *Config) { c.Tokens = st })
	ctx := ctxT(t)
	first, err := st.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.open(oaApp)
	e.fake.FailNext(PathSend, CodeInvalidCredential, "invalid credential, access_token is invalid or not latest", 1)
	if err := c.SendText(ctx, user1, "hello"); err != nil {
		t.Fatalf("SendText after one 40001: %v", err)
	}
	if n := e.fake.Calls(PathSend); n != 2 {
		t.Errorf("%d send calls, want 2 (one retry)", n)
	}
	if n := e.fake.TokenIssued(); n != 2 {
		t.Errorf("%d tokens issued, want 2 (one refresh)", n)
	}
	if f := e.rec.forceRefreshes(); len(f) != 2 || f[0] || !f[1] {
		t.Errorf("stable_token force_refresh flags %v, want [false true]", f)
	}
	sent := e.fake.Sent()
	if len(sent) != 1 || sent[0].Token == first {
		t.Fatalf("sent %d, with the rejected token: %v", len(sent), len(sent) == 1 && sent[0].Token == first)
	}
	// Another node picks up the new token from the cache.
	other, err := e.tokens(t, oaApp, "node-b", nil).Token(ctx)
	if err != nil || other != sent[0].Token {
		t.Fatalf("node b got another token (%v)", err)
	}
	if n := e.fake.TokenIssued(); n != 2 {
		t.Errorf("%d tokens issued after node b asked, want 2", n)
	}
	e.assertNoSecrets(t)
}

func TestTokenRejectedTwiceFails(t *testing.T) {
	e := newEnv(t, wechattest.Config{})
	c := e.client(t, oaApp, KindOA, nil)
	e.open(oaApp)
	e.fake.FailNext(PathSend, CodeTokenExpired, "access_token expired", 2)
	err := c.SendText(ctxT(t), user1, "hello")
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != CodeTokenExpired || Retryable(err) || !errors.Is(err, conv.ErrUnauthorized) {
		t.Fatalf("err = %v, want the 42001 APIError, not retryable", err)
	}
	if n := e.fake.Calls(PathSend); n != 2 {
		t.Fatalf("%d send calls, want 2: one try, one retry, no loop", n)
	}
	if n := e.fake.Calls(PathStableToken); n != 2 {
		t.Fatalf("%d token calls, want 2", n)
	}
	// The next call works: the provider is not stuck on the bad mark.
	if err := c.SendText(ctxT(t), user1, "again"); err != nil {
		t.Fatalf("next send: %v", err)
	}
	e.assertNoSecrets(t, err.Error())
}

// TestClassicTokenKilledElsewhere: with /cgi-bin/token, another system
// fetching a token kills ours after the overlap; the real 40001 that
// follows is handled by one refresh.
func TestClassicTokenKilledElsewhere(t *testing.T) {
	e := newEnv(t, wechattest.Config{})
	st := e.tokens(t, oaApp, "node-a", func(c *TokensConfig) { c.UseClassicToken = true })
	c := e.client(t, oaApp, KindOA, func(c *Config) { c.Tokens = st })
	ctx := ctxT(t)
	e.open(oaApp)
	if err := c.SendText(ctx, user1, "one"); err != nil {
		t.Fatal(err)
	}
	q := url.Values{"grant_type": {"client_credential"}, "appid": {oaApp}, "secret": {oaSecret}}
	resp, err := http.Get(e.fake.URL() + PathToken + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	e.clk.Advance(6 * time.Minute)
	e.open(oaApp)
	if err := c.SendText(ctx, user1, "two"); err != nil {
		t.Fatalf("send after our token was killed: %v", err)
	}
	if n := e.fake.Calls(PathToken); n != 3 {
		t.Errorf("%d /cgi-bin/token calls, want 3 (ours, the other system's, our refresh)", n)
	}
	if n := e.fake.Calls(PathSend); n != 3 {
		t.Errorf("%d send calls, want 3", n)
	}
	if n := e.fake.Calls(PathStableToken); n != 0 {
		t.Errorf("%d stable_token calls with UseClassicToken", n)
	}
	e.assertNoSecrets(t)
}

func TestTokenRefreshedAheadOfExpiry(t *testing.T) {
	e := newEnv(t, wechattest.Config{})
	st := e.tokens(t, oaApp, "node-a", nil)
	ctx := ctxT(t)
	tok1, err := st.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(tokenTTL - 6*time.Minute)
	if tok, err := st.Token(ctx); err != nil || tok != tok1 || e.fake.TokenIssued() != 1 {
		t.Fatalf("with 6 min left: new token %v, issued %d, %v", tok != tok1, e.fake.TokenIssued(), err)
	}
	e.clk.Advance(2 * time.Minute)
	tok2, err := st.Token(ctx)
	if err != nil || tok2 == tok1 || e.fake.TokenIssued() != 2 {
		t.Fatalf("with 4 min left: new token %v, issued %d, %v", tok2 != tok1, e.fake.TokenIssued(), err)
	}
	if tok, _ := st.Token(ctx); tok != tok2 || e.fake.TokenIssued() != 2 {
		t.Fatal("asked again right after the refresh")
	}
	if f := e.rec.forceRefreshes(); len(f) != 2 || f[0] || f[1] {
		t.Fatalf("force_refresh flags %v, want none forced", f)
	}
	// The old token still works: stable tokens do not kill each other.
	e.open(oaApp)
	c := e.client(t, oaApp, KindOA, func(c *Config) { c.Tokens = &staticTokens{tok1} })
	if err := c.SendText(ctx, user1, "old token"); err != nil {
		t.Fatalf("old stable token: %v", err)
	}
}

func TestRefreshJitterWithinBounds(t *testing.T) {
	seen := map[time.Duration]bool{}
	for i := range 20 {
		st, err := NewSharedTokens(TokensConfig{AppID: "a", Secret: "s"})
		if err != nil {
			t.Fatal(err)
		}
		if st.threshold > 5*time.Minute || st.threshold <= 4*time.Minute {
			t.Fatalf("provider %d refreshes with %v left, want (4 min, 5 min]", i, st.threshold)
		}
		seen[st.threshold] = true
	}
	if len(seen) < 2 {
		t.Fatal("20 providers all refresh at the same moment: no jitter")
	}
}

func TestInvalidateOfAnotherTokenFetchesNothing(t *testing.T) {
	e := newEnv(t, wechattest.Config{})
	st := e.tokens(t, oaApp, "node-a", nil)
	ctx := ctxT(t)
	tok, err := st.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Invalidate(ctx, "some-older-token"); err != nil {
		t.Fatal(err)
	}
	if again, _ := st.Token(ctx); again != tok || e.fake.TokenIssued() != 1 {
		t.Fatalf("invalidating a token not cached fetched a new one (issued %d)", e.fake.TokenIssued())
	}
}

// countingCache counts Gets.
type countingCache struct {
	TokenCache
	n atomic.Int64
}

func (c *countingCache) Get(ctx context.Context, key string) (Token, bool, error) {
	c.n.Add(1)
	return c.TokenCache.Get(ctx, key)
}

// TestRejectedTokenNotReusedWhileAnotherNodeRefreshes: when WeChat
// rejects the cached token and another node holds the lease, the client
// waits for that node's token instead of retrying with the rejected one.
func TestRejectedTokenNotReusedWhileAnotherNodeRefreshes(t *testing.T) {
	e := newEnv(t, wechattest.Config{})
	ctx := ctxT(t)
	key := e.tokens(t, oaApp, "probe", nil).CacheKey()
	if err := e.cache.Set(ctx, key, Token{Value: "revoked-token", Expires: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if ok, err := e.leases.Acquire(ctx, e.tokens(t, oaApp, "probe", nil).LeaseKey(), "node-b", time.Minute); !ok || err != nil {
		t.Fatal("could not take the lease for node b")
	}
	w := &watchedCache{TokenCache: e.cache, gets: make(chan struct{}, 1)}
	c := e.client(t, oaApp, KindOA, func(c *Config) {
		c.Tokens = e.tokens(t, oaApp, "node-a", func(tc *TokensConfig) { tc.Cache = w })
	})
	e.open(oaApp)
	res := make(chan error, 1)
	go func() { res <- c.SendText(ctx, user1, "hello") }()
	// Token, Invalidate, then the wait for node b's token: 4 reads at least.
	waitGets(t, w, 4)
	// Node b's refresh: a real token, fetched here as b would.
	q := url.Values{"grant_type": {"client_credential"}, "appid": {oaApp}, "secret": {oaSecret}}
	resp, err := http.Get(e.fake.URL() + PathToken + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	var ta tokenAnswer
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := json.Unmarshal(body, &ta); err != nil || ta.AccessToken == "" {
		t.Fatalf("token answer %v", err)
	}
	if err := e.cache.Set(ctx, key, Token{Value: ta.AccessToken, Expires: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := <-res; err != nil {
		t.Fatalf("send: %v", err)
	}
	if sent := e.fake.Sent(); len(sent) != 1 || sent[0].Token != ta.AccessToken {
		t.Fatal("the send did not go out with node b's token")
	}
	if n := e.fake.Calls(PathSend); n != 2 {
		t.Fatalf("%d send calls, want 2", n)
	}
}

// TestRejectedTokenHandedBackIsTrustedAgain: a forced refresh within
// WeChat's interval returns the same token; the provider must then use it
// without asking for a token on every call.
func TestRejectedTokenHandedBackIsTrustedAgain(t *testing.T) {
	e := newEnv(t, wechattest.Config{})
	c := e.client(t, oaApp, KindOA, nil)
	ctx := ctxT(t)
	e.open(oaApp)
	for i := range 2 {
		e.fake.FailNext(PathSend, CodeInvalidCredential, "invalid credential", 1)
		if err := c.SendText(ctx, user1, "x"); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	calls := e.fake.Calls(PathStableToken)
	for i := range 3 {
		if err := c.SendText(ctx, user1, "y"); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if n := e.fake.Calls(PathStableToken) - calls; n != 0 {
		t.Fatalf("%d token calls for 3 plain sends, want 0", n)
	}
}

// watchedCache signals every Get, so a test knows a waiter is polling.
type watchedCache struct {
	TokenCache
	gets chan struct{}
}

func (w *watchedCache) Get(ctx context.Context, key string) (Token, bool, error) {
	select {
	case w.gets <- struct{}{}:
	default:
	}
	return w.TokenCache.Get(ctx, key)
}

func waitGets(t *testing.T, w *watchedCache, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for range n {
		select {
		case <-w.gets:
		case <-timeout:
			t.Fatalf("the provider did not poll the cache %d times", n)
		}
	}
}

func TestWaitsForTheLeaseHolder(t *testing.T) {
	leaseKeyOf := func(e *env) string { return e.tokens(t, oaApp, "probe", nil).LeaseKey() }
	t.Run("reads what the holder writes", func(t *testing.T) {
		e := newEnv(t, wechattest.Config{})
		ctx := ctxT(t)
		if ok, err := e.leases.Acquire(ctx, leaseKeyOf(e), "node-a", time.Minute); !ok || err != nil {
			t.Fatal("could not take the lease for node a")
		}
		w := &watchedCache{TokenCache: e.cache, gets: make(chan struct{}, 1)}
		b := e.tokens(t, oaApp, "node-b", func(c *TokensConfig) { c.Cache = w })
		res := make(chan string, 1)
		go func() {
			tok, err := b.Token(ctx)
			if err != nil {
				tok = "error: " + err.Error()
			}
			res <- tok
		}()
		waitGets(t, w, 3)
		if err := e.cache.Set(ctx, b.CacheKey(), Token{Value: "written-by-a", Expires: t0.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if got := <-res; got != "written-by-a" {
			t.Fatalf("node b got %q", got)
		}
		if n := e.fake.TokenIssued(); n != 0 {
			t.Fatalf("node b fetched %d tokens while a held the lease", n)
		}
	})
	t.Run("takes over when the holder's lease expires", func(t *testing.T) {
		e := newEnv(t, wechattest.Config{})
		e.leases = memory.NewLeases(memory.Config{Now: e.clk.Now})
		ctx := ctxT(t)
		if ok, err := e.leases.Acquire(ctx, leaseKeyOf(e), "node-a", 10*time.Second); !ok || err != nil {
			t.Fatal("could not take the lease for node a")
		}
		w := &watchedCache{TokenCache: e.cache, gets: make(chan struct{}, 1)}
		b := e.tokens(t, oaApp, "node-b", func(c *TokensConfig) { c.Cache = w })
		res := make(chan error, 1)
		go func() {
			_, err := b.Token(ctx)
			res <- err
		}()
		waitGets(t, w, 2)
		e.clk.Advance(11 * time.Second) // node a died holding the lease
		if err := <-res; err != nil {
			t.Fatalf("node b: %v", err)
		}
		if n := e.fake.TokenIssued(); n != 1 {
			t.Fatalf("%d tokens issued, want node b's one", n)
		}
	})
	t.Run("gives up after WaitTimeout", func(t *testing.T) {
		e := newEnv(t, wechattest.Config{})
		ctx := ctxT(t)
		if ok, err := e.leases.Acquire(ctx, leaseKeyOf(e), "node-a", time.Minute); !ok || err != nil {
			t.Fatal("could not take the lease for node a")
		}
		b := e.tokens(t, oaApp, "node-b", func(c *TokensConfig) { c.WaitTimeout = 50 * time.Millisecond })
		_, err := b.Token(ctx)
		if !errors.Is(err, conv.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) || !Retryable(err) {
			t.Fatalf("err = %v, want conv.ErrUnavailable after the wait", err)
		}
		if e.fake.TokenIssued() != 0 {
			t.Fatal("node b fetched while a held the lease")
		}
	})
}

func TestRunRefreshesInBackground(t *testing.T) {
	e := newEnv(t, wechattest.Config{})
	st := e.tokens(t, oaApp, "runner", func(c *TokensConfig) { c.CheckEvery = 5 * time.Millisecond })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()

	cached := func() string {
		tok, _, _ := e.cache.Get(ctx, st.CacheKey())
		return tok.Value
	}
	testenv.WaitFor(t, 5*time.Second, "Run to fetch the first token", func() bool { return cached() != "" })
	first := cached()
	e.clk.Advance(tokenTTL - 4*time.Minute)
	testenv.WaitFor(t, 5*time.Second, "Run to refresh ahead of expiry", func() bool { return cached() != first })
	if n := e.fake.TokenIssued(); n != 2 {
		t.Fatalf("%d tokens issued, want 2", n)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop")
	}
}

// TestSecretsStayOutOfErrors covers the paths where a secret could leak:
// an errmsg echoing it, a classic token request (secret in the query)
// that fails in transport, an API errmsg echoing the token.
func TestSecretsStayOutOfErrors(t *testing.T) {
	const secret, token = "SECRET-abcdef-123456", "TOKEN-abcdef-123456"
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case PathStableToken:
			fmt.Fprintf(w, `{"errcode":40125,"errmsg":"invalid appsecret %s rid: x"}`, secret)
		case PathToken:
			fmt.Fprintf(w, `{"errcode":40125,"errmsg":"invalid appsecret %s"}`, r.URL.Query().Get("secret"))
		default:
			fmt.Fprintf(w, `{"errcode":40003,"errmsg":"invalid openid for %s"}`, r.URL.Query().Get("access_token"))
		}
	}))
	defer echo.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	var texts []string
	for _, cfg := range []TokensConfig{
		{APIBase: echo.URL},
		{APIBase: echo.URL, UseClassicToken: true},
		{APIBase: dead.URL, UseClassicToken: true},
		{APIBase: dead.URL},
	} {
		cfg.AppID, cfg.Secret, cfg.Logger = "wxa", secret, log
		st, err := NewSharedTokens(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = st.Token(ctxT(t))
		if err == nil {
			t.Fatal("token fetch succeeded against a broken server")
		}
		texts = append(texts, err.Error())
		c, err := New(Config{AppID: "wxa", Kind: KindOA, APIBase: cfg.APIBase, Tokens: st, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		err = c.SendText(ctxT(t), user1, "x")
		texts = append(texts, err.Error())
	}
	c, err := New(Config{AppID: "wxa", Kind: KindOA, APIBase: echo.URL, Tokens: &staticTokens{token}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	err = c.SendText(ctxT(t), user1, "x")
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != CodeInvalidOpenID {
		t.Fatalf("err = %v, want 40003", err)
	}
	texts = append(texts, err.Error(), ae.Reason())
	for _, txt := range append(texts, logs.String()) {
		if strings.Contains(txt, secret) || strings.Contains(txt, token) {
			t.Errorf("secret or token leaked: %s", txt)
		}
	}
	if !strings.Contains(texts[0], "[redacted]") {
		t.Errorf("the echoed secret was not marked redacted: %s", texts[0])
	}
}

// TestTokensScopedToCredentials: a channel naming someone else's AppID
// with its own secret or API base shares no token with the real owner.
func TestTokensScopedToCredentials(t *testing.T) {
	e := newEnv(t, wechattest.Config{})
	owner := e.tokens(t, oaApp, "a", nil)
	sameCreds := e.tokens(t, oaApp, "b", nil)
	otherSecret := e.tokens(t, oaApp, "c", func(c *TokensConfig) { c.Secret = "attacker-secret" })
	otherBase := e.tokens(t, oaApp, "d", func(c *TokensConfig) { c.APIBase = "http://attacker.example/wx" })
	if owner.CacheKey() != sameCreds.CacheKey() || owner.LeaseKey() != sameCreds.LeaseKey() {
		t.Fatal("two nodes of one app must share the token")
	}
	for _, other := range []*SharedTokens{otherSecret, otherBase} {
		if other.CacheKey() == owner.CacheKey() || other.LeaseKey() == owner.LeaseKey() {
			t.Fatalf("key %q shared with the owner's %q", other.CacheKey(), owner.CacheKey())
		}
		if strings.Contains(other.CacheKey(), "attacker") || strings.Contains(owner.CacheKey(), oaSecret) {
			t.Fatal("a cache key carries a secret or base in the clear")
		}
	}
}
