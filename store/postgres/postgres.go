package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

var _ storage.Store = (*Store)(nil)

// DefaultRuntimeRole is the role every transaction runs as.
const DefaultRuntimeRole = "switchboard_app"

// Config configures Open.
type Config struct {
	// URL is a libpq-style connection URL or DSN. Its user owns the schema
	// (it runs the migrations) and must be a member of RuntimeRole, or able
	// to create it and grant it to itself.
	URL string
	// Sealer seals channel secrets; required.
	Sealer storage.Sealer
	// IDs makes the ids the store assigns (contacts, dead letters); required.
	IDs *conv.IDGen
	// Logger receives migration and retry notes; default discards.
	Logger *slog.Logger
	// RuntimeRole is the role transactions switch to, so that Row-Level
	// Security applies even when the login user owns the tables or is a
	// superuser. Default DefaultRuntimeRole.
	RuntimeRole string
	// MaxConns caps the pool; 0 keeps pgxpool's default.
	MaxConns int32
}

// roleName keeps role names to plain identifiers; they are spliced into
// CREATE ROLE and GRANT (quoted, but there is no reason to allow more).
var roleName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.RuntimeRole == "" {
		c.RuntimeRole = DefaultRuntimeRole
	}
}

func (c *Config) validate() error {
	switch {
	case c.URL == "":
		return fmt.Errorf("%w: postgres.Config.URL is required", conv.ErrInvalid)
	case c.Sealer == nil:
		return fmt.Errorf("%w: postgres.Config.Sealer is required", conv.ErrInvalid)
	case c.IDs == nil:
		return fmt.Errorf("%w: postgres.Config.IDs is required", conv.ErrInvalid)
	case !roleName.MatchString(c.RuntimeRole):
		return fmt.Errorf("%w: postgres.Config.RuntimeRole %q is not a lower-case identifier", conv.ErrInvalid, c.RuntimeRole)
	case c.MaxConns < 0:
		return fmt.Errorf("%w: postgres.Config.MaxConns is negative", conv.ErrInvalid)
	}
	return nil
}

// Store is the Postgres storage.Store. It is safe for concurrent use; each
// Tx it hands out belongs to one goroutine.
type Store struct {
	pool   *pgxpool.Pool
	sealer storage.Sealer
	ids    *conv.IDGen
	log    *slog.Logger
	role   string
	closed atomic.Bool
	// applied is what Open's migration run applied (for tests and logs).
	applied []string
}

// Open connects, applies pending migrations and returns the store.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		// The parse error may quote the URL, password included.
		return nil, fmt.Errorf("%w: postgres.Open: cannot parse the connection URL", conv.ErrInvalid)
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fail("postgres.Open", err)
	}
	s := &Store{pool: pool, sealer: cfg.Sealer, ids: cfg.IDs, log: cfg.Logger, role: cfg.RuntimeRole}
	applied, err := s.Migrate(ctx)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.applied = applied
	return s, nil
}

// Close closes the pool, waiting for connections in use to come back. It is
// safe to call more than once.
func (s *Store) Close() error {
	s.closed.Store(true)
	s.pool.Close()
	return nil
}

// Ping checks a connection can be had and the server answers.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return fmt.Errorf("postgres.Ping: %w: store is closed", conv.ErrUnavailable)
	}
	if err := s.pool.Ping(ctx); err != nil {
		return fail("postgres.Ping", connErr(err))
	}
	return nil
}

// connErr marks an error of getting or starting a connection as
// ErrUnavailable: whatever pgx says, the statement never ran.
func connErr(err error) error {
	if kindOf(err) != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %w", conv.ErrUnavailable, err)
}

// Retry policy of Tx on serialization failures and deadlocks.
const (
	maxAttempts = 5
	baseBackoff = 5 * time.Millisecond
)

// Tx runs fn in a READ COMMITTED transaction as the runtime role with
// app.tenant_id set to tenant, so Row-Level Security confines every
// statement to the tenant whatever the SQL says. fn runs again (up to
// maxAttempts in all) when the database reports a serialization failure or
// a deadlock.
func (s *Store) Tx(ctx context.Context, tenant conv.TenantID, fn func(storage.Tx) error) error {
	if tenant.IsZero() {
		return fmt.Errorf("postgres.Tx: %w: no tenant", conv.ErrInvalid)
	}
	return s.run(ctx, "postgres.Tx "+tenant.String(), tenant.String(), func(pt pgx.Tx) error {
		return fn(&tx{s: s, tenant: tenant, pg: pt})
	})
}

// Read runs fn in a read-only transaction scoped to tenant.
func (s *Store) Read(ctx context.Context, tenant conv.TenantID, fn func(storage.Tx) error) error {
	if tenant.IsZero() {
		return fmt.Errorf("postgres.Read: %w: no tenant", conv.ErrInvalid)
	}
	ctx = context.WithValue(ctx, readOnlyKey{}, true)
	return s.run(ctx, "postgres.Read "+tenant.String(), tenant.String(), func(pt pgx.Tx) error {
		return fn(&tx{s: s, tenant: tenant, pg: pt})
	})
}

// readOnlyKey marks a context whose transaction is READ ONLY.
type readOnlyKey struct{}

// run is the one way the store starts a transaction: tenant Tx and
// store-level calls alike. tenant is "" for store-level calls, which
// therefore see no tenant rows at all.
func (s *Store) run(ctx context.Context, op, tenant string, fn func(pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := s.attempt(ctx, op, tenant, fn)
		if err == nil || !retryable(err) {
			return err
		}
		if attempt == maxAttempts {
			return fmt.Errorf("%s: gave up after %d attempts: %w: %w", op, attempt, conv.ErrUnavailable, err)
		}
		// Jittered exponential backoff keeps retrying transactions from
		// colliding again in lockstep.
		d := baseBackoff << (attempt - 1)
		d = d/2 + rand.N(d)
		s.log.Debug("postgres: retrying transaction", "op", op, "attempt", attempt, "backoff", d, "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w", op, ctx.Err())
		case <-t.C:
		}
	}
}

func (s *Store) attempt(ctx context.Context, op, tenant string, fn func(pgx.Tx) error) (err error) {
	if s.closed.Load() {
		return fmt.Errorf("%s: %w: store is closed", op, conv.ErrUnavailable)
	}
	var opts pgx.TxOptions
	if ro, _ := ctx.Value(readOnlyKey{}).(bool); ro {
		opts.AccessMode = pgx.ReadOnly
	}
	pt, err := s.pool.BeginTx(ctx, opts)
	if err != nil {
		return fail(op+": begin", connErr(err))
	}
	defer func() {
		if err != nil {
			// Rollback even if ctx is done: otherwise pgx closes the
			// connection instead of returning it clean to the pool.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			pt.Rollback(rctx)
		}
	}()
	// One round trip sets both, transaction-locally: the pooled connection
	// goes back with neither the role nor the tenant set.
	if _, err := pt.Exec(ctx, `SELECT set_config('role', $1, true), set_config('app.tenant_id', $2, true)`,
		s.role, tenant); err != nil {
		return fail(op+": set role and tenant", err)
	}
	if err := fn(pt); err != nil {
		return err
	}
	if err := pt.Commit(ctx); err != nil {
		return fail(op+": commit", err)
	}
	return nil
}

// CreateTenant stores t; a taken id or name is ErrConflict.
func (s *Store) CreateTenant(ctx context.Context, t conv.Tenant) error {
	op := "postgres.CreateTenant " + t.ID.String()
	if t.ID.IsZero() || t.Name == "" {
		return fmt.Errorf("%s: %w: tenant needs id and name", op, conv.ErrInvalid)
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = time.Now()
	}
	return s.run(ctx, op, "", func(pt pgx.Tx) error {
		_, err := pt.Exec(ctx, `INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)`,
			int64(t.ID), t.Name, t.CreatedAt)
		return fail(op, err)
	})
}

func (s *Store) tenantWhere(ctx context.Context, op, where string, arg any) (conv.Tenant, error) {
	var t conv.Tenant
	err := s.run(ctx, op, "", func(pt pgx.Tx) error {
		var id int64
		err := pt.QueryRow(ctx, `SELECT id, name, created_at FROM tenants WHERE `+where, arg).Scan(&id, &t.Name, &t.CreatedAt)
		t.ID = conv.TenantID(id)
		t.CreatedAt = t.CreatedAt.UTC()
		return fail(op, err)
	})
	return t, err
}

// Tenant returns the tenant with id.
func (s *Store) Tenant(ctx context.Context, id conv.TenantID) (conv.Tenant, error) {
	return s.tenantWhere(ctx, "postgres.Tenant "+id.String(), "id = $1", int64(id))
}

// TenantByName returns the tenant called name.
func (s *Store) TenantByName(ctx context.Context, name string) (conv.Tenant, error) {
	return s.tenantWhere(ctx, "postgres.TenantByName", "name = $1", name)
}

// Tenants lists every tenant by id.
func (s *Store) Tenants(ctx context.Context) ([]conv.Tenant, error) {
	const op = "postgres.Tenants"
	var out []conv.Tenant
	err := s.run(ctx, op, "", func(pt pgx.Tx) error {
		rows, err := pt.Query(ctx, `SELECT id, name, created_at FROM tenants ORDER BY id`)
		if err != nil {
			return fail(op, err)
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (conv.Tenant, error) {
			var (
				t  conv.Tenant
				id int64
			)
			err := r.Scan(&id, &t.Name, &t.CreatedAt)
			t.ID, t.CreatedAt = conv.TenantID(id), t.CreatedAt.UTC()
			return t, err
		})
		return fail(op, err)
	})
	return out, err
}

// AddDeadLetter keeps d, giving it an id when it has none.
func (s *Store) AddDeadLetter(ctx context.Context, d conv.DeadLetter) error {
	if d.ID == 0 {
		d.ID = s.ids.Next()
	}
	op := fmt.Sprintf("postgres.AddDeadLetter %d", d.ID)
	if d.CreatedAt.IsZero() {
		d.CreatedAt = time.Now()
	}
	var meta []byte
	if len(d.Metadata) > 0 {
		var err error
		if meta, err = json.Marshal(d.Metadata); err != nil {
			return fmt.Errorf("%s: %w: metadata: %v", op, conv.ErrInvalid, err)
		}
	}
	var tenant *int64
	if !d.TenantID.IsZero() {
		id := int64(d.TenantID)
		tenant = &id
	}
	payload := d.Payload
	if payload == nil {
		payload = []byte{}
	}
	return s.run(ctx, op, "", func(pt pgx.Tx) error {
		_, err := pt.Exec(ctx, `INSERT INTO dead_letters
			(id, topic, handler, message_uuid, reason, payload, metadata, tenant_id, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8, $9)`,
			d.ID, d.Topic, d.Handler, d.MessageID, d.Reason, payload, nullJSON(meta), tenant, d.CreatedAt)
		return fail(op, err)
	})
}

// DeadLetters lists up to limit dead letters, newest first.
func (s *Store) DeadLetters(ctx context.Context, limit int) ([]conv.DeadLetter, error) {
	const op = "postgres.DeadLetters"
	var out []conv.DeadLetter
	err := s.run(ctx, op, "", func(pt pgx.Tx) error {
		rows, err := pt.Query(ctx, `SELECT id, topic, handler, message_uuid, reason, payload, metadata::text,
			COALESCE(tenant_id, 0), created_at FROM dead_letters ORDER BY created_at DESC, id DESC LIMIT $1`, max(limit, 0))
		if err != nil {
			return fail(op, err)
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (conv.DeadLetter, error) {
			var (
				d      conv.DeadLetter
				meta   *string
				tenant int64
			)
			if err := r.Scan(&d.ID, &d.Topic, &d.Handler, &d.MessageID, &d.Reason, &d.Payload, &meta,
				&tenant, &d.CreatedAt); err != nil {
				return d, err
			}
			if meta != nil {
				if err := json.Unmarshal([]byte(*meta), &d.Metadata); err != nil {
					return d, fmt.Errorf("dead letter %d metadata: %w", d.ID, err)
				}
			}
			d.TenantID = conv.TenantID(tenant)
			d.CreatedAt = d.CreatedAt.UTC()
			return d, nil
		})
		return fail(op, err)
	})
	return out, err
}

// nullJSON passes JSON text as a parameter, NULL when empty.
func nullJSON(b []byte) *string {
	if len(b) == 0 {
		return nil
	}
	s := string(b)
	return &s
}
