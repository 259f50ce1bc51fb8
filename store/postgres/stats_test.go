package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// TestKeepStatsAnalyzesYoungTables: a hot table that holds rows but was
// never analyzed is analyzed (so cached generic plans made while it was
// empty are dropped); once analyzed at its size it is left alone.
func TestKeepStatsAnalyzesYoungTables(t *testing.T) {
	s := openTest(t, Config{})
	ctx := context.Background()
	ids := testIDs(t)
	tenant := conv.NewID[conv.TenantID](ids)
	if err := s.CreateTenant(ctx, conv.Tenant{ID: tenant, Name: "acme", CreatedAt: now()}); err != nil {
		t.Fatal(err)
	}
	ch := conv.Channel{ID: conv.NewID[conv.ChannelID](ids), Kind: conv.KindTest, Name: "c", CreatedAt: now()}
	err := s.Tx(ctx, tenant, func(tx storage.Tx) error {
		if err := tx.CreateChannel(ctx, ch); err != nil {
			return err
		}
		items := make([]storage.IngestItem, 300)
		for i := range items {
			items[i] = storage.IngestItem{In: conv.Inbound{TenantID: tenant, ChannelID: ch.ID, ExternalID: fmt.Sprint("m", i),
				From: conv.Identity{Kind: "visitor", ExternalID: fmt.Sprint("v", i%30)}, SentAt: now(),
				Parts: []conv.Part{{Type: conv.PartText, Text: "hi"}}}, Now: now()}
		}
		_, err := storage.Ingest(ctx, tx, items)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	analyzed := func() (n int) {
		err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_user_tables WHERE relname = 'messages'
			AND last_analyze IS NOT NULL`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// The statistics system publishes the inserts within a second or so.
	testenv.WaitFor(t, 20*time.Second, "the inserts in pg_stat_user_tables", func() bool {
		var live int64
		s.pool.QueryRow(ctx, `SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'messages'`).Scan(&live)
		return live >= 300
	})
	if analyzed() != 0 {
		t.Fatal("messages analyzed before KeepStats ran")
	}
	if err := s.analyzeYoung(ctx); err != nil {
		t.Fatal(err)
	}
	if analyzed() != 1 {
		t.Fatal("a never-analyzed messages table with 300 rows was not analyzed")
	}
	var before time.Time
	s.pool.QueryRow(ctx, `SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'messages'`).Scan(&before)
	if err := s.analyzeYoung(ctx); err != nil {
		t.Fatal(err)
	}
	var after time.Time
	s.pool.QueryRow(ctx, `SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'messages'`).Scan(&after)
	if !after.Equal(before) {
		t.Fatalf("messages analyzed again at %s (first at %s) with nothing changed", after, before)
	}
}
