package postgres

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// TestTxRetries: Store.Tx runs fn again on serialization failures and
// deadlocks, a bounded number of times, and never on other errors.
func TestTxRetries(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	ctx := t.Context()
	tenant := conv.TenantID(7)
	if err := s.CreateTenant(ctx, conv.Tenant{ID: tenant, Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	serialization := &pgconn.PgError{Code: "40001", Message: "could not serialize access"}
	deadlock := &pgconn.PgError{Code: "40P01", Message: "deadlock detected"}
	unique := &pgconn.PgError{Code: "23505", Message: "duplicate key"}
	tests := []struct {
		name      string
		failures  []error // what fn returns on successive calls; then nil
		wantCalls int
		wantErr   error // nil: Tx succeeds
	}{
		{"serialization failure once", []error{fail("op", serialization)}, 2, nil},
		{"deadlock twice", []error{deadlock, fail("op", deadlock)}, 3, nil},
		{"always serialization failure", []error{serialization, serialization, serialization, serialization,
			serialization, serialization}, maxAttempts, conv.ErrUnavailable},
		{"unique violation is not retried", []error{fail("op", unique)}, 1, conv.ErrConflict},
		{"fn's own error is not retried", []error{conv.ErrInvalid}, 1, conv.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			err := s.Tx(ctx, tenant, func(storage.Tx) error {
				calls++
				if calls <= len(tc.failures) {
					return tc.failures[calls-1]
				}
				return nil
			})
			if calls != tc.wantCalls {
				t.Fatalf("fn ran %d times, want %d", calls, tc.wantCalls)
			}
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("Tx = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// TestTxDeadlockRetried provokes a real deadlock: two transactions append to
// two conversations in opposite orders. Postgres aborts one; Tx runs it
// again and both commit, with seqs still gapless.
func TestTxDeadlockRetried(t *testing.T) {
	t.Parallel()
	s := openTest(t, Config{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ids := testIDs(t)
	tenant := conv.TenantID(ids.Next())
	if err := s.CreateTenant(ctx, conv.Tenant{ID: tenant, Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	var convs [2]conv.Conversation
	err := s.Tx(ctx, tenant, func(tx storage.Tx) error {
		ch := conv.Channel{ID: conv.NewID[conv.ChannelID](ids), Kind: conv.KindTest, Name: "c"}
		if err := tx.CreateChannel(ctx, ch); err != nil {
			return err
		}
		for i := range convs {
			ct, _, err := tx.EnsureContact(ctx, conv.Identity{Kind: "visitor", ExternalID: string(rune('a' + i))}, "V")
			if err != nil {
				return err
			}
			if convs[i], _, err = tx.OpenConversation(ctx, ch.ID, ct.ID, conv.Conversation{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	appendTo := func(tx storage.Tx, c conv.Conversation) error {
		_, err := tx.AppendMessage(ctx, conv.Message{ConversationID: c.ID, Direction: conv.In,
			Sender: conv.Sender{Type: conv.SenderContact}, Parts: []conv.Part{{Type: conv.PartText, Text: "x"}},
			Status: conv.MsgReceived})
		return err
	}
	// Both first attempts hold their first row lock before either asks for
	// the second: that is the deadlock. Retries skip the rendezvous.
	var (
		holding  = [2]chan struct{}{make(chan struct{}), make(chan struct{})}
		attempts atomic.Int32
		wg       sync.WaitGroup
		errs     [2]error
	)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := true
			errs[w] = s.Tx(ctx, tenant, func(tx storage.Tx) error {
				attempts.Add(1)
				err := appendTo(tx, convs[w])
				if first {
					first = false
					close(holding[w])
					select {
					case <-holding[1-w]:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				if err != nil {
					return err
				}
				return appendTo(tx, convs[1-w])
			})
		}()
	}
	wg.Wait()
	for w, err := range errs {
		if err != nil {
			t.Fatalf("Tx %d: %v", w, err)
		}
	}
	if n := attempts.Load(); n != 3 {
		t.Fatalf("%d attempts, want 3 (one deadlock victim run again)", n)
	}
	for _, c := range convs {
		err := s.Tx(ctx, tenant, func(tx storage.Tx) error {
			msgs, err := tx.Messages(ctx, c.ID, 0, 10)
			if err != nil {
				return err
			}
			if len(msgs) != 2 || msgs[0].Seq != 1 || msgs[1].Seq != 2 {
				t.Errorf("conversation %s holds %d messages, want seqs 1 and 2", c.ID, len(msgs))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
