package postgres

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage/storagetest"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

func allVersions(t *testing.T) []string {
	t.Helper()
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no embedded migrations")
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.version)
	}
	return out
}

// openConcurrently opens one store per URL, all at once, and returns them.
func openConcurrently(t *testing.T, urls []string, role string) []*Store {
	t.Helper()
	stores := make([]*Store, len(urls))
	errs := make([]error, len(urls))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			stores[i], errs[i] = Open(context.Background(), Config{URL: u, Sealer: storagetest.NewSealer(),
				IDs: testIDs(t), RuntimeRole: role})
		}()
	}
	close(start)
	wg.Wait()
	for i, s := range stores {
		if s != nil {
			t.Cleanup(func() { s.Close() })
		}
		if errs[i] != nil {
			t.Fatalf("Open #%d: %v", i, errs[i])
		}
	}
	return stores
}

// TestMigrateConcurrentOpen: nodes starting at once on one database apply
// every migration exactly once between them.
func TestMigrateConcurrentOpen(t *testing.T) {
	t.Parallel()
	url := freshDatabase(t)
	want := allVersions(t)
	stores := openConcurrently(t, []string{url, url, url}, "")

	var applied []string
	for _, s := range stores {
		applied = append(applied, s.applied...)
	}
	slices.Sort(applied)
	if !slices.Equal(applied, want) {
		t.Fatalf("migrations applied across concurrent Opens = %v, want each of %v once", applied, want)
	}
	rows, err := stores[0].pool.Query(t.Context(), `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	recorded, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(recorded, want) {
		t.Fatalf("schema_migrations = %v, want %v", recorded, want)
	}
	again, err := stores[1].Migrate(t.Context())
	if err != nil || len(again) != 0 {
		t.Fatalf("Migrate on a migrated database = %v, %v; want nothing applied", again, err)
	}
	// The schema works for the role set up alongside it.
	if err := stores[2].CreateTenant(t.Context(), conv.Tenant{ID: 1, Name: "acme"}); err != nil {
		t.Fatalf("CreateTenant after concurrent migrations: %v", err)
	}
}

// TestMigrateRoleRace: roles are cluster-wide but the migration lock is per
// database, so databases migrating at once race to create the runtime
// role. Every Open must still succeed.
func TestMigrateRoleRace(t *testing.T) {
	t.Parallel()
	base := testenv.Require(t, "SWITCHBOARD_TEST_POSTGRES")
	role := "sb_test_role_" + randomHex(t, 6)
	// Registered first, so it runs last: after the databases holding the
	// role's grants are gone.
	t.Cleanup(func() {
		ctx := context.Background()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop role: %v", err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP ROLE IF EXISTS "+role); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
	var urls []string
	for range 4 {
		urls = append(urls, freshDatabase(t))
	}
	stores := openConcurrently(t, urls, role)
	for i, s := range stores {
		var user string
		err := s.run(t.Context(), "test", "", func(pt pgx.Tx) error {
			return pt.QueryRow(t.Context(), `SELECT current_user`).Scan(&user)
		})
		if err != nil || user != role {
			t.Fatalf("store #%d runs as %q (%v), want %s", i, user, err, role)
		}
	}
}

// TestMigrateRefusesPrivilegedRole: a pre-existing runtime role that could
// bypass RLS is refused rather than used.
func TestMigrateRefusesPrivilegedRole(t *testing.T) {
	t.Parallel()
	base := testenv.Require(t, "SWITCHBOARD_TEST_POSTGRES")
	role := "sb_test_role_" + randomHex(t, 6)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE ROLE "+role+" NOLOGIN BYPASSRLS"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(ctx, base)
		if err == nil {
			defer c.Close(ctx)
			_, err = c.Exec(ctx, "DROP ROLE IF EXISTS "+role)
		}
		if err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
	url := freshDatabase(t)
	s, err := Open(ctx, Config{URL: url, Sealer: storagetest.NewSealer(), IDs: testIDs(t), RuntimeRole: role})
	if err == nil {
		s.Close()
		t.Fatal("Open accepted a runtime role with BYPASSRLS")
	}
}

// TestChannelDirectoryBackfill: 0002 fills the channel directory from the
// channels a database already has, also when the user migrating owns the
// tables without being a superuser, so that FORCE ROW LEVEL SECURITY hides
// every channel from it unless a tenant is set.
func TestChannelDirectoryBackfill(t *testing.T) {
	t.Parallel()
	base := testenv.Require(t, "SWITCHBOARD_TEST_POSTGRES")
	ctx := context.Background()
	owner, runtime := "sb_test_owner_"+randomHex(t, 6), "sb_test_role_"+randomHex(t, 6)
	db := "sb_test_" + randomHex(t, 8)
	admin := func(stmts ...string) error {
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		for _, q := range stmts {
			if _, err := c.Exec(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		return nil
	}
	// Cleanups run last-registered first: the database, then the roles.
	t.Cleanup(func() {
		if err := admin("DROP ROLE IF EXISTS "+runtime, "DROP ROLE IF EXISTS "+owner); err != nil {
			t.Errorf("drop roles: %v", err)
		}
	})
	if err := admin("CREATE ROLE " + owner + " LOGIN NOSUPERUSER NOBYPASSRLS CREATEROLE"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := admin("DROP DATABASE IF EXISTS " + db + " WITH (FORCE)"); err != nil {
			t.Errorf("drop database: %v", err)
		}
	})
	if err := admin("CREATE DATABASE " + db + " OWNER " + owner); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.User, u.Path = url.User(owner), "/"+db
	ownerURL := u.String()

	// The database as version 0001 left it, with channels of two tenants.
	init, err := migrationFiles.ReadFile("migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	channels := map[int64]int64{101: 1, 201: 2, 202: 2} // channel → tenant
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, q := range []string{string(init),
			`CREATE TABLE schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
			`INSERT INTO schema_migrations (version) VALUES ('0001_init')`,
			`INSERT INTO tenants (id, name, created_at) VALUES (1, 'acme', now()), (2, 'globex', now())`,
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		for ch, tenant := range channels {
			if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true)`, fmt.Sprint(tenant)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO channels (tenant_id, id, kind, name, created_at)
				VALUES ($1, $2, 'webchat', 'site', now())`, tenant, ch); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var visible int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM channels`).Scan(&visible); err != nil {
		t.Fatal(err)
	}
	if visible != 0 {
		t.Fatalf("the owner sees %d channels without a tenant: RLS does not bind it and the test proves nothing", visible)
	}

	s, err := Open(ctx, Config{URL: ownerURL, Sealer: storagetest.NewSealer(), IDs: testIDs(t), RuntimeRole: runtime})
	if err != nil {
		t.Fatalf("Open as a non-superuser owner: %v", err)
	}
	defer s.Close()
	if !slices.Equal(s.applied, allVersions(t)[1:]) {
		t.Fatalf("applied %v, want every migration after 0001", s.applied)
	}
	for ch, want := range channels {
		got, err := s.ChannelTenant(ctx, conv.ChannelID(ch))
		if err != nil || got != conv.TenantID(want) {
			t.Errorf("ChannelTenant(%d) = %s, %v; want %d", ch, got, err, want)
		}
	}
}
