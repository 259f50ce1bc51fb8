package storagetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// testConcurrentAppend: 8 writers × 50 appends, one Tx each, to the same
// conversation: seqs are exactly 1..400. The store may retry a Tx.
func testConcurrentAppend(t *testing.T, h Harness) {
	e := newEnv(t, h)
	tenant := e.tenant("acme")
	c := e.conversation(tenant)
	const writers, per = 8, 50
	seqs := make(chan int64, writers*per)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				m := e.message(c, conv.In, fmt.Sprintf("w%d-%d", w, i))
				m.ExternalID = fmt.Sprintf("w%d-%d", w, i)
				var got conv.Message
				err := e.s.Tx(e.ctx, tenant, func(tx storage.Tx) error {
					var err error
					got, err = tx.AppendMessage(e.ctx, m)
					return err
				})
				if err != nil {
					t.Errorf("writer %d append %d: %v", w, i, err)
					return
				}
				seqs <- got.Seq
			}
		}()
	}
	wg.Wait()
	close(seqs)
	var got []int64
	for s := range seqs {
		got = append(got, s)
	}
	slices.Sort(got)
	want := make([]int64, writers*per)
	for i := range want {
		want[i] = int64(i + 1)
	}
	same(t, "assigned seqs", got, want)

	var stored []conv.Message
	e.tx(tenant, func(tx storage.Tx) error {
		var err error
		stored, err = tx.Messages(e.ctx, c.ID, 0, 2*writers*per)
		return err
	})
	if len(stored) != writers*per {
		t.Fatalf("stored %d messages, want %d", len(stored), writers*per)
	}
	for i, m := range stored {
		if m.Seq != int64(i+1) {
			t.Fatalf("stored message %d has seq %d", i, m.Seq)
		}
	}
	if last := e.getConversation(tenant, c.ID).LastSeq; last != writers*per {
		t.Fatalf("LastSeq = %d, want %d", last, writers*per)
	}
}

// testConcurrentIngest: what ingest does for a new visitor whose first
// messages arrive on several nodes at once. Each Tx ensures the contact,
// opens the conversation and appends: all end in one contact and one
// conversation with gapless seqs.
func testConcurrentIngest(t *testing.T, h Harness) {
	e := newEnv(t, h)
	tenant := e.tenant("acme")
	ch := e.channel(tenant, nil)
	id := conv.Identity{Kind: "visitor", ExternalID: "racing-visitor"}
	const workers, per = 8, 5
	type result struct {
		contact conv.ContactID
		conv    conv.ConversationID
		seq     int64
	}
	results := make(chan result, workers*per)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				var r result
				err := e.s.Tx(e.ctx, tenant, func(tx storage.Tx) error {
					ct, _, err := tx.EnsureContact(e.ctx, id, "Racer")
					if err != nil {
						return err
					}
					c, _, err := tx.OpenConversation(e.ctx, ch.ID, ct.ID,
						conv.Conversation{ID: conv.NewID[conv.ConversationID](e.ids), CreatedAt: now()})
					if err != nil {
						return err
					}
					m := e.message(c, conv.In, "hi")
					m.ExternalID = fmt.Sprintf("race-%d-%d", w, i)
					m, err = tx.AppendMessage(e.ctx, m)
					if err != nil {
						return err
					}
					r = result{ct.ID, c.ID, m.Seq}
					return nil
				})
				if err != nil {
					t.Errorf("worker %d message %d: %v", w, i, err)
					return
				}
				results <- r
			}
		}()
	}
	wg.Wait()
	close(results)
	var (
		first result
		seqs  []int64
	)
	for r := range results {
		if first.contact == 0 {
			first = r
		}
		if r.contact != first.contact || r.conv != first.conv {
			t.Fatalf("contact/conversation %s/%s and %s/%s for one identity", r.contact, r.conv, first.contact, first.conv)
		}
		seqs = append(seqs, r.seq)
	}
	slices.Sort(seqs)
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("seqs %v are not 1..%d", seqs, workers*per)
		}
	}
	if len(seqs) != workers*per {
		t.Fatalf("%d messages stored, want %d", len(seqs), workers*per)
	}
}
