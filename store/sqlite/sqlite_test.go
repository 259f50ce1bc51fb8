package sqlite

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/core/storage/storagetest"
)

func open(t testing.TB, path string, sealer storage.Sealer, ids *conv.IDGen) *Store {
	t.Helper()
	s, err := Open(context.Background(), Config{Path: path, Sealer: sealer, IDs: ids, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func testIDs(t testing.TB) *conv.IDGen {
	t.Helper()
	ids, err := conv.NewIDGen(3)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, storagetest.Harness{
		New: func(t *testing.T, sealer storage.Sealer, ids *conv.IDGen) storage.Store {
			return open(t, filepath.Join(t.TempDir(), "switchboard.db"), sealer, ids)
		},
		Dump: func(t *testing.T, st storage.Store) []byte {
			t.Helper()
			s := st.(*Store)
			// Move the WAL into the main file, then read both anyway: the
			// suite wants every byte that reached disk.
			if _, err := s.db.ExecContext(t.Context(), `PRAGMA wal_checkpoint(FULL)`); err != nil {
				t.Fatalf("checkpoint: %v", err)
			}
			var all []byte
			for _, suffix := range []string{"", "-wal"} {
				b, err := os.ReadFile(s.path + suffix)
				if err != nil && !errors.Is(err, os.ErrNotExist) {
					t.Fatal(err)
				}
				all = append(all, b...)
			}
			return all
		},
	})
}

// TestIngestWithoutBatch runs the conformance suite's ingest tests against
// storage.IngestEach on SQLite (the batch capability hidden), so both
// paths answer to the same expectations.
func TestIngestWithoutBatch(t *testing.T) {
	storagetest.RunIngest(t, storagetest.Harness{
		New: func(t *testing.T, sealer storage.Sealer, ids *conv.IDGen) storage.Store {
			return storagetest.WithoutBatch(open(t, filepath.Join(t.TempDir(), "switchboard.db"), sealer, ids))
		},
	})
}

func TestConfigValidation(t *testing.T) {
	dir := t.TempDir()
	good := Config{Path: filepath.Join(dir, "x.db"), Sealer: storagetest.NewSealer(), IDs: testIDs(t)}
	tests := []struct {
		name string
		mut  func(*Config)
	}{
		{"no path", func(c *Config) { c.Path = "" }},
		{"memory", func(c *Config) { c.Path = ":memory:" }},
		{"uri", func(c *Config) { c.Path = "file:x.db" }},
		{"query in path", func(c *Config) { c.Path = filepath.Join(dir, "x.db?mode=ro") }},
		{"no sealer", func(c *Config) { c.Sealer = nil }},
		{"no ids", func(c *Config) { c.IDs = nil }},
		{"negative busy timeout", func(c *Config) { c.BusyTimeout = -time.Second }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mut(&cfg)
			s, err := Open(t.Context(), cfg)
			if err == nil {
				s.Close()
			}
			if !errors.Is(err, conv.ErrInvalid) {
				t.Fatalf("Open = %v, want ErrInvalid", err)
			}
		})
	}
}

// TestPragmas: the durability, locking and memory settings are in force on
// the connections the store actually uses.
func TestPragmas(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "p.db"), storagetest.NewSealer(), testIDs(t))
	tests := []struct {
		pragma, want string
	}{
		{"journal_mode", "wal"},
		{"synchronous", "2"}, // FULL
		{"foreign_keys", "1"},
		{"busy_timeout", "5000"},
		{"temp_store", "2"}, // MEMORY
		{"cache_size", "-32768"},
	}
	for _, tc := range tests {
		t.Run(tc.pragma, func(t *testing.T) {
			var got string
			if err := s.db.QueryRowContext(t.Context(), "PRAGMA "+tc.pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("PRAGMA %s = %s, want %s", tc.pragma, got, tc.want)
			}
		})
	}
}

// TestBusyIsUnavailable: a Tx takes the write lock at BEGIN, so another
// process cannot start one while it is open, even if it has only read; after
// the busy timeout that process gets ErrUnavailable.
func TestBusyIsUnavailable(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "busy.db"), storagetest.NewSealer(), testIDs(t))
	other := openWith(t, Config{Path: s.path, Sealer: storagetest.NewSealer(), IDs: testIDs(t), BusyTimeout: 50 * time.Millisecond})
	tenant := conv.TenantID(1)
	if err := s.CreateTenant(t.Context(), conv.Tenant{ID: tenant, Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Tx(context.Background(), tenant, func(tx storage.Tx) error {
			_, err := tx.Channels(context.Background()) // a read only
			close(inside)
			<-release
			return err
		})
	}()
	<-inside
	err := other.Tx(t.Context(), tenant, func(tx storage.Tx) error { return nil })
	close(release)
	if !errors.Is(err, conv.ErrUnavailable) {
		t.Fatalf("Tx while another process holds the write lock = %v, want ErrUnavailable", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := other.Tx(t.Context(), tenant, func(tx storage.Tx) error { return nil }); err != nil {
		t.Fatalf("Tx after the lock was released: %v", err)
	}
}

func openWith(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestMigrate: Open applies every migration once; Migrate and a reopen
// apply nothing more.
func TestMigrate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	s := open(t, path, storagetest.NewSealer(), testIDs(t))
	versions := func() []string {
		t.Helper()
		rows, err := s.db.QueryContext(t.Context(), `SELECT version FROM schema_migrations ORDER BY version`)
		if err != nil {
			t.Fatal(err)
		}
		got, err := collect(rows, func(r scanner) (string, error) { var v string; return v, r.Scan(&v) })
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	want := versions()
	if len(want) == 0 || want[0] != "0001_init" {
		t.Fatalf("schema_migrations = %v, want 0001_init first", want)
	}
	applied, err := s.Migrate(t.Context())
	if err != nil || len(applied) != 0 {
		t.Fatalf("second Migrate = %v, %v; want nothing applied", applied, err)
	}
	s2 := open(t, path, storagetest.NewSealer(), testIDs(t))
	if applied, err := s2.Migrate(t.Context()); err != nil || len(applied) != 0 {
		t.Fatalf("Migrate after reopen = %v, %v", applied, err)
	}
	if got := versions(); !slices.Equal(got, want) {
		t.Fatalf("schema_migrations after reopen = %v, want %v", got, want)
	}
}

// TestConcurrentOpen: processes starting at once on a new file all come up,
// and the schema is applied exactly once.
func TestConcurrentOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "race.db")
	const n = 4
	stores := make([]*Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = Open(context.Background(), Config{Path: path, Sealer: storagetest.NewSealer(), IDs: testIDs(t)})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	var count int
	if err := stores[0].db.QueryRowContext(t.Context(), `SELECT count(*) FROM schema_migrations`).Scan(&count); err != nil {
		t.Fatal(err)
	}
	embedded, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	if count != len(embedded) {
		t.Fatalf("schema_migrations has %d rows, want %d (each embedded migration once)", count, len(embedded))
	}
}

// TestTwoStoresOneFile: the CLI and the server each have their own pool and
// semaphore on one file; SQLite's lock alone must keep seq gapless.
func TestTwoStoresOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	sealer, ids := storagetest.NewSealer(), testIDs(t)
	a := open(t, path, sealer, ids)
	b := open(t, path, sealer, ids)
	ctx := t.Context()
	tenant := conv.TenantID(1)
	if err := a.CreateTenant(ctx, conv.Tenant{ID: tenant, Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	var c conv.Conversation
	err := a.Tx(ctx, tenant, func(tx storage.Tx) error {
		ch := conv.Channel{ID: 10, Kind: conv.KindTest, Name: "c"}
		if err := tx.CreateChannel(ctx, ch); err != nil {
			return err
		}
		ct, _, err := tx.EnsureContact(ctx, conv.Identity{Kind: "visitor", ExternalID: "v"}, "")
		if err != nil {
			return err
		}
		c, _, err = tx.OpenConversation(ctx, ch.ID, ct.ID, conv.Conversation{ID: 20})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	const per = 40
	var wg sync.WaitGroup
	for i, s := range []*Store{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range per {
				err := s.Tx(ctx, tenant, func(tx storage.Tx) error {
					_, err := tx.AppendMessage(ctx, conv.Message{ConversationID: c.ID, Direction: conv.In,
						Sender: conv.Sender{Type: conv.SenderContact}, Status: conv.MsgReceived,
						ExternalID: fmt.Sprintf("%d-%d", i, j), Parts: []conv.Part{{Type: conv.PartText, Text: "x"}}})
					return err
				})
				if err != nil {
					t.Errorf("writer %d: %v", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	err = b.Tx(ctx, tenant, func(tx storage.Tx) error {
		msgs, err := tx.Messages(ctx, c.ID, 0, 1000)
		if err != nil {
			return err
		}
		if len(msgs) != 4*per {
			t.Fatalf("%d messages, want %d", len(msgs), 4*per)
		}
		for i, m := range msgs {
			if m.Seq != int64(i+1) {
				t.Fatalf("message %d has seq %d", i, m.Seq)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkAppendMessage appends to one conversation in batches of 100
// messages per transaction, as ingest's batching does, and one per
// transaction, which is bound by the WAL fsync. ns/op is per message.
func BenchmarkAppendMessage(b *testing.B) {
	for _, batch := range []int{100, 1} {
		b.Run(fmt.Sprintf("batch%d", batch), func(b *testing.B) { benchAppend(b, batch) })
	}
}

func benchAppend(b *testing.B, batch int) {
	s := open(b, filepath.Join(b.TempDir(), "bench.db"), storagetest.NewSealer(), testIDs(b))
	ctx := context.Background()
	tenant := conv.TenantID(1)
	if err := s.CreateTenant(ctx, conv.Tenant{ID: tenant, Name: "bench"}); err != nil {
		b.Fatal(err)
	}
	var c conv.Conversation
	err := s.Tx(ctx, tenant, func(tx storage.Tx) error {
		if err := tx.CreateChannel(ctx, conv.Channel{ID: 10, Kind: conv.KindTest, Name: "c"}); err != nil {
			return err
		}
		ct, _, err := tx.EnsureContact(ctx, conv.Identity{Kind: "visitor", ExternalID: "v"}, "")
		if err != nil {
			return err
		}
		c, _, err = tx.OpenConversation(ctx, 10, ct.ID, conv.Conversation{ID: 20})
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	parts := []conv.Part{{Type: conv.PartText, Text: "a typical customer message of modest length, asking about an order"}}
	n := 0
	b.ResetTimer()
	for n < b.N {
		k := min(batch, b.N-n)
		err := s.Tx(ctx, tenant, func(tx storage.Tx) error {
			for i := range k {
				_, err := tx.AppendMessage(ctx, conv.Message{ConversationID: c.ID, Direction: conv.In,
					Sender: conv.Sender{Type: conv.SenderContact}, Status: conv.MsgReceived,
					ExternalID: fmt.Sprintf("m%d", n+i), Parts: parts})
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		n += k
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkIngest: what ingest's one writer does on SQLite
// (storagetest.BenchIngest), through storage.IngestEach (statements per
// envelope) or the store's set-wise path.
func BenchmarkIngest(b *testing.B) {
	for _, path := range []string{"each", "batch"} {
		for _, batch := range []int{3, 8, 64, 256} {
			b.Run(fmt.Sprintf("%s/batch=%d", path, batch), func(b *testing.B) {
				ids := testIDs(b)
				s := open(b, filepath.Join(b.TempDir(), "bench.db"), storagetest.NewSealer(), ids)
				storagetest.BenchIngest(b, s, ids, path == "each", 1, batch)
			})
		}
	}
}

// chunked covers every row exactly once, in order, in statement sizes it
// has SQL for.
func TestChunked(t *testing.T) {
	for n := range 300 {
		next := 0
		err := chunked(n, func(off, size int) error {
			if off != next || appendGroupsSQL[size] == "" || insertMessagesSQL[size] == "" {
				t.Fatalf("n=%d: chunk at %d of %d rows after %d", n, off, size, next)
			}
			next = off + size
			return nil
		})
		if err != nil || next != n {
			t.Fatalf("n=%d: chunks cover %d rows (%v)", n, next, err)
		}
		statements := 0
		chunked(n, func(int, int) error { statements++; return nil })
		switch {
		case n >= 1 && n <= 4 && statements != 1:
			t.Errorf("n=%d: %d statements, want 1", n, statements)
		case n < 64 && statements > 5:
			t.Errorf("n=%d: %d statements, want at most 5", n, statements)
		}
	}
	if n := strings.Count(insertMessagesSQL[64], "?"); n != 64*13 {
		t.Fatalf("64-row insert has %d placeholders", n)
	}
}
