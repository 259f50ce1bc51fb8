package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// Limiter counts attempts per key in a window (store/memory, store/redis).
type Limiter interface {
	Allow(ctx context.Context, key string, limit int, window time.Duration) (allowed bool, retryAfter time.Duration, err error)
}

// Config configures a Service.
type Config struct {
	Store   storage.Store
	Limiter Limiter
	IDs     *conv.IDGen
	Logger  *slog.Logger
	Now     func() time.Time
	// TTL is how long a login token lives (default 12h).
	TTL time.Duration
	// PerAccount and PerAddress cap login attempts per 15 minutes for one
	// (tenant, email) and for one client address (defaults 10 and 100).
	PerAccount, PerAddress int
}

// Service logs agents in and authenticates their bearer tokens.
type Service struct{ cfg Config }

// New validates cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 12 * time.Hour
	}
	if cfg.PerAccount <= 0 {
		cfg.PerAccount = 10
	}
	if cfg.PerAddress <= 0 {
		cfg.PerAddress = 100
	}
	switch {
	case cfg.Store == nil:
		return nil, errors.New("auth: Config.Store is required")
	case cfg.Limiter == nil:
		return nil, errors.New("auth: Config.Limiter is required")
	case cfg.IDs == nil:
		return nil, errors.New("auth: Config.IDs is required")
	}
	return &Service{cfg: cfg}, nil
}

const loginWindow = 15 * time.Minute

// NewAgent is what CreateAgent needs.
type NewAgent struct {
	Email, Name, Password, Role string
	Capacity                    int
}

// CreateAgent validates and stores a new agent with a hashed password.
func (s *Service) CreateAgent(ctx context.Context, tenant conv.TenantID, na NewAgent) (conv.Agent, error) {
	addr, err := mail.ParseAddress(na.Email)
	if err != nil || addr.Address != strings.TrimSpace(na.Email) {
		return conv.Agent{}, fmt.Errorf("auth.CreateAgent: %w: %q is not an email address", conv.ErrInvalid, na.Email)
	}
	if strings.TrimSpace(na.Name) == "" {
		return conv.Agent{}, fmt.Errorf("auth.CreateAgent: %w: name is required", conv.ErrInvalid)
	}
	switch na.Role {
	case "":
		na.Role = conv.RoleAgent
	case conv.RoleAgent, conv.RoleAdmin:
	default:
		return conv.Agent{}, fmt.Errorf("auth.CreateAgent: %w: role must be %s or %s", conv.ErrInvalid, conv.RoleAgent, conv.RoleAdmin)
	}
	if na.Capacity <= 0 {
		na.Capacity = conv.DefaultCapacity
	}
	hash, err := HashPassword(na.Password)
	if err != nil {
		return conv.Agent{}, fmt.Errorf("auth.CreateAgent: %w", err)
	}
	a := conv.Agent{
		ID: conv.NewID[conv.AgentID](s.cfg.IDs), TenantID: tenant, Email: addr.Address, Name: strings.TrimSpace(na.Name),
		Role: na.Role, PasswordHash: hash, Capacity: na.Capacity, CreatedAt: s.cfg.Now().UTC(),
	}
	err = s.cfg.Store.Tx(ctx, tenant, func(tx storage.Tx) error { return tx.CreateAgent(ctx, a) })
	if err != nil {
		return conv.Agent{}, fmt.Errorf("auth.CreateAgent %s: %w", a.Email, err)
	}
	return a, nil
}

// Login checks an agent's password and issues a bearer token. tenantRef is
// the tenant's id or name. Every failure is the same ErrUnauthorized, so a
// caller cannot learn which tenants or emails exist; attempts are limited
// per account and per client address (ErrRateLimited).
func (s *Service) Login(ctx context.Context, tenantRef, email, password, remoteAddr string) (bearer string, tok conv.Token, agent conv.Agent, err error) {
	fail := fmt.Errorf("auth.Login: %w: wrong tenant, email or password", conv.ErrUnauthorized)
	email = strings.ToLower(strings.TrimSpace(email))
	for _, lim := range []struct {
		key string
		n   int
	}{
		{"login:addr:" + remoteAddr, s.cfg.PerAddress},
		{"login:acct:" + tenantRef + ":" + email, s.cfg.PerAccount},
	} {
		ok, retry, err := s.cfg.Limiter.Allow(ctx, lim.key, lim.n, loginWindow)
		if err != nil {
			return "", conv.Token{}, conv.Agent{}, fmt.Errorf("auth.Login: limiter: %w", err)
		}
		if !ok {
			return "", conv.Token{}, conv.Agent{}, &RateLimitedError{RetryAfter: retry}
		}
	}
	tenant, err := s.tenant(ctx, tenantRef)
	if errors.Is(err, conv.ErrNotFound) {
		burnHash(password)
		return "", conv.Token{}, conv.Agent{}, fail
	} else if err != nil {
		return "", conv.Token{}, conv.Agent{}, fmt.Errorf("auth.Login: %w", err)
	}
	err = s.cfg.Store.Tx(ctx, tenant, func(tx storage.Tx) error {
		var err error
		agent, err = tx.AgentByEmail(ctx, email)
		if errors.Is(err, conv.ErrNotFound) {
			burnHash(password)
			return fail
		}
		if err != nil {
			return err
		}
		ok, err := CheckPassword(agent.PasswordHash, password)
		if err != nil || !ok || agent.Disabled {
			return fail
		}
		var hash []byte
		bearer, hash, err = NewToken(tenant)
		if err != nil {
			return err
		}
		now := s.cfg.Now().UTC()
		tok = conv.Token{ID: conv.NewID[conv.TokenID](s.cfg.IDs), TenantID: tenant, AgentID: agent.ID, Hash: hash, CreatedAt: now, ExpiresAt: now.Add(s.cfg.TTL)}
		return tx.CreateToken(ctx, tok)
	})
	if err != nil {
		return "", conv.Token{}, conv.Agent{}, err
	}
	return bearer, tok, agent, nil
}

func (s *Service) tenant(ctx context.Context, ref string) (conv.TenantID, error) {
	if id, err := conv.ParseID[conv.TenantID](ref); err == nil && !id.IsZero() {
		if _, err := s.cfg.Store.Tenant(ctx, id); err == nil {
			return id, nil
		}
	}
	t, err := s.cfg.Store.TenantByName(ctx, ref)
	if err != nil {
		return 0, err
	}
	return t.ID, nil
}

// burnHash spends the time a real password check takes, so that an unknown
// email answers no faster than a wrong password.
func burnHash(password string) {
	_, _ = CheckPassword(dummyHash(), password)
}

var dummyHash = sync.OnceValue(func() string {
	h, _ := HashPassword("not-a-real-password-just-for-timing")
	return h
})

// Authenticate resolves a bearer token to its agent. Expired, revoked,
// malformed and unknown tokens are all ErrUnauthorized.
func (s *Service) Authenticate(ctx context.Context, bearer string) (conv.Agent, conv.Token, error) {
	tenant, hash, err := ParseToken(bearer)
	if err != nil {
		return conv.Agent{}, conv.Token{}, err
	}
	var (
		agent conv.Agent
		tok   conv.Token
	)
	unauth := fmt.Errorf("auth.Authenticate: %w: invalid or expired token", conv.ErrUnauthorized)
	err = s.cfg.Store.Read(ctx, tenant, func(tx storage.Tx) error {
		var err error
		tok, err = tx.TokenByHash(ctx, hash)
		if errors.Is(err, conv.ErrNotFound) {
			return unauth
		}
		if err != nil {
			return err
		}
		if !tok.Active(s.cfg.Now()) {
			return unauth
		}
		agent, err = tx.Agent(ctx, tok.AgentID)
		if err != nil || agent.Disabled {
			return unauth
		}
		return nil
	})
	return agent, tok, err
}

// Revoke ends a token before its expiry (logout).
func (s *Service) Revoke(ctx context.Context, tenant conv.TenantID, id conv.TokenID) error {
	return s.cfg.Store.Tx(ctx, tenant, func(tx storage.Tx) error {
		return tx.RevokeToken(ctx, id, s.cfg.Now().UTC())
	})
}

// RateLimitedError says when to try again.
type RateLimitedError struct{ RetryAfter time.Duration }

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("too many login attempts; try again in %s", e.RetryAfter.Round(time.Second))
}

// Unwrap makes errors.Is(err, conv.ErrRateLimited) true.
func (e *RateLimitedError) Unwrap() error { return conv.ErrRateLimited }
