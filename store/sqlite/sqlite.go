package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

//go:embed migrations/*.sql
var migrations embed.FS

var _ storage.Store = (*Store)(nil)

// Config configures Open.
type Config struct {
	// Path is the database file; it is created if missing. It must be a
	// file (":memory:" would give every pooled connection its own database).
	Path string
	// Sealer seals channel secrets; required.
	Sealer storage.Sealer
	// IDs makes the ids the store generates (contacts, dead letters); required.
	IDs *conv.IDGen
	// Logger receives migration progress; nil discards.
	Logger *slog.Logger
	// BusyTimeout is how long a transaction waits for another process's
	// write lock before failing with conv.ErrUnavailable. Default 5s.
	BusyTimeout time.Duration
	// MaxConns bounds the connection pool. Default 8.
	MaxConns int
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.BusyTimeout == 0 {
		c.BusyTimeout = 5 * time.Second
	}
	if c.MaxConns == 0 {
		c.MaxConns = 8
	}
}

func (c *Config) validate() error {
	switch {
	case c.Path == "" || c.Path == ":memory:" || strings.HasPrefix(c.Path, "file:"):
		return fmt.Errorf("%w: sqlite.Config.Path must be a file path, got %q", conv.ErrInvalid, c.Path)
	case strings.ContainsRune(c.Path, '?'):
		return fmt.Errorf("%w: sqlite.Config.Path must not contain '?'", conv.ErrInvalid)
	case c.Sealer == nil:
		return fmt.Errorf("%w: sqlite.Config.Sealer is required", conv.ErrInvalid)
	case c.IDs == nil:
		return fmt.Errorf("%w: sqlite.Config.IDs is required", conv.ErrInvalid)
	case c.BusyTimeout < 0 || c.MaxConns < 1:
		return fmt.Errorf("%w: sqlite.Config.BusyTimeout and MaxConns must be positive", conv.ErrInvalid)
	}
	return nil
}

// Store is the SQLite storage.Store. It is safe for concurrent use.
type Store struct {
	db     *sql.DB
	sealer storage.Sealer
	ids    *conv.IDGen
	log    *slog.Logger
	path   string
	stmts  sync.Map // SQL text → *sql.Stmt, prepared once per connection
	// writeSem admits one write transaction of this process at a time (see
	// the package doc).
	writeSem chan struct{}
	// rdb is a second pool for Read: deferred, query_only transactions
	// that WAL lets run beside the writer, with its own statements.
	rdb    *sql.DB
	rstmts sync.Map
}

// Open opens (creating if needed) the database at cfg.Path and applies any
// pending migrations.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	q := url.Values{}
	// busy_timeout first, so the other pragmas wait for a busy file too.
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", cfg.BusyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	// Statement journals (a multi-row write inside a transaction keeps
	// one, to undo just that statement) in memory, not in a temp file
	// created and removed per statement: they were a third of the
	// writer's syscalls. Durability does not depend on them.
	q.Add("_pragma", "temp_store(MEMORY)")
	// 32 MiB of page cache per connection of the writer pool (the
	// default is 2 MiB; transactions hold one at a time, the rest idle
	// with what they cached), so the hot index pages of messages and
	// conversations stay in it instead of being read again through the
	// OS.
	q.Add("_pragma", "cache_size(-32768)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", cfg.Path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite.Open %s: %w", cfg.Path, err)
	}
	db.SetMaxOpenConns(cfg.MaxConns)
	db.SetMaxIdleConns(cfg.MaxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	s := &Store{db: db, sealer: cfg.Sealer, ids: cfg.IDs, log: cfg.Logger, path: cfg.Path,
		writeSem: make(chan struct{}, 1)}
	if err := s.Ping(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite.Open %s: %w", cfg.Path, err)
	}
	if _, err := s.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	rq := url.Values{}
	rq.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", cfg.BusyTimeout.Milliseconds()))
	rq.Add("_pragma", "foreign_keys(1)")
	rq.Add("_pragma", "query_only(1)")
	rq.Add("_pragma", "temp_store(MEMORY)")
	rq.Set("_txlock", "deferred")
	if s.rdb, err = sql.Open("sqlite", cfg.Path+"?"+rq.Encode()); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite.Open %s: readers: %w", cfg.Path, err)
	}
	s.rdb.SetMaxOpenConns(cfg.MaxConns)
	s.rdb.SetMaxIdleConns(cfg.MaxConns)
	s.rdb.SetConnMaxIdleTime(5 * time.Minute)
	return s, nil
}

// Read runs fn in a read-only transaction scoped to tenant. In WAL mode it
// sees the last commit before its first read and never waits for the
// writer.
func (s *Store) Read(ctx context.Context, tenant conv.TenantID, fn func(storage.Tx) error) error {
	if tenant.IsZero() {
		return fmt.Errorf("sqlite.Read: %w: no tenant", conv.ErrInvalid)
	}
	sqlTx, err := s.rdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite.Read %s: %w", tenant, mapErr(err))
	}
	defer sqlTx.Rollback()
	if err := fn(&tx{s: s, tx: sqlTx, tenant: tenant, ro: true}); err != nil {
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("sqlite.Read %s: %w", tenant, mapErr(err))
	}
	return nil
}

// Migrate applies the embedded migrations not yet recorded in
// schema_migrations, each in its own immediate transaction, and returns the
// names it applied. Two processes migrating at once serialize on the write
// lock; the second finds the work done.
func (s *Store) Migrate(ctx context.Context) (applied []string, err error) {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("sqlite.Migrate: %w", err)
	}
	slices.Sort(names)
	err = s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)`)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite.Migrate: %w", mapErr(err))
	}
	for _, name := range names {
		version := strings.TrimSuffix(strings.TrimPrefix(name, "migrations/"), ".sql")
		body, err := migrations.ReadFile(name)
		if err != nil {
			return applied, fmt.Errorf("sqlite.Migrate %s: %w", version, err)
		}
		ran := false
		err = s.write(ctx, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, string(body)); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
				version, micros(time.Now()))
			ran = err == nil
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("sqlite.Migrate %s: %w", version, mapErr(err))
		}
		if ran {
			s.log.Info("applied migration", "store", "sqlite", "version", version)
			applied = append(applied, version)
		}
	}
	return applied, nil
}

// write runs fn in an immediate transaction, one per process at a time.
// fn's error is returned as is; driver errors are not yet mapped.
func (s *Store) write(ctx context.Context, fn func(*sql.Tx) error) error {
	select {
	case s.writeSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.writeSem }()
	tx, err := s.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE, per _txlock
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			tx.Rollback()
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	done = true
	return tx.Commit()
}

// Tx runs fn in one immediate transaction scoped to tenant.
func (s *Store) Tx(ctx context.Context, tenant conv.TenantID, fn func(storage.Tx) error) error {
	if tenant.IsZero() {
		return fmt.Errorf("sqlite.Tx: %w: no tenant", conv.ErrInvalid)
	}
	var fnErr error
	err := s.write(ctx, func(sqlTx *sql.Tx) error {
		fnErr = fn(&tx{s: s, tx: sqlTx, tenant: tenant})
		return fnErr
	})
	if err == nil || (fnErr != nil && err == fnErr) {
		return err
	}
	// Beginning or committing failed.
	return fmt.Errorf("sqlite.Tx %s: %w", tenant, mapErr(err))
}

// CreateTenant stores t; a zero ID or CreatedAt is filled in.
func (s *Store) CreateTenant(ctx context.Context, t conv.Tenant) error {
	if strings.TrimSpace(t.Name) == "" {
		return fmt.Errorf("sqlite.CreateTenant: %w: empty name", conv.ErrInvalid)
	}
	if t.ID.IsZero() {
		t.ID = conv.NewID[conv.TenantID](s.ids)
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = time.Now()
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)`,
			t.ID, t.Name, micros(t.CreatedAt))
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite.CreateTenant %s %q: %w", t.ID, t.Name, mapErr(err))
	}
	return nil
}

// Tenant returns the tenant with id.
func (s *Store) Tenant(ctx context.Context, id conv.TenantID) (conv.Tenant, error) {
	t, err := scanTenant(s.db.QueryRowContext(ctx, `SELECT id, name, created_at FROM tenants WHERE id = ?`, id))
	if err != nil {
		return t, fmt.Errorf("sqlite.Tenant %s: %w", id, mapErr(err))
	}
	return t, nil
}

// TenantByName returns the tenant called name.
func (s *Store) TenantByName(ctx context.Context, name string) (conv.Tenant, error) {
	t, err := scanTenant(s.db.QueryRowContext(ctx, `SELECT id, name, created_at FROM tenants WHERE name = ?`, name))
	if err != nil {
		return t, fmt.Errorf("sqlite.TenantByName %q: %w", name, mapErr(err))
	}
	return t, nil
}

// Tenants lists all tenants by id.
func (s *Store) Tenants(ctx context.Context) ([]conv.Tenant, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, name, created_at FROM tenants ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite.Tenants: %w", mapErr(err))
	}
	out, err := collect(rows, scanTenant)
	if err != nil {
		return nil, fmt.Errorf("sqlite.Tenants: %w", mapErr(err))
	}
	return out, nil
}

func scanTenant(r scanner) (conv.Tenant, error) {
	var (
		t       conv.Tenant
		created int64
	)
	err := r.Scan(&t.ID, &t.Name, &created)
	t.CreatedAt = fromMicros(created)
	return t, err
}

// AddDeadLetter keeps d; a zero ID or CreatedAt is filled in.
func (s *Store) AddDeadLetter(ctx context.Context, d conv.DeadLetter) error {
	if d.ID == 0 {
		d.ID = s.ids.Next()
	}
	if d.CreatedAt.IsZero() {
		d.CreatedAt = time.Now()
	}
	var meta any
	if len(d.Metadata) > 0 {
		b, err := json.Marshal(d.Metadata)
		if err != nil {
			return fmt.Errorf("sqlite.AddDeadLetter: %w: %v", conv.ErrInvalid, err)
		}
		meta = string(b)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO dead_letters
			(id, topic, handler, message_uuid, reason, payload, metadata, tenant_id, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			d.ID, d.Topic, d.Handler, d.MessageID, d.Reason, d.Payload, meta, nullID(d.TenantID), micros(d.CreatedAt))
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite.AddDeadLetter %d: %w", d.ID, mapErr(err))
	}
	return nil
}

// DeadLetters lists up to limit dead letters, newest first.
func (s *Store) DeadLetters(ctx context.Context, limit int) ([]conv.DeadLetter, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, topic, handler, message_uuid, reason, payload, metadata,
		tenant_id, created_at FROM dead_letters ORDER BY created_at DESC, id DESC LIMIT ?`, max(limit, 0))
	if err != nil {
		return nil, fmt.Errorf("sqlite.DeadLetters: %w", mapErr(err))
	}
	out, err := collect(rows, func(r scanner) (conv.DeadLetter, error) {
		var (
			d       conv.DeadLetter
			meta    sql.NullString
			tenant  sql.NullInt64
			created int64
		)
		if err := r.Scan(&d.ID, &d.Topic, &d.Handler, &d.MessageID, &d.Reason, &d.Payload, &meta, &tenant, &created); err != nil {
			return d, err
		}
		if meta.Valid {
			if err := json.Unmarshal([]byte(meta.String), &d.Metadata); err != nil {
				return d, fmt.Errorf("dead letter %d metadata: %w", d.ID, err)
			}
		}
		d.TenantID = conv.TenantID(tenant.Int64)
		d.CreatedAt = fromMicros(created)
		return d, nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite.DeadLetters: %w", mapErr(err))
	}
	return out, nil
}

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite.Ping: %w", mapErr(err))
	}
	var one int
	if err := s.db.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("sqlite.Ping: %w", mapErr(err))
	}
	return nil
}

// prepared returns the cached statement for q, preparing it on first use.
func (s *Store) prepared(ctx context.Context, q string) (*sql.Stmt, error) {
	return prepareOn(ctx, s.db, &s.stmts, q)
}

func prepareOn(ctx context.Context, db *sql.DB, stmts *sync.Map, q string) (*sql.Stmt, error) {
	if st, ok := stmts.Load(q); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := db.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if prev, loaded := stmts.LoadOrStore(q, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// Close closes the cached statements and the pool. Calling it again is a no-op.
func (s *Store) Close() error {
	for _, m := range []*sync.Map{&s.stmts, &s.rstmts} {
		m.Range(func(q, st any) bool {
			st.(*sql.Stmt).Close()
			m.Delete(q)
			return true
		})
	}
	if s.rdb != nil {
		s.rdb.Close()
	}
	return s.db.Close()
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// collect scans every row with scan and closes rows.
func collect[T any](rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Times are stored as microseconds since the Unix epoch, UTC: exact, and
// ordered as integers.
func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func microsPtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMicro()
}

func fromMicrosPtr(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

// nullID stores a zero id as NULL.
func nullID[K any](id conv.ID[K]) any {
	if id.IsZero() {
		return nil
	}
	return int64(id)
}

// nullString stores an empty key as NULL, so it never collides in a unique index.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// mapErr gives a driver error its conv kind, keeping the cause in the chain.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w (%w)", conv.ErrNotFound, err)
	}
	var se *msqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch code := se.Code(); {
	case code == sqlite3.SQLITE_CONSTRAINT_UNIQUE || code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return fmt.Errorf("%w (%w)", conv.ErrConflict, err)
	case code == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		// A reference to a row this tenant does not have.
		return fmt.Errorf("%w (%w)", conv.ErrNotFound, err)
	case code&0xff == sqlite3.SQLITE_BUSY || code&0xff == sqlite3.SQLITE_LOCKED:
		return fmt.Errorf("%w (%w)", conv.ErrUnavailable, err)
	}
	return err
}
