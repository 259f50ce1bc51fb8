package postgres

import (
	"context"
	"fmt"
	"testing"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/core/storage/storagetest"
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

// BenchmarkIngest: what ingest's writers do on Postgres
// (storagetest.BenchIngest), through storage.IngestEach (a round trip per
// statement) or the store's set-wise path (three round trips per batch).
func BenchmarkIngest(b *testing.B) {
	for _, path := range []string{"each", "batch"} {
		for _, shape := range []struct{ writers, batch int }{{1, 64}, {4, 16}, {4, 64}} {
			b.Run(fmt.Sprintf("%s/writers=%d/batch=%d", path, shape.writers, shape.batch), func(b *testing.B) {
				ids := testIDs(b)
				storagetest.BenchIngest(b, openTest(b, Config{IDs: ids}), ids, path == "each", shape.writers, shape.batch)
			})
		}
	}
}
