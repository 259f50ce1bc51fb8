package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/switchboard-hq/switchboard/core/auth"
	"github.com/switchboard-hq/switchboard/core/conv"
)

// Auth is what the API needs from core/auth.
type Auth interface {
	Login(ctx context.Context, tenantRef, email, password, remoteAddr string) (string, conv.Token, conv.Agent, error)
	Authenticate(ctx context.Context, bearer string) (conv.Agent, conv.Token, error)
	Revoke(ctx context.Context, tenant conv.TenantID, id conv.TokenID) error
}

// Check is one readiness dependency (store, bus, redis).
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// Config configures a Server.
type Config struct {
	Auth   Auth
	Checks []Check
	Logger *slog.Logger
	// TrustProxy makes the client address come from X-Forwarded-For (set
	// it only behind a proxy that overwrites that header).
	TrustProxy bool
	// Console, when set, serves the agent API and websocket.
	Console *Console
}

// Server serves the HTTP API.
type Server struct {
	cfg      Config
	mux      *http.ServeMux
	draining atomic.Bool
}

// MaxBody bounds JSON request bodies.
const MaxBody = 64 << 10

// New returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Auth == nil {
		return nil, errors.New("api: Config.Auth is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.HandleFunc("POST /v1/auth/login", s.login)
	s.mux.HandleFunc("POST /v1/auth/logout", s.authed(s.logout))
	s.mux.HandleFunc("GET /v1/auth/me", s.authed(s.me))
	if cfg.Console != nil {
		if err := cfg.Console.validate(); err != nil {
			return nil, err
		}
		s.routeConsole()
	}
	return s, nil
}

// Handle registers an extra route (connectors' webhooks, later APIs).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Drain makes /readyz fail so load balancers stop sending new work while
// the process finishes what it has.
func (s *Server) Drain() { s.draining.Store(true) }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	s.mux.ServeHTTP(w, r)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{}
	ready := !s.draining.Load()
	if !ready {
		checks["node"] = "draining"
	}
	for _, c := range s.cfg.Checks {
		if err := c.Fn(ctx); err != nil {
			checks[c.Name] = err.Error()
			ready = false
		} else {
			checks[c.Name] = "ok"
		}
	}
	status, code := "ready", http.StatusOK
	if !ready {
		status, code = "not ready", http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{"status": status, "checks": checks})
}

type loginRequest struct {
	Tenant   string `json:"tenant"`
	Email    string `json:"email"`
	Password string `json:"password"`
}

type loginResponse struct {
	Token     string     `json:"token"`
	ExpiresAt time.Time  `json:"expires_at"`
	Agent     conv.Agent `json:"agent"`
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if err := readJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Tenant == "" || req.Email == "" || req.Password == "" {
		s.writeError(w, r, fmt.Errorf("%w: tenant, email and password are required", conv.ErrInvalid))
		return
	}
	bearer, tok, agent, err := s.cfg.Auth.Login(r.Context(), req.Tenant, req.Email, req.Password, s.clientAddr(r))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, loginResponse{Token: bearer, ExpiresAt: tok.ExpiresAt, Agent: agent})
}

type session struct {
	agent conv.Agent
	token conv.Token
}

type sessionKey struct{}

// authed wraps h so it runs only for a valid bearer token.
func (s *Server) authed(h func(http.ResponseWriter, *http.Request, session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			s.writeError(w, r, fmt.Errorf("%w: missing Authorization: Bearer token", conv.ErrUnauthorized))
			return
		}
		agent, tok, err := s.cfg.Auth.Authenticate(r.Context(), strings.TrimSpace(bearer))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		h(w, r, session{agent: agent, token: tok})
	}
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, sess session) {
	if err := s.cfg.Auth.Revoke(r.Context(), sess.agent.TenantID, sess.token.ID); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) me(w http.ResponseWriter, r *http.Request, sess session) {
	writeJSON(w, http.StatusOK, sess.agent)
}

func (s *Server) clientAddr(r *http.Request) string {
	if s.cfg.TrustProxy {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			first, _, _ := strings.Cut(xff, ",")
			return strings.TrimSpace(first)
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// readJSON decodes a bounded JSON body into v.
func readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("%w: Content-Type must be application/json", conv.ErrInvalid)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("%w: body larger than %d bytes", errTooLarge, MaxBody)
		}
		return fmt.Errorf("%w: body is not valid JSON: %v", conv.ErrInvalid, err)
	}
	return nil
}

// Error kinds the HTTP layer adds to conv's.
var (
	// ErrTooLarge: a body or upload over its limit (413).
	ErrTooLarge = errors.New("too large")
	// ErrUnsupportedType: an upload type outside the allowlist (415).
	ErrUnsupportedType = errors.New("unsupported type")
	// ErrDenied: refused for a reason the caller may know (403): an origin
	// not allowed, a wrong identity hash. Never for another tenant's ids,
	// which are 404.
	ErrDenied = errors.New("denied")
)

var errTooLarge = ErrTooLarge

// ReadJSON decodes a bounded JSON body into v (unknown fields refused).
func ReadJSON(w http.ResponseWriter, r *http.Request, v any) error { return readJSON(w, r, v) }

// WriteJSON writes v with status code.
func WriteJSON(w http.ResponseWriter, code int, v any) { writeJSON(w, code, v) }

// WriteError writes err in the API's error shape (see docs/api.md); log
// receives internal errors.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	(&Server{cfg: Config{Logger: log}}).writeError(w, r, err)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// apiError is the body of every error response.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// writeError is the one place that maps error kinds to HTTP. The user sees
// the message; internal errors are logged and shown generically.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code, status := "internal", http.StatusInternalServerError
	var rl *auth.RateLimitedError
	switch {
	case errors.As(err, &rl):
		code, status = "rate_limited", http.StatusTooManyRequests
		w.Header().Set("Retry-After", strconv.Itoa(int(rl.RetryAfter.Seconds())+1))
	case errors.Is(err, errTooLarge):
		code, status = "too_large", http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrUnsupportedType):
		code, status = "unsupported_type", http.StatusUnsupportedMediaType
	case errors.Is(err, ErrDenied):
		code, status = "forbidden", http.StatusForbidden
	case errors.Is(err, conv.ErrInvalid):
		code, status = "invalid", http.StatusBadRequest
	case errors.Is(err, conv.ErrUnauthorized):
		code, status = "unauthorized", http.StatusUnauthorized
	case errors.Is(err, conv.ErrNotFound), errors.Is(err, conv.ErrForbidden):
		// Another tenant's id answers 404, never 403.
		code, status = "not_found", http.StatusNotFound
	case errors.Is(err, conv.ErrConflict):
		code, status = "conflict", http.StatusConflict
	case errors.Is(err, conv.ErrRateLimited):
		code, status = "rate_limited", http.StatusTooManyRequests
	case errors.Is(err, conv.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		code, status = "unavailable", http.StatusServiceUnavailable
	}
	var body apiError
	body.Error.Code = code
	if status == http.StatusInternalServerError {
		s.cfg.Logger.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		body.Error.Message = "internal error"
	} else {
		body.Error.Message = userMessage(err)
	}
	writeJSON(w, status, body)
}

// userMessage strips the operation prefixes ("auth.Login: ") from err, keeping
// the kind and reason a user can act on.
func userMessage(err error) string {
	msg := err.Error()
	for {
		i := strings.Index(msg, ": ")
		if i < 0 || strings.ContainsAny(msg[:i], " ") {
			return msg
		}
		msg = msg[i+2:]
	}
}
