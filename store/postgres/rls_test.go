package postgres

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// tenantProbes holds, for every tenant table, an INSERT of one valid row for
// tenant $1 with id (or key) $2 that borrows its references from rows the
// transaction can see. A new tenant table must be added here, or
// TestRowLevelSecurity fails: that is the point.
var tenantProbes = map[string]string{
	"groups":   `INSERT INTO groups (tenant_id, id, name, created_at) VALUES ($1, $2, 'probe', now())`,
	"channels": `INSERT INTO channels (tenant_id, id, kind, name, created_at) VALUES ($1, $2, 'test', 'probe', now())`,
	"channel_secrets": `INSERT INTO channel_secrets (tenant_id, channel_id, field, sealed)
		SELECT $1, id, 'probe-' || $2::bigint, 'sealed' FROM channels LIMIT 1`,
	"contacts": `INSERT INTO contacts (tenant_id, id, name, created_at) VALUES ($1, $2, 'probe', now())`,
	"identities": `INSERT INTO identities (tenant_id, kind, external_id, contact_id, created_at)
		SELECT $1, 'probe', $2::bigint::text, id, now() FROM contacts LIMIT 1`,
	"conversations": `INSERT INTO conversations (tenant_id, id, channel_id, contact_id, status, created_at, updated_at)
		SELECT $1, $2, ch.id, ct.id, 'resolved', now(), now() FROM channels ch, contacts ct LIMIT 1`,
	"messages": `INSERT INTO messages (tenant_id, id, conversation_id, channel_id, seq, direction, sender_type, parts, status, created_at)
		SELECT $1, $2, id, channel_id, last_seq + 1000, 'in', 'contact', '[]', 'received', now() FROM conversations LIMIT 1`,
	"agents": `INSERT INTO agents (tenant_id, id, email, name, role, created_at)
		VALUES ($1, $2, 'probe-' || $2::bigint || '@example.com', 'probe', 'agent', now())`,
	"tokens": `INSERT INTO tokens (tenant_id, id, agent_id, hash, created_at, expires_at)
		SELECT $1, $2, id, decode(md5($2::bigint::text), 'hex'), now(), now() FROM agents LIMIT 1`,
	"conversation_reads": `INSERT INTO conversation_reads (tenant_id, agent_id, conversation_id, read_seq)
		SELECT $1, a.id, c.id, $2::bigint FROM agents a CROSS JOIN conversations c
		WHERE NOT EXISTS (SELECT 1 FROM conversation_reads r WHERE r.agent_id = a.id AND r.conversation_id = c.id) LIMIT 1`,
	"visitors": `INSERT INTO visitors (tenant_id, id, channel_id, contact_id, hash, created_at)
		SELECT $1, $2, ch.id, ct.id, decode(md5($2::bigint::text), 'hex'), now() FROM channels ch, contacts ct LIMIT 1`,
	"thread_keys": `INSERT INTO thread_keys (tenant_id, channel_id, key, conversation_id, updated_at)
		SELECT $1, channel_id, 'probe-' || $2::bigint, id, now() FROM conversations LIMIT 1`,
	"channel_state": `INSERT INTO channel_state (tenant_id, channel_id, key, value, updated_at)
		SELECT $1, id, 'probe-' || $2::bigint, 'v', now() FROM channels LIMIT 1`,
}

// directoryTable is readable by every transaction (Store.ChannelTenant runs
// without a tenant), so it is not a tenant table; its own subtest checks
// that writes are still confined to the transaction's tenant.
const directoryTable = "channel_directory"

// seedTenant writes n rows' worth of data for tenant into every tenant
// table through the store's own API.
func seedTenant(t *testing.T, s *Store, ids *conv.IDGen, tenant conv.TenantID, n int) {
	t.Helper()
	ctx := t.Context()
	err := s.Tx(ctx, tenant, func(tx storage.Tx) error {
		for i := range n {
			g := conv.Group{ID: conv.NewID[conv.GroupID](ids), Name: fmt.Sprintf("g%d", i), CreatedAt: now()}
			if err := tx.CreateGroup(ctx, g); err != nil {
				return err
			}
			ch := conv.Channel{ID: conv.NewID[conv.ChannelID](ids), Kind: conv.KindTest, Name: fmt.Sprintf("c%d", i),
				Secrets: map[string]string{"token": "t", "key": "k"}, GroupID: g.ID, CreatedAt: now()}
			if err := tx.CreateChannel(ctx, ch); err != nil {
				return err
			}
			ct, _, err := tx.EnsureContact(ctx, conv.Identity{Kind: "visitor", ExternalID: fmt.Sprintf("v%d", i)}, "V")
			if err != nil {
				return err
			}
			c, _, err := tx.OpenConversation(ctx, ch.ID, ct.ID, conv.Conversation{ID: conv.NewID[conv.ConversationID](ids)})
			if err != nil {
				return err
			}
			if _, err := tx.AppendMessage(ctx, conv.Message{ConversationID: c.ID, Direction: conv.In,
				Sender: conv.Sender{Type: conv.SenderContact}, Parts: []conv.Part{{Type: conv.PartText, Text: "hi"}},
				Status: conv.MsgReceived}); err != nil {
				return err
			}
			a := conv.Agent{ID: conv.NewID[conv.AgentID](ids), Email: fmt.Sprintf("a%d@example.com", i), Name: "A",
				Role: conv.RoleAgent, GroupIDs: []conv.GroupID{g.ID}, CreatedAt: now()}
			if err := tx.CreateAgent(ctx, a); err != nil {
				return err
			}
			h := sha256.Sum256([]byte(fmt.Sprintf("%s-%d", tenant, i)))
			if err := tx.CreateToken(ctx, conv.Token{ID: conv.NewID[conv.TokenID](ids), AgentID: a.ID, Hash: h[:],
				CreatedAt: now(), ExpiresAt: now().Add(time.Hour)}); err != nil {
				return err
			}
			if _, err := tx.SetRead(ctx, a.ID, c.ID, 1); err != nil {
				return err
			}
			vh := sha256.Sum256([]byte(fmt.Sprintf("visitor-%s-%d", tenant, i)))
			if err := tx.CreateVisitor(ctx, conv.Visitor{ID: conv.NewID[conv.VisitorID](ids), ChannelID: ch.ID,
				ContactID: ct.ID, Hash: vh[:], CreatedAt: now()}); err != nil {
				return err
			}
			if err := tx.SetThreadKeys(ctx, ch.ID, c.ID, []string{fmt.Sprintf("<m%d@x>", i)}, now()); err != nil {
				return err
			}
			if err := tx.SetChannelState(ctx, ch.ID, "position", fmt.Sprintf("%d", i), now()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("seed tenant %s: %v", tenant, err)
	}
}

// superCount counts rows of table for tenant as the login user, outside
// any transaction of the store: a superuser, which bypasses RLS.
func superCount(t *testing.T, s *Store, table string, tenant conv.TenantID) int {
	t.Helper()
	var n int
	q := `SELECT count(*) FROM ` + pgx.Identifier{table}.Sanitize() + ` WHERE tenant_id = $1`
	if err := s.pool.QueryRow(t.Context(), q, int64(tenant)).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// rawCount counts every row of table that q can see: no WHERE, so only
// Row-Level Security decides.
func rawCount(ctx context.Context, q pgx.Tx, table string) (int, error) {
	var n int
	err := q.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{table}.Sanitize()).Scan(&n)
	return n, err
}

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// savepoint runs fn in a nested transaction that is always rolled back, so
// an expected failure does not abort the enclosing transaction.
func savepoint(ctx context.Context, t *testing.T, pt pgx.Tx, fn func(pgx.Tx) error) error {
	t.Helper()
	sp, err := pt.Begin(ctx)
	if err != nil {
		t.Fatalf("savepoint: %v", err)
	}
	defer sp.Rollback(ctx)
	return fn(sp)
}

// TestRowLevelSecurity checks the second wall directly, with SQL that names
// no tenant: what a forgotten WHERE tenant_id would run.
func TestRowLevelSecurity(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	ctx := t.Context()
	ids := testIDs(t)
	a, b := conv.TenantID(ids.Next()), conv.TenantID(ids.Next())
	for _, tn := range []conv.Tenant{{ID: a, Name: "acme"}, {ID: b, Name: "globex"}} {
		if err := s.CreateTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
	}
	seedTenant(t, s, ids, a, 3)
	seedTenant(t, s, ids, b, 2)
	tables := slices.Sorted(maps.Keys(tenantProbes))

	t.Run("catalog: every tenant table forces RLS with the tenant policy", func(t *testing.T) {
		rows, err := s.pool.Query(ctx, `SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
			AND c.relname NOT IN ('tenants', 'dead_letters', 'schema_migrations', $1) ORDER BY c.relname`, directoryTable)
		if err != nil {
			t.Fatal(err)
		}
		type rel struct {
			name          string
			rls, forceRLS bool
		}
		rels, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (rel, error) {
			var x rel
			err := r.Scan(&x.name, &x.rls, &x.forceRLS)
			return x, err
		})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, r := range rels {
			names = append(names, r.name)
			if !r.rls || !r.forceRLS {
				t.Errorf("table %s: relrowsecurity=%v relforcerowsecurity=%v, want both true", r.name, r.rls, r.forceRLS)
			}
			var using, check string
			err := s.pool.QueryRow(ctx, `SELECT qual, with_check FROM pg_policies
				WHERE schemaname = current_schema() AND tablename = $1 AND policyname = 'tenant_isolation'`, r.name).
				Scan(&using, &check)
			if err != nil {
				t.Errorf("table %s: policy tenant_isolation: %v", r.name, err)
				continue
			}
			const want = "NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::bigint"
			for _, expr := range []string{using, check} {
				if !containsAll(expr, "tenant_id =", want) {
					t.Errorf("table %s: policy expression %q does not compare tenant_id with %s", r.name, expr, want)
				}
			}
		}
		// Also fails when a new table is missing from tenantProbes, so it
		// cannot escape the checks below.
		if !slices.Equal(names, tables) {
			t.Fatalf("tenant tables in the schema %v, tested %v", names, tables)
		}
	})

	t.Run("runtime role cannot bypass RLS and owns nothing", func(t *testing.T) {
		var super, bypass, login bool
		var owned int
		err := s.pool.QueryRow(ctx, `SELECT rolsuper, rolbypassrls, rolcanlogin,
			(SELECT count(*) FROM pg_class WHERE relowner = r.oid)
			FROM pg_roles r WHERE rolname = $1`, DefaultRuntimeRole).Scan(&super, &bypass, &login, &owned)
		if err != nil {
			t.Fatal(err)
		}
		if super || bypass || login || owned != 0 {
			t.Fatalf("role %s: rolsuper=%v rolbypassrls=%v rolcanlogin=%v owns %d relations; want false, false, false, 0",
				DefaultRuntimeRole, super, bypass, login, owned)
		}
		for _, table := range append(slices.Clone(tables), "tenants", "dead_letters", directoryTable) {
			var dml, ddl bool
			err := s.pool.QueryRow(ctx, `SELECT
				has_table_privilege($1, $2, 'SELECT, INSERT, UPDATE, DELETE'),
				has_table_privilege($1, $2, 'TRUNCATE, REFERENCES, TRIGGER')`, DefaultRuntimeRole, table).Scan(&dml, &ddl)
			if err != nil {
				t.Fatal(err)
			}
			if !dml || ddl {
				t.Errorf("role on %s: DML=%v TRUNCATE/REFERENCES/TRIGGER=%v, want true and false", table, dml, ddl)
			}
		}
		var migrations bool
		if err := s.pool.QueryRow(ctx, `SELECT has_table_privilege($1, 'schema_migrations', 'SELECT, INSERT, UPDATE, DELETE')`,
			DefaultRuntimeRole).Scan(&migrations); err != nil {
			t.Fatal(err)
		}
		if migrations {
			t.Error("the runtime role may touch schema_migrations")
		}
	})

	t.Run("tenant Tx sees and writes only its tenant", func(t *testing.T) {
		for _, table := range tables {
			if superCount(t, s, table, b) == 0 {
				t.Fatalf("tenant B has no rows in %s: the test would prove nothing", table)
			}
		}
		err := s.Tx(ctx, a, func(stx storage.Tx) error {
			pt := stx.(*tx).pg
			var user, setting string
			if err := pt.QueryRow(ctx, `SELECT current_user, current_setting('app.tenant_id')`).Scan(&user, &setting); err != nil {
				return err
			}
			if user != DefaultRuntimeRole || setting != a.String() {
				t.Errorf("inside Tx: current_user=%s app.tenant_id=%s, want %s and %s", user, setting, DefaultRuntimeRole, a)
			}
			for _, table := range tables {
				got, err := rawCount(ctx, pt, table)
				if err != nil {
					return err
				}
				if want := superCount(t, s, table, a); got != want || got == 0 {
					t.Errorf("SELECT count(*) FROM %s in A's Tx = %d, want A's %d rows (of %d in all)",
						table, got, want, want+superCount(t, s, table, b))
				}

				probe := tenantProbes[table]
				// The probe is a valid row for A: it fails for B only because
				// of the policy.
				if err := savepoint(ctx, t, pt, func(sp pgx.Tx) error {
					_, err := sp.Exec(ctx, probe, int64(a), ids.Next())
					return err
				}); err != nil {
					t.Errorf("%s: inserting A's probe row in A's Tx: %v", table, err)
				}
				err = savepoint(ctx, t, pt, func(sp pgx.Tx) error {
					_, err := sp.Exec(ctx, probe, int64(b), ids.Next())
					return err
				})
				if code := pgCode(err); code != "42501" {
					t.Errorf("%s: inserting a row of tenant B in A's Tx: err=%v, want an RLS violation (42501)", table, err)
				}
				err = savepoint(ctx, t, pt, func(sp pgx.Tx) error {
					_, err := sp.Exec(ctx, `UPDATE `+pgx.Identifier{table}.Sanitize()+` SET tenant_id = $1`, int64(b))
					return err
				})
				if code := pgCode(err); code != "42501" {
					t.Errorf("%s: moving A's rows to tenant B: err=%v, want an RLS violation (42501)", table, err)
				}
				if err := savepoint(ctx, t, pt, func(sp pgx.Tx) error {
					tag, err := sp.Exec(ctx, `DELETE FROM `+pgx.Identifier{table}.Sanitize()+` WHERE tenant_id = $1`, int64(b))
					if err == nil && tag.RowsAffected() != 0 {
						t.Errorf("%s: A's Tx deleted %d of B's rows", table, tag.RowsAffected())
					}
					return err
				}); err != nil {
					t.Errorf("%s: deleting B's rows in A's Tx: %v", table, err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("channel directory: read by all, written only for the Tx's tenant", func(t *testing.T) {
		var rls, force bool
		if err := s.pool.QueryRow(ctx, `SELECT relrowsecurity, relforcerowsecurity FROM pg_class
			WHERE relname = $1 AND relnamespace = current_schema()::regnamespace`, directoryTable).Scan(&rls, &force); err != nil {
			t.Fatal(err)
		}
		if !rls || !force {
			t.Fatalf("%s: relrowsecurity=%v relforcerowsecurity=%v, want both true", directoryTable, rls, force)
		}
		var total int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM `+directoryTable).Scan(&total); err != nil {
			t.Fatal(err)
		}
		if want := superCount(t, s, "channels", a) + superCount(t, s, "channels", b); total != want || total == 0 {
			t.Fatalf("%s holds %d entries, want one per channel (%d)", directoryTable, total, want)
		}
		// expect runs stmt with args in a savepoint and checks the outcome:
		// an SQLSTATE, or "" and the number of rows it may touch.
		expect := func(pt pgx.Tx, name, code string, rows int64, stmt string, args ...any) {
			t.Helper()
			err := savepoint(ctx, t, pt, func(sp pgx.Tx) error {
				tag, err := sp.Exec(ctx, stmt, args...)
				if err == nil && tag.RowsAffected() != rows {
					t.Errorf("%s: touched %d rows, want %d", name, tag.RowsAffected(), rows)
				}
				return err
			})
			if got := pgCode(err); got != code || (code == "" && err != nil) {
				t.Errorf("%s: err=%v, want SQLSTATE %q", name, err, code)
			}
		}
		err := s.Tx(ctx, a, func(stx storage.Tx) error {
			pt := stx.(*tx).pg
			if n, err := rawCount(ctx, pt, directoryTable); err != nil || n != total {
				t.Errorf("A's Tx reads %d directory entries (%v), want all %d", n, err, total)
			}
			expect(pt, "re-point B's entries", "", 0, `UPDATE channel_directory SET tenant_id = $1 WHERE tenant_id = $2`, int64(a), int64(b))
			expect(pt, "delete B's entries", "", 0, `DELETE FROM channel_directory WHERE tenant_id = $1`, int64(b))
			expect(pt, "hand A's entries to B", "42501", 0, `UPDATE channel_directory SET tenant_id = $1 WHERE tenant_id = $2`, int64(b), int64(a))
			expect(pt, "insert an entry for B", "42501", 0, `INSERT INTO channel_directory (channel_id, tenant_id) VALUES ($1, $2)`, ids.Next(), int64(b))
			expect(pt, "insert an entry for no channel", "23503", 0, `INSERT INTO channel_directory (channel_id, tenant_id) VALUES ($1, $2)`, ids.Next(), int64(a))
			expect(pt, "delete A's entries", "", int64(superCount(t, s, "channels", a)), `DELETE FROM channel_directory WHERE tenant_id = $1`, int64(a))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		err = s.run(ctx, "test", "", func(pt pgx.Tx) error {
			if n, err := rawCount(ctx, pt, directoryTable); err != nil || n != total {
				t.Errorf("a transaction without a tenant reads %d directory entries (%v), want all %d", n, err, total)
			}
			expect(pt, "delete without a tenant", "", 0, `DELETE FROM channel_directory`)
			expect(pt, "insert without a tenant", "42501", 0, `INSERT INTO channel_directory (channel_id, tenant_id) VALUES ($1, $2)`, ids.Next(), int64(a))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("no tenant set: zero rows", func(t *testing.T) {
		// A store-level transaction sets the role but no tenant.
		err := s.run(ctx, "test", "", func(pt pgx.Tx) error {
			for _, table := range tables {
				n, err := rawCount(ctx, pt, table)
				if err != nil {
					return fmt.Errorf("%s: %w", table, err)
				}
				if n != 0 {
					t.Errorf("SELECT count(*) FROM %s with no tenant = %d, want 0", table, n)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("setting left empty by an earlier transaction: zero rows, no error", func(t *testing.T) {
		// After a transaction-local set_config ends, the session reads the
		// setting as '' rather than missing; ''::bigint would be an error
		// without NULLIF.
		conn, err := s.pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Release()
		err = pgx.BeginFunc(ctx, conn, func(pt pgx.Tx) error {
			_, err := pt.Exec(ctx, `SELECT set_config('role', $1, true), set_config('app.tenant_id', $2, true)`,
				DefaultRuntimeRole, a.String())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		err = pgx.BeginFunc(ctx, conn, func(pt pgx.Tx) error {
			if _, err := pt.Exec(ctx, `SELECT set_config('role', $1, true)`, DefaultRuntimeRole); err != nil {
				return err
			}
			var setting *string
			if err := pt.QueryRow(ctx, `SELECT current_setting('app.tenant_id', true)`).Scan(&setting); err != nil {
				return err
			}
			if setting == nil || *setting != "" {
				t.Errorf("app.tenant_id after the setting transaction = %v, want '' (the case NULLIF exists for)", setting)
			}
			for _, table := range tables {
				n, err := rawCount(ctx, pt, table)
				if err != nil {
					return fmt.Errorf("%s: %w", table, err)
				}
				if n != 0 {
					t.Errorf("SELECT count(*) FROM %s with an empty tenant = %d, want 0", table, n)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("pooled connections carry no role or tenant after a Tx", func(t *testing.T) {
		if err := s.Tx(ctx, a, func(storage.Tx) error { return nil }); err != nil {
			t.Fatal(err)
		}
		// Every idle connection, including the one the Tx used.
		for _, c := range s.pool.AcquireAllIdle(ctx) {
			var user string
			var setting *string
			err := c.QueryRow(ctx, `SELECT current_user, current_setting('app.tenant_id', true)`).Scan(&user, &setting)
			c.Release()
			if err != nil {
				t.Fatal(err)
			}
			if user == DefaultRuntimeRole || (setting != nil && *setting != "") {
				t.Errorf("idle connection: current_user=%s app.tenant_id=%v, want the login user and no tenant", user, setting)
			}
		}
	})
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
