package wechattest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// API paths the fake serves. The mini-program "business" paths are the
// newer spellings of send and typing that mini-program docs give; both
// behave the same.
const (
	PathToken          = "/cgi-bin/token"
	PathStableToken    = "/cgi-bin/stable_token"
	PathSend           = "/cgi-bin/message/custom/send"
	PathBusinessSend   = "/cgi-bin/message/custom/business/send"
	PathTyping         = "/cgi-bin/message/custom/typing"
	PathBusinessTyping = "/cgi-bin/message/custom/business/typing"
	PathMediaUpload    = "/cgi-bin/media/upload"
	PathMediaGet       = "/cgi-bin/media/get"
	PathUserInfo       = "/cgi-bin/user/info"

	// videoPath serves the bytes behind the video_url media/get answers
	// for video media (WeChat hands out a download URL instead of bytes).
	videoPath = "/wechattest/video/"
)

// Media types media/upload accepts (the "type" query parameter).
const (
	MediaImage = "image"
	MediaVoice = "voice"
	MediaVideo = "video"
	MediaThumb = "thumb"
)

// Config tunes the fake. The zero value is WeChat as documented; every
// figure is here because WeChat changes them and tests need small ones.
type Config struct {
	// Now is the fake's clock (default time.Now). Use a *Clock to move time.
	Now func() time.Time
	// Logger gets one debug line per refused call; tokens are never logged
	// (default: discard).
	Logger *slog.Logger

	// TokenTTL is the lifetime of an access token (default 7200 s).
	TokenTTL time.Duration
	// TokenOverlap is how long a token stays valid after a newer one was
	// issued by /cgi-bin/token, and how early stable_token rolls its token
	// over before expiry (default 5 min).
	TokenOverlap time.Duration
	// ForceRefreshPerDay caps stable_token force_refresh calls per app per
	// day (WeChat day, UTC+8); over it, errcode 45009 (default 20,
	// negative: unlimited).
	ForceRefreshPerDay int
	// ForceRefreshInterval: a force_refresh sooner than this after the last
	// one returns the current token without refreshing, as documented
	// (default 30 s, negative: no interval).
	ForceRefreshInterval time.Duration

	// ReplyWindow and RepliesPerMessage: after a user message, the app may
	// send RepliesPerMessage customer-service messages within ReplyWindow
	// (default 48 h and 5).
	ReplyWindow       time.Duration
	RepliesPerMessage int
	// EventReplyWindow and RepliesPerEvent: the grant after subscribe, SCAN
	// or a menu CLICK (default 1 min and 3).
	EventReplyWindow time.Duration
	RepliesPerEvent  int
	// SessionReplyWindow and RepliesPerSession: the grant after a mini
	// program user_enter_tempsession event (default 1 min and 1).
	SessionReplyWindow time.Duration
	RepliesPerSession  int
	// TypingWindow: "Typing" needs a message exchanged with the user within
	// this long, else 45080 (default 30 s, negative: no check).
	TypingWindow time.Duration
	// TypingDuration: a Typing state lasts this long; another Typing within
	// it is 45081 (default 15 s, negative: no check).
	TypingDuration time.Duration

	// PerMinuteLimit caps authenticated API calls per app per clock minute
	// (errcode 45011); 0 is unlimited.
	PerMinuteLimit int
	// DailyQuota caps authenticated API calls per app per WeChat day
	// (errcode 45009); 0 is unlimited.
	DailyQuota int
	// TokenDailyQuota caps /cgi-bin/token calls per app per day (45009);
	// 0 is unlimited.
	TokenDailyQuota int

	// MediaTTL is how long temporary media live (default 3 days).
	MediaTTL time.Duration
	// MediaMaxBytes are the upload size caps per media type (defaults:
	// image 10 MB, voice 2 MB, video 10 MB, thumb 64 KB). Missing types
	// take the default.
	MediaMaxBytes map[string]int64
	// MaxTextBytes caps text.content of a customer-service text message
	// (errcode 45002); 0 is unchecked.
	MaxTextBytes int
	// MaxArticles caps news articles (errcode 45008; default 1, the
	// current documented figure).
	MaxArticles int
	// MaxBodyBytes caps JSON request bodies (default 1 MB).
	MaxBodyBytes int64
}

func (c *Config) setDefaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defInt := func(n *int, v int) {
		if *n == 0 {
			*n = v
		}
	}
	def(&c.TokenTTL, 7200*time.Second)
	def(&c.TokenOverlap, 5*time.Minute)
	defInt(&c.ForceRefreshPerDay, 20)
	def(&c.ForceRefreshInterval, 30*time.Second)
	def(&c.ReplyWindow, 48*time.Hour)
	defInt(&c.RepliesPerMessage, 5)
	def(&c.EventReplyWindow, time.Minute)
	defInt(&c.RepliesPerEvent, 3)
	def(&c.SessionReplyWindow, time.Minute)
	defInt(&c.RepliesPerSession, 1)
	def(&c.TypingWindow, 30*time.Second)
	def(&c.TypingDuration, 15*time.Second)
	def(&c.MediaTTL, 72*time.Hour)
	defInt(&c.MaxArticles, 1)
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	limits := map[string]int64{
		MediaImage: 10 << 20,
		MediaVoice: 2 << 20,
		MediaVideo: 10 << 20,
		MediaThumb: 64 << 10,
	}
	for k, v := range c.MediaMaxBytes {
		limits[k] = v
	}
	c.MediaMaxBytes = limits
}

// Validate reports settings the fake cannot honour; New calls it after
// filling defaults, so zero fields are fine there.
func (c Config) Validate() error {
	switch {
	case c.TokenTTL <= 0, c.TokenOverlap < 0:
		return fmt.Errorf("wechattest.Config: TokenTTL must be positive and TokenOverlap not negative: %w", conv.ErrInvalid)
	case c.ReplyWindow < 0, c.EventReplyWindow < 0, c.SessionReplyWindow < 0:
		return fmt.Errorf("wechattest.Config: reply windows must not be negative: %w", conv.ErrInvalid)
	case c.RepliesPerMessage < 0, c.RepliesPerEvent < 0, c.RepliesPerSession < 0:
		return fmt.Errorf("wechattest.Config: reply counts must not be negative: %w", conv.ErrInvalid)
	case c.PerMinuteLimit < 0, c.DailyQuota < 0, c.TokenDailyQuota < 0:
		return fmt.Errorf("wechattest.Config: quotas must not be negative (0 is unlimited): %w", conv.ErrInvalid)
	case c.MediaTTL <= 0, c.MaxBodyBytes <= 0, c.MaxArticles <= 0, c.MaxTextBytes < 0:
		return fmt.Errorf("wechattest.Config: MediaTTL, MaxBodyBytes and MaxArticles must be positive: %w", conv.ErrInvalid)
	}
	for k, v := range c.MediaMaxBytes {
		if v <= 0 {
			return fmt.Errorf("wechattest.Config: MediaMaxBytes[%q] must be positive: %w", k, conv.ErrInvalid)
		}
	}
	return nil
}

// Sent is one customer-service message the fake accepted.
type Sent struct {
	AppID   string
	Token   string // the access token the call used (for asserting which one)
	Path    string // PathSend or PathBusinessSend
	ToUser  string
	MsgType string
	Body    json.RawMessage // the request body as received
	At      time.Time
}

// Typing is one accepted typing command.
type Typing struct {
	AppID   string
	ToUser  string
	Command string // "Typing" or "CancelTyping"
	At      time.Time
}

// Server is the fake WeChat API. It is an http.Handler; Start runs it on
// a random local port. All methods are safe for concurrent use.
type Server struct {
	cfg  Config
	log  *slog.Logger
	done chan struct{} // closed by Close: releases hanging requests
	once sync.Once
	ts   *httptest.Server

	mu      sync.Mutex // guards everything below; never held across I/O
	apps    map[string]*app
	tokens  map[string]*tokenRec
	calls   map[string]int
	sent    []Sent
	typing  []Typing
	issued  int
	faults  []*fault
	changed chan struct{} // closed and replaced whenever a call is recorded
}

type appKind int

const (
	kindOfficial appKind = iota
	kindMiniProgram
)

type app struct {
	id         string
	secret     string
	kind       appKind
	configured bool // AddApp/AddMiniProgram was called (lazy apps have no secret)
	users      map[string]*user
	media      map[string]*mediaRec

	token      string // current /cgi-bin/token token
	stable     string // current stable_token token
	forceDay   string
	forceCount int
	lastForce  time.Time

	minute      int64
	minuteCalls int
	day         string
	dayCalls    int
	tokenDay    string
	tokenCalls  int
}

type tokenRec struct {
	appID    string
	stable   bool
	expires  time.Time
	deadline time.Time // set when superseded; zero while current
}

type faultKind int

const (
	faultErrcode faultKind = iota
	faultHTTP
	faultHang
)

type fault struct {
	path   string // "" matches every API path
	kind   faultKind
	code   int
	msg    string
	status int
	left   int // <0: until ClearFaults
}

// New returns a fake WeChat API server (not listening: use it as an
// http.Handler, or call Start).
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		done:    make(chan struct{}),
		apps:    make(map[string]*app),
		tokens:  make(map[string]*tokenRec),
		calls:   make(map[string]int),
		changed: make(chan struct{}),
	}, nil
}

// Start runs a new fake on httptest with a random port and closes it when
// the test ends. Use s.URL() as the connector's api_base.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("wechattest.Start: %v", err)
	}
	s.ts = httptest.NewServer(s)
	t.Cleanup(s.Close)
	return s
}

// URL is the base URL of a started server ("" for one made by New).
func (s *Server) URL() string {
	if s.ts == nil {
		return ""
	}
	return s.ts.URL
}

// Client returns an HTTP client for a started server (http.DefaultClient
// for one made by New).
func (s *Server) Client() *http.Client {
	if s.ts == nil {
		return http.DefaultClient
	}
	return s.ts.Client()
}

// Close releases hanging requests and, for a started server, shuts it down.
// Safe to call twice.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.done)
		if s.ts != nil {
			s.ts.Close()
		}
	})
}

// AddApp registers an Official Account app.
func (s *Server) AddApp(appID, secret string) { s.addApp(appID, secret, kindOfficial) }

// AddMiniProgram registers a mini program: its customer-service messages
// are text, image, link and miniprogrampage; it has no user/info (48001);
// and it uploads images only.
func (s *Server) AddMiniProgram(appID, secret string) { s.addApp(appID, secret, kindMiniProgram) }

func (s *Server) addApp(appID, secret string, kind appKind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.appLocked(appID)
	a.secret, a.kind, a.configured = secret, kind, true
}

// appLocked returns the app, creating an unconfigured one so that users,
// media and interactions can be set up in any order.
func (s *Server) appLocked(appID string) *app {
	a := s.apps[appID]
	if a == nil {
		a = &app{id: appID, users: make(map[string]*user), media: make(map[string]*mediaRec)}
		s.apps[appID] = a
	}
	return a
}

// FailNext makes the next n calls of path (e.g. PathSend; "" for any path)
// answer {"errcode":errcode,"errmsg":errmsg} before anything else is
// checked. n < 0 keeps failing until ClearFaults.
func (s *Server) FailNext(path string, errcode int, errmsg string, n int) {
	s.addFault(&fault{path: path, kind: faultErrcode, code: errcode, msg: errmsg, left: n})
}

// FailHTTP makes the next n calls of path ("" for any) answer the HTTP
// status (e.g. 502) with a plain-text body, like a broken proxy in front
// of WeChat. n < 0 keeps failing until ClearFaults.
func (s *Server) FailHTTP(path string, status, n int) {
	s.addFault(&fault{path: path, kind: faultHTTP, status: status, left: n})
}

// Hang makes the next n calls of path ("" for any) never answer: the
// request blocks until the client gives up (its context ends or it
// disconnects) or the server is closed. n < 0 hangs until ClearFaults.
func (s *Server) Hang(path string, n int) {
	s.addFault(&fault{path: path, kind: faultHang, left: n})
}

// ClearFaults removes every pending FailNext, FailHTTP and Hang.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

func (s *Server) addFault(f *fault) {
	if f.left == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f)
}

// Calls counts the requests made to path (every request, refused or not).
func (s *Server) Calls(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[path]
}

// Sent returns the customer-service messages accepted so far, in order.
func (s *Server) Sent() []Sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sent(nil), s.sent...)
}

// Typing returns the typing commands accepted so far, in order.
func (s *Server) Typing() []Typing {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Typing(nil), s.typing...)
}

// TokenIssued counts access tokens minted, by /cgi-bin/token and
// stable_token together, over all apps.
func (s *Server) TokenIssued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued
}

// WaitSent waits until at least n messages were accepted and returns them;
// the test fails if that takes longer than timeout.
func (s *Server) WaitSent(t testing.TB, n int, timeout time.Duration) []Sent {
	t.Helper()
	var out []Sent
	s.wait(t, timeout, fmt.Sprintf("%d sent messages", n), func() bool {
		if len(s.sent) >= n {
			out = append([]Sent(nil), s.sent...)
			return true
		}
		return false
	})
	return out
}

// WaitCalls waits until path was called at least n times.
func (s *Server) WaitCalls(t testing.TB, path string, n int, timeout time.Duration) {
	t.Helper()
	s.wait(t, timeout, fmt.Sprintf("%d calls of %s", n, path), func() bool { return s.calls[path] >= n })
}

// wait re-checks cond (under s.mu) whenever a call is recorded, until it
// holds or timeout passes.
func (s *Server) wait(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		ok := cond()
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("wechattest: waited %v for %s", timeout, what)
			return
		}
	}
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) now() time.Time { return s.cfg.Now() }

type handlerFunc func(s *Server, w http.ResponseWriter, r *http.Request)

var routes = map[string]handlerFunc{
	PathToken:          (*Server).handleToken,
	PathStableToken:    (*Server).handleStableToken,
	PathSend:           (*Server).handleSend,
	PathBusinessSend:   (*Server).handleSend,
	PathTyping:         (*Server).handleTyping,
	PathBusinessTyping: (*Server).handleTyping,
	PathMediaUpload:    (*Server).handleUpload,
	PathMediaGet:       (*Server).handleMediaGet,
	PathUserInfo:       (*Server).handleUserInfo,
}

// ServeHTTP answers WeChat API paths; anything else is 404.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, videoPath) {
		s.serveVideo(w, r)
		return
	}
	h := routes[r.URL.Path]
	if h == nil {
		http.NotFound(w, r)
		return
	}
	if f := s.begin(r.URL.Path); f != nil {
		switch f.kind {
		case faultHang:
			select {
			case <-r.Context().Done():
			case <-s.done:
			}
			return
		case faultHTTP:
			http.Error(w, http.StatusText(f.status), f.status)
			return
		default:
			s.writeErr(w, r, apiErr{f.code, f.msg})
			return
		}
	}
	h(s, w, r)
}

// begin records the call and takes the first matching fault.
func (s *Server) begin(path string) *fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[path]++
	s.notifyLocked()
	for i, f := range s.faults {
		if f.path != "" && f.path != path {
			continue
		}
		cp := *f
		if f.left > 0 {
			f.left--
			if f.left == 0 {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
			}
		}
		return &cp
	}
	return nil
}

// apiErr is a WeChat error answer. msg without " rid:" gets one appended,
// as WeChat does, so clients cannot get away with matching errmsg exactly.
type apiErr struct {
	code int
	msg  string
}

// Error answers WeChat returns; the texts follow what WeChat sends.
var (
	errInvalidCredential = apiErr{40001, "invalid credential, access_token is invalid or not latest"}
	errGrantType         = apiErr{40002, "invalid grant_type"}
	errOpenID            = apiErr{40003, "invalid openid"}
	errMediaType         = apiErr{40004, "invalid media type"}
	errFileType          = apiErr{40005, "invalid file type"}
	errMediaID           = apiErr{40007, "invalid media_id"}
	errMsgType           = apiErr{40008, "invalid message type"}
	errAppID             = apiErr{40013, "invalid appid"}
	errSecret            = apiErr{40125, "invalid appsecret"}
	errTokenMissing      = apiErr{41001, "access_token missing"}
	errAppIDMissing      = apiErr{41002, "appid missing"}
	errSecretMissing     = apiErr{41004, "appsecret missing"}
	errMediaMissing      = apiErr{41005, "media data missing"}
	errMediaIDMissing    = apiErr{41006, "media_id missing"}
	errOpenIDMissing     = apiErr{41009, "missing openid"}
	errTokenExpired      = apiErr{42001, "access_token expired"}
	errRequirePost       = apiErr{43002, "require POST method"}
	errRequireSubscribe  = apiErr{43004, "require subscribe"}
	errEmptyMedia        = apiErr{44001, "empty media data"}
	errEmptyPost         = apiErr{44002, "empty post data"}
	errEmptyNews         = apiErr{44003, "empty news data"}
	errEmptyContent      = apiErr{44004, "empty content"}
	errContentSize       = apiErr{45002, "content size out of limit"}
	errArticleSize       = apiErr{45008, "article size out of limit"}
	errDailyQuota        = apiErr{45009, "reach max api daily quota limit"}
	errMinuteQuota       = apiErr{45011, "api minute-quota reach-limit mustslower retry next minute"}
	errOutOfWindow       = apiErr{45015, "response out of time limit or subscription is canceled"}
	errOutOfCount        = apiErr{45047, "out of response count limit"}
	errCommand           = apiErr{45072, "command invalid"}
	errTypingWindow      = apiErr{45080, "need sending message to user in 30 seconds before typing"}
	errAlreadyTyping     = apiErr{45081, "already in typing status"}
	errDataFormat        = apiErr{47001, "data format error"}
	errUnauthorized      = apiErr{48001, "api unauthorized"}
)

const jsonContentType = "application/json; encoding=utf-8"

func (s *Server) writeErr(w http.ResponseWriter, r *http.Request, e apiErr) {
	msg := e.msg
	if e.code != 0 && !strings.Contains(msg, "rid:") {
		msg += " rid: " + rid()
	}
	s.log.Debug("wechattest: refused", "path", r.URL.Path, "errcode", e.code)
	writeJSON(w, map[string]any{"errcode": e.code, "errmsg": msg})
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", jsonContentType)
	_, _ = w.Write(b)
}

func writeOK(w http.ResponseWriter) { writeJSON(w, map[string]any{"errcode": 0, "errmsg": "ok"}) }

// rid looks like the request id WeChat appends to error messages.
func rid() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%08x-%08x-%08x", binary.BigEndian.Uint32(b[0:]), binary.BigEndian.Uint32(b[4:]), binary.BigEndian.Uint32(b[8:]))
}

// randomID returns n random bytes as URL-safe base64: the shape of
// WeChat's access tokens and media ids.
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// chinaTime is WeChat's day boundary for daily quotas.
var chinaTime = time.FixedZone("CST", 8*3600)

func dayKey(t time.Time) string { return t.In(chinaTime).Format(time.DateOnly) }

// authLocked checks the access_token query parameter and charges the app's
// quotas. s.mu must be held.
func (s *Server) authLocked(r *http.Request) (*app, string, *apiErr) {
	tok := r.URL.Query().Get("access_token")
	if tok == "" {
		return nil, "", &errTokenMissing
	}
	rec := s.tokens[tok]
	if rec == nil {
		return nil, "", &errInvalidCredential
	}
	now := s.now()
	if !now.Before(rec.expires) {
		return nil, "", &errTokenExpired
	}
	if !rec.deadline.IsZero() && !now.Before(rec.deadline) {
		return nil, "", &errInvalidCredential
	}
	a := s.apps[rec.appID]
	if e := s.chargeLocked(a, now); e != nil {
		return nil, "", e
	}
	return a, tok, nil
}

func (s *Server) chargeLocked(a *app, now time.Time) *apiErr {
	if m := now.Unix() / 60; a.minute != m {
		a.minute, a.minuteCalls = m, 0
	}
	if d := dayKey(now); a.day != d {
		a.day, a.dayCalls = d, 0
	}
	if s.cfg.DailyQuota > 0 && a.dayCalls >= s.cfg.DailyQuota {
		return &errDailyQuota
	}
	if s.cfg.PerMinuteLimit > 0 && a.minuteCalls >= s.cfg.PerMinuteLimit {
		return &errMinuteQuota
	}
	a.minuteCalls++
	a.dayCalls++
	return nil
}

// readJSONBody reads a bounded POST body; it returns an error answer for a
// wrong method, an empty body, an oversized one or one that is not a JSON
// object.
func (s *Server) readJSONBody(r *http.Request) (map[string]json.RawMessage, []byte, *apiErr) {
	if r.Method != http.MethodPost {
		return nil, nil, &errRequirePost
	}
	body, err := readCapped(r.Body, s.cfg.MaxBodyBytes)
	if err != nil {
		return nil, nil, &errDataFormat
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil, nil, &errEmptyPost
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return nil, nil, &errDataFormat
	}
	return obj, body, nil
}

// str decodes obj[key] as a JSON string; ok is false when the key is
// missing or not a string.
func str(obj map[string]json.RawMessage, key string) (string, bool) {
	raw, ok := obj[key]
	if !ok {
		return "", false
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", false
	}
	return v, true
}

// object decodes obj[key] as a JSON object.
func object(obj map[string]json.RawMessage, key string) (map[string]json.RawMessage, bool) {
	raw, ok := obj[key]
	if !ok {
		return nil, false
	}
	var v map[string]json.RawMessage
	if err := json.Unmarshal(raw, &v); err != nil || v == nil {
		return nil, false
	}
	return v, true
}
