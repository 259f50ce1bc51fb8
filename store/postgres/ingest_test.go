package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/core/storage/storagetest"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// ingestFixture is a store with one tenant and one channel.
type ingestFixture struct {
	s      *Store
	ids    *conv.IDGen
	tenant conv.TenantID
	ch     conv.ChannelID
}

func newIngestFixture(t *testing.T) *ingestFixture {
	t.Helper()
	f := &ingestFixture{s: openTest(t, Config{}), ids: testIDs(t)}
	f.tenant = conv.NewID[conv.TenantID](f.ids)
	f.ch = conv.NewID[conv.ChannelID](f.ids)
	if err := f.s.CreateTenant(t.Context(), conv.Tenant{ID: f.tenant, Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	err := f.s.Tx(t.Context(), f.tenant, func(tx storage.Tx) error {
		return tx.CreateChannel(t.Context(), conv.Channel{ID: f.ch, Kind: conv.KindTest, Name: "inbox"})
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *ingestFixture) item(ext, sender string) storage.IngestItem {
	return storage.IngestItem{
		In: conv.Inbound{TenantID: f.tenant, ChannelID: f.ch, ExternalID: ext,
			From: conv.Identity{Kind: "visitor", ExternalID: sender}, FromName: sender,
			Parts: []conv.Part{{Type: conv.PartText, Text: ext}}, SentAt: time.Now()},
		ConversationID: conv.NewID[conv.ConversationID](f.ids),
		MessageID:      conv.NewID[conv.MessageID](f.ids),
		Now:            time.Now(),
	}
}

func (f *ingestFixture) ingest(t *testing.T, items ...storage.IngestItem) []storage.IngestOutcome {
	t.Helper()
	var out []storage.IngestOutcome
	err := f.s.Tx(t.Context(), f.tenant, func(tx storage.Tx) error {
		var err error
		out, err = storage.Ingest(t.Context(), tx, items)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// race runs first in a transaction that stays open until a set-wise ingest
// of second, in another transaction, is waiting for one of its locks;
// then it commits first and returns second's first outcome.
func (f *ingestFixture) race(t *testing.T, first func(ctx context.Context, tx storage.Tx) error, second ...storage.IngestItem) storage.IngestOutcome {
	t.Helper()
	return f.raceBatch(t, first, second...)[0]
}

// raceBatch is race returning every outcome of second.
func (f *ingestFixture) raceBatch(t *testing.T, first func(ctx context.Context, tx storage.Tx) error, second ...storage.IngestItem) []storage.IngestOutcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	holding, release := make(chan struct{}), make(chan struct{})
	firstDone := make(chan error, 1)
	go func() {
		firstDone <- f.s.Tx(ctx, f.tenant, func(tx storage.Tx) error {
			if err := first(ctx, tx); err != nil {
				return err
			}
			close(holding)
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	select {
	case <-holding:
	case err := <-firstDone:
		t.Fatalf("first transaction: %v", err)
	}
	type result struct {
		out []storage.IngestOutcome
		err error
	}
	secondDone := make(chan result, 1)
	go func() {
		var r result
		r.err = f.s.Tx(ctx, f.tenant, func(tx storage.Tx) error {
			var err error
			r.out, err = storage.Ingest(ctx, tx, second)
			return err
		})
		secondDone <- r
	}()
	// The second transaction must wait for the first one's lock.
	for {
		var waiting int
		err := f.s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		if err != nil {
			close(release)
			t.Fatalf("waiting for the second transaction to block: %v", err)
		}
		if waiting > 0 {
			break
		}
		select {
		case r := <-secondDone:
			close(release)
			t.Fatalf("second transaction did not wait for the first: %+v, %v", r.out, r.err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	close(release)
	if err := <-firstDone; err != nil {
		t.Fatalf("first transaction: %v", err)
	}
	r := <-secondDone
	if r.err != nil {
		t.Fatalf("second transaction: %v", r.err)
	}
	return r.out
}

// TestIngestBatchRaces: what the set-wise ingest does when another transaction
// holds what it needs. Each case lets the other transaction commit while
// it waits, then checks it settled on the other's rows.
func TestIngestBatchRaces(t *testing.T) {
	testenv.Require(t, "SWITCHBOARD_TEST_POSTGRES")
	t.Parallel()

	t.Run("new contact created meanwhile", func(t *testing.T) {
		f := newIngestFixture(t)
		var theirs storage.IngestOutcome
		got := f.race(t, func(ctx context.Context, tx storage.Tx) error {
			out, err := storage.Ingest(ctx, tx, []storage.IngestItem{f.item("r1", "racer")})
			if err == nil {
				theirs = out[0]
			}
			return err
		}, f.item("r2", "racer"))
		if got.Opened || got.Message.Seq != 2 || got.Conversation.ID != theirs.Conversation.ID ||
			got.Conversation.ContactID != theirs.Conversation.ContactID ||
			got.Message.Sender.ID != theirs.Conversation.ContactID.String() {
			t.Fatalf("outcome %+v, want seq 2 in %+v", got, theirs.Conversation)
		}
		// The contact created and dropped by the loser leaves nothing.
		if n := superCount(t, f.s, "contacts", f.tenant); n != 1 {
			t.Fatalf("%d contacts for one identity", n)
		}
	})

	t.Run("one of several new contacts created meanwhile", func(t *testing.T) {
		f := newIngestFixture(t)
		var theirs storage.IngestOutcome
		got := f.raceBatch(t, func(ctx context.Context, tx storage.Tx) error {
			out, err := storage.Ingest(ctx, tx, []storage.IngestItem{f.item("r1", "racer")})
			if err == nil {
				theirs = out[0]
			}
			return err
		}, f.item("n1", "newcomer"), f.item("r2", "racer"), f.item("n2", "newcomer"))
		newcomer, racer, again := got[0], got[1], got[2]
		if racer.Opened || racer.Message.Seq != 2 || racer.Conversation.ID != theirs.Conversation.ID ||
			racer.Message.Sender.ID != theirs.Conversation.ContactID.String() {
			t.Fatalf("racer's outcome %+v, want seq 2 in %+v", racer, theirs.Conversation)
		}
		if !newcomer.Opened || newcomer.Message.Seq != 1 || again.Opened || again.Message.Seq != 2 ||
			again.Conversation.ID != newcomer.Conversation.ID || newcomer.Conversation.ContactID == theirs.Conversation.ContactID {
			t.Fatalf("newcomer's outcomes %+v and %+v, want seq 1 and 2 of a conversation of their own", newcomer, again)
		}
		// The loser's contact for racer is dropped, the newcomer's kept.
		if n := superCount(t, f.s, "contacts", f.tenant); n != 2 {
			t.Fatalf("%d contacts for two identities", n)
		}
	})

	t.Run("conversation opened meanwhile", func(t *testing.T) {
		f := newIngestFixture(t)
		err := f.s.Tx(t.Context(), f.tenant, func(tx storage.Tx) error {
			_, _, err := tx.EnsureContact(t.Context(), conv.Identity{Kind: "visitor", ExternalID: "known"}, "Known")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		var theirs storage.IngestOutcome
		got := f.race(t, func(ctx context.Context, tx storage.Tx) error {
			out, err := storage.Ingest(ctx, tx, []storage.IngestItem{f.item("k1", "known")})
			if err == nil {
				theirs = out[0]
			}
			return err
		}, f.item("k2", "known"))
		if !theirs.Opened || got.Opened || got.Message.Seq != 2 || got.Conversation.ID != theirs.Conversation.ID {
			t.Fatalf("outcomes %+v then %+v, want one conversation with seq 1 and 2", theirs, got)
		}
		if n := superCount(t, f.s, "conversations", f.tenant); n != 1 {
			t.Fatalf("%d conversations", n)
		}
	})

	t.Run("conversation resolved meanwhile", func(t *testing.T) {
		f := newIngestFixture(t)
		old := f.ingest(t, f.item("o1", "leaver"))[0].Conversation
		next := f.item("o2", "leaver")
		got := f.race(t, func(ctx context.Context, tx storage.Tx) error {
			c := old
			c.Status = conv.StatusResolved
			at := now()
			c.ResolvedAt = &at
			return tx.UpdateConversation(ctx, c)
		}, next)
		if !got.Opened || got.Conversation.ID != next.ConversationID || got.Message.Seq != 1 {
			t.Fatalf("outcome %+v, want a new conversation %s with seq 1", got, next.ConversationID)
		}
		var stored conv.Conversation
		err := f.s.Read(t.Context(), f.tenant, func(tx storage.Tx) error {
			var err error
			stored, err = tx.Conversation(t.Context(), old.ID)
			return err
		})
		if err != nil || stored.Status != conv.StatusResolved || stored.LastSeq != 1 {
			t.Fatalf("resolved conversation = %+v, %v: want it resolved with its one message", stored, err)
		}
	})
}

// TestIngestBatchUnderRLS: the set-wise ingest's statements run under Row-Level
// Security like every statement of the runtime role. Given tenant A's
// channel in tenant B's transaction, it finds no channel and writes
// nothing. So does ingest_envelope, kept for nodes of the previous
// release, which runs with the caller's rights (a SECURITY DEFINER
// function owned by the superuser that migrates would see and write A's
// rows).
func TestIngestBatchUnderRLS(t *testing.T) {
	testenv.Require(t, "SWITCHBOARD_TEST_POSTGRES")
	t.Parallel()
	f := newIngestFixture(t)
	other := conv.NewID[conv.TenantID](f.ids)
	if err := f.s.CreateTenant(t.Context(), conv.Tenant{ID: other, Name: "globex"}); err != nil {
		t.Fatal(err)
	}
	stray := f.item("x", "v")
	stray.In.TenantID = other
	err := f.s.Tx(t.Context(), other, func(tx storage.Tx) error {
		_, err := storage.Ingest(t.Context(), tx, []storage.IngestItem{stray})
		return err
	})
	if !errors.Is(err, conv.ErrNotFound) {
		t.Fatalf("set-wise ingest naming another tenant's channel = %v, want not found", err)
	}

	var definer bool
	if err := f.s.pool.QueryRow(t.Context(), `SELECT prosecdef FROM pg_proc WHERE proname = 'ingest_envelope'`).
		Scan(&definer); err != nil || definer {
		t.Fatalf("ingest_envelope SECURITY DEFINER = %v (%v), want an invoker's function", definer, err)
	}
	err = f.s.Tx(t.Context(), other, func(stx storage.Tx) error {
		_, err := stx.(*tx).pg.Exec(t.Context(), `SELECT * FROM ingest_envelope($1, $2, 'x', 'visitor', 'v', 'n', 1, 2, 3, '', false,
			'[]'::jsonb, now(), NULL)`, int64(f.tenant), int64(f.ch))
		return fail("ingest_envelope", err)
	})
	if !errors.Is(err, conv.ErrNotFound) {
		t.Fatalf("ingest_envelope for another tenant = %v, want not found", err)
	}
	for _, table := range []string{"contacts", "conversations", "messages"} {
		for _, tenant := range []conv.TenantID{f.tenant, other} {
			if n := superCount(t, f.s, table, tenant); n != 0 {
				t.Fatalf("%d %s of tenant %s after refused calls", n, table, tenant)
			}
		}
	}
}

// TestIngestWithoutBatch runs the conformance suite's ingest tests against
// storage.IngestEach on Postgres (the batch capability hidden), so both
// paths answer to the same expectations on the same database.
func TestIngestWithoutBatch(t *testing.T) {
	testenv.Require(t, "SWITCHBOARD_TEST_POSTGRES")
	t.Parallel()
	storagetest.RunIngest(t, storagetest.Harness{
		New: func(t *testing.T, sealer storage.Sealer, ids *conv.IDGen) storage.Store {
			return storagetest.WithoutBatch(openTest(t, Config{Sealer: sealer, IDs: ids}))
		},
		Dump: func(t *testing.T, s storage.Store) []byte {
			return dump(t, s.(interface{ Unwrap() storage.Store }).Unwrap().(*Store))
		},
	})
}
