package outbound_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/outbound"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

type nopBus struct{}

func (nopBus) PublishOutbound(context.Context, conv.Outbound) error { return nil }
func (nopBus) PublishEvents(context.Context, []conv.Event) error    { return nil }

func TestReplyQuotaPerCustomerMessage(t *testing.T) {
	ctx := context.Background()
	st, ids := testenv.SQLiteStore(t)
	tenant := conv.NewID[conv.TenantID](ids)
	if err := st.CreateTenant(ctx, conv.Tenant{ID: tenant, Name: "t", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	ch := conv.Channel{ID: conv.NewID[conv.ChannelID](ids), TenantID: tenant, Kind: conv.KindWeChatOA, Name: "oa", CreatedAt: time.Now()}
	var c conv.Conversation
	customerWrites := func(i int) {
		t.Helper()
		err := st.Tx(ctx, tenant, func(tx storage.Tx) error {
			if i == 0 {
				if err := tx.CreateChannel(ctx, ch); err != nil {
					return err
				}
			}
			outs, err := storage.Ingest(ctx, tx, []storage.IngestItem{{In: conv.Inbound{TenantID: tenant, ChannelID: ch.ID,
				ExternalID: fmt.Sprint("m", i), From: conv.Identity{Kind: "wechat_openid", ExternalID: "wx:o1"},
				Parts: []conv.Part{{Type: conv.PartText, Text: "hi"}}, SentAt: time.Now(), ReplyWindow: 48 * time.Hour},
				ConversationID: conv.NewID[conv.ConversationID](ids), MessageID: conv.NewID[conv.MessageID](ids), Now: time.Now()}})
			if err != nil {
				return err
			}
			c = outs[0].Conversation
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	svc, err := outbound.New(outbound.Config{Store: st, Bus: nopBus{}, IDs: ids, ReplyQuota: map[conv.ChannelKind]int{conv.KindWeChatOA: 5}})
	if err != nil {
		t.Fatal(err)
	}
	reply := func() (conv.Message, error) {
		return svc.Reply(ctx, tenant, outbound.Reply{ConversationID: c.ID, Sender: conv.Sender{Type: conv.SenderAgent, ID: "1"},
			Parts: []conv.Part{{Type: conv.PartText, Text: "answer"}}})
	}
	customerWrites(0)
	var last conv.Message
	for i := range 5 {
		if last, err = reply(); err != nil {
			t.Fatalf("reply %d: %v", i+1, err)
		}
	}
	if _, err := reply(); !errors.Is(err, conv.ErrConflict) {
		t.Fatalf("6th reply = %v, want ErrConflict (quota of 5 used)", err)
	}
	// A reply the channel refused did not use the quota.
	if err := svc.ApplyDelivery(ctx, conv.Delivery{TenantID: tenant, MessageID: last.ID, Status: conv.MsgFailed, Reason: "45047", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := reply(); err != nil {
		t.Fatalf("reply after a failed one: %v", err)
	}
	if _, err := reply(); !errors.Is(err, conv.ErrConflict) {
		t.Fatalf("reply past the quota again = %v, want ErrConflict", err)
	}
	// The customer's next message gives a fresh quota.
	customerWrites(1)
	if _, err := reply(); err != nil {
		t.Fatalf("reply after the customer wrote again: %v", err)
	}
	// Each part is a send: 1 used + 5 parts passes the quota of 5.
	five := make([]conv.Part, 5)
	for i := range five {
		five[i] = conv.Part{Type: conv.PartText, Text: fmt.Sprint("part ", i)}
	}
	_, err = svc.Reply(ctx, tenant, outbound.Reply{ConversationID: c.ID, Sender: conv.Sender{Type: conv.SenderAgent, ID: "1"}, Parts: five})
	if !errors.Is(err, conv.ErrConflict) {
		t.Fatalf("a 5-part reply after 1 send = %v, want ErrConflict", err)
	}
	if _, err := svc.Reply(ctx, tenant, outbound.Reply{ConversationID: c.ID, Sender: conv.Sender{Type: conv.SenderAgent, ID: "1"}, Parts: five[:4]}); err != nil {
		t.Fatalf("a 4-part reply after 1 send: %v", err)
	}
}
