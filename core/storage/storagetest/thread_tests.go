package storagetest

import (
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// threaded is an envelope from sender on a threaded channel.
func (g *ingestEnv) threaded(ext, sender string, th conv.Thread) storage.IngestItem {
	it := g.item(ext, sender)
	it.In.Thread = &th
	return it
}

// resolve resolves conversation id at at.
func (g *ingestEnv) resolve(id conv.ConversationID, at time.Time) {
	g.t.Helper()
	g.tx(g.tenant, func(tx storage.Tx) error {
		c, err := tx.Conversation(g.ctx, id)
		if err != nil {
			return err
		}
		at := micro(at)
		c.Status, c.ResolvedAt = conv.StatusResolved, &at
		return tx.UpdateConversation(g.ctx, c)
	})
}

// testIngestThreads pins threaded placement (conv.Thread): a new thread
// opens a conversation of its own even while the sender has one open;
// refs, an explicit conversation and the weak key join theirs, in that
// order of strength; a reply to a resolved thread reopens it, a system
// event does not; the weak key joins only within its window.
func testIngestThreads(t *testing.T, h Harness) {
	g := newIngestEnv(t, h)
	first := g.ingest(g.tenant, g.threaded("m1", "ann", conv.Thread{Keys: []string{"<a1@x>"}, Weak: "ann\nrefund"}))[0]
	if !first.Opened || first.Reopened || first.Conversation.Status != conv.StatusOpen {
		t.Fatalf("first mail = %+v, want an open new conversation", first)
	}
	c1 := first.Conversation.ID

	// Another thread of the same sender while the first is open: its own
	// conversation; a non-threaded envelope of hers still has its own one.
	other := g.ingest(g.tenant, g.threaded("m2", "ann", conv.Thread{Keys: []string{"<b1@x>"}, Weak: "ann\nshipping"}))[0]
	if !other.Opened || other.Conversation.ID == c1 {
		t.Fatalf("second thread = %+v, want a second conversation beside %s", other, c1)
	}
	plain := g.ingest(g.tenant, g.item("chat-1", "ann"))[0]
	if !plain.Opened || plain.Conversation.ID == c1 || plain.Conversation.ID == other.Conversation.ID {
		t.Fatalf("an unthreaded envelope = %+v, want the sender's own open conversation", plain)
	}
	if again := g.ingest(g.tenant, g.item("chat-2", "ann"))[0]; again.Conversation.ID != plain.Conversation.ID {
		t.Fatalf("a second unthreaded envelope went to %s, want %s", again.Conversation.ID, plain.Conversation.ID)
	}

	// A reply by ref, newest ref unknown: the first known ref wins; it is
	// then known by its own key too.
	reply := g.ingest(g.tenant, g.threaded("m3", "ann", conv.Thread{Refs: []string{"<unknown@x>", "<a1@x>", "<b1@x>"}, Keys: []string{"<a2@x>"}}))[0]
	if reply.Opened || reply.Conversation.ID != c1 || reply.Message.Seq != 2 {
		t.Fatalf("reply by ref = %+v, want seq 2 of %s", reply, c1)
	}
	// Someone else on the thread (a colleague in Cc) replies to that reply.
	cc := g.ingest(g.tenant, g.threaded("m4", "bob", conv.Thread{Refs: []string{"<a2@x>"}}))[0]
	if cc.Conversation.ID != c1 || cc.Message.Seq != 3 || cc.Conversation.ContactID != first.Conversation.ContactID {
		t.Fatalf("colleague's reply = %+v, want seq 3 of %s, still the first sender's conversation", cc, c1)
	}

	// An explicit conversation (a checked token) beats refs; one of
	// another channel is ignored.
	tok := g.ingest(g.tenant, g.threaded("m5", "ann", conv.Thread{Conversation: other.Conversation.ID, Refs: []string{"<a1@x>"}}))[0]
	if tok.Conversation.ID != other.Conversation.ID {
		t.Fatalf("by conversation = %s, want %s", tok.Conversation.ID, other.Conversation.ID)
	}
	ch2 := conv.Channel{ID: conv.NewID[conv.ChannelID](g.ids), TenantID: g.tenant, Kind: conv.KindTest, Name: "other", CreatedAt: now()}
	g.tx(g.tenant, func(tx storage.Tx) error { return tx.CreateChannel(g.ctx, ch2) })
	elsewhere := g.item("chat-x", "ann")
	elsewhere.In.ChannelID = ch2.ID
	away := g.ingest(g.tenant, elsewhere)[0].Conversation.ID
	stray := g.ingest(g.tenant, g.threaded("m6", "ann", conv.Thread{Conversation: away, Refs: []string{"<a1@x>"}}))[0]
	if stray.Conversation.ID != c1 {
		t.Fatalf("a conversation of another channel = %s, want the ref's %s", stray.Conversation.ID, c1)
	}

	// Weak key while open: joins.
	weak := g.ingest(g.tenant, g.threaded("m7", "ann", conv.Thread{Weak: "ann\nrefund"}))[0]
	if weak.Conversation.ID != c1 {
		t.Fatalf("weak key while open = %s, want %s", weak.Conversation.ID, c1)
	}

	// Resolved: a system event is appended without reopening; a reply by
	// ref reopens it (reported once, not on a redelivery).
	g.resolve(c1, time.Now())
	bounce := g.threaded("m8", "postmaster", conv.Thread{Refs: []string{"<a2@x>"}})
	bounce.In.System = true
	if o := g.ingest(g.tenant, bounce)[0]; o.Conversation.ID != c1 || o.Reopened || o.Conversation.Status != conv.StatusResolved {
		t.Fatalf("system event on a resolved thread = %+v, want appended, still resolved", o)
	}
	back := g.threaded("m9", "ann", conv.Thread{Refs: []string{"<a1@x>"}})
	o := g.ingest(g.tenant, back)[0]
	if o.Conversation.ID != c1 || !o.Reopened || o.Opened || o.Conversation.Status != conv.StatusOpen || o.Conversation.ResolvedAt != nil {
		t.Fatalf("reply to a resolved thread = %+v, want it reopened", o)
	}
	if st := g.getConversation(g.tenant, c1); st.Status != conv.StatusOpen || st.ResolvedAt != nil || st.LastSeq != o.Message.Seq {
		t.Fatalf("stored after reopen = %+v", st)
	}
	if d := g.ingest(g.tenant, g.redelivery(back))[0]; !d.Duplicate || d.Reopened || d.Message.ID != o.Message.ID {
		t.Fatalf("redelivered reopening reply = %+v", d)
	}

	// Weak key after resolution: joins within the window, not after it.
	g.resolve(c1, time.Now().Add(-time.Hour))
	in := g.ingest(g.tenant, g.threaded("m10", "ann", conv.Thread{Weak: "ann\nrefund", WeakWindow: 2 * time.Hour}))[0]
	if in.Conversation.ID != c1 || !in.Reopened {
		t.Fatalf("weak key an hour after resolve, window 2h = %+v, want %s reopened", in, c1)
	}
	g.resolve(c1, time.Now().Add(-3*time.Hour))
	late := g.ingest(g.tenant, g.threaded("m11", "ann", conv.Thread{Weak: "ann\nrefund", WeakWindow: 2 * time.Hour}))[0]
	if late.Conversation.ID == c1 || !late.Opened {
		t.Fatalf("weak key 3h after resolve, window 2h = %+v, want a new conversation", late)
	}
	// The weak key now follows the newest conversation.
	if n := g.ingest(g.tenant, g.threaded("m12", "ann", conv.Thread{Weak: "ann\nrefund"}))[0]; n.Conversation.ID != late.Conversation.ID {
		t.Fatalf("weak key after a newer thread = %s, want %s", n.Conversation.ID, late.Conversation.ID)
	}

	// Two envelopes of one new thread in one batch: the second finds the
	// first by its key.
	a, b := g.threaded("m13", "cat", conv.Thread{Keys: []string{"<c1@x>"}}), g.threaded("m14", "cat", conv.Thread{Refs: []string{"<c1@x>"}})
	out := g.ingest(g.tenant, a, b)
	if out[0].Conversation.ID != out[1].Conversation.ID || !out[0].Opened || out[1].Opened {
		t.Fatalf("thread within one batch = %+v / %+v", out[0], out[1])
	}

	// Keys are per channel: another channel's thread does not match.
	x := g.threaded("m15", "ann", conv.Thread{Refs: []string{"<a1@x>"}})
	x.In.ChannelID = ch2.ID
	if o := g.ingest(g.tenant, x)[0]; !o.Opened || o.Conversation.ChannelID != ch2.ID {
		t.Fatalf("a ref of another channel = %+v, want a new conversation on %s", o, ch2.ID)
	}
}

// testThreadKeys pins ThreadConversation and SetThreadKeys directly: the
// first recorded key in order wins, a key moves to the newest
// conversation, keys of another tenant are invisible.
func testThreadKeys(t *testing.T, h Harness) {
	e := newEnv(t, h)
	acme, other := e.tenant("acme"), e.tenant("other")
	c1, c2 := e.conversation(acme), e.conversation(acme)
	e.tx(acme, func(tx storage.Tx) error {
		ok(t, "set c1", tx.SetThreadKeys(e.ctx, c1.ChannelID, c1.ID, []string{"k1", "k2", "k1"}, now()))
		// Keys are the channel's: c2 is recorded on c1's channel here.
		ok(t, "set c2", tx.SetThreadKeys(e.ctx, c1.ChannelID, c2.ID, []string{"k3"}, now()))
		wantKind(t, "empty key", tx.SetThreadKeys(e.ctx, c1.ChannelID, c1.ID, []string{""}, now()), conv.ErrInvalid)
		return nil
	})
	lookup := func(tenant conv.TenantID, ch conv.ChannelID, keys ...string) (conv.ConversationID, error) {
		var id conv.ConversationID
		var err error
		e.tx(tenant, func(tx storage.Tx) error {
			id, err = tx.ThreadConversation(e.ctx, ch, keys)
			return nil
		})
		return id, err
	}
	if id, err := lookup(acme, c1.ChannelID, "nope", "k3", "k1"); err != nil || id != c2.ID {
		t.Fatalf("lookup nope,k3,k1 = %s, %v; want %s (k3 first)", id, err, c2.ID)
	}
	if _, err := lookup(acme, c1.ChannelID, "nope"); err == nil {
		t.Fatal("unknown key found")
	} else {
		wantKind(t, "unknown key", err, conv.ErrNotFound)
	}
	e.tx(acme, func(tx storage.Tx) error {
		return tx.SetThreadKeys(e.ctx, c1.ChannelID, c2.ID, []string{"k1"}, now())
	})
	if id, err := lookup(acme, c1.ChannelID, "k1"); err != nil || id != c2.ID {
		t.Fatalf("moved key = %s, %v; want %s", id, err, c2.ID)
	}
	if _, err := lookup(acme, c2.ChannelID, "k1"); err == nil {
		t.Fatal("a key of c1's channel found on c2's")
	}
	if _, err := lookup(other, c1.ChannelID, "k1"); err == nil {
		t.Fatal("another tenant sees acme's thread key")
	}
}

// testChannelState pins ChannelState and SetChannelState: unset is
// ErrNotFound, a set value reads back and is replaced, bounds are
// ErrInvalid, another tenant can neither read nor write the channel's
// state.
func testChannelState(t *testing.T, h Harness) {
	e := newEnv(t, h)
	acme, other := e.tenant("acme"), e.tenant("other")
	ch := e.channel(acme, nil)
	e.tx(acme, func(tx storage.Tx) error {
		_, err := tx.ChannelState(e.ctx, ch.ID, "position")
		wantKind(t, "unset state", err, conv.ErrNotFound)
		ok(t, "set", tx.SetChannelState(e.ctx, ch.ID, "position", `{"uid":1}`, now()))
		ok(t, "replace", tx.SetChannelState(e.ctx, ch.ID, "position", `{"uid":2}`, now()))
		ok(t, "other key", tx.SetChannelState(e.ctx, ch.ID, "status", "connected", now()))
		v, err := tx.ChannelState(e.ctx, ch.ID, "position")
		ok(t, "read", err)
		same(t, "position", v, `{"uid":2}`)
		wantKind(t, "empty key", tx.SetChannelState(e.ctx, ch.ID, "", "x", now()), conv.ErrInvalid)
		wantKind(t, "long value", tx.SetChannelState(e.ctx, ch.ID, "big", string(make([]byte, storage.MaxStateValue+1)), now()), conv.ErrInvalid)
		return nil
	})
	// (A failed statement ends a Postgres transaction: one of its own.)
	wantKind(t, "unknown channel", e.txErr(acme, func(tx storage.Tx) error {
		return tx.SetChannelState(e.ctx, conv.NewID[conv.ChannelID](e.ids), "k", "v", now())
	}), conv.ErrNotFound)
	err := e.txErr(other, func(tx storage.Tx) error {
		if _, err := tx.ChannelState(e.ctx, ch.ID, "position"); err == nil {
			t.Error("another tenant reads acme's channel state")
		}
		return tx.SetChannelState(e.ctx, ch.ID, "position", "stolen", now())
	})
	wantKind(t, "another tenant's write", err, conv.ErrNotFound)
	e.tx(acme, func(tx storage.Tx) error {
		v, err := tx.ChannelState(e.ctx, ch.ID, "position")
		ok(t, "read after foreign write", err)
		same(t, "position after foreign write", v, `{"uid":2}`)
		return nil
	})
}
