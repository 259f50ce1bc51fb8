package hub_test

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/secret"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/store/postgres"
	"github.com/switchboard-hq/switchboard/store/sqlite"
)

// stores runs fn against every store: SQLite always, Postgres when
// SWITCHBOARD_TEST_POSTGRES is set (required in CI).
func stores(t *testing.T, fn func(t *testing.T, st storage.Store, ids *conv.IDGen, writers int)) {
	t.Run("sqlite", func(t *testing.T) {
		ids, _ := conv.NewIDGen(1)
		keys := testKeys(t)
		st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "sb.db"), Sealer: keys, IDs: ids})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		fn(t, st, ids, 1)
	})
	t.Run("postgres", func(t *testing.T) {
		base := testenv.Require(t, "SWITCHBOARD_TEST_POSTGRES")
		ids, _ := conv.NewIDGen(2)
		st, err := postgres.Open(context.Background(), postgres.Config{URL: freshDatabase(t, base), Sealer: testKeys(t), IDs: ids})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		fn(t, st, ids, 4)
	})
}

func testKeys(t *testing.T) *secret.Keyring {
	t.Helper()
	t.Setenv(secret.EnvVar, "")
	k, _, err := secret.Load(filepath.Join(t.TempDir(), "master.key"), true)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// freshDatabase creates an empty database for one test and drops it after.
func freshDatabase(t *testing.T, base string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("sb_hub_%d", conv.NewID[conv.TenantID](mustIDs(t)))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(ctx, base)
		if err == nil {
			c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(ctx)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

func mustIDs(t *testing.T) *conv.IDGen {
	ids, err := conv.NewIDGen(3)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestIngestAtLeastOnceExactlyStored(t *testing.T) {
	stores(t, func(t *testing.T, st storage.Store, ids *conv.IDGen, writers int) {
		runIngestAtLeastOnce(t, st, ids, 10000, writers)
	})
}

func TestOutboundPath(t *testing.T) {
	stores(t, func(t *testing.T, st storage.Store, ids *conv.IDGen, _ int) {
		runOutbound(t, st, ids)
	})
}
