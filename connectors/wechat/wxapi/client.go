package wxapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// App kinds: what differs is the link message (mini program "link", Official
// Account a one-article "news"), the mini-program page (an Official Account
// names the mini program's appid) and user/info (Official Accounts only).
const (
	KindOA = "oa" // Official Account (channel kind wechat_oa)
	KindMP = "mp" // Mini Program customer service (channel kind wechat_mp)
)

// API paths the Client calls.
const (
	PathSend        = "/cgi-bin/message/custom/send"
	PathTyping      = "/cgi-bin/message/custom/typing"
	PathMediaUpload = "/cgi-bin/media/upload"
	PathMediaGet    = "/cgi-bin/media/get"
	PathUserInfo    = "/cgi-bin/user/info"
)

// Config configures a Client: one per app (one per channel).
type Config struct {
	AppID string
	// Secret is used only to build the default Tokens.
	Secret string
	// Kind is KindOA or KindMP (required).
	Kind string
	// APIBase is WeChat's API root (default DefaultAPIBase) or an egress
	// proxy, path prefix allowed (http://proxy/wx); http(s), trailing slash
	// dropped.
	APIBase string
	// HTTPClient makes the calls (default: 10 s timeout).
	HTTPClient *http.Client
	// Tokens provides access tokens. Default: a SharedTokens with a
	// MemoryCache built from AppID, Secret, APIBase and HTTPClient — right
	// for a single node only.
	Tokens TokenProvider
	// Logger gets one debug line per call and warnings; never tokens
	// (default: discard).
	Logger *slog.Logger
	// Now is the breaker's clock, and the default Tokens' (default time.Now).
	Now func() time.Time
	// BreakerThreshold: this many consecutive retryable failures open the
	// circuit (default 5; negative: no breaker).
	BreakerThreshold int
	// BreakerCooldown: how long an open circuit refuses calls before one
	// probe is let through (default 30 s).
	BreakerCooldown time.Duration
	// MaxUploadBytes caps UploadMedia's input, which is held in memory so
	// the call can be retried with a fresh token (default 10 MiB, WeChat's
	// largest temporary media).
	MaxUploadBytes int64
}

func (c *Config) setDefaults() {
	if c.HTTPClient == nil {
		c.HTTPClient = defaultHTTPClient()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.BreakerThreshold == 0 {
		c.BreakerThreshold = 5
	}
	if c.BreakerCooldown == 0 {
		c.BreakerCooldown = 30 * time.Second
	}
	if c.MaxUploadBytes == 0 {
		c.MaxUploadBytes = 10 << 20
	}
}

// Validate reports a config New cannot work with (after defaults).
func (c Config) Validate() error {
	const op = "wxapi.Config"
	switch {
	case c.AppID == "":
		return fmt.Errorf("%s: %w: AppID is required", op, conv.ErrInvalid)
	case c.Kind != KindOA && c.Kind != KindMP:
		return fmt.Errorf("%s: %w: Kind must be %q or %q, not %q", op, conv.ErrInvalid, KindOA, KindMP, c.Kind)
	case c.Tokens == nil && c.Secret == "":
		return fmt.Errorf("%s: %w: Tokens or Secret is required", op, conv.ErrInvalid)
	case c.BreakerCooldown <= 0 || c.MaxUploadBytes <= 0:
		return fmt.Errorf("%s: %w: BreakerCooldown and MaxUploadBytes must be positive", op, conv.ErrInvalid)
	}
	_, err := normalizeBase(op, c.APIBase)
	return err
}

// Client calls WeChat's server API for one app. Safe for concurrent use.
type Client struct {
	appID  string
	kind   string
	secret string
	base   string
	hc     *http.Client
	tokens TokenProvider
	log    *slog.Logger
	maxUp  int64
	br     *breaker
}

// New validates cfg and returns a Client. It does no I/O.
func New(cfg Config) (*Client, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base, _ := normalizeBase("wxapi.New", cfg.APIBase)
	if cfg.Tokens == nil {
		st, err := NewSharedTokens(TokensConfig{
			AppID: cfg.AppID, Secret: cfg.Secret, APIBase: base,
			HTTPClient: cfg.HTTPClient, Logger: cfg.Logger, Now: cfg.Now,
		})
		if err != nil {
			return nil, fmt.Errorf("wxapi.New: %w", err)
		}
		cfg.Tokens = st
	}
	log := cfg.Logger.With("app", cfg.AppID)
	return &Client{
		appID:  cfg.AppID,
		kind:   cfg.Kind,
		secret: cfg.Secret,
		base:   base,
		hc:     cfg.HTTPClient,
		tokens: cfg.Tokens,
		log:    log,
		maxUp:  cfg.MaxUploadBytes,
		br:     newBreaker(cfg.BreakerThreshold, cfg.BreakerCooldown, cfg.Now, log),
	}, nil
}

// AppID is the app this client calls for.
func (c *Client) AppID() string { return c.appID }

// Kind is KindOA or KindMP.
func (c *Client) Kind() string { return c.kind }

// request is one API call, replayable for the retry with a fresh token.
type request struct {
	op     string // "wxapi.SendText", for error text
	method string
	path   string
	query  url.Values // without access_token
	body   []byte
	ctype  string
}

// exec runs r through the breaker, with a token, retrying once with a
// fresh token if WeChat rejects the first. handle reads a 200 answer.
func (c *Client) exec(ctx context.Context, r request, handle func(resp *http.Response, tok string) error) error {
	probe, err := c.br.allow()
	if err != nil {
		return fmt.Errorf("%s: %w", r.op, err)
	}
	err = c.attempt(ctx, r, handle)
	c.br.done(probe, err)
	if err != nil {
		return fmt.Errorf("%s: %w", r.op, err)
	}
	return nil
}

func (c *Client) attempt(ctx context.Context, r request, handle func(*http.Response, string) error) error {
	tok, err := c.tokens.Token(ctx)
	if err != nil {
		return fmt.Errorf("access token: %w", err)
	}
	err = c.once(ctx, r, tok, handle)
	var ae *APIError
	if !errors.As(err, &ae) || !tokenRejected(ae.Code) {
		return err
	}
	c.log.Info("wxapi: access token rejected; refreshing and retrying once", "path", r.path, "errcode", ae.Code)
	if ierr := c.tokens.Invalidate(ctx, tok); ierr != nil {
		c.log.Warn("wxapi: token invalidation failed", "err", ierr)
	}
	tok2, err := c.tokens.Token(ctx)
	if err != nil {
		return fmt.Errorf("access token after errcode %d: %w", ae.Code, err)
	}
	return c.once(ctx, r, tok2, handle)
}

// once makes one HTTP request with tok.
func (c *Client) once(ctx context.Context, r request, tok string, handle func(*http.Response, string) error) error {
	q := url.Values{}
	for k, v := range r.query {
		q[k] = v
	}
	q.Set("access_token", tok)
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, c.base+r.path+"?"+q.Encode(), body)
	if err != nil {
		return fmt.Errorf("wechat %s: request: %w", r.path, conv.ErrInvalid)
	}
	if r.ctype != "" {
		req.Header.Set("Content-Type", r.ctype)
	}
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		err = &transportError{Path: r.path, Err: redactErr(err)}
		c.log.Debug("wxapi: call failed", "path", r.path, "err", err, "took", time.Since(start))
		return err
	}
	defer closeBody(resp)
	if resp.StatusCode != http.StatusOK {
		err = &HTTPError{Status: resp.StatusCode, Path: r.path}
	} else {
		err = handle(resp, tok)
	}
	var ae *APIError
	if errors.As(err, &ae) {
		ae.Msg = cleanMsg(ae.Msg, tok, c.secret)
	}
	c.log.Debug("wxapi: call", "path", r.path, "status", resp.StatusCode, "err", err, "took", time.Since(start))
	return err
}

// jsonHandler decodes a JSON answer into out (nil: errcode only).
func jsonHandler(path string, out any) func(*http.Response, string) error {
	return func(resp *http.Response, tok string) error {
		body, err := readAnswer(path, resp)
		if err != nil {
			return err
		}
		return decodeAnswer(path, body, out, tok)
	}
}

// postJSON sends v to path and checks the errcode.
func (c *Client) postJSON(ctx context.Context, op, path string, v any) error {
	body, err := encodeJSON(v)
	if err != nil {
		return fmt.Errorf("%s: encode: %w: %v", op, conv.ErrInvalid, err)
	}
	return c.exec(ctx, request{op: op, method: http.MethodPost, path: path, body: body, ctype: "application/json"}, jsonHandler(path, nil))
}
