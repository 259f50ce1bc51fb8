package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchboard-hq/switchboard/core/conv"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrateLockKey is the pg_advisory_lock key every node takes before
// migrating, so nodes starting together apply each migration once. Advisory
// locks are per database, which is exactly the scope of a schema.
const migrateLockKey int64 = 0x5377_6254_4d69_6772 // "SwbTMigr"

// systemTables are read outside any tenant and have no Row-Level Security.
// channel_directory is read outside any tenant too but keeps RLS for its
// writes (see 0002_console.sql). Every other table the migrations create
// is a tenant table.
var systemTables = []string{"tenants", "dead_letters"}

type migration struct {
	version string // file name without .sql: "0001_init"
	sql     string
}

func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		b, err := migrationFiles.ReadFile("migrations/" + name)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: strings.TrimSuffix(name, ".sql"), sql: string(b)})
	}
	// Numbered names ("0001_…") sort in the order they must run.
	slices.SortFunc(out, func(a, b migration) int { return strings.Compare(a.version, b.version) })
	return out, nil
}

// Migrate applies the embedded migrations this database lacks, in order,
// each in its own transaction recorded in schema_migrations, and returns
// the versions it applied. It holds a database-wide advisory lock
// throughout, so concurrent callers (several nodes starting at once) apply
// each migration exactly once. It then makes sure the runtime role exists,
// cannot bypass Row-Level Security, and has DML on every table.
func (s *Store) Migrate(ctx context.Context) (applied []string, err error) {
	const op = "postgres.Migrate"
	if s.closed.Load() {
		return nil, fmt.Errorf("%s: %w: store is closed", op, conv.ErrUnavailable)
	}
	all, err := migrations()
	if err != nil {
		return nil, fmt.Errorf("%s: read embedded migrations: %w", op, err)
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fail(op, err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrateLockKey); err != nil {
		return nil, fail(op+": lock", err)
	}
	defer func() {
		// The lock is the session's: if unlocking fails, the connection is
		// broken and closing it releases the lock on the server.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, uerr := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, migrateLockKey); uerr != nil {
			conn.Conn().Close(uctx)
		}
	}()

	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fail(op+": schema_migrations", err)
	}
	rows, err := conn.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return nil, fail(op, err)
	}
	done, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fail(op, err)
	}
	for _, m := range all {
		if slices.Contains(done, m.version) {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			// No arguments: pgx sends the file with the simple protocol,
			// which runs several statements.
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, m.version)
			return err
		})
		if err != nil {
			return applied, fail(op+" "+m.version, err)
		}
		applied = append(applied, m.version)
		s.log.Info("postgres: applied migration", "version", m.version)
	}
	if err := s.ensureRole(ctx, conn.Conn()); err != nil {
		return applied, fmt.Errorf("%s: runtime role %s: %w", op, s.role, err)
	}
	return applied, nil
}

// ensureRole creates the runtime role if it is missing and grants it DML on
// every table of the schema (and nothing else). Roles are cluster-wide while
// the advisory lock is per database, so two databases migrating at once can
// both try to create it: the loser's duplicate error means it exists now,
// and the next attempt finds it.
func (s *Store) ensureRole(ctx context.Context, conn *pgx.Conn) error {
	var err error
	for range 5 {
		if err = s.ensureRoleOnce(ctx, conn); err == nil || !roleRace(err) {
			return err
		}
	}
	return err
}

// roleRace reports errors that concurrent creation of, or grants on, the
// same role in another database can cause.
func roleRace(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "42710", "23505": // duplicate_object; unique_violation on pg_authid
		return true
	case "XX000": // "tuple concurrently updated" on a shared catalog
		return strings.Contains(pgErr.Message, "concurrently")
	}
	return false
}

func (s *Store) ensureRoleOnce(ctx context.Context, conn *pgx.Conn) error {
	role := pgx.Identifier{s.role}.Sanitize()
	var super, bypass, exists bool
	err := conn.QueryRow(ctx, `SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1`, s.role).Scan(&super, &bypass)
	switch {
	case err == nil:
		exists = true
	case !errors.Is(err, pgx.ErrNoRows):
		return err
	}
	if !exists {
		if _, err := conn.Exec(ctx, `CREATE ROLE `+role+` NOLOGIN NOSUPERUSER NOBYPASSRLS`); err != nil {
			return err
		}
	}
	// An operator may have created the role beforehand; one that bypasses
	// RLS would silently remove the second wall, so refuse to run with it.
	if super || bypass {
		return fmt.Errorf("%w: role can bypass row-level security (superuser or BYPASSRLS)", conv.ErrInvalid)
	}
	// set_config('role', …) needs the session user to be a member. A
	// superuser is a member of every role; a CREATEROLE owner grants itself.
	var member bool
	if err := conn.QueryRow(ctx, `SELECT pg_has_role(session_user, $1, 'MEMBER')`, s.role).Scan(&member); err != nil {
		return err
	}
	if !member {
		if _, err := conn.Exec(ctx, `GRANT `+role+` TO SESSION_USER`); err != nil {
			return err
		}
	}
	rows, err := conn.Query(ctx, `SELECT tablename FROM pg_tables
		WHERE schemaname = current_schema() AND tablename <> 'schema_migrations' ORDER BY tablename`)
	if err != nil {
		return err
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	// GRANT takes no expressions, so name the schema.
	var schema string
	if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return err
	}
	stmts := []string{`GRANT USAGE ON SCHEMA ` + pgx.Identifier{schema}.Sanitize() + ` TO ` + role}
	if len(tables) > 0 {
		quoted := make([]string, len(tables))
		for i, t := range tables {
			quoted[i] = pgx.Identifier{t}.Sanitize()
		}
		stmts = append(stmts, `GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE `+strings.Join(quoted, ", ")+` TO `+role)
	}
	stmts = append(stmts, `GRANT USAGE ON ALL SEQUENCES IN SCHEMA `+pgx.Identifier{schema}.Sanitize()+` TO `+role)
	for _, q := range stmts {
		if _, err := conn.Exec(ctx, q); err != nil {
			return err
		}
	}
	return nil
}
