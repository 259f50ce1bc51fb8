package storagetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// testTenants: create, read by id and name, list, unknown and duplicates.
// Tenants lists exactly the tenants of the (fresh) store, in any order.
func testTenants(t *testing.T, h Harness) {
	e := newEnv(t, h)
	ctx := e.ctx
	a := conv.Tenant{ID: 101, Name: "acme", CreatedAt: now()}
	b := conv.Tenant{ID: 102, Name: "globex", CreatedAt: now().Add(time.Second)}
	for _, x := range []conv.Tenant{a, b} {
		ok(t, "CreateTenant "+x.Name, e.s.CreateTenant(ctx, x))
	}

	got, err := e.s.Tenant(ctx, a.ID)
	ok(t, "Tenant", err)
	same(t, "Tenant", normTenant(got), normTenant(a))
	got, err = e.s.TenantByName(ctx, "globex")
	ok(t, "TenantByName", err)
	same(t, "TenantByName", normTenant(got), normTenant(b))

	list, err := e.s.Tenants(ctx)
	ok(t, "Tenants", err)
	for i := range list {
		list[i] = normTenant(list[i])
	}
	slices.SortFunc(list, func(x, y conv.Tenant) int { return int(x.ID - y.ID) })
	same(t, "Tenants", list, []conv.Tenant{normTenant(a), normTenant(b)})

	_, err = e.s.Tenant(ctx, 999)
	wantKind(t, "Tenant(unknown)", err, conv.ErrNotFound)
	_, err = e.s.TenantByName(ctx, "nobody")
	wantKind(t, "TenantByName(unknown)", err, conv.ErrNotFound)

	tests := []struct {
		name string
		t    conv.Tenant
	}{
		{"duplicate name", conv.Tenant{ID: 103, Name: "acme", CreatedAt: now()}},
		{"duplicate id", conv.Tenant{ID: 101, Name: "initech", CreatedAt: now()}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantKind(t, "CreateTenant", e.s.CreateTenant(ctx, tc.t), conv.ErrConflict)
		})
	}
	list, err = e.s.Tenants(ctx)
	ok(t, "Tenants", err)
	if len(list) != 2 {
		t.Fatalf("after rejected duplicates, %d tenants, want 2", len(list))
	}
}

// testDeadLetters: every field round-trips; DeadLetters lists newest first
// (by CreatedAt) and honours limit. The store assigns ID when it is zero.
func testDeadLetters(t *testing.T, h Harness) {
	e := newEnv(t, h)
	ctx := e.ctx
	tenant := e.tenant("acme")
	base := now().Add(-time.Hour)
	var want []conv.DeadLetter
	for i, topic := range []string{"inbound", "outbound.test", "delivery"} {
		d := conv.DeadLetter{
			Topic:     topic,
			Handler:   "handler-" + topic,
			MessageID: "uuid-" + topic,
			Reason:    "poison: " + topic,
			Payload:   []byte{0, 1, 2, 0xff, byte(i)},
			Metadata:  map[string]string{"attempt": "3", "topic": topic},
			TenantID:  tenant,
			CreatedAt: base.Add(time.Duration(i) * time.Minute),
		}
		if i == 1 {
			d.Metadata = nil
			d.TenantID = 0 // a message whose tenant could not be parsed
		}
		ok(t, "AddDeadLetter", e.s.AddDeadLetter(ctx, d))
		want = append(want, d)
	}
	slices.Reverse(want)

	got, err := e.s.DeadLetters(ctx, 10)
	ok(t, "DeadLetters", err)
	if len(got) != 3 {
		t.Fatalf("DeadLetters(10) = %d letters, want 3", len(got))
	}
	seen := map[int64]bool{}
	for i := range got {
		if got[i].ID == 0 || seen[got[i].ID] {
			t.Fatalf("dead letter %d has id %d: want distinct non-zero ids", i, got[i].ID)
		}
		seen[got[i].ID] = true
		want[i].ID = got[i].ID
		same(t, "dead letter", normDeadLetter(got[i]), normDeadLetter(want[i]))
	}
	got, err = e.s.DeadLetters(ctx, 2)
	ok(t, "DeadLetters(2)", err)
	if len(got) != 2 || got[0].Topic != "delivery" || got[1].Topic != "outbound.test" {
		t.Fatalf("DeadLetters(2) = %+v, want the two newest", got)
	}
}

// testPingClose: a live store answers Ping; a closed one does not.
func testPingClose(t *testing.T, h Harness) {
	e := newEnv(t, h)
	ok(t, "Ping", e.s.Ping(e.ctx))
	ok(t, "Close", e.s.Close())
	if err := e.s.Ping(e.ctx); err == nil {
		t.Fatal("Ping after Close succeeded")
	}
}

// testTxRollback: fn's error rolls everything back and is what Tx returns;
// Tx.Tenant names the tenant it was opened for.
func testTxRollback(t *testing.T, h Harness) {
	e := newEnv(t, h)
	tenant := e.tenant("acme")
	c := e.conversation(tenant)
	boom := errors.New("boom")
	ch := conv.Channel{ID: conv.NewID[conv.ChannelID](e.ids), TenantID: tenant, Kind: conv.KindTest,
		Name: "rolled back", Secrets: map[string]string{"k": "v"}, CreatedAt: now()}
	agent := conv.Agent{ID: conv.NewID[conv.AgentID](e.ids), TenantID: tenant, Email: "gone@example.com",
		Name: "Gone", Role: conv.RoleAgent, CreatedAt: now()}
	m := e.message(c, conv.In, "rolled back")
	m.ExternalID = "rolled-back"
	err := e.txErr(tenant, func(tx storage.Tx) error {
		if tx.Tenant() != tenant {
			t.Errorf("Tx.Tenant() = %s, want %s", tx.Tenant(), tenant)
		}
		if err := tx.CreateChannel(e.ctx, ch); err != nil {
			return err
		}
		if err := tx.CreateAgent(e.ctx, agent); err != nil {
			return err
		}
		if _, _, err := tx.EnsureContact(e.ctx, conv.Identity{Kind: "visitor", ExternalID: "ghost"}, "Ghost"); err != nil {
			return err
		}
		if _, err := tx.AppendMessage(e.ctx, m); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Tx = %v, want the error fn returned", err)
	}
	e.tx(tenant, func(tx storage.Tx) error {
		_, err := tx.Channel(e.ctx, ch.ID)
		wantKind(t, "Channel after rollback", err, conv.ErrNotFound)
		_, err = tx.Agent(e.ctx, agent.ID)
		wantKind(t, "Agent after rollback", err, conv.ErrNotFound)
		_, err = tx.Message(e.ctx, m.ID)
		wantKind(t, "Message after rollback", err, conv.ErrNotFound)
		_, err = tx.MessageByExternalID(e.ctx, c.ChannelID, "rolled-back")
		wantKind(t, "MessageByExternalID after rollback", err, conv.ErrNotFound)
		_, created, err := tx.EnsureContact(e.ctx, conv.Identity{Kind: "visitor", ExternalID: "ghost"}, "Ghost")
		if err != nil || !created {
			t.Fatalf("EnsureContact after rollback: created=%v err=%v, want a new contact", created, err)
		}
		got, err := tx.Conversation(e.ctx, c.ID)
		if err != nil || got.LastSeq != 0 {
			t.Fatalf("conversation after rollback: last_seq=%d err=%v, want 0", got.LastSeq, err)
		}
		return nil
	})
	// The seq taken by the rolled-back append is free again: no gap.
	if got := e.append(e.message(c, conv.In, "first")); got.Seq != 1 {
		t.Fatalf("seq after a rolled-back append = %d, want 1", got.Seq)
	}
}

// testRead: a Read transaction sees what was committed, is scoped to its
// tenant, refuses writes, and runs while a write transaction is open (it
// does not queue behind the writer).
func testRead(t *testing.T, h Harness) {
	e := newEnv(t, h)
	tenant := e.tenant("acme")
	other := e.tenant("other")
	c := e.conversation(tenant)
	m := e.message(c, conv.In, "committed")
	e.tx(tenant, func(tx storage.Tx) error {
		_, err := tx.AppendMessage(e.ctx, m)
		return err
	})
	err := e.s.Read(e.ctx, tenant, func(tx storage.Tx) error {
		got, err := tx.Message(e.ctx, m.ID)
		if err != nil {
			return err
		}
		if got.Parts[0].Text != "committed" {
			t.Errorf("Read saw %v", got)
		}
		if _, _, err := tx.EnsureContact(e.ctx, conv.Identity{Kind: "visitor", ExternalID: "write-in-read"}, ""); err == nil {
			t.Error("a write inside Read succeeded")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	err = e.s.Read(e.ctx, other, func(tx storage.Tx) error {
		_, err := tx.Message(e.ctx, m.ID)
		wantKind(t, "another tenant's message in Read", err, conv.ErrNotFound)
		return nil
	})
	if err != nil {
		t.Fatalf("Read other: %v", err)
	}
	if err := e.s.Read(e.ctx, 0, func(storage.Tx) error { return nil }); !errors.Is(err, conv.ErrInvalid) {
		t.Fatalf("Read without a tenant = %v, want ErrInvalid", err)
	}
	// A reader runs while a writer holds its transaction open.
	inWrite, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- e.s.Tx(e.ctx, tenant, func(tx storage.Tx) error {
			if _, _, err := tx.EnsureContact(e.ctx, conv.Identity{Kind: "visitor", ExternalID: "slow-writer"}, ""); err != nil {
				return err
			}
			close(inWrite)
			<-release
			return nil
		})
	}()
	<-inWrite
	err = e.s.Read(e.ctx, tenant, func(tx storage.Tx) error {
		_, err := tx.ContactByIdentity(e.ctx, conv.Identity{Kind: "visitor", ExternalID: "slow-writer"})
		wantKind(t, "uncommitted contact seen by Read", err, conv.ErrNotFound)
		return nil
	})
	close(release)
	if err != nil {
		t.Fatalf("Read during a write: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("writer: %v", err)
	}
}
