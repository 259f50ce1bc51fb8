package storagetest

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

// BenchIngest is what ingest's writers do, for a store's BenchmarkIngest:
// writers commit batches of batch envelopes from 1,000 senders
// concurrently, through storage.Ingest (the store's set-wise path, when it
// has one) or, with each, storage.IngestEach. One op is one envelope; it
// reports envelopes/s. s must be empty but for what it needs to open.
func BenchIngest(b *testing.B, s storage.Store, ids *conv.IDGen, each bool, writers, batch int) {
	const senders = 1000
	ctx := context.Background()
	tenant := conv.NewID[conv.TenantID](ids)
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
		wg.Go(func() {
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
					if each {
						_, err = storage.IngestEach(ctx, tx, items)
					} else {
						_, err = storage.Ingest(ctx, tx, items)
					}
					return err
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "envelopes/s")
}
