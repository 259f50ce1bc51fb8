package postgres

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// BenchmarkAppendMessage: one op is a Tx of 100 appends to one
// conversation, the shape of a busy ingest batch.
func BenchmarkAppendMessage(b *testing.B) {
	const batch = 100
	s := openTest(b, Config{})
	ctx := context.Background()
	ids := testIDs(b)
	tenant := conv.TenantID(ids.Next())
	if err := s.CreateTenant(ctx, conv.Tenant{ID: tenant, Name: "bench"}); err != nil {
		b.Fatal(err)
	}
	var c conv.Conversation
	err := s.Tx(ctx, tenant, func(tx storage.Tx) error {
		ch := conv.Channel{ID: conv.NewID[conv.ChannelID](ids), Kind: conv.KindTest, Name: "bench"}
		if err := tx.CreateChannel(ctx, ch); err != nil {
			return err
		}
		ct, _, err := tx.EnsureContact(ctx, conv.Identity{Kind: "visitor", ExternalID: "bench"}, "Bench")
		if err != nil {
			return err
		}
		c, _, err = tx.OpenConversation(ctx, ch.ID, ct.ID, conv.Conversation{})
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	parts := []conv.Part{{Type: conv.PartText, Text: "hello, I would like to ask about my order"}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		err := s.Tx(ctx, tenant, func(tx storage.Tx) error {
			for range batch {
				id := conv.NewID[conv.MessageID](ids)
				if _, err := tx.AppendMessage(ctx, conv.Message{ID: id, ConversationID: c.ID, Direction: conv.In,
					Sender: conv.Sender{Type: conv.SenderContact, ID: c.ContactID.String()}, Parts: parts,
					ExternalID: id.String(), Status: conv.MsgReceived}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkIngest: what ingest's writers do on Postgres. One op is one
// envelope; writers commit batches of batch envelopes from 1000 senders
// concurrently, through storage.IngestEach (a round trip per statement)
// or the store's set-wise IngestBatch (three round trips per batch).
func BenchmarkIngest(b *testing.B) {
	for _, path := range []string{"each", "batch"} {
		for _, shape := range []struct{ writers, batch int }{{1, 64}, {4, 16}, {4, 64}} {
			b.Run(fmt.Sprintf("%s/writers=%d/batch=%d", path, shape.writers, shape.batch), func(b *testing.B) {
				benchmarkIngest(b, path == "batch", shape.writers, shape.batch)
			})
		}
	}
}

func benchmarkIngest(b *testing.B, batched bool, writers, batch int) {
	const senders = 1000
	s := openTest(b, Config{})
	ctx := context.Background()
	ids := testIDs(b)
	tenant := conv.TenantID(ids.Next())
	if err := s.CreateTenant(ctx, conv.Tenant{ID: tenant, Name: "bench"}); err != nil {
		b.Fatal(err)
	}
	ch := conv.Channel{ID: conv.NewID[conv.ChannelID](ids), Kind: conv.KindTest, Name: "bench"}
	if err := s.Tx(ctx, tenant, func(tx storage.Tx) error { return tx.CreateChannel(ctx, ch) }); err != nil {
		b.Fatal(err)
	}
	parts := []conv.Part{{Type: conv.PartText, Text: "benchmark message body of a typical short length"}}
	var next atomic.Int64
	item := func() storage.IngestItem {
		i := next.Add(1)
		return storage.IngestItem{
			In: conv.Inbound{TenantID: tenant, ChannelID: ch.ID, ExternalID: fmt.Sprintf("m-%d", i),
				From: conv.Identity{Kind: "visitor", ExternalID: fmt.Sprintf("v-%d", i%senders)}, Parts: parts, SentAt: time.Now()},
			ConversationID: conv.NewID[conv.ConversationID](ids),
			MessageID:      conv.NewID[conv.MessageID](ids),
			Now:            time.Now(),
		}
	}
	var left atomic.Int64
	left.Store(int64(b.N))
	b.ResetTimer()
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := min(int64(batch), left.Add(-int64(batch))+int64(batch))
				if n <= 0 {
					return
				}
				items := make([]storage.IngestItem, n)
				for i := range items {
					items[i] = item()
				}
				err := s.Tx(ctx, tenant, func(tx storage.Tx) error {
					var err error
					if batched {
						_, err = storage.Ingest(ctx, tx, items)
					} else {
						_, err = storage.IngestEach(ctx, tx, items)
					}
					return err
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "envelopes/s")
}
