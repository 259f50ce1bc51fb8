package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/core/storage/storagetest"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// freshDatabase creates an empty database for one test (see
// testenv.PostgresDatabase) and returns its URL.
func freshDatabase(tb testing.TB) string {
	tb.Helper()
	return testenv.PostgresDatabase(tb)
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

func randomHex(tb testing.TB, n int) string {
	tb.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func testIDs(tb testing.TB) *conv.IDGen {
	tb.Helper()
	ids, err := conv.NewIDGen(1)
	if err != nil {
		tb.Fatal(err)
	}
	return ids
}

// openTest opens a store on a fresh database, closed at cleanup.
func openTest(tb testing.TB, cfg Config) *Store {
	tb.Helper()
	if cfg.URL == "" {
		cfg.URL = freshDatabase(tb)
	}
	if cfg.Sealer == nil {
		cfg.Sealer = storagetest.NewSealer()
	}
	if cfg.IDs == nil {
		cfg.IDs = testIDs(tb)
	}
	s, err := Open(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	// Registered after freshDatabase's cleanup, so it runs before the drop.
	tb.Cleanup(func() { s.Close() })
	return s
}

// dump renders every row of every table as JSON lines. It reads through
// the pool outside any transaction, as the login user (a superuser in
// tests), which bypasses Row-Level Security: it sees what is on disk.
func dump(tb testing.TB, s *Store) []byte {
	tb.Helper()
	ctx := context.Background()
	rows, err := s.pool.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename`)
	if err != nil {
		tb.Fatalf("dump: list tables: %v", err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Fatalf("dump: list tables: %v", err)
	}
	var out bytes.Buffer
	for _, table := range tables {
		rows, err := s.pool.Query(ctx, `SELECT row_to_json(t)::text FROM `+pgx.Identifier{table}.Sanitize()+` t`)
		if err != nil {
			tb.Fatalf("dump %s: %v", table, err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			tb.Fatalf("dump %s: %v", table, err)
		}
		for _, l := range lines {
			out.WriteString(table + ": " + l + "\n")
		}
	}
	return out.Bytes()
}

func TestStore(t *testing.T) {
	t.Parallel()
	testenv.Require(t, "SWITCHBOARD_TEST_POSTGRES")
	storagetest.Run(t, storagetest.Harness{
		New: func(t *testing.T, sealer storage.Sealer, ids *conv.IDGen) storage.Store {
			return openTest(t, Config{Sealer: sealer, IDs: ids})
		},
		Dump: func(t *testing.T, s storage.Store) []byte { return dump(t, s.(*Store)) },
	})
}

func TestOpenValidates(t *testing.T) {
	ids := testIDs(t)
	sealer := storagetest.NewSealer()
	const url = "postgres://nobody@127.0.0.1:1/none"
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no URL", Config{Sealer: sealer, IDs: ids}},
		{"no sealer", Config{URL: url, IDs: ids}},
		{"no ids", Config{URL: url, Sealer: sealer}},
		{"role with a quote", Config{URL: url, Sealer: sealer, IDs: ids, RuntimeRole: `app"; DROP ROLE x; --`}},
		{"negative pool", Config{URL: url, Sealer: sealer, IDs: ids, MaxConns: -1}},
		{"unparsable URL", Config{URL: "postgres://%zz", Sealer: sealer, IDs: ids}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(context.Background(), tc.cfg)
			if err == nil || !errors.Is(err, conv.ErrInvalid) {
				t.Fatalf("Open = %v, want ErrInvalid", err)
			}
		})
	}
}

// TestOpenUnreachable: a server that does not answer is ErrUnavailable, the
// kind that tells callers to retry later.
func TestOpenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Open(ctx, Config{URL: "postgres://nobody@127.0.0.1:1/none?connect_timeout=5",
		Sealer: storagetest.NewSealer(), IDs: testIDs(t)})
	if !errors.Is(err, conv.ErrUnavailable) {
		t.Fatalf("Open(unreachable) = %v, want ErrUnavailable", err)
	}
}
