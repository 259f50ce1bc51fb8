package wxapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Token endpoints.
const (
	PathToken       = "/cgi-bin/token"
	PathStableToken = "/cgi-bin/stable_token"
)

// TokenProvider hands out an app's access token.
type TokenProvider interface {
	// Token returns a token believed valid.
	Token(ctx context.Context) (string, error)
	// Invalidate reports that WeChat rejected bad (40001, 40014, 42001):
	// the next Token must not return it.
	Invalidate(ctx context.Context, bad string) error
}

// Token is an access token and when WeChat said it expires.
type Token struct {
	Value   string
	Expires time.Time
}

// TokenCache holds tokens shared by every node (Redis in production). Get
// returns ok false, nil for a missing key. Implementations should keep a
// key at least until t.Expires and may drop it after.
type TokenCache interface {
	Get(ctx context.Context, key string) (Token, bool, error)
	Set(ctx context.Context, key string, t Token) error
}

// Lease elects one holder per key cluster-wide, as store/memory.Leases
// and store/redis.Leases do: true when holder now holds key for ttl (a
// renewal by the holder included), false, nil while another holds it.
// If the implementation also has Release(ctx, key, holder) error, it is
// called after each refresh; otherwise the lease ends by expiry.
type Lease interface {
	Acquire(ctx context.Context, key, holder string, ttl time.Duration) (bool, error)
}

type leaseReleaser interface {
	Release(ctx context.Context, key, holder string) error
}

// TokensConfig configures SharedTokens.
type TokensConfig struct {
	AppID  string
	Secret string
	// APIBase is WeChat's API root (default DefaultAPIBase), or an egress
	// proxy with a path prefix; http(s), no trailing slash needed.
	APIBase string
	// HTTPClient makes the token calls (default: 10 s timeout).
	HTTPClient *http.Client
	// Cache holds the token for every node (default: a new MemoryCache,
	// right only for a single node).
	Cache TokenCache
	// Lease elects the one refresher among the nodes sharing Cache (default:
	// an in-process lease, right only when Cache is not shared between
	// processes).
	Lease Lease
	// Holder names this node in the lease (default: random per SharedTokens).
	Holder string
	// Now is the clock for expiries (default time.Now).
	Now func() time.Time
	// RefreshBefore: a token with less than this left is refreshed
	// (default 5 min: stable_token hands out a new token only in its last
	// 5 minutes).
	RefreshBefore time.Duration
	// RefreshJitter spreads nodes: each SharedTokens refreshes at
	// RefreshBefore minus a random part of this (default RefreshBefore/5;
	// negative: none).
	RefreshJitter time.Duration
	// UseClassicToken uses GET /cgi-bin/token instead of the default POST
	// /cgi-bin/stable_token. Classic tokens invalidate each other (after
	// about 5 min), so nothing else may fetch tokens for this app.
	UseClassicToken bool
	// LeaseTTL bounds one refresh (default 10 s); a refresher that dies
	// holds the lease that long at most.
	LeaseTTL time.Duration
	// WaitTimeout is how long Token waits for another node's refresh when
	// the cache has no valid token (default 15 s; the ctx deadline wins if
	// sooner).
	WaitTimeout time.Duration
	// CheckEvery is the longest Run sleeps between checks (default 30 s).
	CheckEvery time.Duration
	// Logger gets refreshes and failures, never token values (default: discard).
	Logger *slog.Logger
}

func (c *TokensConfig) setDefaults() {
	if c.HTTPClient == nil {
		c.HTTPClient = defaultHTTPClient()
	}
	if c.Cache == nil {
		c.Cache = NewMemoryCache()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Lease == nil {
		c.Lease = newLocalLease(c.Now)
	}
	if c.Holder == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		c.Holder = "wxapi-" + hex.EncodeToString(b[:])
	}
	if c.RefreshBefore == 0 {
		c.RefreshBefore = 5 * time.Minute
	}
	if c.RefreshJitter == 0 {
		c.RefreshJitter = c.RefreshBefore / 5
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = 10 * time.Second
	}
	if c.WaitTimeout == 0 {
		c.WaitTimeout = 15 * time.Second
	}
	if c.CheckEvery == 0 {
		c.CheckEvery = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports a config SharedTokens cannot work with (after defaults).
func (c TokensConfig) Validate() error {
	const op = "wxapi.TokensConfig"
	switch {
	case c.AppID == "" || c.Secret == "":
		return fmt.Errorf("%s: %w: AppID and Secret are required", op, conv.ErrInvalid)
	case c.RefreshBefore < 0 || c.RefreshJitter > c.RefreshBefore:
		return fmt.Errorf("%s: %w: RefreshBefore must not be negative nor under RefreshJitter", op, conv.ErrInvalid)
	case c.LeaseTTL < time.Millisecond || c.WaitTimeout <= 0 || c.CheckEvery <= 0:
		return fmt.Errorf("%s: %w: LeaseTTL, WaitTimeout and CheckEvery must be positive", op, conv.ErrInvalid)
	}
	if _, err := normalizeBase(op, c.APIBase); err != nil {
		return err
	}
	return nil
}

// SharedTokens is the TokenProvider every node of a cluster shares for one
// app: the token lives in the TokenCache under "wechat:token:"+scope, one
// node at a time refreshes it under the Lease, and the others read the
// cache. Safe for concurrent use.
type SharedTokens struct {
	cfg       TokensConfig
	base      string
	key       string
	leaseKey  string
	threshold time.Duration // refresh when less than this is left
	log       *slog.Logger

	sem chan struct{} // one refresh at a time in this process

	mu        sync.Mutex // guards bad and lastFetch
	bad       string     // the last token WeChat rejected: never handed out again
	lastFetch time.Time
}

var _ TokenProvider = (*SharedTokens)(nil)

// minRefreshGap keeps a node from asking again and again when the answer
// still expires soon (a clock skew with WeChat, or RefreshBefore set over
// stable_token's 5 minutes).
const minRefreshGap = 30 * time.Second

// NewSharedTokens validates cfg and returns a provider. It does no I/O.
func NewSharedTokens(cfg TokensConfig) (*SharedTokens, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base, _ := normalizeBase("wxapi.NewSharedTokens", cfg.APIBase)
	threshold := cfg.RefreshBefore
	if cfg.RefreshJitter > 0 {
		threshold -= mrand.N(cfg.RefreshJitter)
	}
	return &SharedTokens{
		cfg:       cfg,
		base:      base,
		key:       "wechat:token:" + credentialScope(cfg.AppID, cfg.Secret, base),
		leaseKey:  "wechat:token-refresh:" + credentialScope(cfg.AppID, cfg.Secret, base),
		threshold: threshold,
		log:       cfg.Logger.With("app", cfg.AppID),
		sem:       make(chan struct{}, 1),
	}, nil
}

// Token returns the cached token, refreshing it under the lease when it is
// missing, rejected or near expiry. A node that does not get the lease
// returns the current token if it is still valid, else polls the cache
// with backoff until the refresher has written it, WaitTimeout passes or
// ctx ends.
func (s *SharedTokens) Token(ctx context.Context) (string, error) {
	const op = "wxapi.SharedTokens.Token"
	waitCtx, cancel := context.WithTimeout(ctx, s.cfg.WaitTimeout)
	defer cancel()
	backoff := 20 * time.Millisecond
	for {
		cur, usable, err := s.current(waitCtx)
		if err != nil {
			return "", fmt.Errorf("%s: %w", op, err)
		}
		if usable && !s.due(cur) {
			return cur.Value, nil
		}
		tok, done, err := s.refresh(waitCtx, false, func(t Token, ok bool) bool {
			return !s.usable(t, ok) || s.due(t)
		})
		switch {
		case done && err == nil:
			return tok.Value, nil
		case done && usable:
			s.log.Warn("wxapi: token refresh failed; using the current token", "err", err)
			return cur.Value, nil
		case done:
			return "", fmt.Errorf("%s: %w", op, err)
		case usable:
			return cur.Value, nil // another node is refreshing; ours is still good
		}
		wait := backoff/2 + mrand.N(backoff/2+1)
		backoff = min(backoff*2, time.Second)
		t := time.NewTimer(wait)
		select {
		case <-waitCtx.Done():
			t.Stop()
			return "", fmt.Errorf("%s: no token after waiting for another node's refresh: %w: %w", op, conv.ErrUnavailable, waitCtx.Err())
		case <-t.C:
		}
	}
}

// Invalidate marks bad as rejected and, if it is still the cached token,
// replaces it: stable_token with force_refresh (rate-limited by WeChat, so
// only for the token actually cached), or a new classic token. If another
// node holds the lease, Invalidate leaves the refresh to it and Token waits.
func (s *SharedTokens) Invalidate(ctx context.Context, bad string) error {
	const op = "wxapi.SharedTokens.Invalidate"
	if bad == "" {
		return nil
	}
	s.mu.Lock()
	s.bad = bad
	s.mu.Unlock()
	cur, ok, err := s.cfg.Cache.Get(ctx, s.key)
	if err != nil {
		return fmt.Errorf("%s: cache: %w", op, err)
	}
	if !ok || cur.Value != bad {
		return nil // already replaced
	}
	_, _, err = s.refresh(ctx, true, func(t Token, ok bool) bool { return ok && t.Value == bad })
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// Run refreshes the token ahead of expiry until ctx ends, so that sends
// rarely wait for a refresh. Every node may run it; only the lease holder
// fetches. It returns nil when ctx ends.
func (s *SharedTokens) Run(ctx context.Context) error {
	for {
		wait := s.cfg.CheckEvery
		cur, usable, err := s.current(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			s.log.Warn("wxapi: token cache unreadable", "err", err)
		case !usable || s.due(cur):
			if _, _, err := s.refresh(ctx, false, func(t Token, ok bool) bool {
				return !s.usable(t, ok) || s.due(t)
			}); err != nil && ctx.Err() == nil {
				s.log.Warn("wxapi: background token refresh failed", "err", err)
			}
		default:
			if d := cur.Expires.Sub(s.cfg.Now()) - s.threshold; d > 0 && d < wait {
				wait = d
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// current reads the cache; usable says the token may be handed out.
func (s *SharedTokens) current(ctx context.Context) (Token, bool, error) {
	t, ok, err := s.cfg.Cache.Get(ctx, s.key)
	if err != nil {
		return Token{}, false, fmt.Errorf("cache: %w", err)
	}
	return t, s.usable(t, ok), nil
}

func (s *SharedTokens) usable(t Token, ok bool) bool {
	if !ok || t.Value == "" || !s.cfg.Now().Before(t.Expires) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return t.Value != s.bad
}

// due says a usable token should be refreshed ahead of expiry.
func (s *SharedTokens) due(t Token) bool {
	now := s.cfg.Now()
	if t.Expires.Sub(now) >= s.threshold {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastFetch.IsZero() || now.Sub(s.lastFetch) >= minRefreshGap
}

// refresh fetches a token under the process semaphore and the cluster
// lease, if need still holds for the cached token once both are held.
// done is false when another node holds the lease; then nothing was done.
// When need no longer holds, the cached token is returned.
func (s *SharedTokens) refresh(ctx context.Context, force bool, need func(Token, bool) bool) (tok Token, done bool, err error) {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return Token{}, true, fmt.Errorf("waiting for this node's refresh: %w: %w", conv.ErrUnavailable, ctx.Err())
	}
	defer func() { <-s.sem }()

	got, err := s.cfg.Lease.Acquire(ctx, s.leaseKey, s.cfg.Holder, s.cfg.LeaseTTL)
	if err != nil {
		return Token{}, true, fmt.Errorf("lease: %w", err)
	}
	if !got {
		return Token{}, false, nil
	}
	defer s.release()

	// Read again under the lease: the previous holder wrote before letting go.
	cur, ok, err := s.cfg.Cache.Get(ctx, s.key)
	if err != nil {
		return Token{}, true, fmt.Errorf("cache: %w", err)
	}
	if !need(cur, ok) {
		return cur, true, nil
	}
	nt, err := s.fetch(ctx, force)
	if err != nil {
		return Token{}, true, err
	}
	s.mu.Lock()
	s.lastFetch = s.cfg.Now()
	if nt.Value == s.bad {
		// WeChat handed the rejected token out again (a forced refresh
		// within its interval): trust it again rather than fetching on
		// every call.
		s.bad = ""
	}
	s.mu.Unlock()
	if err := s.cfg.Cache.Set(ctx, s.key, nt); err != nil {
		// The token is good; others will fetch their own.
		s.log.Warn("wxapi: token cache write failed", "err", err)
	}
	return nt, true, nil
}

func (s *SharedTokens) release() {
	r, ok := s.cfg.Lease.(leaseReleaser)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.Release(ctx, s.leaseKey, s.cfg.Holder); err != nil {
		s.log.Warn("wxapi: token lease release failed", "err", err)
	}
}

// maxTokenBytes bounds a token before it goes into a shared cache
// (WeChat's are about 140 bytes; the fake's 128).
const maxTokenBytes = 2048

type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
}

// fetch asks WeChat for a token: stable_token (force only when asked) or
// the classic endpoint. The secret travels in the stable_token body, in the
// classic query; neither reaches an error or a log.
func (s *SharedTokens) fetch(ctx context.Context, force bool) (Token, error) {
	var req *http.Request
	var err error
	path := PathStableToken
	if s.cfg.UseClassicToken {
		path = PathToken
		q := url.Values{"grant_type": {"client_credential"}, "appid": {s.cfg.AppID}, "secret": {s.cfg.Secret}}
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, s.base+path+"?"+q.Encode(), nil)
	} else {
		var body []byte
		body, err = encodeJSON(struct {
			GrantType    string `json:"grant_type"`
			AppID        string `json:"appid"`
			Secret       string `json:"secret"`
			ForceRefresh bool   `json:"force_refresh"`
		}{"client_credential", s.cfg.AppID, s.cfg.Secret, force})
		if err == nil {
			req, err = http.NewRequestWithContext(ctx, http.MethodPost, s.base+path, bytes.NewReader(body))
		}
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
		}
	}
	if err != nil {
		return Token{}, fmt.Errorf("wechat %s: request: %w", path, conv.ErrInvalid)
	}
	start := s.cfg.Now()
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return Token{}, &transportError{Path: path, Err: redactErr(err)}
	}
	defer closeBody(resp)
	if resp.StatusCode != http.StatusOK {
		return Token{}, &HTTPError{Status: resp.StatusCode, Path: path}
	}
	body, err := readAnswer(path, resp)
	if err != nil {
		return Token{}, err
	}
	var ta tokenAnswer
	if err := decodeAnswer(path, body, &ta, s.cfg.Secret); err != nil {
		s.log.Warn("wxapi: token request refused", "path", path, "err", err)
		return Token{}, err
	}
	if ta.AccessToken == "" || len(ta.AccessToken) > maxTokenBytes || ta.ExpiresIn <= 0 || ta.ExpiresIn > 86400*31 {
		return Token{}, fmt.Errorf("wechat %s: malformed token answer: %w", path, conv.ErrUnavailable)
	}
	ttl := time.Duration(ta.ExpiresIn) * time.Second
	s.log.Info("wxapi: access token fetched", "path", path, "force", force, "expires_in", ta.ExpiresIn)
	// Count the lifetime from when we asked: the answer may have been slow.
	return Token{Value: ta.AccessToken, Expires: start.Add(ttl)}, nil
}

// MemoryCache is an in-process TokenCache: for a single node and tests.
// Safe for concurrent use.
type MemoryCache struct {
	mu sync.Mutex
	m  map[string]Token
}

var _ TokenCache = (*MemoryCache)(nil)

// NewMemoryCache returns an empty cache.
func NewMemoryCache() *MemoryCache { return &MemoryCache{m: make(map[string]Token)} }

// Get returns the token stored under key.
func (c *MemoryCache) Get(_ context.Context, key string) (Token, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.m[key]
	return t, ok, nil
}

// Set stores t under key.
func (c *MemoryCache) Set(_ context.Context, key string, t Token) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[key] = t
	return nil
}

// localLease is the in-process default Lease.
type localLease struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]localHold
}

type localHold struct {
	holder  string
	expires time.Time
}

func newLocalLease(now func() time.Time) *localLease {
	return &localLease{now: now, m: make(map[string]localHold)}
}

func (l *localLease) Acquire(_ context.Context, key, holder string, ttl time.Duration) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if h, ok := l.m[key]; ok && h.holder != holder && now.Before(h.expires) {
		return false, nil
	}
	l.m[key] = localHold{holder: holder, expires: now.Add(ttl)}
	return true, nil
}

func (l *localLease) Release(_ context.Context, key, holder string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h, ok := l.m[key]; ok && h.holder == holder {
		delete(l.m, key)
	}
	return nil
}

// credentialScope names the shared token of one set of credentials:
// the AppID and a digest of the secret and API base. A channel that names
// another business's AppID with a secret or api_base of its own gets a
// cache entry of its own, so it can neither read that business's token nor
// overwrite it; the channels of one business (same app, same secret, same
// egress) share one token, as WeChat requires.
func credentialScope(appID, secret, apiBase string) string {
	sum := sha256.Sum256([]byte(secret + "\x00" + apiBase))
	return appID + ":" + hex.EncodeToString(sum[:8])
}

// CacheKey is the TokenCache key of s's token (for tests and operators).
func (s *SharedTokens) CacheKey() string { return s.key }

// LeaseKey is the lease that elects s's refresher.
func (s *SharedTokens) LeaseKey() string { return s.leaseKey }
