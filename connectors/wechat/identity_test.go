package wechat_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/connectors/wechat"
	"github.com/switchboard-hq/switchboard/connectors/wechat/wechattest"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// TestUnionIDJoinsContacts: one person follows two Official Accounts of
// one Open Platform account. Each app knows them by its own openid; user
// info gives both the same unionid, and the two contacts become one, with
// both conversations in its history.
func TestUnionIDJoinsContacts(t *testing.T) {
	fake := wechattest.Start(t, wechattest.Config{})
	const appB = "wxb0000000000000b2"
	fake.AddApp(appID, "s3cret")
	fake.AddApp(appB, "s3cret-b")
	fake.AddUser(appID, openid, "o6_bmasdasdsad6_2sgVt7hMZOPfL")
	fake.AddUser(appB, "oB_openid_of_the_same_person_1", "o6_bmasdasdsad6_2sgVt7hMZOPfL")
	fake.AddUser(appID, "oLoner_without_unionid_000000", "")

	e := newHookEnv(t, conv.KindWeChatOA, `{"app_id":"`+appID+`","api_base":"`+fake.URL()+`"}`, safeSecrets())
	ctx := t.Context()
	chB := conv.Channel{ID: conv.NewID[conv.ChannelID](e.ids), TenantID: e.channel.TenantID, Kind: conv.KindWeChatOA, Name: "second OA",
		Config:  json.RawMessage(`{"app_id":"` + appB + `","api_base":"` + fake.URL() + `"}`),
		Secrets: map[string]string{"app_secret": "s3cret-b", "token": token}, CreatedAt: time.Now()}
	if err := e.store.Tx(ctx, e.channel.TenantID, func(tx storage.Tx) error { return tx.CreateChannel(ctx, chB) }); err != nil {
		t.Fatal(err)
	}
	ingest := func(ch conv.Channel, app, who, ext string) conv.Event {
		t.Helper()
		var out []storage.IngestOutcome
		err := e.store.Tx(ctx, ch.TenantID, func(tx storage.Tx) error {
			var err error
			out, err = storage.Ingest(ctx, tx, []storage.IngestItem{{In: conv.Inbound{TenantID: ch.TenantID, ChannelID: ch.ID, ExternalID: ext,
				From: wechat.OpenIDIdentity(app, who), Parts: []conv.Part{{Type: conv.PartText, Text: "hi"}}, SentAt: time.Now()},
				ConversationID: conv.NewID[conv.ConversationID](e.ids), MessageID: conv.NewID[conv.MessageID](e.ids), Now: time.Now()}})
			return err
		})
		if err != nil || !out[0].Opened {
			t.Fatalf("ingest %s: %+v %v", ext, out, err)
		}
		c := out[0].Conversation
		return conv.Event{Type: conv.EventConversationOpened, TenantID: ch.TenantID, Conversation: &c, At: time.Now()}
	}
	evA := ingest(e.channel, appID, openid, "a1")
	evB := ingest(chB, appB, "oB_openid_of_the_same_person_1", "b1")
	evL := ingest(e.channel, appID, "oLoner_without_unionid_000000", "l1")
	if err := e.conn.Events(ctx, []conv.Event{evA, evB, evL}); err != nil {
		t.Fatal(err)
	}
	contactOf := func(id conv.Identity) conv.Contact {
		t.Helper()
		var c conv.Contact
		if err := e.store.Read(ctx, e.channel.TenantID, func(tx storage.Tx) error {
			var err error
			c, err = tx.ContactByIdentity(ctx, id)
			return err
		}); err != nil {
			t.Fatalf("contact of %v: %v", id, err)
		}
		return c
	}
	a := contactOf(wechat.OpenIDIdentity(appID, openid))
	b := contactOf(wechat.OpenIDIdentity(appB, "oB_openid_of_the_same_person_1"))
	if a.ID != b.ID || len(a.Identities) != 3 {
		t.Fatalf("contacts after user info: %+v and %+v, want one contact with both openids and the unionid", a, b)
	}
	for _, ev := range []conv.Event{evA, evB} {
		var cv conv.Conversation
		e.store.Read(ctx, e.channel.TenantID, func(tx storage.Tx) error {
			var err error
			cv, err = tx.Conversation(ctx, ev.Conversation.ID)
			return err
		})
		if cv.ContactID != a.ID {
			t.Errorf("conversation %s belongs to %s, want the joined contact %s", cv.ID, cv.ContactID, a.ID)
		}
	}
	if l := contactOf(wechat.OpenIDIdentity(appID, "oLoner_without_unionid_000000")); l.ID == a.ID || len(l.Identities) != 1 {
		t.Fatalf("a customer without unionid = %+v", l)
	}
	if calls := fake.Calls(wechattest.PathUserInfo); calls != 3 {
		t.Errorf("user/info called %d times, want once per contact (3)", calls)
	}
	// Opened again (another conversation later): no second lookup.
	if err := e.conn.Events(ctx, []conv.Event{evA}); err != nil {
		t.Fatal(err)
	}
	if calls := fake.Calls(wechattest.PathUserInfo); calls != 3 {
		t.Errorf("user/info called %d times after a repeat, want still 3", calls)
	}
}

// TestClientsFollowCredentials: a channel whose secret changes moves to a
// new API client; the old one, used by no channel, is dropped (its token
// refresher stopped) instead of piling up.
func TestClientsFollowCredentials(t *testing.T) {
	fake := wechattest.Start(t, wechattest.Config{})
	fake.AddApp(appID, "s3cret")
	fake.AddUser(appID, openid, "")
	e := newHookEnv(t, conv.KindWeChatOA, `{"app_id":"`+appID+`","api_base":"`+fake.URL()+`"}`, safeSecrets(),
		func(c *wechat.Config) { c.ChannelTTL = time.Nanosecond })
	ctx := t.Context()
	send := func(id conv.MessageID) {
		t.Helper()
		fake.Interact(appID, openid, time.Now())
		err := e.conn.Outbound(ctx, conv.Outbound{TenantID: e.channel.TenantID, ChannelID: e.channel.ID, Kind: conv.KindWeChatOA,
			To:      []conv.Identity{wechat.OpenIDIdentity(appID, openid)},
			Message: conv.Message{ID: id, Parts: []conv.Part{{Type: conv.PartText, Text: "hi"}}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	send(1)
	if n := wechat.ClientCount(e.conn); n != 1 {
		t.Fatalf("%d clients after one send, want 1", n)
	}
	ch := e.channel
	ch.Secrets = safeSecrets()
	ch.Secrets["app_secret"] = "rotated"
	fake.AddApp(appID, "rotated")
	if err := e.store.Tx(ctx, ch.TenantID, func(tx storage.Tx) error { return tx.UpdateChannel(ctx, ch) }); err != nil {
		t.Fatal(err)
	}
	send(2)
	if n := wechat.ClientCount(e.conn); n != 1 {
		t.Fatalf("%d clients after the secret changed, want 1 (the old one dropped)", n)
	}
}
