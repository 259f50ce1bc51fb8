package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/ingest"
	"github.com/switchboard-hq/switchboard/core/secret"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/store/postgres"
	"github.com/switchboard-hq/switchboard/store/sqlite"
)

// recorder is a Publisher that keeps what it was given and can be told to
// fail.
type recorder struct {
	mu     sync.Mutex
	events []conv.Event
	fail   error
}

func (r *recorder) PublishEvents(_ context.Context, evs []conv.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.events = append(r.events, evs...)
	return nil
}

func (r *recorder) count(typ conv.EventType) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Type == typ {
			n++
		}
	}
	return n
}

type fixture struct {
	store   storage.Store
	svc     *ingest.Service
	events  *recorder
	tenant  conv.TenantID
	channel conv.ChannelID
}

// stores runs fn with a fixture on every store: SQLite always (one
// writer, as serve runs it), Postgres when SWITCHBOARD_TEST_POSTGRES is set
// (four writers, and its batch path).
func stores(t *testing.T, fn func(t *testing.T, f *fixture)) {
	t.Run("sqlite", func(t *testing.T) {
		ids, _ := conv.NewIDGen(1)
		st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "sb.db"),
			Sealer: testKeys(t), IDs: ids})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		fn(t, newFixture(t, st, ids, 1))
	})
	t.Run("postgres", func(t *testing.T) {
		base := testenv.Require(t, "SWITCHBOARD_TEST_POSTGRES")
		ids, _ := conv.NewIDGen(2)
		st, err := postgres.Open(context.Background(), postgres.Config{URL: freshDatabase(t, base, ids),
			Sealer: testKeys(t), IDs: ids})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		fn(t, newFixture(t, st, ids, 4))
	})
}

func testKeys(t *testing.T) *secret.Keyring {
	t.Helper()
	keys, _, err := secret.Load(filepath.Join(t.TempDir(), "master.key"), true)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// freshDatabase creates an empty database for one test and drops it after.
func freshDatabase(t *testing.T, base string, ids *conv.IDGen) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("sb_ingest_%d", ids.Next())
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

func newFixture(t *testing.T, st storage.Store, ids *conv.IDGen, writers int) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{store: st, events: &recorder{}, tenant: conv.NewID[conv.TenantID](ids), channel: conv.NewID[conv.ChannelID](ids)}
	if err := st.CreateTenant(ctx, conv.Tenant{ID: f.tenant, Name: "acme", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	err := st.Tx(ctx, f.tenant, func(tx storage.Tx) error {
		return tx.CreateChannel(ctx, conv.Channel{ID: f.channel, TenantID: f.tenant, Kind: conv.KindTest, Name: "t", CreatedAt: time.Now()})
	})
	if err != nil {
		t.Fatal(err)
	}
	f.svc, err = ingest.New(ingest.Config{Store: st, Events: f.events, IDs: ids, Writers: writers})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { f.svc.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

func (f *fixture) env(ext, visitor string) conv.Inbound {
	return conv.Inbound{TenantID: f.tenant, ChannelID: f.channel, ExternalID: ext,
		From: conv.Identity{Kind: "visitor", ExternalID: visitor}, FromName: "V " + visitor,
		Parts: []conv.Part{{Type: conv.PartText, Text: "hello " + ext}}, SentAt: time.Now()}
}

func TestAcceptStoresOpensAndDedups(t *testing.T) {
	stores(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		first, err := f.svc.Accept(ctx, f.env("m1", "v1"))
		if err != nil {
			t.Fatal(err)
		}
		if !first.Opened || first.Duplicate || first.Message.Seq != 1 || first.Message.Status != conv.MsgReceived {
			t.Fatalf("first = %+v", first)
		}
		second, err := f.svc.Accept(ctx, f.env("m2", "v1"))
		if err != nil {
			t.Fatal(err)
		}
		if second.Opened || second.Message.Seq != 2 || second.Conversation.ID != first.Conversation.ID {
			t.Fatalf("second message did not join the open conversation: %+v", second)
		}
		again, err := f.svc.Accept(ctx, f.env("m1", "v1"))
		if err != nil {
			t.Fatal(err)
		}
		if !again.Duplicate || again.Message.ID != first.Message.ID || !again.Opened {
			t.Fatalf("redelivery = %+v, want the first message as a duplicate", again)
		}
		other, err := f.svc.Accept(ctx, f.env("m3", "v2"))
		if err != nil {
			t.Fatal(err)
		}
		if other.Conversation.ID == first.Conversation.ID || other.Message.Seq != 1 {
			t.Fatalf("another contact shares a conversation: %+v", other)
		}
		// The redelivery published its events again: 3 opened (m1, m1 again, m3),
		// 4 created.
		if got := f.events.count(conv.EventConversationOpened); got != 3 {
			t.Fatalf("conversation.opened published %d times, want 3", got)
		}
		if got := f.events.count(conv.EventMessageCreated); got != 4 {
			t.Fatalf("message.created published %d times, want 4", got)
		}
		var msgs []conv.Message
		f.store.Tx(ctx, f.tenant, func(tx storage.Tx) error {
			msgs, err = tx.Messages(ctx, first.Conversation.ID, 0, 100)
			return err
		})
		if len(msgs) != 2 {
			t.Fatalf("stored %d messages in the conversation, want 2", len(msgs))
		}
	})
}

func TestAcceptRejectsBadInputPermanently(t *testing.T) {
	stores(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		tests := []struct {
			name string
			mut  func(*conv.Inbound)
			kind error
		}{
			{"invalid envelope", func(in *conv.Inbound) { in.Parts = nil }, conv.ErrInvalid},
			{"unknown channel", func(in *conv.Inbound) { in.ChannelID++ }, conv.ErrNotFound},
			{"unknown tenant", func(in *conv.Inbound) { in.TenantID++ }, conv.ErrNotFound},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				in := f.env("bad", "v")
				tc.mut(&in)
				_, err := f.svc.Accept(ctx, in)
				if !errors.Is(err, tc.kind) || !conv.Permanent(err) {
					t.Fatalf("Accept = %v, want permanent %v", err, tc.kind)
				}
			})
		}
	})
}

func TestPublishFailureIsRetryableAndStoresOnce(t *testing.T) {
	stores(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.events.fail = fmt.Errorf("bus down: %w", conv.ErrUnavailable)
		if _, err := f.svc.Accept(ctx, f.env("m1", "v1")); err == nil || conv.Permanent(err) {
			t.Fatalf("Accept with the bus down = %v, want a retryable error", err)
		}
		f.events.mu.Lock()
		f.events.fail = nil
		f.events.mu.Unlock()
		res, err := f.svc.Accept(ctx, f.env("m1", "v1"))
		if err != nil {
			t.Fatal(err)
		}
		if !res.Duplicate || res.Message.Seq != 1 {
			t.Fatalf("retry after publish failure = %+v, want the stored message", res)
		}
		if got := f.events.count(conv.EventMessageCreated); got != 1 {
			t.Fatalf("message.created published %d times after recovery, want 1", got)
		}
	})
}

// TestConcurrentBatchesGapless drives many goroutines through the group
// commit with duplicates interleaved: every conversation's seq must come
// out 1..n with no gaps and every envelope stored once.
func TestConcurrentBatchesGapless(t *testing.T) {
	stores(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		const visitors, perVisitor, workers = 20, 30, 16
		type job struct{ ext, visitor string }
		jobs := make(chan job)
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range jobs {
					if _, err := f.svc.Accept(ctx, f.env(j.ext, j.visitor)); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		for i := range perVisitor {
			for v := range visitors {
				ext := fmt.Sprintf("v%d-m%d", v, i)
				jobs <- job{ext, fmt.Sprintf("v%d", v)}
				if i%3 == 0 {
					jobs <- job{ext, fmt.Sprintf("v%d", v)} // a redelivery
				}
			}
		}
		close(jobs)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		convs := map[conv.ConversationID]bool{}
		err := f.store.Tx(ctx, f.tenant, func(tx storage.Tx) error {
			for v := range visitors {
				m, err := tx.MessageByExternalID(ctx, f.channel, fmt.Sprintf("v%d-m0", v))
				if err != nil {
					return err
				}
				convs[m.ConversationID] = true
			}
			for id := range convs {
				msgs, err := tx.Messages(ctx, id, 0, 1000)
				if err != nil {
					return err
				}
				if len(msgs) != perVisitor {
					return fmt.Errorf("conversation %s has %d messages, want %d", id, len(msgs), perVisitor)
				}
				for i, m := range msgs {
					if m.Seq != int64(i+1) {
						return fmt.Errorf("conversation %s: message %d has seq %d", id, i, m.Seq)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(convs) != visitors {
			t.Fatalf("%d conversations, want %d", len(convs), visitors)
		}
	})
}

// TestReplyReopensThread: a threaded reply to a resolved conversation
// reopens it and publishes conversation.updated with the open
// conversation, so dispatch and the consoles see it come back.
func TestReplyReopensThread(t *testing.T) {
	stores(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		first := f.env("m1", "ann")
		first.Thread = &conv.Thread{Keys: []string{"<a1@example.com>"}}
		r1, err := f.svc.Accept(ctx, first)
		if err != nil {
			t.Fatal(err)
		}
		err = f.store.Tx(ctx, f.tenant, func(tx storage.Tx) error {
			c := r1.Conversation
			at := time.Now()
			c.Status, c.ResolvedAt = conv.StatusResolved, &at
			return tx.UpdateConversation(ctx, c)
		})
		if err != nil {
			t.Fatal(err)
		}
		reply := f.env("m2", "ann")
		reply.Thread = &conv.Thread{Refs: []string{"<a1@example.com>"}}
		r2, err := f.svc.Accept(ctx, reply)
		if err != nil {
			t.Fatal(err)
		}
		if !r2.Reopened || r2.Conversation.ID != r1.Conversation.ID || r2.Conversation.Status != conv.StatusOpen {
			t.Fatalf("reply = %+v, want %s reopened", r2, r1.Conversation.ID)
		}
		if got := f.events.count(conv.EventConversationUpdated); got != 1 {
			t.Fatalf("conversation.updated published %d times, want 1", got)
		}
	})
}

// TestAcceptAll: a batch's envelopes are answered each in its place — the
// good ones stored once (a repeat in the batch too), a bad one refused
// permanently without failing the rest — across several writers on
// Postgres.
func TestAcceptAll(t *testing.T) {
	stores(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		bad := f.env("bad", "v1")
		bad.Parts = nil
		var envs []conv.Inbound
		for i := range 40 {
			envs = append(envs, f.env(fmt.Sprintf("m%d", i), fmt.Sprintf("v%d", i%7)))
		}
		envs = append(envs, bad, f.env("m3", "v3"))
		errs := f.svc.AcceptAll(ctx, envs)
		if len(errs) != len(envs) {
			t.Fatalf("%d errors for %d envelopes", len(errs), len(envs))
		}
		for i, err := range errs {
			if i == 40 {
				if !errors.Is(err, conv.ErrInvalid) || !conv.Permanent(err) {
					t.Errorf("envelope without parts: %v, want permanent invalid", err)
				}
				continue
			}
			if err != nil {
				t.Errorf("envelope %d (%s): %v", i, envs[i].ExternalID, err)
			}
		}
		// 40 messages, each conversation's seqs gapless from 1.
		f.events.mu.Lock()
		ids := map[conv.MessageID]bool{}
		seqs := map[conv.ConversationID]map[int64]bool{}
		for _, e := range f.events.events {
			if e.Type != conv.EventMessageCreated {
				continue
			}
			ids[e.Message.ID] = true
			if seqs[e.Message.ConversationID] == nil {
				seqs[e.Message.ConversationID] = map[int64]bool{}
			}
			seqs[e.Message.ConversationID][e.Message.Seq] = true
		}
		f.events.mu.Unlock()
		if len(ids) != 40 || len(seqs) != 7 {
			t.Fatalf("%d messages in %d conversations, want 40 in 7", len(ids), len(seqs))
		}
		for c, got := range seqs {
			for s := int64(1); s <= int64(len(got)); s++ {
				if !got[s] {
					t.Fatalf("conversation %s: seqs %v are not 1..%d", c, got, len(got))
				}
			}
		}

		canceled, cancel := context.WithCancel(ctx)
		cancel()
		for i, err := range f.svc.AcceptAll(canceled, []conv.Inbound{f.env("late", "v1")}) {
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("envelope %d with the context canceled: %v", i, err)
			}
		}
	})
}
