package dispatch_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/dispatch"
	"github.com/switchboard-hq/switchboard/core/live"
	"github.com/switchboard-hq/switchboard/core/secret"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/store/memory"
	"github.com/switchboard-hq/switchboard/store/sqlite"
)

func TestPick(t *testing.T) {
	g := conv.GroupID(7)
	ann := conv.Agent{ID: 1, Capacity: 2, GroupIDs: []conv.GroupID{g}}
	bob := conv.Agent{ID: 2, GroupIDs: []conv.GroupID{g}} // default capacity
	cat := conv.Agent{ID: 3}                              // no group
	tests := []struct {
		name   string
		c      conv.Conversation
		online []conv.Agent
		load   map[conv.AgentID]int
		want   conv.AgentID // 0: nobody
	}{
		{"fewest open wins", conv.Conversation{}, []conv.Agent{ann, bob, cat}, map[conv.AgentID]int{1: 1, 2: 0, 3: 3}, 2},
		{"tie goes to the lowest id", conv.Conversation{}, []conv.Agent{bob, ann}, map[conv.AgentID]int{}, 1},
		{"capacity is a hard limit", conv.Conversation{}, []conv.Agent{ann}, map[conv.AgentID]int{1: 2}, 0},
		{"default capacity", conv.Conversation{}, []conv.Agent{bob}, map[conv.AgentID]int{2: dispatch.DefaultCapacity}, 0},
		{"group members only", conv.Conversation{GroupID: g}, []conv.Agent{cat, bob}, map[conv.AgentID]int{}, 2},
		{"nobody of the group online", conv.Conversation{GroupID: g}, []conv.Agent{cat}, map[conv.AgentID]int{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := dispatch.Pick(tt.c, tt.online, tt.load)
			if (tt.want == 0) == ok || (ok && got.ID != tt.want) {
				t.Fatalf("Pick = %v,%v, want %v", got.ID, ok, tt.want)
			}
		})
	}
}

type recorder struct {
	mu     sync.Mutex
	events []conv.Event
}

func (r *recorder) PublishEvents(_ context.Context, evs []conv.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, evs...)
	return nil
}

// TestDrainQueue: conversations wait while nobody is online, go oldest
// first to the least loaded online agent up to capacity, and the rest wait
// for a free slot.
func TestDrainQueue(t *testing.T) {
	ctx := context.Background()
	ids, _ := conv.NewIDGen(1)
	keys, _ := secret.NewKeyring(make([]byte, 32))
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "db"), Sealer: keys, IDs: ids})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tenant := conv.Tenant{ID: conv.NewID[conv.TenantID](ids), Name: "t", CreatedAt: time.Now()}
	if err := st.CreateTenant(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	ch := conv.Channel{ID: conv.NewID[conv.ChannelID](ids), TenantID: tenant.ID, Kind: conv.KindTest, Name: "c", CreatedAt: time.Now()}
	ann := conv.Agent{ID: conv.NewID[conv.AgentID](ids), TenantID: tenant.ID, Email: "ann@x.test", Name: "Ann", Role: conv.RoleAgent, Capacity: 2, PasswordHash: "x", CreatedAt: time.Now()}
	bob := conv.Agent{ID: conv.NewID[conv.AgentID](ids), TenantID: tenant.ID, Email: "bob@x.test", Name: "Bob", Role: conv.RoleAgent, Capacity: 1, PasswordHash: "x", CreatedAt: time.Now()}
	var convs []conv.ConversationID
	err = st.Tx(ctx, tenant.ID, func(tx storage.Tx) error {
		if err := tx.CreateChannel(ctx, ch); err != nil {
			return err
		}
		for _, a := range []conv.Agent{ann, bob} {
			if err := tx.CreateAgent(ctx, a); err != nil {
				return err
			}
		}
		for i := range 5 {
			contact, _, err := tx.EnsureContact(ctx, conv.Identity{Kind: "test", ExternalID: string(rune('a' + i))}, "")
			if err != nil {
				return err
			}
			c, _, err := tx.OpenConversation(ctx, ch.ID, contact.ID, conv.Conversation{CreatedAt: time.Now().Add(time.Duration(i) * time.Second)})
			if err != nil {
				return err
			}
			convs = append(convs, c.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	presence := memory.NewPresence(memory.Config{})
	events := &recorder{}
	d, err := dispatch.New(dispatch.Config{Store: st, Presence: presence, Events: events})
	if err != nil {
		t.Fatal(err)
	}
	assignee := func(id conv.ConversationID) conv.AgentID {
		var c conv.Conversation
		st.Tx(ctx, tenant.ID, func(tx storage.Tx) error { c, err = tx.Conversation(ctx, id); return err })
		return c.AssigneeID
	}

	if n, err := d.Drain(ctx, tenant.ID); err != nil || n != 0 {
		t.Fatalf("Drain with nobody online = %d, %v; want 0", n, err)
	}
	presence.Set(ctx, tenant.ID, bob.ID, "s1", live.Away, time.Minute)
	if n, _ := d.Drain(ctx, tenant.ID); n != 0 {
		t.Fatalf("an away agent got %d conversations", n)
	}
	presence.Set(ctx, tenant.ID, ann.ID, "s1", live.Online, time.Minute)
	presence.Set(ctx, tenant.ID, bob.ID, "s1", live.Online, time.Minute)
	if n, err := d.Drain(ctx, tenant.ID); err != nil || n != 3 {
		t.Fatalf("Drain = %d, %v; want 3 (capacity 2 + 1)", n, err)
	}
	// Oldest first, least loaded first (ties to the lower id: Ann).
	want := []conv.AgentID{ann.ID, bob.ID, ann.ID, 0, 0}
	for i, id := range convs {
		if got := assignee(id); got != want[i] {
			t.Fatalf("conversation %d assigned to %v, want %v", i, got, want[i])
		}
	}
	if len(events.events) != 3 || events.events[0].Type != conv.EventConversationAssigned {
		t.Fatalf("published %v, want 3 conversation.assigned", events.events)
	}
	// Bob resolves his: the oldest waiting one goes to him.
	err = st.Tx(ctx, tenant.ID, func(tx storage.Tx) error {
		c, err := tx.Conversation(ctx, convs[1])
		if err != nil {
			return err
		}
		now := time.Now()
		c.Status, c.ResolvedAt = conv.StatusResolved, &now
		return tx.UpdateConversation(ctx, c)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Handle(ctx, []conv.Event{{Type: conv.EventConversationUpdated, TenantID: tenant.ID}}); err != nil {
		t.Fatal(err)
	}
	if got := assignee(convs[3]); got != bob.ID {
		t.Fatalf("after a slot freed, the oldest queued went to %v, want Bob", got)
	}
	if got := assignee(convs[4]); got != 0 {
		t.Fatalf("the newest stays queued, got %v", got)
	}
}
