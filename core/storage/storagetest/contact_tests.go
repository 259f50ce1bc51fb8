package storagetest

import (
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// testContacts: EnsureContact creates once (the store makes the id), then
// returns the same contact with its original name; identities are listed;
// identities are per tenant and per kind.
func testContacts(t *testing.T, h Harness) {
	e := newEnv(t, h)
	a, b := e.tenant("acme"), e.tenant("globex")
	id := conv.Identity{Kind: "openid", ExternalID: "oABC-123"}
	ensure := func(tenant conv.TenantID, id conv.Identity, name string) (conv.Contact, bool) {
		t.Helper()
		var (
			c       conv.Contact
			created bool
		)
		e.tx(tenant, func(tx storage.Tx) error {
			var err error
			c, created, err = tx.EnsureContact(e.ctx, id, name)
			return err
		})
		return c, created
	}
	before := now().Add(-time.Second)
	first, created := ensure(a, id, "Alice")
	if !created {
		t.Fatal("first EnsureContact: created = false")
	}
	if first.ID.IsZero() || first.TenantID != a || first.Name != "Alice" || first.CreatedAt.Before(before) {
		t.Fatalf("first EnsureContact = %+v", first)
	}
	same(t, "identities", first.Identities, []conv.Identity{id})

	again, created := ensure(a, id, "Renamed")
	if created || again.ID != first.ID || again.Name != "Alice" {
		t.Fatalf("second EnsureContact = %+v created=%v, want contact %s named Alice, not created", again, created, first.ID)
	}
	same(t, "identities again", again.Identities, []conv.Identity{id})

	e.tx(a, func(tx storage.Tx) error {
		got, err := tx.Contact(e.ctx, first.ID)
		ok(t, "Contact", err)
		if got.ID != first.ID || got.TenantID != a || got.Name != "Alice" || !got.CreatedAt.Equal(first.CreatedAt) {
			t.Fatalf("Contact = %+v, want %+v", got, first)
		}
		same(t, "Contact identities", got.Identities, []conv.Identity{id})
		_, err = tx.Contact(e.ctx, 777)
		wantKind(t, "Contact(unknown)", err, conv.ErrNotFound)
		return nil
	})

	inB, created := ensure(b, id, "Alice at B")
	if !created || inB.ID == first.ID || inB.TenantID != b {
		t.Fatalf("same identity in tenant B = %+v created=%v, want a new contact of B", inB, created)
	}
	otherKind, created := ensure(a, conv.Identity{Kind: "unionid", ExternalID: id.ExternalID}, "Alice?")
	if !created || otherKind.ID == first.ID {
		t.Fatalf("same external id, other kind = %+v created=%v, want a new contact", otherKind, created)
	}
	e.tx(b, func(tx storage.Tx) error {
		_, err := tx.Contact(e.ctx, first.ID)
		wantKind(t, "Contact of another tenant", err, conv.ErrNotFound)
		return nil
	})
}

// testConversations: OpenConversation reuses the open conversation and opens
// a new one once it is resolved; UpdateConversation writes exactly its
// documented fields (never LastSeq, channel, contact or CreatedAt).
func testConversations(t *testing.T, h Harness) {
	e := newEnv(t, h)
	tenant := e.tenant("acme")
	ch := e.channel(tenant, nil)
	ct := e.contact(tenant, "v1")
	g1, g2 := conv.NewID[conv.GroupID](e.ids), conv.NewID[conv.GroupID](e.ids)
	agent := conv.Agent{ID: conv.NewID[conv.AgentID](e.ids), TenantID: tenant, Email: "a@example.com",
		Name: "A", Role: conv.RoleAgent, Capacity: 5, CreatedAt: now()}
	e.tx(tenant, func(tx storage.Tx) error {
		for _, g := range []conv.GroupID{g1, g2} {
			if err := tx.CreateGroup(e.ctx, conv.Group{ID: g, TenantID: tenant, Name: "g" + g.String(), CreatedAt: now()}); err != nil {
				return err
			}
		}
		return tx.CreateAgent(e.ctx, agent)
	})
	open := func(tmpl conv.Conversation) (conv.Conversation, bool) {
		t.Helper()
		var (
			c      conv.Conversation
			opened bool
		)
		e.tx(tenant, func(tx storage.Tx) error {
			var err error
			c, opened, err = tx.OpenConversation(e.ctx, ch.ID, ct.ID, tmpl)
			return err
		})
		return c, opened
	}
	created := now().Add(-time.Minute)
	tmpl := conv.Conversation{ID: conv.NewID[conv.ConversationID](e.ids), Priority: 3, Scene: "menu:pricing",
		GroupID: g1, CreatedAt: created}
	first, opened := open(tmpl)
	if !opened {
		t.Fatal("first OpenConversation: opened = false")
	}
	want := conv.Conversation{ID: tmpl.ID, TenantID: tenant, ChannelID: ch.ID, ContactID: ct.ID,
		Status: conv.StatusOpen, GroupID: g1, Priority: 3, Scene: "menu:pricing", CreatedAt: created,
		UpdatedAt: first.UpdatedAt}
	same(t, "opened conversation", normConversation(first), normConversation(want))
	same(t, "Conversation", normConversation(e.getConversation(tenant, first.ID)), normConversation(first))

	reused, opened := open(conv.Conversation{ID: conv.NewID[conv.ConversationID](e.ids), Priority: 1, CreatedAt: now()})
	if opened {
		t.Fatal("second OpenConversation opened a new conversation while one is open")
	}
	same(t, "reused conversation", normConversation(reused), normConversation(first))

	msg := e.append(e.message(first, conv.In, "hello"))
	deadline := now().Add(48 * time.Hour)
	resolvedAt := now()
	upd := first // stale: LastSeq 0
	upd.Status = conv.StatusResolved
	upd.AssigneeID = agent.ID
	upd.GroupID = g2
	upd.Priority = 9
	upd.Scene = "qr:42"
	upd.ReplyDeadline = &deadline
	upd.ResolvedAt = &resolvedAt
	upd.UpdatedAt = now()
	upd.ChannelID, upd.ContactID, upd.CreatedAt = 1, 2, now().Add(time.Hour) // must be ignored
	e.tx(tenant, func(tx storage.Tx) error { return tx.UpdateConversation(e.ctx, upd) })
	got := e.getConversation(tenant, first.ID)
	wantUpd := first
	wantUpd.Status, wantUpd.AssigneeID, wantUpd.GroupID, wantUpd.Priority, wantUpd.Scene =
		conv.StatusResolved, agent.ID, g2, 9, "qr:42"
	wantUpd.ReplyDeadline, wantUpd.ResolvedAt = &deadline, &resolvedAt
	wantUpd.LastSeq = msg.Seq
	wantUpd.UpdatedAt = got.UpdatedAt
	same(t, "updated conversation", normConversation(got), normConversation(wantUpd))

	next, opened := open(conv.Conversation{ID: conv.NewID[conv.ConversationID](e.ids), CreatedAt: now()})
	if !opened || next.ID == first.ID || next.Status != conv.StatusOpen || next.LastSeq != 0 {
		t.Fatalf("OpenConversation after resolve = %+v opened=%v, want a new open conversation", next, opened)
	}
	if got := e.getConversation(tenant, first.ID); got.Status != conv.StatusResolved {
		t.Fatalf("resolved conversation is %s after a new one opened", got.Status)
	}

	// Nullable fields clear again.
	cleared := e.getConversation(tenant, first.ID)
	cleared.AssigneeID, cleared.GroupID, cleared.ReplyDeadline, cleared.ResolvedAt = 0, 0, nil, nil
	cleared.Status = conv.StatusResolved
	e.tx(tenant, func(tx storage.Tx) error { return tx.UpdateConversation(e.ctx, cleared) })
	got = e.getConversation(tenant, first.ID)
	if got.AssigneeID != 0 || got.GroupID != 0 || got.ReplyDeadline != nil || got.ResolvedAt != nil {
		t.Fatalf("cleared conversation = %+v", got)
	}

	e.tx(tenant, func(tx storage.Tx) error {
		_, err := tx.Conversation(e.ctx, 31337)
		wantKind(t, "Conversation(unknown)", err, conv.ErrNotFound)
		return nil
	})
	ghost := first
	ghost.ID = 31337
	wantKind(t, "UpdateConversation(unknown)",
		e.txErr(tenant, func(tx storage.Tx) error { return tx.UpdateConversation(e.ctx, ghost) }), conv.ErrNotFound)
}

// testConversationIsolation: a tenant can neither read nor update another
// tenant's conversation, nor open one on another tenant's channel or contact.
func testConversationIsolation(t *testing.T, h Harness) {
	e := newEnv(t, h)
	a, b := e.tenant("acme"), e.tenant("globex")
	ca := e.conversation(a)
	chB := e.channel(b, nil)
	ctB := e.contact(b, "vb")
	e.tx(b, func(tx storage.Tx) error {
		_, err := tx.Conversation(e.ctx, ca.ID)
		wantKind(t, "Conversation of another tenant", err, conv.ErrNotFound)
		return nil
	})
	upd := ca
	upd.TenantID = b
	upd.Status = conv.StatusResolved
	wantKind(t, "UpdateConversation of another tenant",
		e.txErr(b, func(tx storage.Tx) error { return tx.UpdateConversation(e.ctx, upd) }), conv.ErrNotFound)
	if got := e.getConversation(a, ca.ID); got.Status != conv.StatusOpen {
		t.Fatalf("tenant B's update changed tenant A's conversation: %s", got.Status)
	}
	tests := []struct {
		name    string
		channel conv.ChannelID
		contact conv.ContactID
	}{
		{"other tenant's channel", ca.ChannelID, ctB.ID},
		{"other tenant's contact", chB.ID, ca.ContactID},
		{"unknown channel", 555, ctB.ID},
		{"unknown contact", chB.ID, 556},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := e.txErr(b, func(tx storage.Tx) error {
				_, _, err := tx.OpenConversation(e.ctx, tc.channel, tc.contact,
					conv.Conversation{ID: conv.NewID[conv.ConversationID](e.ids), CreatedAt: now()})
				return err
			})
			wantKind(t, "OpenConversation", err, conv.ErrNotFound)
		})
	}
}
