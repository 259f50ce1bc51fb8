package storagetest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// The ingest tests run storage.Ingest, which goes set-wise when the
// store's Tx is a storage.SetIngester and storage.IngestEach otherwise, so
// one set of expectations pins both and a store's batch path must equal
// the reference.

// ingestEnv makes envelopes for one channel of one tenant.
type ingestEnv struct {
	*env
	tenant conv.TenantID
	ch     conv.Channel
}

func newIngestEnv(t *testing.T, h Harness) *ingestEnv {
	e := newEnv(t, h)
	tenant := e.tenant("acme")
	ch := conv.Channel{ID: conv.NewID[conv.ChannelID](e.ids), TenantID: tenant, Kind: conv.KindTest, Name: "inbox",
		GroupID: conv.NewID[conv.GroupID](e.ids), Secrets: map[string]string{"token": "s3cret"}, CreatedAt: now()}
	e.tx(tenant, func(tx storage.Tx) error { return tx.CreateChannel(e.ctx, ch) })
	return &ingestEnv{env: e, tenant: tenant, ch: ch}
}

// item is an envelope from visitor, with fresh ids. Now has nanoseconds,
// which the outcome must not keep.
func (g *ingestEnv) item(ext, visitor string) storage.IngestItem {
	return storage.IngestItem{
		In: conv.Inbound{TenantID: g.tenant, ChannelID: g.ch.ID, ExternalID: ext,
			From: conv.Identity{Kind: "visitor", ExternalID: visitor}, FromName: "Visitor " + visitor,
			Parts: []conv.Part{{Type: conv.PartText, Text: "hello " + ext}}, SentAt: now()},
		ConversationID: conv.NewID[conv.ConversationID](g.ids),
		MessageID:      conv.NewID[conv.MessageID](g.ids),
		Now:            time.Now().Add(time.Duration(rand.IntN(1000)) * time.Nanosecond),
	}
}

// redelivery is it again as ingest would pass it the second time: the
// same envelope with new ids.
func (g *ingestEnv) redelivery(it storage.IngestItem) storage.IngestItem {
	it.ConversationID = conv.NewID[conv.ConversationID](g.ids)
	it.MessageID = conv.NewID[conv.MessageID](g.ids)
	it.Now = time.Now()
	return it
}

func (e *env) ingest(tenant conv.TenantID, items ...storage.IngestItem) []storage.IngestOutcome {
	e.t.Helper()
	var out []storage.IngestOutcome
	e.tx(tenant, func(tx storage.Tx) error {
		var err error
		out, err = storage.Ingest(e.ctx, tx, items)
		return err
	})
	if len(out) != len(items) {
		e.t.Fatalf("Ingest of %d envelopes returned %d outcomes", len(items), len(out))
	}
	return out
}

func (e *env) ingestErr(tenant conv.TenantID, items ...storage.IngestItem) error {
	return e.txErr(tenant, func(tx storage.Tx) error {
		_, err := storage.Ingest(e.ctx, tx, items)
		return err
	})
}

// messages returns the stored messages of conversation c, normalized.
func (g *ingestEnv) messages(c conv.ConversationID) []conv.Message {
	g.t.Helper()
	var msgs []conv.Message
	g.tx(g.tenant, func(tx storage.Tx) error {
		var err error
		msgs, err = tx.Messages(g.ctx, c, 0, 1000)
		return err
	})
	for i := range msgs {
		msgs[i] = normMessage(msgs[i])
	}
	return msgs
}

// lookup returns MessageByExternalID's error.
func (e *env) lookup(tenant conv.TenantID, ch conv.ChannelID, ext string) error {
	var err error
	e.tx(tenant, func(tx storage.Tx) error {
		_, err = tx.MessageByExternalID(e.ctx, ch, ext)
		return nil
	})
	return err
}

func micro(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// newMessage is the message a new envelope stores.
func newMessage(it storage.IngestItem, c conv.ConversationID, seq int64, sender conv.Sender) conv.Message {
	return conv.Message{ID: it.MessageID, TenantID: it.In.TenantID, ConversationID: c, ChannelID: it.In.ChannelID,
		Seq: seq, Direction: conv.In, Sender: sender, Parts: it.In.Parts, ExternalID: it.In.ExternalID,
		Status: conv.MsgReceived, CreatedAt: micro(it.Now)}
}

// sameOutcome compares an outcome with the expected one. A new message's
// conversation has UpdatedAt = the item's Now; a duplicate's is as stored,
// and stores stamp appends with their own clock, so there want's UpdatedAt
// is only the earliest it may be.
func sameOutcome(t *testing.T, what string, got, want storage.IngestOutcome) {
	t.Helper()
	got.Message, want.Message = normMessage(got.Message), normMessage(want.Message)
	if got.Duplicate {
		got.Conversation = sameStored(t, what, got.Conversation, want.Conversation)
	}
	got.Conversation, want.Conversation = normConversation(got.Conversation), normConversation(want.Conversation)
	same(t, what, got, want)
}

// sameStored checks that a conversation read from the store was updated
// no earlier than want says (less storage.ActivityGranularity) and returns it with want's UpdatedAt, to be
// compared field by field.
func sameStored(t *testing.T, what string, got, want conv.Conversation) conv.Conversation {
	t.Helper()
	if got.UpdatedAt.Before(want.UpdatedAt.Add(-storage.ActivityGranularity)) || got.UpdatedAt.After(time.Now()) {
		t.Fatalf("%s: UpdatedAt %v, want from %v to now", what, got.UpdatedAt, want.UpdatedAt)
	}
	got.UpdatedAt = want.UpdatedAt
	return got
}

// testIngest: one batch holds two envelopes of a new contact (one
// conversation, seq 1 and 2, opened by the first), another contact's, a
// redelivery of the first (the stored message, opened, the conversation as
// it stands then) and a system event; a later batch dedups across
// transactions and keeps the contact's first name; once the conversation
// is resolved the next envelope opens another from its own template.
func testIngest(t *testing.T, h Harness) {
	g := newIngestEnv(t, h)
	a1, b1, a2 := g.item("a1", "alice"), g.item("b1", "bob"), g.item("a2", "alice")
	a1.In.Scene, b1.In.Scene, a2.In.Scene = "qr:1", "menu:b", "qr:2"
	a1again := g.redelivery(a1)
	sys := g.item("s1", "alice")
	sys.In.System, sys.In.FromName = true, ""
	out := g.ingest(g.tenant, a1, b1, a2, a1again, sys)

	alice, bob := out[0].Conversation.ContactID, out[1].Conversation.ContactID
	if alice.IsZero() || bob.IsZero() || alice == bob {
		t.Fatalf("contacts alice %s, bob %s: want two new contacts", alice, bob)
	}
	aliceSender := conv.Sender{Type: conv.SenderContact, ID: alice.String(), Name: "Visitor alice"}
	convA := conv.Conversation{ID: a1.ConversationID, TenantID: g.tenant, ChannelID: g.ch.ID, ContactID: alice,
		Status: conv.StatusOpen, GroupID: g.ch.GroupID, Scene: "qr:1", LastSeq: 1, CreatedAt: micro(a1.Now),
		UpdatedAt: micro(a1.Now)}
	m1 := newMessage(a1, convA.ID, 1, aliceSender)
	sameOutcome(t, "first envelope", out[0], storage.IngestOutcome{Message: m1, Conversation: convA, Opened: true})

	convB := conv.Conversation{ID: b1.ConversationID, TenantID: g.tenant, ChannelID: g.ch.ID, ContactID: bob,
		Status: conv.StatusOpen, GroupID: g.ch.GroupID, Scene: "menu:b", LastSeq: 1, CreatedAt: micro(b1.Now),
		UpdatedAt: micro(b1.Now)}
	sameOutcome(t, "another contact's envelope", out[1], storage.IngestOutcome{
		Message:      newMessage(b1, convB.ID, 1, conv.Sender{Type: conv.SenderContact, ID: bob.String(), Name: "Visitor bob"}),
		Conversation: convB, Opened: true})

	convA2 := convA
	convA2.LastSeq, convA2.UpdatedAt = 2, micro(a2.Now)
	m2 := newMessage(a2, convA.ID, 2, aliceSender)
	sameOutcome(t, "second envelope of the contact", out[2], storage.IngestOutcome{Message: m2, Conversation: convA2})

	sameOutcome(t, "redelivery in the same batch", out[3],
		storage.IngestOutcome{Message: m1, Conversation: convA2, Duplicate: true, Opened: true})

	convA3 := convA2
	convA3.LastSeq, convA3.UpdatedAt = 3, micro(sys.Now)
	m3 := newMessage(sys, convA.ID, 3, conv.Sender{Type: conv.SenderSystem})
	sameOutcome(t, "system event", out[4], storage.IngestOutcome{Message: m3, Conversation: convA3})

	// Stored as returned. (Assertions stay outside transactions: a
	// t.Fatal inside one would leave it open.)
	same(t, "stored messages", g.messages(convA.ID), []conv.Message{normMessage(m1), normMessage(m2), normMessage(m3)})
	storedB := sameStored(t, "stored conversation", g.getConversation(g.tenant, convB.ID), convB)
	same(t, "stored conversation", normConversation(storedB), normConversation(convB))
	var (
		ct      conv.Contact
		created bool
	)
	g.tx(g.tenant, func(tx storage.Tx) error {
		var err error
		ct, created, err = tx.EnsureContact(g.ctx, conv.Identity{Kind: "visitor", ExternalID: "alice"}, "Someone Else")
		return err
	})
	if created || ct.ID != alice || ct.Name != "Visitor alice" {
		t.Fatalf("contact of alice = %+v created=%v, want %s named Visitor alice", ct, created, alice)
	}
	stored := sameStored(t, "stored conversation after the batch", g.getConversation(g.tenant, convA.ID), convA3)
	same(t, "stored conversation after the batch", normConversation(stored), normConversation(convA3))

	// A later transaction: a redelivery finds the stored message; a new
	// name does not rename the contact.
	a2again := g.redelivery(a2)
	a4 := g.item("a4", "alice")
	a4.In.FromName = "Alice Renamed"
	out = g.ingest(g.tenant, a2again, a4)
	sameOutcome(t, "redelivery in a later batch", out[0],
		storage.IngestOutcome{Message: m2, Conversation: convA3, Duplicate: true})
	convA4 := convA3
	convA4.LastSeq, convA4.UpdatedAt = 4, micro(a4.Now)
	m4 := newMessage(a4, convA.ID, 4, aliceSender)
	sameOutcome(t, "envelope under a new name", out[1], storage.IngestOutcome{Message: m4, Conversation: convA4})
	same(t, "stored messages after the second batch", g.messages(convA.ID),
		[]conv.Message{normMessage(m1), normMessage(m2), normMessage(m3), normMessage(m4)})

	// Resolved: the next envelope opens a new conversation.
	resolved := g.getConversation(g.tenant, convA.ID)
	resolved.Status = conv.StatusResolved
	at := now()
	resolved.ResolvedAt = &at
	g.tx(g.tenant, func(tx storage.Tx) error { return tx.UpdateConversation(g.ctx, resolved) })
	a5 := g.item("a5", "alice")
	a5.In.Scene = "qr:5"
	out = g.ingest(g.tenant, a5)
	convA5 := conv.Conversation{ID: a5.ConversationID, TenantID: g.tenant, ChannelID: g.ch.ID, ContactID: alice,
		Status: conv.StatusOpen, GroupID: g.ch.GroupID, Scene: "qr:5", LastSeq: 1, CreatedAt: micro(a5.Now),
		UpdatedAt: micro(a5.Now)}
	sameOutcome(t, "envelope after resolve", out[0], storage.IngestOutcome{
		Message: newMessage(a5, convA5.ID, 1, aliceSender), Conversation: convA5, Opened: true})
	// The redelivery of an envelope of the resolved conversation still finds it.
	out = g.ingest(g.tenant, g.redelivery(a1))
	if !out[0].Duplicate || out[0].Message.ID != a1.MessageID || out[0].Conversation.ID != convA.ID ||
		out[0].Conversation.Status != conv.StatusResolved || !out[0].Opened {
		t.Fatalf("redelivery into a resolved conversation = %+v", out[0])
	}
}

// testIngestReplyWindow: an envelope with a reply window pushes the
// conversation's deadline to SentAt + window (Now when SentAt is zero or
// in the future), never back; system events and envelopes without a
// window leave it.
func testIngestReplyWindow(t *testing.T, h Harness) {
	g := newIngestEnv(t, h)
	const window = 48 * time.Hour
	first := g.item("r1", "carol")
	first.In.SentAt, first.In.ReplyWindow = now().Add(-time.Hour), window
	deadline := micro(first.In.SentAt.Add(window))
	out := g.ingest(g.tenant, first)
	if d := out[0].Conversation.ReplyDeadline; d == nil || !d.Equal(deadline) {
		t.Fatalf("deadline after the first envelope = %v, want %v", d, deadline)
	}

	older := g.item("r2", "carol")
	older.In.SentAt, older.In.ReplyWindow = now().Add(-2*time.Hour), window
	sys := g.item("r3", "carol")
	sys.In.System, sys.In.ReplyWindow = true, 100*time.Hour
	none := g.item("r4", "carol")
	out = g.ingest(g.tenant, older, sys, none)
	for i, o := range out {
		if d := o.Conversation.ReplyDeadline; d == nil || !d.Equal(deadline) {
			t.Fatalf("envelope %d moved the deadline to %v, want it kept at %v", i, d, deadline)
		}
	}

	unsent := g.item("r5", "carol")
	unsent.In.SentAt, unsent.In.ReplyWindow = time.Time{}, 72*time.Hour
	out = g.ingest(g.tenant, unsent)
	want := micro(unsent.Now).Add(72 * time.Hour)
	if d := out[0].Conversation.ReplyDeadline; d == nil || !d.Equal(want) {
		t.Fatalf("deadline of an envelope without SentAt = %v, want Now+72h = %v", d, want)
	}
	future := g.item("r6", "carol")
	future.In.SentAt, future.In.ReplyWindow = now().Add(10*time.Hour), 73*time.Hour
	out = g.ingest(g.tenant, future)
	want = micro(future.Now).Add(73 * time.Hour)
	if d := out[0].Conversation.ReplyDeadline; d == nil || !d.Equal(want) {
		t.Fatalf("deadline of an envelope sent in the future = %v, want Now+73h = %v", d, want)
	}
	stored := sameStored(t, "stored conversation", g.getConversation(g.tenant, out[0].Conversation.ID), out[0].Conversation)
	same(t, "stored conversation", normConversation(stored), normConversation(out[0].Conversation))

	other := g.ingest(g.tenant, g.item("d1", "dave"))
	if other[0].Conversation.ReplyDeadline != nil {
		t.Fatalf("conversation without a reply window has deadline %v", other[0].Conversation.ReplyDeadline)
	}
}

// testIngestSystemEvents: a system envelope (a follow) that opens a
// conversation leaves it resolved, holding the event; the customer's next
// message opens a new, open one; a system envelope joined by a message in
// the same batch stays open; one on an open conversation just appends.
func testIngestSystemEvents(t *testing.T, h Harness) {
	g := newIngestEnv(t, h)
	follow := g.item("follow-1", "erin")
	follow.In.System = true
	out := g.ingest(g.tenant, follow)
	c := out[0].Conversation
	if !out[0].Opened || c.Status != conv.StatusResolved || c.ResolvedAt == nil || c.LastSeq != 1 {
		t.Fatalf("a follow alone gave %+v (opened %v), want a resolved conversation holding it", c, out[0].Opened)
	}
	stored := g.getConversation(g.tenant, c.ID)
	if stored.Status != conv.StatusResolved || len(g.messages(c.ID)) != 1 || g.messages(c.ID)[0].Sender.Type != conv.SenderSystem {
		t.Fatalf("stored %+v with messages %+v", stored, g.messages(c.ID))
	}
	if again := g.ingest(g.tenant, g.redelivery(follow)); !again[0].Duplicate || again[0].Conversation.Status != conv.StatusResolved {
		t.Fatalf("redelivered follow = %+v", again[0])
	}

	msg := g.ingest(g.tenant, g.item("m-1", "erin"))
	if !msg[0].Opened || msg[0].Conversation.ID == c.ID || msg[0].Conversation.Status != conv.StatusOpen {
		t.Fatalf("the customer's first message = %+v, want a new open conversation", msg[0])
	}
	scan := g.item("scan-1", "erin")
	scan.In.System = true
	if o := g.ingest(g.tenant, scan); o[0].Opened || o[0].Conversation.ID != msg[0].Conversation.ID || o[0].Conversation.Status != conv.StatusOpen {
		t.Fatalf("an event on an open conversation = %+v, want it appended, conversation still open", o[0])
	}

	// Two events of a new follower in one batch: still nothing for an agent.
	f1, f2 := g.item("follow-g", "gina"), g.item("location-g", "gina")
	f1.In.System, f2.In.System = true, true
	out = g.ingest(g.tenant, f1, f2)
	if st := g.getConversation(g.tenant, out[1].Conversation.ID); st.Status != conv.StatusResolved || st.LastSeq != 2 {
		t.Fatalf("two events alone = %+v, want a resolved conversation holding both", st)
	}

	enter := g.item("enter-1", "frank")
	enter.In.System = true
	out = g.ingest(g.tenant, enter, g.item("m-2", "frank"))
	if out[0].Conversation.ID != out[1].Conversation.ID {
		t.Fatalf("event and message of one batch landed in %s and %s", out[0].Conversation.ID, out[1].Conversation.ID)
	}
	if st := g.getConversation(g.tenant, out[1].Conversation.ID); st.Status != conv.StatusOpen || st.LastSeq != 2 {
		t.Fatalf("conversation of an event and a message = %+v, want open with both", st)
	}
}

// testIngestErrors: an unknown channel or one of another tenant is
// ErrNotFound, an envelope of another tenant or with a bad identity is
// ErrInvalid; the error names the envelope, the batch stores nothing, and
// the good envelopes of a failed batch store fine on their own.
func testIngestErrors(t *testing.T, h Harness) {
	g := newIngestEnv(t, h)
	other := g.env.tenant("globex")
	foreign := g.channel(other, nil)

	unknown := g.item("x-unknown", "erin")
	unknown.In.ChannelID = 8675309
	theirs := g.item("x-theirs", "erin")
	theirs.In.ChannelID = foreign.ID
	misaddressed := g.item("x-misaddressed", "erin")
	misaddressed.In.TenantID = other
	badIdentity := g.item("x-identity", "")
	tests := []struct {
		name string
		bad  storage.IngestItem
		kind error
	}{
		{"unknown channel", unknown, conv.ErrNotFound},
		{"another tenant's channel", theirs, conv.ErrNotFound},
		{"envelope of another tenant", misaddressed, conv.ErrInvalid},
		{"identity without id", badIdentity, conv.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			good := g.item("ok-"+tc.bad.In.ExternalID, "frank")
			for _, items := range [][]storage.IngestItem{{tc.bad}, {good, tc.bad}, {tc.bad, good}} {
				err := g.ingestErr(g.tenant, items...)
				wantKind(t, "Ingest", err, tc.kind)
				if !strings.Contains(err.Error(), tc.bad.In.ExternalID) {
					t.Fatalf("error %q does not name envelope %s", err, tc.bad.In.ExternalID)
				}
			}
			wantKind(t, "good envelope of a failed batch", g.lookup(g.tenant, g.ch.ID, good.In.ExternalID), conv.ErrNotFound)
			if out := g.ingest(g.tenant, good); out[0].Duplicate || out[0].Message.ID != good.MessageID {
				t.Fatalf("good envelope alone = %+v, want it stored", out[0])
			}
		})
	}
	wantKind(t, "envelope on another tenant's channel", g.lookup(other, foreign.ID, theirs.In.ExternalID), conv.ErrNotFound)
}

// testIngestConcurrentBatches: writers ingest batches naming the same
// senders in different orders, each a new contact at first, as ingest's
// writers do: no batch fails (the store may retry), each sender ends with
// one contact and one conversation, and seqs are gapless.
func testIngestConcurrentBatches(t *testing.T, h Harness) {
	g := newIngestEnv(t, h)
	const writers, batches, senders, perSender = 4, 5, 6, 2
	var (
		mu  sync.Mutex
		all []storage.IngestOutcome
		wg  sync.WaitGroup
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for b := range batches {
				var items []storage.IngestItem
				for s := range senders {
					for i := range perSender {
						items = append(items, g.item(fmt.Sprintf("w%d-b%d-s%d-%d", w, b, s, i), fmt.Sprintf("sender-%d", s)))
					}
				}
				rng.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
				var out []storage.IngestOutcome
				err := g.s.Tx(g.ctx, g.tenant, func(tx storage.Tx) error {
					var err error
					out, err = storage.Ingest(g.ctx, tx, items)
					return err
				})
				if err != nil {
					t.Errorf("writer %d batch %d: %v", w, b, err)
					return
				}
				mu.Lock()
				all = append(all, out...)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	byConv := make(map[conv.ConversationID][]int64)
	contacts := make(map[conv.ContactID]bool)
	for _, o := range all {
		if o.Duplicate {
			t.Fatalf("envelope %s reported a duplicate", o.Message.ExternalID)
		}
		byConv[o.Conversation.ID] = append(byConv[o.Conversation.ID], o.Message.Seq)
		contacts[o.Conversation.ContactID] = true
	}
	if len(byConv) != senders || len(contacts) != senders {
		t.Fatalf("%d conversations and %d contacts for %d senders", len(byConv), len(contacts), senders)
	}
	for id, seqs := range byConv {
		msgs := g.messages(id)
		for i, m := range msgs {
			if m.Seq != int64(i+1) {
				t.Fatalf("conversation %s: message %d has seq %d", id, i, m.Seq)
			}
		}
		want := writers * batches * perSender
		if len(msgs) != want {
			t.Fatalf("conversation %s: %d messages stored, want %d", id, len(msgs), want)
		}
		slices.Sort(seqs)
		for i, s := range seqs {
			if s != int64(i+1) || len(seqs) != want {
				t.Fatalf("conversation %s: outcomes have seqs %v, want 1..%d", id, seqs, want)
			}
		}
		opened := 0
		for _, o := range all {
			if o.Conversation.ID == id && o.Opened {
				opened++
			}
		}
		if opened != 1 {
			t.Fatalf("conversation %s opened %d times", id, opened)
		}
	}
}
