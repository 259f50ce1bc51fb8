package storagetest

import (
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// Fixtures for the console tests.

func (e *env) group(tenant conv.TenantID) conv.GroupID {
	e.t.Helper()
	g := conv.Group{ID: conv.NewID[conv.GroupID](e.ids), TenantID: tenant, Name: "group", CreatedAt: now()}
	e.tx(tenant, func(tx storage.Tx) error { return tx.CreateGroup(e.ctx, g) })
	return g.ID
}

func (e *env) agent(tenant conv.TenantID) conv.Agent {
	e.t.Helper()
	a := conv.Agent{ID: conv.NewID[conv.AgentID](e.ids), TenantID: tenant, Email: fmt.Sprintf("agent-%d@example.com", e.ids.Next()),
		Name: "Agent", Role: conv.RoleAgent, Capacity: conv.DefaultCapacity, CreatedAt: now()}
	e.tx(tenant, func(tx storage.Tx) error { return tx.CreateAgent(e.ctx, a) })
	return a
}

// open opens a conversation from tmpl between ct (a new contact when zero)
// and ch (a new channel when zero); a zero tmpl.ID or CreatedAt is filled.
func (e *env) open(tenant conv.TenantID, ch conv.ChannelID, ct conv.ContactID, tmpl conv.Conversation) conv.Conversation {
	e.t.Helper()
	if ch.IsZero() {
		ch = e.channel(tenant, nil).ID
	}
	if ct.IsZero() {
		ct = e.contact(tenant, fmt.Sprintf("v-%d", e.ids.Next())).ID
	}
	if tmpl.ID.IsZero() {
		tmpl.ID = conv.NewID[conv.ConversationID](e.ids)
	}
	if tmpl.CreatedAt.IsZero() {
		tmpl.CreatedAt = now()
	}
	var c conv.Conversation
	e.tx(tenant, func(tx storage.Tx) error {
		var (
			err    error
			opened bool
		)
		c, opened, err = tx.OpenConversation(e.ctx, ch, ct, tmpl)
		if err == nil && !opened {
			e.t.Fatalf("OpenConversation(%s, %s) found open conversation %s", ch, ct, c.ID)
		}
		return err
	})
	return c
}

// update applies fn to the stored conversation and writes it back with
// UpdateConversation (so that fixtures do not depend on the methods under
// test).
func (e *env) update(tenant conv.TenantID, id conv.ConversationID, fn func(*conv.Conversation)) conv.Conversation {
	e.t.Helper()
	c := e.getConversation(tenant, id)
	fn(&c)
	c.UpdatedAt = time.Time{}
	e.tx(tenant, func(tx storage.Tx) error { return tx.UpdateConversation(e.ctx, c) })
	return e.getConversation(tenant, id)
}

func (e *env) resolve(tenant conv.TenantID, id conv.ConversationID) conv.Conversation {
	e.t.Helper()
	return e.update(tenant, id, func(c *conv.Conversation) {
		at := now()
		c.Status, c.ResolvedAt = conv.StatusResolved, &at
	})
}

func (e *env) list(tenant conv.TenantID, q storage.ConversationQuery) []storage.ConversationSummary {
	e.t.Helper()
	var out []storage.ConversationSummary
	e.tx(tenant, func(tx storage.Tx) error {
		var err error
		out, err = tx.ListConversations(e.ctx, q)
		return err
	})
	return out
}

func (e *env) summary(tenant conv.TenantID, reader conv.AgentID, id conv.ConversationID) storage.ConversationSummary {
	e.t.Helper()
	var s storage.ConversationSummary
	e.tx(tenant, func(tx storage.Tx) error {
		var err error
		s, err = tx.ConversationSummary(e.ctx, reader, id)
		return err
	})
	return s
}

func (e *env) getContact(tenant conv.TenantID, id conv.ContactID) conv.Contact {
	e.t.Helper()
	var c conv.Contact
	e.tx(tenant, func(tx storage.Tx) error {
		var err error
		c, err = tx.Contact(e.ctx, id)
		return err
	})
	return c
}

func (e *env) visitor(tenant conv.TenantID, ch conv.ChannelID, ct conv.ContactID) conv.Visitor {
	e.t.Helper()
	id := conv.NewID[conv.VisitorID](e.ids)
	h := sha256.Sum256([]byte("visitor-token-" + id.String()))
	v := conv.Visitor{ID: id, TenantID: tenant, ChannelID: ch, ContactID: ct, Hash: h[:], CreatedAt: now()}
	e.tx(tenant, func(tx storage.Tx) error { return tx.CreateVisitor(e.ctx, v) })
	return v
}

func (e *env) visitorByHash(tenant conv.TenantID, hash []byte) conv.Visitor {
	e.t.Helper()
	var v conv.Visitor
	e.tx(tenant, func(tx storage.Tx) error {
		var err error
		v, err = tx.VisitorByHash(e.ctx, hash)
		return err
	})
	return v
}

func normVisitor(v conv.Visitor) conv.Visitor {
	v.CreatedAt = utc(v.CreatedAt)
	if len(v.Hash) == 0 {
		v.Hash = nil
	}
	return v
}

func normSummary(s storage.ConversationSummary) storage.ConversationSummary {
	s.Conversation = normConversation(s.Conversation)
	if s.Last != nil {
		m := normMessage(*s.Last)
		s.Last = &m
	}
	return s
}

// sortedIdentities returns a contact's identities in (kind, external id)
// order: the order Contact lists them in is not part of the contract.
func sortedIdentities(c conv.Contact) []conv.Identity {
	ids := slices.Clone(c.Identities)
	slices.SortFunc(ids, func(a, b conv.Identity) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.ExternalID, b.ExternalID))
	})
	return ids
}

// byRecency sorts conversations as ListConversations must: UpdatedAt
// descending, then ID descending.
func byRecency(cs []conv.Conversation) []conv.ConversationID {
	cs = slices.Clone(cs)
	slices.SortFunc(cs, func(a, b conv.Conversation) int {
		return cmp.Or(b.UpdatedAt.Compare(a.UpdatedAt), cmp.Compare(b.ID, a.ID))
	})
	ids := make([]conv.ConversationID, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	return ids
}

func summaryIDs(list []storage.ConversationSummary) []conv.ConversationID {
	ids := make([]conv.ConversationID, len(list))
	for i, s := range list {
		ids[i] = s.ID
	}
	return ids
}

func conversationIDs(list []conv.Conversation) []conv.ConversationID {
	ids := make([]conv.ConversationID, len(list))
	for i, c := range list {
		ids[i] = c.ID
	}
	return ids
}

// sameIDs compares id lists, treating nil and empty alike.
func sameIDs[K any](t *testing.T, what string, got, want []conv.ID[K]) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	same(t, what, got, want)
}

// testChannelTenant: ChannelTenant answers outside any tenant for every
// channel, from the moment its CreateChannel commits and not before; an
// unknown channel is ErrNotFound. Decided here: channel ids are unique
// across tenants (ChannelTenant must have one answer), so an id another
// tenant uses is ErrConflict.
func testChannelTenant(t *testing.T, h Harness) {
	e := newEnv(t, h)
	a, b := e.tenant("acme"), e.tenant("globex")
	a1, a2, b1 := e.channel(a, map[string]string{"k": "v"}), e.channel(a, nil), e.channel(b, nil)
	for _, tc := range []struct {
		ch   conv.Channel
		want conv.TenantID
	}{{a1, a}, {a2, a}, {b1, b}} {
		got, err := e.s.ChannelTenant(e.ctx, tc.ch.ID)
		ok(t, "ChannelTenant", err)
		if got != tc.want {
			t.Fatalf("ChannelTenant(%s) = %s, want %s", tc.ch.ID, got, tc.want)
		}
	}
	_, err := e.s.ChannelTenant(e.ctx, 4242)
	wantKind(t, "ChannelTenant(unknown)", err, conv.ErrNotFound)

	ghost := conv.Channel{ID: conv.NewID[conv.ChannelID](e.ids), TenantID: a, Kind: conv.KindWebchat, Name: "rolled back", CreatedAt: now()}
	boom := errors.New("boom")
	err = e.txErr(a, func(tx storage.Tx) error {
		if err := tx.CreateChannel(e.ctx, ghost); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Tx = %v, want boom", err)
	}
	_, err = e.s.ChannelTenant(e.ctx, ghost.ID)
	wantKind(t, "ChannelTenant(rolled-back channel)", err, conv.ErrNotFound)

	taken := conv.Channel{ID: a1.ID, TenantID: b, Kind: conv.KindWebchat, Name: "squatter", CreatedAt: now()}
	wantKind(t, "CreateChannel with another tenant's channel id",
		e.txErr(b, func(tx storage.Tx) error { return tx.CreateChannel(e.ctx, taken) }), conv.ErrConflict)
	if got, err := e.s.ChannelTenant(e.ctx, a1.ID); err != nil || got != a {
		t.Fatalf("ChannelTenant(%s) after the clash = %s, %v; want %s", a1.ID, got, err, a)
	}
}

// testContactLookupAndRename: ContactByIdentity finds the contact owning an
// identity (the same record Contact returns); RenameContact changes only
// the name.
func testContactLookupAndRename(t *testing.T, h Harness) {
	e := newEnv(t, h)
	tenant := e.tenant("acme")
	id := conv.Identity{Kind: "unionid", ExternalID: "u-77"}
	var ada conv.Contact
	e.tx(tenant, func(tx storage.Tx) error {
		var err error
		ada, _, err = tx.EnsureContact(e.ctx, id, "Ada")
		return err
	})
	other := e.contact(tenant, "someone-else")
	find := func(id conv.Identity) (conv.Contact, error) {
		var c conv.Contact
		err := e.txErr(tenant, func(tx storage.Tx) error {
			var err error
			c, err = tx.ContactByIdentity(e.ctx, id)
			return err
		})
		return c, err
	}
	got, err := find(id)
	ok(t, "ContactByIdentity", err)
	want := e.getContact(tenant, ada.ID)
	got.CreatedAt, want.CreatedAt = utc(got.CreatedAt), utc(want.CreatedAt)
	same(t, "ContactByIdentity", got, want)

	for _, miss := range []conv.Identity{
		{Kind: "unionid", ExternalID: "u-78"},
		{Kind: "openid", ExternalID: "u-77"}, // same external id, other kind
		{},
	} {
		_, err := find(miss)
		wantKind(t, fmt.Sprintf("ContactByIdentity(%+v)", miss), err, conv.ErrNotFound)
	}

	e.tx(tenant, func(tx storage.Tx) error { return tx.RenameContact(e.ctx, ada.ID, "Ada Lovelace") })
	renamed := e.getContact(tenant, ada.ID)
	if renamed.Name != "Ada Lovelace" || !renamed.CreatedAt.Equal(ada.CreatedAt) {
		t.Fatalf("renamed contact = %+v", renamed)
	}
	same(t, "identities after rename", renamed.Identities, []conv.Identity{id})
	if got, err := find(id); err != nil || got.Name != "Ada Lovelace" {
		t.Fatalf("ContactByIdentity after rename = %+v, %v", got, err)
	}
	if got := e.getContact(tenant, other.ID); got.Name != other.Name {
		t.Fatalf("RenameContact renamed another contact too: %q", got.Name)
	}
	e.tx(tenant, func(tx storage.Tx) error { return tx.RenameContact(e.ctx, ada.ID, "") })
	if got := e.getContact(tenant, ada.ID); got.Name != "" {
		t.Fatalf("name after renaming to empty = %q", got.Name)
	}
	wantKind(t, "RenameContact(unknown)",
		e.txErr(tenant, func(tx storage.Tx) error { return tx.RenameContact(e.ctx, 31337, "x") }), conv.ErrNotFound)
}

// testMergeContacts: every identity, conversation (with its history) and
// visitor session of from ends up with into, and from is gone. Where both
// have an open conversation on a channel, from's is resolved and into's
// stays the open one; elsewhere from's open conversations stay open.
func testMergeContacts(t *testing.T, h Harness) {
	e := newEnv(t, h)
	tenant := e.tenant("acme")
	ch1, ch2, ch3 := e.channel(tenant, nil), e.channel(tenant, nil), e.channel(tenant, nil)
	anon := conv.Identity{Kind: "visitor", ExternalID: "anon-1"}
	known := conv.Identity{Kind: "site_user", ExternalID: "user-42"}
	var from, into conv.Contact
	e.tx(tenant, func(tx storage.Tx) error {
		var err error
		if from, _, err = tx.EnsureContact(e.ctx, anon, "Visitor anon-1"); err != nil {
			return err
		}
		into, _, err = tx.EnsureContact(e.ctx, known, "Ada")
		return err
	})
	bystander := e.contact(tenant, "bystander")

	// ch1: both open. ch2: only from. ch3: from's is resolved, into's open.
	clashFrom := e.open(tenant, ch1.ID, from.ID, conv.Conversation{})
	clashInto := e.open(tenant, ch1.ID, into.ID, conv.Conversation{})
	onlyFrom := e.open(tenant, ch2.ID, from.ID, conv.Conversation{})
	oldFrom := e.open(tenant, ch3.ID, from.ID, conv.Conversation{})
	oldFrom = e.resolve(tenant, oldFrom.ID)
	openInto3 := e.open(tenant, ch3.ID, into.ID, conv.Conversation{})
	other := e.open(tenant, ch1.ID, bystander.ID, conv.Conversation{})
	hist := []conv.Message{
		e.append(e.message(clashFrom, conv.In, "hello from the anonymous visitor")),
		e.append(e.message(clashFrom, conv.Out, "hello")),
	}
	vFrom := e.visitor(tenant, ch1.ID, from.ID)
	vInto := e.visitor(tenant, ch2.ID, into.ID)
	vOther := e.visitor(tenant, ch1.ID, bystander.ID)
	before := map[conv.ConversationID]conv.Conversation{}
	for _, c := range []conv.Conversation{clashInto, onlyFrom, oldFrom, openInto3, other} {
		before[c.ID] = e.getConversation(tenant, c.ID)
	}

	e.tx(tenant, func(tx storage.Tx) error { return tx.MergeContacts(e.ctx, from.ID, into.ID) })

	e.tx(tenant, func(tx storage.Tx) error {
		_, err := tx.Contact(e.ctx, from.ID)
		wantKind(t, "Contact(from) after merge", err, conv.ErrNotFound)
		got, err := tx.Contact(e.ctx, into.ID)
		ok(t, "Contact(into)", err)
		if got.Name != "Ada" {
			t.Fatalf("into's name after merge = %q, want Ada", got.Name)
		}
		same(t, "into's identities", sortedIdentities(got), []conv.Identity{known, anon})
		byAnon, err := tx.ContactByIdentity(e.ctx, anon)
		if err != nil || byAnon.ID != into.ID {
			t.Fatalf("ContactByIdentity(from's identity) = %s, %v; want %s", byAnon.ID, err, into.ID)
		}
		return nil
	})

	got := e.getConversation(tenant, clashFrom.ID)
	if got.ContactID != into.ID || got.Status != conv.StatusResolved || got.ResolvedAt == nil || got.LastSeq != 2 {
		t.Fatalf("from's clashing conversation = %+v, want resolved, into's, with its 2 messages", got)
	}
	e.tx(tenant, func(tx storage.Tx) error {
		msgs, err := tx.Messages(e.ctx, clashFrom.ID, 0, 10)
		ok(t, "Messages", err)
		for i := range msgs {
			msgs[i] = normMessage(msgs[i])
		}
		same(t, "history of the resolved conversation", msgs, []conv.Message{normMessage(hist[0]), normMessage(hist[1])})
		return nil
	})
	wantMoved := func(c conv.Conversation) conv.Conversation {
		c.ContactID = into.ID
		return c
	}
	for _, tc := range []struct {
		name string
		id   conv.ConversationID
		want conv.Conversation
	}{
		{"into's open conversation on the shared channel", clashInto.ID, before[clashInto.ID]},
		{"from's only conversation on its channel", onlyFrom.ID, wantMoved(before[onlyFrom.ID])},
		{"from's resolved conversation", oldFrom.ID, wantMoved(before[oldFrom.ID])},
		{"into's open conversation beside it", openInto3.ID, before[openInto3.ID]},
		{"a bystander's conversation", other.ID, before[other.ID]},
	} {
		got := e.getConversation(tenant, tc.id)
		want := tc.want
		want.UpdatedAt = got.UpdatedAt // moving may or may not count as activity
		same(t, tc.name, normConversation(got), normConversation(want))
	}
	// OpenConversation for into now finds exactly the surviving open ones.
	for _, tc := range []struct {
		ch   conv.ChannelID
		want conv.ConversationID
	}{{ch1.ID, clashInto.ID}, {ch2.ID, onlyFrom.ID}, {ch3.ID, openInto3.ID}} {
		e.tx(tenant, func(tx storage.Tx) error {
			c, opened, err := tx.OpenConversation(e.ctx, tc.ch, into.ID, conv.Conversation{ID: conv.NewID[conv.ConversationID](e.ids), CreatedAt: now()})
			ok(t, "OpenConversation", err)
			if opened || c.ID != tc.want {
				t.Fatalf("OpenConversation(%s, into) = %s opened=%v, want the existing %s", tc.ch, c.ID, opened, tc.want)
			}
			return nil
		})
	}
	for _, tc := range []struct {
		v    conv.Visitor
		want conv.ContactID
	}{{vFrom, into.ID}, {vInto, into.ID}, {vOther, bystander.ID}} {
		if got := e.visitorByHash(tenant, tc.v.Hash); got.ContactID != tc.want {
			t.Fatalf("visitor %s speaks as %s after the merge, want %s", tc.v.ID, got.ContactID, tc.want)
		}
	}

	t.Run("into itself", func(t *testing.T) {
		e.tx(tenant, func(tx storage.Tx) error { return tx.MergeContacts(e.ctx, into.ID, into.ID) })
		got := e.getContact(tenant, into.ID)
		same(t, "identities after merging into itself", sortedIdentities(got), []conv.Identity{known, anon})
		if c := e.getConversation(tenant, clashInto.ID); c.Status != conv.StatusOpen || c.ContactID != into.ID {
			t.Fatalf("merging into itself changed conversation %+v", c)
		}
	})
	t.Run("unknown ids", func(t *testing.T) {
		for _, tc := range []struct {
			name     string
			from, to conv.ContactID
		}{
			{"unknown from", 9001, bystander.ID},
			{"unknown into", bystander.ID, 9001},
			{"the merged contact", from.ID, bystander.ID},
			{"unknown into itself", 9001, 9001},
		} {
			err := e.txErr(tenant, func(tx storage.Tx) error { return tx.MergeContacts(e.ctx, tc.from, tc.to) })
			wantKind(t, "MergeContacts "+tc.name, err, conv.ErrNotFound)
		}
		if got := e.getContact(tenant, bystander.ID); len(got.Identities) != 1 {
			t.Fatalf("bystander after failed merges = %+v", got)
		}
	})
}

// testMessagesBefore: up to limit messages with seq < beforeSeq, the newest
// of them, in ascending order; only of the conversation asked for.
func testMessagesBefore(t *testing.T, h Harness) {
	e := newEnv(t, h)
	tenant := e.tenant("acme")
	c := e.conversation(tenant)
	other := e.conversation(tenant)
	var all []conv.Message
	for i := range 7 {
		e.append(e.message(other, conv.In, "noise"))
		all = append(all, normMessage(e.append(e.message(c, conv.In, fmt.Sprintf("m%d", i+1)))))
	}
	tests := []struct {
		name            string
		before          int64
		limit           int
		wantFrom, wantN int // all[wantFrom : wantFrom+wantN]
	}{
		{"newest page", 8, 3, 4, 3},
		{"next page back", 5, 3, 1, 3},
		{"oldest partial page", 2, 3, 0, 1},
		{"before the first", 1, 3, 0, 0},
		{"far past the end", 1000, 3, 4, 3},
		{"everything", 8, 100, 0, 7},
		{"zero limit", 8, 0, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []conv.Message
			e.tx(tenant, func(tx storage.Tx) error {
				var err error
				got, err = tx.MessagesBefore(e.ctx, c.ID, tc.before, tc.limit)
				return err
			})
			for i := range got {
				got[i] = normMessage(got[i])
			}
			want := all[tc.wantFrom : tc.wantFrom+tc.wantN]
			if len(got) == 0 && len(want) == 0 {
				return
			}
			same(t, "MessagesBefore", got, want)
		})
	}
}

// testRecallMessage: the first recall sets RecalledAt and wins; a later one
// changes nothing and says so. Nothing else of the message changes; what
// RecallMessage returns is what a read returns.
func testRecallMessage(t *testing.T, h Harness) {
	e := newEnv(t, h)
	tenant := e.tenant("acme")
	c := e.conversation(tenant)
	m := e.append(e.message(c, conv.Out, "oops, wrong customer"))
	bystander := e.append(e.message(c, conv.Out, "fine"))
	recall := func(id conv.MessageID, at time.Time) (conv.Message, bool) {
		t.Helper()
		var (
			got     conv.Message
			changed bool
		)
		e.tx(tenant, func(tx storage.Tx) error {
			var err error
			got, changed, err = tx.RecallMessage(e.ctx, id, at)
			return err
		})
		return got, changed
	}
	first := time.Date(2026, 5, 1, 9, 30, 0, 123456789, time.UTC) // finer than stores keep
	got, changed := recall(m.ID, first)
	if !changed {
		t.Fatal("first RecallMessage: changed = false")
	}
	stored := e.getMessage(tenant, m.ID)
	same(t, "RecallMessage vs Message", normMessage(got), normMessage(stored))
	if stored.RecalledAt == nil || stored.RecalledAt.Sub(first).Abs() >= time.Microsecond {
		t.Fatalf("RecalledAt = %v, want %v to the microsecond", stored.RecalledAt, first)
	}
	want := m
	want.RecalledAt = stored.RecalledAt
	same(t, "recalled message (only RecalledAt changes)", normMessage(stored), normMessage(want))

	again, changed := recall(m.ID, first.Add(time.Minute))
	if changed {
		t.Fatal("second RecallMessage: changed = true")
	}
	same(t, "second RecallMessage returns the stored message", normMessage(again), normMessage(stored))
	same(t, "stored after the second recall", normMessage(e.getMessage(tenant, m.ID)), normMessage(stored))
	if got := e.getMessage(tenant, bystander.ID); got.RecalledAt != nil {
		t.Fatalf("recalling %s recalled %s too", m.ID, bystander.ID)
	}

	pre := e.message(c, conv.Out, "appended already recalled")
	at := now().Add(-time.Hour)
	pre.RecalledAt = &at
	pre = e.append(pre)
	if got, changed := recall(pre.ID, now()); changed || got.RecalledAt == nil || !got.RecalledAt.Equal(at) {
		t.Fatalf("RecallMessage of a recalled message = %v changed=%v, want %v unchanged", got.RecalledAt, changed, at)
	}

	err := e.txErr(tenant, func(tx storage.Tx) error { _, _, err := tx.RecallMessage(e.ctx, 5150, now()); return err })
	wantKind(t, "RecallMessage(unknown)", err, conv.ErrNotFound)
}

// testAssignConversation: the assignee moves only from the assignee the
// caller saw; a stale from, or a resolved conversation, is ErrConflict and
// changes nothing. A move bumps UpdatedAt; zero to puts the conversation
// back in the queue. Of concurrent assignments from the queue, exactly one
// wins.
func testAssignConversation(t *testing.T, h Harness) {
	e := newEnv(t, h)
	tenant := e.tenant("acme")
	a1, a2 := e.agent(tenant), e.agent(tenant)
	created := now().Add(-time.Hour)
	c := e.open(tenant, 0, 0, conv.Conversation{CreatedAt: created, Priority: 2, Scene: "faq"})
	assign := func(id conv.ConversationID, from, to conv.AgentID) (conv.Conversation, error) {
		var got conv.Conversation
		err := e.txErr(tenant, func(tx storage.Tx) error {
			var err error
			got, err = tx.AssignConversation(e.ctx, id, from, to)
			return err
		})
		return got, err
	}

	got, err := assign(c.ID, 0, a1.ID)
	ok(t, "assign from the queue", err)
	if got.AssigneeID != a1.ID || !got.UpdatedAt.After(created) {
		t.Fatalf("assigned conversation = %+v, want assignee %s and UpdatedAt bumped past %v", got, a1.ID, created)
	}
	stored := e.getConversation(tenant, c.ID)
	same(t, "AssignConversation vs Conversation", normConversation(got), normConversation(stored))
	want := c
	want.AssigneeID, want.UpdatedAt = a1.ID, stored.UpdatedAt
	same(t, "only assignee and UpdatedAt change", normConversation(stored), normConversation(want))

	for _, tc := range []struct {
		name     string
		from, to conv.AgentID
	}{
		{"from the queue, but it is taken", 0, a2.ID},
		{"from the wrong agent", a2.ID, a2.ID},
		{"from the wrong agent, back to the queue", a2.ID, 0},
	} {
		_, err := assign(c.ID, tc.from, tc.to)
		wantKind(t, tc.name, err, conv.ErrConflict)
		if got := e.getConversation(tenant, c.ID); got.AssigneeID != a1.ID {
			t.Fatalf("%s: assignee is %s, want %s unchanged", tc.name, got.AssigneeID, a1.ID)
		}
	}
	if got, err := assign(c.ID, a1.ID, a2.ID); err != nil || got.AssigneeID != a2.ID {
		t.Fatalf("transfer a1 → a2 = %+v, %v", got, err)
	}
	if got, err := assign(c.ID, a2.ID, 0); err != nil || got.AssigneeID != 0 {
		t.Fatalf("back to the queue = %+v, %v", got, err)
	}
	if got := e.getConversation(tenant, c.ID); got.AssigneeID != 0 {
		t.Fatalf("stored assignee after unassigning = %s", got.AssigneeID)
	}

	resolved := e.resolve(tenant, e.open(tenant, 0, 0, conv.Conversation{}).ID)
	_, err = assign(resolved.ID, 0, a1.ID)
	wantKind(t, "assigning a resolved conversation", err, conv.ErrConflict)
	if got := e.getConversation(tenant, resolved.ID); got.AssigneeID != 0 {
		t.Fatalf("resolved conversation got assignee %s", got.AssigneeID)
	}
	_, err = assign(8080, 0, a1.ID)
	wantKind(t, "AssignConversation(unknown)", err, conv.ErrNotFound)

	t.Run("concurrent", func(t *testing.T) {
		race := e.open(tenant, 0, 0, conv.Conversation{})
		const n = 6
		agents := make([]conv.AgentID, n)
		for i := range agents {
			agents[i] = e.agent(tenant).ID
		}
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = assign(race.ID, 0, agents[i])
			}()
		}
		wg.Wait()
		winner := conv.AgentID(0)
		for i, err := range errs {
			switch {
			case err == nil && winner == 0:
				winner = agents[i]
			case err == nil:
				t.Fatalf("two concurrent assignments from the queue both won: %s and %s", winner, agents[i])
			case !errors.Is(err, conv.ErrConflict):
				t.Fatalf("losing assignment: %v, want ErrConflict", err)
			}
		}
		if got := e.getConversation(tenant, race.ID).AssigneeID; winner == 0 || got != winner {
			t.Fatalf("assignee %s, winner %s", got, winner)
		}
	})
}

// testOpenLoad: the number of open conversations per agent that has any;
// resolved and queued conversations do not count.
func testOpenLoad(t *testing.T, h Harness) {
	e := newEnv(t, h)
	a, b := e.tenant("acme"), e.tenant("globex")
	load := func(tenant conv.TenantID) map[conv.AgentID]int {
		t.Helper()
		var m map[conv.AgentID]int
		e.tx(tenant, func(tx storage.Tx) error {
			var err error
			m, err = tx.OpenLoad(e.ctx)
			return err
		})
		return m
	}
	if got := load(a); len(got) != 0 {
		t.Fatalf("OpenLoad of an empty tenant = %v", got)
	}
	a1, a2, a3 := e.agent(a), e.agent(a), e.agent(a)
	assigned := func(tenant conv.TenantID, agent conv.AgentID, resolved bool) {
		t.Helper()
		c := e.update(tenant, e.open(tenant, 0, 0, conv.Conversation{}).ID, func(c *conv.Conversation) { c.AssigneeID = agent })
		if resolved {
			e.resolve(tenant, c.ID)
		}
	}
	assigned(a, a1.ID, false)
	assigned(a, a1.ID, false)
	assigned(a, a1.ID, true)
	assigned(a, a2.ID, false)
	assigned(a, a3.ID, true)
	e.open(a, 0, 0, conv.Conversation{}) // queued
	assigned(b, a1.ID, false)            // another tenant's, naming the same agent id
	same(t, "OpenLoad", load(a), map[conv.AgentID]int{a1.ID: 2, a2.ID: 1})
}

// testQueued: open, unassigned conversations, oldest first (CreatedAt, then
// ID), only of the group asked for, at most limit.
func testQueued(t *testing.T, h Harness) {
	e := newEnv(t, h)
	a, b := e.tenant("acme"), e.tenant("globex")
	g1, g2 := e.group(a), e.group(a)
	agent := e.agent(a)
	t0 := now().Add(-time.Hour)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	q := func(g conv.GroupID, created time.Time) conv.Conversation {
		return e.open(a, 0, 0, conv.Conversation{GroupID: g, CreatedAt: created})
	}
	q1 := q(g1, at(1))
	q2 := q(0, at(2))
	q3 := q(g2, at(3))
	q4 := q(g1, at(4))
	// Two queued at the same instant, inserted in descending id order.
	lo, hi := conv.NewID[conv.ConversationID](e.ids), conv.NewID[conv.ConversationID](e.ids)
	tieHi := e.open(a, 0, 0, conv.Conversation{ID: hi, GroupID: g1, CreatedAt: at(5)})
	tieLo := e.open(a, 0, 0, conv.Conversation{ID: lo, GroupID: g1, CreatedAt: at(5)})
	// Not queued: assigned, resolved, another tenant's (older than all).
	e.update(a, q(g1, at(0)).ID, func(c *conv.Conversation) { c.AssigneeID = agent.ID })
	e.resolve(a, q(g1, at(0)).ID)
	e.open(b, 0, 0, conv.Conversation{CreatedAt: at(-30)})

	queued := func(g conv.GroupID, limit int) []conv.ConversationID {
		t.Helper()
		var list []conv.Conversation
		e.tx(a, func(tx storage.Tx) error {
			var err error
			list, err = tx.Queued(e.ctx, g, limit)
			return err
		})
		return conversationIDs(list)
	}
	tests := []struct {
		name  string
		group conv.GroupID
		limit int
		want  []conv.Conversation
	}{
		{"all groups", 0, 100, []conv.Conversation{q1, q2, q3, q4, tieLo, tieHi}},
		{"group 1", g1, 100, []conv.Conversation{q1, q4, tieLo, tieHi}},
		{"group 2", g2, 100, []conv.Conversation{q3}},
		{"limited", 0, 2, []conv.Conversation{q1, q2}},
		{"group 1 limited", g1, 3, []conv.Conversation{q1, q4, tieLo}},
		{"a group with nothing queued", conv.NewID[conv.GroupID](e.ids), 100, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sameIDs(t, "Queued", queued(tc.group, tc.limit), conversationIDs(tc.want))
		})
	}
	var full []conv.Conversation
	e.tx(a, func(tx storage.Tx) error {
		var err error
		full, err = tx.Queued(e.ctx, 0, 1)
		return err
	})
	if len(full) != 1 {
		t.Fatalf("Queued(limit 1) = %d conversations", len(full))
	}
	same(t, "queued conversation record", normConversation(full[0]), normConversation(e.getConversation(a, q1.ID)))
	e.update(a, q1.ID, func(c *conv.Conversation) { c.AssigneeID = agent.ID })
	sameIDs(t, "Queued after assigning the oldest", queued(0, 100), conversationIDs([]conv.Conversation{q2, q3, q4, tieLo, tieHi}))
}

// testSetRead: per agent and conversation, the read position never
// decreases, and SetRead returns the stored one. Decided here: a position
// past the conversation's LastSeq is stored as LastSeq (nobody can have
// read a message that does not exist yet, and a too-high position would
// hide later messages from Unread forever); a negative one as 0.
func testSetRead(t *testing.T, h Harness) {
	e := newEnv(t, h)
	tenant := e.tenant("acme")
	c := e.conversation(tenant)
	for i := range 5 {
		e.append(e.message(c, conv.In, fmt.Sprintf("m%d", i+1)))
	}
	a1, a2, a3 := e.agent(tenant), e.agent(tenant), e.agent(tenant)
	setRead := func(agent conv.AgentID, seq int64) int64 {
		t.Helper()
		var got int64
		e.tx(tenant, func(tx storage.Tx) error {
			var err error
			got, err = tx.SetRead(e.ctx, agent, c.ID, seq)
			return err
		})
		return got
	}
	steps := []struct {
		name  string
		agent conv.AgentID
		seq   int64
		want  int64
	}{
		{"first read", a1.ID, 3, 3},
		{"lower is ignored", a1.ID, 2, 3},
		{"same", a1.ID, 3, 3},
		{"forward", a1.ID, 4, 4},
		{"another agent is separate", a2.ID, 1, 1},
		{"past the last message", a1.ID, 99, 5},
		{"negative keeps the position", a2.ID, -5, 1},
		{"negative first read", a3.ID, -1, 0},
	}
	for _, s := range steps {
		if got := setRead(s.agent, s.seq); got != s.want {
			t.Fatalf("%s: SetRead(%d) = %d, want %d", s.name, s.seq, got, s.want)
		}
	}
	for _, tc := range []struct {
		agent        conv.AgentID
		read, unread int64
	}{{a1.ID, 5, 0}, {a2.ID, 1, 4}, {a3.ID, 0, 5}} {
		s := e.summary(tenant, tc.agent, c.ID)
		if s.ReadSeq != tc.read || s.Unread != tc.unread {
			t.Fatalf("agent %s: ReadSeq %d Unread %d, want %d and %d", tc.agent, s.ReadSeq, s.Unread, tc.read, tc.unread)
		}
	}
	e.append(e.message(c, conv.In, "m6"))
	if s := e.summary(tenant, a1.ID, c.ID); s.ReadSeq != 5 || s.Unread != 1 {
		t.Fatalf("after a new message: ReadSeq %d Unread %d, want 5 and 1", s.ReadSeq, s.Unread)
	}

	for _, tc := range []struct {
		name  string
		agent conv.AgentID
		c     conv.ConversationID
	}{{"unknown conversation", a1.ID, 6060}, {"unknown agent", 6061, c.ID}} {
		err := e.txErr(tenant, func(tx storage.Tx) error { _, err := tx.SetRead(e.ctx, tc.agent, tc.c, 1); return err })
		wantKind(t, "SetRead "+tc.name, err, conv.ErrNotFound)
	}

	t.Run("concurrent devices", func(t *testing.T) {
		agent := e.agent(tenant)
		const n = 6
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				seq := int64(i + 1)
				var got int64
				err := e.s.Tx(e.ctx, tenant, func(tx storage.Tx) error {
					var err error
					got, err = tx.SetRead(e.ctx, agent.ID, c.ID, seq)
					return err
				})
				if err != nil || got < seq {
					t.Errorf("SetRead(%d) = %d, %v", seq, got, err)
				}
			}()
		}
		wg.Wait()
		if s := e.summary(tenant, agent.ID, c.ID); s.ReadSeq != n {
			t.Fatalf("ReadSeq after concurrent SetReads = %d, want %d", s.ReadSeq, n)
		}
	})
}

// testListConversations: the filters, the order (UpdatedAt, then ID, both
// descending) and every field of a summary: channel kind and name, contact
// name, the newest message, and the reader's position with the number of
// inbound messages after it. ConversationSummary is the same record.
// Decided here: an unknown status or assignee filter, or AssignedTo
// without an agent, is ErrInvalid.
func testListConversations(t *testing.T, h Harness) {
	e := newEnv(t, h)
	tenant, other := e.tenant("acme"), e.tenant("globex")
	web := conv.Channel{ID: conv.NewID[conv.ChannelID](e.ids), TenantID: tenant, Kind: conv.KindWebchat, Name: "Website", CreatedAt: now()}
	mail := conv.Channel{ID: conv.NewID[conv.ChannelID](e.ids), TenantID: tenant, Kind: conv.KindEmail, Name: "Support mail", CreatedAt: now()}
	for _, ch := range []conv.Channel{web, mail} {
		e.tx(tenant, func(tx storage.Tx) error { return tx.CreateChannel(e.ctx, ch) })
	}
	ada, bob, cyd := e.contact(tenant, "ada"), e.contact(tenant, "bob"), e.contact(tenant, "cyd")
	e.tx(tenant, func(tx storage.Tx) error { return tx.RenameContact(e.ctx, ada.ID, "Ada") })
	a1, a2 := e.agent(tenant), e.agent(tenant)
	assign := func(id conv.ConversationID, agent conv.AgentID) {
		e.update(tenant, id, func(c *conv.Conversation) { c.AssigneeID = agent })
	}

	c1 := e.open(tenant, web.ID, ada.ID, conv.Conversation{}) // open, a1: in, out, in
	e.append(e.message(c1, conv.In, "hi"))
	e.append(e.message(c1, conv.Out, "hello, how can I help?"))
	last1 := e.append(e.message(c1, conv.In, "are you there?"))
	assign(c1.ID, a1.ID)
	c2 := e.open(tenant, mail.ID, bob.ID, conv.Conversation{}) // open, queued: in
	e.append(e.message(c2, conv.In, "invoice question"))
	c3 := e.open(tenant, web.ID, bob.ID, conv.Conversation{}) // resolved, a1: in, out
	e.append(e.message(c3, conv.In, "thanks"))
	e.append(e.message(c3, conv.Out, "bye"))
	assign(c3.ID, a1.ID)
	e.resolve(tenant, c3.ID)
	c4 := e.open(tenant, mail.ID, cyd.ID, conv.Conversation{}) // open, a2: no messages
	assign(c4.ID, a2.ID)
	c5 := e.open(tenant, web.ID, cyd.ID, conv.Conversation{}) // resolved, unassigned: out only
	e.append(e.message(c5, conv.Out, "we called you back"))
	e.resolve(tenant, c5.ID)
	e.append(e.message(e.conversation(other), conv.In, "another tenant"))
	e.tx(tenant, func(tx storage.Tx) error {
		if _, err := tx.SetRead(e.ctx, a1.ID, c1.ID, 1); err != nil {
			return err
		}
		_, err := tx.SetRead(e.ctx, a1.ID, c3.ID, 2)
		return err
	})

	stored := map[conv.ConversationID]conv.Conversation{}
	for _, c := range []conv.Conversation{c1, c2, c3, c4, c5} {
		stored[c.ID] = e.getConversation(tenant, c.ID)
	}
	ordered := func(cs ...conv.Conversation) []conv.ConversationID {
		var list []conv.Conversation
		for _, c := range cs {
			list = append(list, stored[c.ID])
		}
		return byRecency(list)
	}
	tests := []struct {
		name string
		q    storage.ConversationQuery
		want []conv.ConversationID
	}{
		{"everything", storage.ConversationQuery{}, ordered(c1, c2, c3, c4, c5)},
		{"open", storage.ConversationQuery{Status: conv.StatusOpen}, ordered(c1, c2, c4)},
		{"resolved", storage.ConversationQuery{Status: conv.StatusResolved}, ordered(c3, c5)},
		{"unassigned", storage.ConversationQuery{Assignee: storage.Unassigned}, ordered(c2, c5)},
		{"queue", storage.ConversationQuery{Status: conv.StatusOpen, Assignee: storage.Unassigned}, ordered(c2)},
		{"resolved unassigned", storage.ConversationQuery{Status: conv.StatusResolved, Assignee: storage.Unassigned}, ordered(c5)},
		{"a1's", storage.ConversationQuery{Assignee: storage.AssignedTo, Agent: a1.ID}, ordered(c1, c3)},
		{"a1's open", storage.ConversationQuery{Status: conv.StatusOpen, Assignee: storage.AssignedTo, Agent: a1.ID}, ordered(c1)},
		{"a1's resolved", storage.ConversationQuery{Status: conv.StatusResolved, Assignee: storage.AssignedTo, Agent: a1.ID}, ordered(c3)},
		{"a2's", storage.ConversationQuery{Assignee: storage.AssignedTo, Agent: a2.ID}, ordered(c4)},
		{"nobody's", storage.ConversationQuery{Assignee: storage.AssignedTo, Agent: 777}, nil},
		{"limited", storage.ConversationQuery{Limit: 2}, ordered(c1, c2, c3, c4, c5)[:2]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sameIDs(t, "ListConversations", summaryIDs(e.list(tenant, tc.q)), tc.want)
		})
	}
	for _, q := range []storage.ConversationQuery{
		{Status: "pending"},
		{Assignee: storage.AssignedTo},
		{Assignee: 99},
	} {
		err := e.txErr(tenant, func(tx storage.Tx) error { _, err := tx.ListConversations(e.ctx, q); return err })
		wantKind(t, fmt.Sprintf("ListConversations(%+v)", q), err, conv.ErrInvalid)
	}

	chanOf := map[conv.ChannelID]conv.Channel{web.ID: web, mail.ID: mail}
	nameOf := map[conv.ContactID]string{ada.ID: "Ada", bob.ID: bob.Name, cyd.ID: cyd.Name}
	want := func(c conv.Conversation, last *conv.Message, read, unread int64) storage.ConversationSummary {
		s := storage.ConversationSummary{Conversation: stored[c.ID], ChannelKind: chanOf[c.ChannelID].Kind,
			ChannelName: chanOf[c.ChannelID].Name, ContactName: nameOf[c.ContactID], Last: last, ReadSeq: read, Unread: unread}
		return normSummary(s)
	}
	newest := func(c conv.Conversation) *conv.Message {
		var list []conv.Message
		e.tx(tenant, func(tx storage.Tx) error {
			var err error
			list, err = tx.Messages(e.ctx, c.ID, 0, 100)
			return err
		})
		m := list[len(list)-1]
		return &m
	}
	for _, tc := range []struct {
		name   string
		reader conv.AgentID
		want   []storage.ConversationSummary
	}{
		{"read by a1", a1.ID, []storage.ConversationSummary{
			want(c1, &last1, 1, 1), want(c2, newest(c2), 0, 1), want(c3, newest(c3), 2, 0),
			want(c4, nil, 0, 0), want(c5, newest(c5), 0, 0)}},
		{"read by a2", a2.ID, []storage.ConversationSummary{
			want(c1, &last1, 0, 2), want(c2, newest(c2), 0, 1), want(c3, newest(c3), 0, 1),
			want(c4, nil, 0, 0), want(c5, newest(c5), 0, 0)}},
		{"no reader", 0, []storage.ConversationSummary{
			want(c1, &last1, 0, 2), want(c2, newest(c2), 0, 1), want(c3, newest(c3), 0, 1),
			want(c4, nil, 0, 0), want(c5, newest(c5), 0, 0)}},
	} {
		t.Run("fields "+tc.name, func(t *testing.T) {
			got := map[conv.ConversationID]storage.ConversationSummary{}
			for _, s := range e.list(tenant, storage.ConversationQuery{Reader: tc.reader}) {
				got[s.ID] = normSummary(s)
			}
			for _, w := range tc.want {
				same(t, "summary "+w.ID.String(), got[w.ID], w)
				same(t, "ConversationSummary "+w.ID.String(), normSummary(e.summary(tenant, tc.reader, w.ID)), w)
			}
		})
	}
	err := e.txErr(tenant, func(tx storage.Tx) error { _, err := tx.ConversationSummary(e.ctx, a1.ID, 1234); return err })
	wantKind(t, "ConversationSummary(unknown)", err, conv.ErrNotFound)
}

// testListConversationsPaging: paging with the last summary's (UpdatedAt,
// ID) visits every conversation exactly once in order, also across
// conversations updated at the same instant that straddle a page boundary.
// Limit defaults to 50 and is capped at 200.
func testListConversationsPaging(t *testing.T, h Harness) {
	e := newEnv(t, h)
	tenant := e.tenant("acme")
	ch := e.channel(tenant, nil)
	t0 := now().Add(-time.Hour)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	// OpenConversation sets UpdatedAt to CreatedAt, so the three at(3) tie.
	// They are inserted out of id order; page size 3 cuts inside the tie.
	ids := make([]conv.ConversationID, 3)
	for i := range ids {
		ids[i] = conv.NewID[conv.ConversationID](e.ids)
	}
	var all []conv.Conversation
	for _, tmpl := range []conv.Conversation{
		{CreatedAt: at(6)}, {CreatedAt: at(5)},
		{ID: ids[1], CreatedAt: at(3)}, {ID: ids[2], CreatedAt: at(3)}, {ID: ids[0], CreatedAt: at(3)},
		{CreatedAt: at(2)}, {CreatedAt: at(1)},
	} {
		all = append(all, e.open(tenant, ch.ID, 0, tmpl))
	}
	resolvedOne := e.resolve(tenant, all[6].ID) // newest now; excluded by the open filter
	all[6] = resolvedOne
	want := byRecency(all)

	page := func(q storage.ConversationQuery) []conv.ConversationID {
		t.Helper()
		var got []conv.ConversationID
		for range len(all) + 1 {
			list := e.list(tenant, q)
			if len(list) == 0 {
				return got
			}
			if len(list) > q.Limit {
				t.Fatalf("page of %d, limit %d", len(list), q.Limit)
			}
			got = append(got, summaryIDs(list)...)
			last := list[len(list)-1]
			q.BeforeUpdated, q.BeforeID = last.UpdatedAt, last.ID
		}
		t.Fatal("paging does not end")
		return nil
	}
	for _, limit := range []int{1, 2, 3, 4, 7, 8} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			same(t, "pages", page(storage.ConversationQuery{Limit: limit}), want)
		})
	}
	t.Run("open only", func(t *testing.T) {
		var open []conv.ConversationID
		for _, id := range want {
			if id != resolvedOne.ID {
				open = append(open, id)
			}
		}
		same(t, "pages", page(storage.ConversationQuery{Status: conv.StatusOpen, Limit: 3}), open)
	})
	t.Run("before the tie", func(t *testing.T) {
		// BeforeUpdated alone (zero BeforeID): strictly older conversations.
		got := summaryIDs(e.list(tenant, storage.ConversationQuery{BeforeUpdated: at(3), Limit: 10}))
		sameIDs(t, "before at(3)", got, byRecency([]conv.Conversation{all[5]}))
	})

	t.Run("limit default and cap", func(t *testing.T) {
		e.tx(tenant, func(tx storage.Tx) error {
			for i := range 201 {
				ct, _, err := tx.EnsureContact(e.ctx, conv.Identity{Kind: "bulk", ExternalID: fmt.Sprint(i)}, "")
				if err != nil {
					return err
				}
				if _, _, err := tx.OpenConversation(e.ctx, ch.ID, ct.ID, conv.Conversation{
					ID: conv.NewID[conv.ConversationID](e.ids), CreatedAt: at(-10)}); err != nil {
					return err
				}
			}
			return nil
		})
		for _, tc := range []struct{ limit, want int }{{0, 50}, {-1, 50}, {10, 10}, {200, 200}, {500, 200}} {
			if got := len(e.list(tenant, storage.ConversationQuery{Limit: tc.limit})); got != tc.want {
				t.Fatalf("Limit %d: %d conversations, want %d", tc.limit, got, tc.want)
			}
		}
	})
}

// testVisitors: a visitor session round-trips through VisitorByHash; the
// hash is unique per tenant; channel and contact must be the tenant's;
// UpdateVisitorContact re-points it.
func testVisitors(t *testing.T, h Harness) {
	e := newEnv(t, h)
	a, b := e.tenant("acme"), e.tenant("globex")
	ch, ct, ct2 := e.channel(a, nil), e.contact(a, "anon"), e.contact(a, "known")
	chB, ctB := e.channel(b, nil), e.contact(b, "b")
	v := e.visitor(a, ch.ID, ct.ID)
	same(t, "VisitorByHash", normVisitor(e.visitorByHash(a, v.Hash)), normVisitor(v))

	h2 := sha256.Sum256([]byte("another token"))
	create := func(tenant conv.TenantID, x conv.Visitor) error {
		return e.txErr(tenant, func(tx storage.Tx) error { return tx.CreateVisitor(e.ctx, x) })
	}
	fresh := func(mut func(*conv.Visitor)) conv.Visitor {
		x := conv.Visitor{ID: conv.NewID[conv.VisitorID](e.ids), TenantID: a, ChannelID: ch.ID, ContactID: ct.ID,
			Hash: h2[:], CreatedAt: now()}
		mut(&x)
		return x
	}
	for _, tc := range []struct {
		name   string
		tenant conv.TenantID
		v      conv.Visitor
		want   error
	}{
		{"same hash", a, fresh(func(x *conv.Visitor) { x.Hash = v.Hash }), conv.ErrConflict},
		{"same id", a, fresh(func(x *conv.Visitor) { x.ID = v.ID }), conv.ErrConflict},
		{"no id", a, fresh(func(x *conv.Visitor) { x.ID = 0 }), conv.ErrInvalid},
		{"no hash", a, fresh(func(x *conv.Visitor) { x.Hash = nil }), conv.ErrInvalid},
		{"unknown channel", a, fresh(func(x *conv.Visitor) { x.ChannelID = 404 }), conv.ErrNotFound},
		{"unknown contact", a, fresh(func(x *conv.Visitor) { x.ContactID = 404 }), conv.ErrNotFound},
		{"another tenant's channel", a, fresh(func(x *conv.Visitor) { x.ChannelID = chB.ID }), conv.ErrNotFound},
		{"another tenant's contact", a, fresh(func(x *conv.Visitor) { x.ContactID = ctB.ID }), conv.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) { wantKind(t, "CreateVisitor", create(tc.tenant, tc.v), tc.want) })
	}
	// The same hash in another tenant is another session.
	inB := conv.Visitor{ID: conv.NewID[conv.VisitorID](e.ids), TenantID: b, ChannelID: chB.ID, ContactID: ctB.ID, Hash: v.Hash, CreatedAt: now()}
	ok(t, "CreateVisitor(same hash, other tenant)", create(b, inB))
	same(t, "B's VisitorByHash", normVisitor(e.visitorByHash(b, v.Hash)), normVisitor(inB))
	same(t, "A's VisitorByHash", normVisitor(e.visitorByHash(a, v.Hash)), normVisitor(v))
	err := e.txErr(a, func(tx storage.Tx) error { _, err := tx.VisitorByHash(e.ctx, h2[:]); return err })
	wantKind(t, "VisitorByHash(unknown)", err, conv.ErrNotFound)

	e.tx(a, func(tx storage.Tx) error { return tx.UpdateVisitorContact(e.ctx, v.ID, ct2.ID) })
	moved := v
	moved.ContactID = ct2.ID
	same(t, "after UpdateVisitorContact", normVisitor(e.visitorByHash(a, v.Hash)), normVisitor(moved))
	for _, tc := range []struct {
		name    string
		id      conv.VisitorID
		contact conv.ContactID
	}{{"unknown visitor", 505, ct.ID}, {"unknown contact", v.ID, 505}, {"another tenant's contact", v.ID, ctB.ID}} {
		err := e.txErr(a, func(tx storage.Tx) error { return tx.UpdateVisitorContact(e.ctx, tc.id, tc.contact) })
		wantKind(t, "UpdateVisitorContact "+tc.name, err, conv.ErrNotFound)
	}
	same(t, "after failed updates", normVisitor(e.visitorByHash(a, v.Hash)), normVisitor(moved))
}

// testConsoleIsolation: every console method, run by tenant B with tenant
// A's ids, finds nothing and changes nothing; B's lists hold none of A's
// records.
func testConsoleIsolation(t *testing.T, h Harness) {
	e := newEnv(t, h)
	a, b := e.tenant("acme"), e.tenant("globex")
	identity := conv.Identity{Kind: "openid", ExternalID: "shared-looking-id"}
	var ct conv.Contact
	e.tx(a, func(tx storage.Tx) error {
		var err error
		ct, _, err = tx.EnsureContact(e.ctx, identity, "Ada")
		return err
	})
	ct2 := e.contact(a, "second")
	agentA := e.agent(a)
	c := e.open(a, 0, ct.ID, conv.Conversation{})
	queuedA := e.open(a, 0, 0, conv.Conversation{})
	m := e.append(e.message(c, conv.In, "A's secret"))
	e.tx(a, func(tx storage.Tx) error {
		_, err := tx.AssignConversation(e.ctx, c.ID, 0, agentA.ID)
		return err
	})
	v := e.visitor(a, c.ChannelID, ct.ID)
	agentB := e.agent(b)
	cB := e.open(b, 0, 0, conv.Conversation{})
	snapshot := func() (conv.Contact, conv.Conversation, conv.Message, storage.ConversationSummary, conv.Visitor) {
		t.Helper()
		return e.getContact(a, ct.ID), e.getConversation(a, c.ID), e.getMessage(a, m.ID),
			normSummary(e.summary(a, agentA.ID, c.ID)), normVisitor(e.visitorByHash(a, v.Hash))
	}
	ct0, c0, m0, s0, v0 := snapshot()

	notFound := []struct {
		name string
		fn   func(tx storage.Tx) error
	}{
		{"ContactByIdentity", func(tx storage.Tx) error { _, err := tx.ContactByIdentity(e.ctx, identity); return err }},
		{"RenameContact", func(tx storage.Tx) error { return tx.RenameContact(e.ctx, ct.ID, "Mallory") }},
		{"MergeContacts of A's two", func(tx storage.Tx) error { return tx.MergeContacts(e.ctx, ct2.ID, ct.ID) }},
		{"MergeContacts into A's", func(tx storage.Tx) error { return tx.MergeContacts(e.ctx, cB.ContactID, ct.ID) }},
		{"MergeContacts from A's", func(tx storage.Tx) error { return tx.MergeContacts(e.ctx, ct.ID, cB.ContactID) }},
		{"RecallMessage", func(tx storage.Tx) error { _, _, err := tx.RecallMessage(e.ctx, m.ID, now()); return err }},
		{"AssignConversation", func(tx storage.Tx) error {
			_, err := tx.AssignConversation(e.ctx, c.ID, agentA.ID, agentB.ID)
			return err
		}},
		{"AssignConversation from the queue", func(tx storage.Tx) error {
			_, err := tx.AssignConversation(e.ctx, queuedA.ID, 0, agentB.ID)
			return err
		}},
		{"SetRead of A's conversation", func(tx storage.Tx) error { _, err := tx.SetRead(e.ctx, agentB.ID, c.ID, 1); return err }},
		{"SetRead by A's agent", func(tx storage.Tx) error { _, err := tx.SetRead(e.ctx, agentA.ID, cB.ID, 1); return err }},
		{"ConversationSummary", func(tx storage.Tx) error { _, err := tx.ConversationSummary(e.ctx, agentA.ID, c.ID); return err }},
		{"VisitorByHash", func(tx storage.Tx) error { _, err := tx.VisitorByHash(e.ctx, v.Hash); return err }},
		{"UpdateVisitorContact", func(tx storage.Tx) error { return tx.UpdateVisitorContact(e.ctx, v.ID, cB.ContactID) }},
		{"CreateVisitor on A's channel", func(tx storage.Tx) error {
			return tx.CreateVisitor(e.ctx, conv.Visitor{ID: conv.NewID[conv.VisitorID](e.ids), ChannelID: c.ChannelID,
				ContactID: cB.ContactID, Hash: []byte("b-token-hash"), CreatedAt: now()})
		}},
	}
	for _, tc := range notFound {
		t.Run(tc.name, func(t *testing.T) { wantKind(t, tc.name, e.txErr(b, tc.fn), conv.ErrNotFound) })
	}

	e.tx(b, func(tx storage.Tx) error {
		msgs, err := tx.MessagesBefore(e.ctx, c.ID, 100, 100)
		if err != nil && !errors.Is(err, conv.ErrNotFound) {
			t.Fatalf("MessagesBefore: %v", err)
		}
		if len(msgs) != 0 {
			t.Fatalf("tenant B reads %d of tenant A's messages", len(msgs))
		}
		for _, q := range []storage.ConversationQuery{
			{Reader: agentA.ID},
			{Assignee: storage.AssignedTo, Agent: agentA.ID},
			{Status: conv.StatusOpen, Assignee: storage.Unassigned},
		} {
			list, err := tx.ListConversations(e.ctx, q)
			ok(t, "ListConversations", err)
			for _, s := range list {
				if s.ID != cB.ID {
					t.Fatalf("tenant B lists conversation %s with %+v", s.ID, q)
				}
			}
		}
		queued, err := tx.Queued(e.ctx, 0, 100)
		ok(t, "Queued", err)
		sameIDs(t, "B's queue", conversationIDs(queued), []conv.ConversationID{cB.ID})
		load, err := tx.OpenLoad(e.ctx)
		ok(t, "OpenLoad", err)
		if len(load) != 0 {
			t.Fatalf("tenant B's OpenLoad = %v", load)
		}
		return nil
	})

	ct1, c1, m1, s1, v1 := snapshot()
	same(t, "A's contact", ct1, ct0)
	same(t, "A's conversation", normConversation(c1), normConversation(c0))
	same(t, "A's message", normMessage(m1), normMessage(m0))
	same(t, "A's summary", s1, s0)
	same(t, "A's visitor", v1, v0)
	if got := e.getConversation(a, queuedA.ID); got.AssigneeID != 0 {
		t.Fatalf("tenant B assigned A's queued conversation to %s", got.AssigneeID)
	}
	if got := e.getContact(a, ct2.ID); got.ID != ct2.ID {
		t.Fatalf("A's second contact after B's merges: %+v", got)
	}
}

// testLatestConversation: the contact's open conversation on the channel,
// else the one created last; ErrNotFound when there is none. Other
// channels, contacts and tenants do not count.
func testLatestConversation(t *testing.T, h Harness) {
	e := newEnv(t, h)
	a, b := e.tenant("acme"), e.tenant("globex")
	ch, elsewhere := e.channel(a, nil), e.channel(a, nil)
	ct, someone := e.contact(a, "returning"), e.contact(a, "someone")
	latest := func(tenant conv.TenantID, ch conv.ChannelID, ct conv.ContactID) (conv.Conversation, error) {
		var c conv.Conversation
		err := e.txErr(tenant, func(tx storage.Tx) error {
			var err error
			c, err = tx.LatestConversation(e.ctx, ch, ct)
			return err
		})
		return c, err
	}
	_, err := latest(a, ch.ID, ct.ID)
	wantKind(t, "LatestConversation before any", err, conv.ErrNotFound)

	t0 := now().Add(-time.Hour)
	first := e.resolve(a, e.open(a, ch.ID, ct.ID, conv.Conversation{CreatedAt: t0.Add(1 * time.Minute)}).ID)
	second := e.resolve(a, e.open(a, ch.ID, ct.ID, conv.Conversation{CreatedAt: t0.Add(3 * time.Minute)}).ID)
	e.resolve(a, e.open(a, ch.ID, ct.ID, conv.Conversation{CreatedAt: t0.Add(2 * time.Minute)}).ID)
	// Newer, but not this pair's.
	e.open(a, elsewhere.ID, ct.ID, conv.Conversation{CreatedAt: t0.Add(10 * time.Minute)})
	e.open(a, ch.ID, someone.ID, conv.Conversation{CreatedAt: t0.Add(10 * time.Minute)})
	got, err := latest(a, ch.ID, ct.ID)
	ok(t, "LatestConversation", err)
	same(t, "latest resolved", normConversation(got), normConversation(e.getConversation(a, second.ID)))
	if first.ID == got.ID {
		t.Fatal("LatestConversation returned the first conversation")
	}
	// An open one wins even when it was created before the others.
	open := e.open(a, ch.ID, ct.ID, conv.Conversation{CreatedAt: t0})
	got, err = latest(a, ch.ID, ct.ID)
	ok(t, "LatestConversation", err)
	same(t, "latest with one open", normConversation(got), normConversation(e.getConversation(a, open.ID)))

	_, err = latest(b, ch.ID, ct.ID)
	wantKind(t, "LatestConversation of another tenant's pair", err, conv.ErrNotFound)
}
