package storage

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// SetIngester is an optional capability of a Tx, which Ingest uses when
// the Tx has it: each step of ingest as one call for the whole batch, which
// the store runs as one statement (or one round trip) rather than the
// eight or so statements per envelope of IngestEach.
type SetIngester interface {
	Tx
	// IDs makes the ids of what a batch creates when its items name none.
	IDs() *conv.IDGen
	// LookupIngest reads the groups of channels (a channel that does not
	// exist for the tenant is absent), the messages stored under keys, and
	// the contacts owning identities.
	LookupIngest(ctx context.Context, channels []conv.ChannelID, keys []DedupKey, identities []conv.Identity) (IngestLookup, error)
	// CreateContacts creates each contact and claims its identity. It
	// returns the owner of every identity given: the new contact, or, when
	// another transaction claimed the identity first, that one's contact
	// (the new contact is then dropped).
	CreateContacts(ctx context.Context, contacts []NewContact) (map[conv.Identity]ContactRef, error)
	// AppendGroups takes N seqs in the open conversation of each group's
	// (channel, contact), opening it with the group's ID and fields if
	// there is none, and returns the conversations as after: LastSeq is
	// the group's last seq. UpdatedAt moves to Updated only when it lags by
	// ActivityGranularity; ReplyDeadline moves to Deadline only forward.
	AppendGroups(ctx context.Context, groups []GroupAppend) ([]conv.Conversation, error)
	// InsertMessages inserts new messages.
	InsertMessages(ctx context.Context, msgs []conv.Message) error
	// ConversationsByID reads conversations (the missing are absent).
	ConversationsByID(ctx context.Context, ids []conv.ConversationID) (map[conv.ConversationID]conv.Conversation, error)
}

// DedupKey is what an inbound message is deduplicated on.
type DedupKey struct {
	Channel    conv.ChannelID
	ExternalID string
}

// IngestLookup is what LookupIngest read.
type IngestLookup struct {
	// Groups has every channel that exists, with its group (0: none).
	Groups   map[conv.ChannelID]conv.GroupID
	Stored   map[DedupKey]conv.Message
	Contacts map[conv.Identity]ContactRef
}

// ContactRef is the contact owning an identity.
type ContactRef struct {
	ID   conv.ContactID
	Name string
}

// NewContact is a contact to create for an identity.
type NewContact struct {
	Identity conv.Identity
	ContactRef
	At time.Time
}

// GroupAppend is the envelopes of one (channel, contact) appending to one
// conversation.
type GroupAppend struct {
	// ID is the id of the conversation the group opens, if it opens one.
	ID               conv.ConversationID
	Channel          conv.ChannelID
	Contact          conv.ContactID
	Group            conv.GroupID
	Scene            string
	Deadline         *time.Time
	N                int64
	Created, Updated time.Time
}

// IngestSets stores items through a store's set-wise steps: one lookup for the batch, contacts for the new senders, one
// conversation upsert per (channel, contact), one insert of every message.
// Rows are claimed in one order by every batch — new identities by (kind,
// external id), then conversations by (channel, contact) — so concurrent
// batches sharing senders do not deadlock. Outcomes equal
// IngestEach's, except that the outcomes of one conversation carry its
// reply deadline as after the whole batch. Threaded envelopes go through
// IngestEach.
func IngestSets(ctx context.Context, tx SetIngester, items []IngestItem) ([]IngestOutcome, error) {
	if len(items) == 0 {
		return []IngestOutcome{}, nil
	}
	if slices.ContainsFunc(items, func(it IngestItem) bool { return it.In.Thread != nil }) {
		return IngestEach(ctx, tx, items)
	}
	b, err := newSetBatch(tx, items, tx.IDs())
	if err != nil {
		return nil, err
	}
	for _, step := range []func(context.Context) error{b.lookup, b.readDuplicates, b.createContacts, b.append} {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	b.repeats()
	return b.out, nil
}

// setItem is one envelope of a setBatch, in IngestOrder.
type setItem struct {
	i   int // index into items and out
	in  conv.Inbound
	now time.Time
	// dupOf is the index in setBatch.order of the envelope of this batch
	// this one repeats, or -1.
	dupOf int
	// stored: the message was stored before the batch (a duplicate).
	stored  bool
	contact ContactRef
	seq     int64
}

// setGroup is the envelopes of one (channel, contact).
type setGroup struct {
	GroupAppend
	items []int // indexes into setBatch.order
	conv  conv.Conversation
}

type setBatch struct {
	tx       SetIngester
	ids      *conv.IDGen
	items    []IngestItem
	order    []setItem
	out      []IngestOutcome
	lookedUp IngestLookup
	groups   []setGroup
	// dups are the order indexes of envelopes stored before the batch.
	dups []int
}

func newSetBatch(tx SetIngester, items []IngestItem, ids *conv.IDGen) (*setBatch, error) {
	b := &setBatch{tx: tx, ids: ids, items: items, out: make([]IngestOutcome, len(items))}
	first := map[DedupKey]int{}
	for _, i := range IngestOrder(items) {
		in := items[i].In
		if in.TenantID != tx.Tenant() {
			return nil, fmt.Errorf("%s: %w: envelope of tenant %s in a transaction of tenant %s",
				ingestOp(in), conv.ErrInvalid, in.TenantID, tx.Tenant())
		}
		if err := in.From.Validate(); err != nil {
			return nil, fmt.Errorf("%s: contact: %w", ingestOp(in), err)
		}
		it := setItem{i: i, in: in, now: items[i].Now.UTC().Truncate(time.Microsecond), dupOf: -1}
		k := DedupKey{in.ChannelID, in.ExternalID}
		if j, ok := first[k]; ok {
			it.dupOf = j
		} else {
			first[k] = len(b.order)
		}
		b.order = append(b.order, it)
	}
	return b, nil
}

// lookup reads the channels, the messages stored under the batch's
// external ids, and the contacts of its senders.
func (b *setBatch) lookup(ctx context.Context) error {
	var (
		channels   []conv.ChannelID
		keys       []DedupKey
		identities []conv.Identity
		seen       = map[conv.Identity]bool{}
	)
	for _, it := range b.order {
		if !slices.Contains(channels, it.in.ChannelID) {
			channels = append(channels, it.in.ChannelID)
		}
		if it.dupOf < 0 {
			keys = append(keys, DedupKey{it.in.ChannelID, it.in.ExternalID})
		}
		if !seen[it.in.From] {
			seen[it.in.From] = true
			identities = append(identities, it.in.From)
		}
	}
	var err error
	if b.lookedUp, err = b.tx.LookupIngest(ctx, channels, keys, identities); err != nil {
		return err
	}
	for j := range b.order {
		it := &b.order[j]
		if _, ok := b.lookedUp.Groups[it.in.ChannelID]; !ok {
			return fmt.Errorf("%s: channel %s of tenant %s: %w", ingestOp(it.in), it.in.ChannelID, b.tx.Tenant(), conv.ErrNotFound)
		}
		if it.dupOf >= 0 {
			continue
		}
		if m, ok := b.lookedUp.Stored[DedupKey{it.in.ChannelID, it.in.ExternalID}]; ok {
			it.stored = true
			b.dups = append(b.dups, j)
			b.out[it.i] = IngestOutcome{Message: m, Duplicate: true, Opened: m.Seq == 1}
		}
	}
	return nil
}

// readDuplicates reads the conversations of envelopes stored before the
// batch, as they are before the batch's writes.
func (b *setBatch) readDuplicates(ctx context.Context) error {
	if len(b.dups) == 0 {
		return nil
	}
	ids := make([]conv.ConversationID, len(b.dups))
	for k, j := range b.dups {
		ids[k] = b.out[b.order[j].i].Message.ConversationID
	}
	convs, err := b.tx.ConversationsByID(ctx, ids)
	if err != nil {
		return err
	}
	for _, j := range b.dups {
		it := b.order[j]
		o := &b.out[it.i]
		c, ok := convs[o.Message.ConversationID]
		if !ok {
			return fmt.Errorf("%s: %w: conversation %s of duplicate message %s vanished",
				ingestOp(it.in), conv.ErrNotFound, o.Message.ConversationID, o.Message.ID)
		}
		o.Conversation = c
	}
	return nil
}

// createContacts creates a contact for each new sender of envelopes to
// store, then puts every such envelope in its (channel, contact) group.
func (b *setBatch) createContacts(ctx context.Context) error {
	var fresh []NewContact
	mine := map[conv.Identity]bool{}
	for _, it := range b.order {
		if it.stored || it.dupOf >= 0 {
			continue
		}
		if _, ok := b.lookedUp.Contacts[it.in.From]; ok || mine[it.in.From] {
			continue
		}
		mine[it.in.From] = true
		fresh = append(fresh, NewContact{Identity: it.in.From, At: it.now,
			ContactRef: ContactRef{ID: conv.NewID[conv.ContactID](b.ids), Name: it.in.FromName}})
	}
	if len(fresh) > 0 {
		// Claimed in identity order: identities are the tenant's, not a
		// channel's, so IngestOrder (by channel first) would let two
		// batches naming the same new senders on two channels claim
		// them in opposite orders and deadlock.
		slices.SortFunc(fresh, func(a, b NewContact) int {
			return cmp.Or(cmp.Compare(a.Identity.Kind, b.Identity.Kind), cmp.Compare(a.Identity.ExternalID, b.Identity.ExternalID))
		})
		owners, err := b.tx.CreateContacts(ctx, fresh)
		if err != nil {
			return err
		}
		for _, c := range fresh {
			owner, ok := owners[c.Identity]
			if !ok {
				return fmt.Errorf("ingest: contact: %w: identity %s:%s has no owner after its claim",
					conv.ErrConflict, c.Identity.Kind, c.Identity.ExternalID)
			}
			b.lookedUp.Contacts[c.Identity] = owner
		}
	}

	type pair struct {
		channel conv.ChannelID
		contact conv.ContactID
	}
	groups := map[pair]int{}
	for j := range b.order {
		it := &b.order[j]
		if it.stored || it.dupOf >= 0 {
			continue
		}
		it.contact = b.lookedUp.Contacts[it.in.From]
		p := pair{it.in.ChannelID, it.contact.ID}
		g, ok := groups[p]
		if !ok {
			g = len(b.groups)
			groups[p] = g
			id := b.items[it.i].ConversationID
			if id.IsZero() {
				id = conv.NewID[conv.ConversationID](b.ids)
			}
			b.groups = append(b.groups, setGroup{GroupAppend: GroupAppend{ID: id, Channel: p.channel, Contact: p.contact,
				Group: b.lookedUp.Groups[p.channel], Scene: it.in.Scene, Created: it.now}})
		}
		gr := &b.groups[g]
		gr.items = append(gr.items, j)
		gr.N++
		gr.Updated = it.now
		if d := ReplyDeadline(it.in, it.now); d != nil && (gr.Deadline == nil || d.After(*gr.Deadline)) {
			gr.Deadline = d
		}
	}
	return nil
}

// append takes each group's seqs and inserts the new messages.
func (b *setBatch) append(ctx context.Context) error {
	if len(b.groups) == 0 {
		return nil
	}
	// Upserted in (channel, contact) order, so that concurrent batches
	// lock shared conversations in one order (two identities of one
	// contact may sort apart in IngestOrder).
	slices.SortFunc(b.groups, func(x, y setGroup) int {
		return cmp.Or(cmp.Compare(x.Channel, y.Channel), cmp.Compare(x.Contact, y.Contact))
	})
	appends := make([]GroupAppend, len(b.groups))
	for g, gr := range b.groups {
		appends[g] = gr.GroupAppend
	}
	convs, err := b.tx.AppendGroups(ctx, appends)
	if err != nil {
		return err
	}
	if len(convs) != len(b.groups) {
		return fmt.Errorf("ingest: %w: %d of %d conversations appended to", conv.ErrConflict, len(convs), len(b.groups))
	}
	for g, c := range convs {
		if c.ID.IsZero() || c.LastSeq < b.groups[g].N {
			return fmt.Errorf("ingest: %w: conversation of channel %s and contact %s not appended to",
				conv.ErrConflict, b.groups[g].Channel, b.groups[g].Contact)
		}
	}
	msgs := make([]conv.Message, 0, len(b.order)-len(b.dups))
	for g := range b.groups {
		gr := &b.groups[g]
		gr.conv = convs[g]
		base := gr.conv.LastSeq - gr.N
		for k, j := range gr.items {
			it := &b.order[j]
			it.seq = base + int64(k) + 1
			o := b.outcome(it, gr)
			b.out[it.i] = o
			msgs = append(msgs, o.Message)
		}
	}
	return b.tx.InsertMessages(ctx, msgs)
}

// outcome is what storing it in gr's conversation did.
func (b *setBatch) outcome(it *setItem, gr *setGroup) IngestOutcome {
	c := gr.conv
	// As IngestEach reports it: the conversation as after this append,
	// whose activity is this append (the stored updated_at may lag by up
	// to ActivityGranularity).
	c.LastSeq, c.UpdatedAt = it.seq, it.now
	sender := conv.Sender{Type: conv.SenderContact, ID: it.contact.ID.String(), Name: it.contact.Name}
	if it.in.System {
		sender = conv.Sender{Type: conv.SenderSystem}
	}
	id := b.items[it.i].MessageID
	if id.IsZero() {
		id = conv.NewID[conv.MessageID](b.ids)
	}
	return IngestOutcome{
		Conversation: c,
		Opened:       c.ID == gr.ID && it.seq == 1,
		Message: conv.Message{
			ID:             id,
			TenantID:       b.tx.Tenant(),
			ConversationID: c.ID,
			ChannelID:      it.in.ChannelID,
			Seq:            it.seq,
			Direction:      conv.In,
			Sender:         sender,
			Parts:          it.in.Parts,
			ExternalID:     it.in.ExternalID,
			Status:         conv.MsgReceived,
			CreatedAt:      it.now,
		},
	}
}

// repeats answers the envelopes repeating another of the batch, and moves
// the conversation of every duplicate to where IngestEach reads it: after
// the envelopes of the batch applied before it.
func (b *setBatch) repeats() {
	byConv := make(map[conv.ConversationID]int, len(b.groups))
	for g, gr := range b.groups {
		byConv[gr.conv.ID] = g
	}
	for j := range b.order {
		it := &b.order[j]
		if it.dupOf < 0 && !it.stored {
			continue
		}
		o := &b.out[it.i]
		if it.dupOf >= 0 {
			*o = b.out[b.order[it.dupOf].i]
			o.Duplicate = true
			o.Opened = o.Message.Seq == 1
		}
		g, ok := byConv[o.Message.ConversationID]
		if !ok {
			continue // untouched by this batch: as read
		}
		// The conversation as after the batch (so the reply deadline and
		// activity agree with the other outcomes of this conversation),
		// its LastSeq as after the envelopes applied before this one: at
		// least what was read before the batch, for a message stored
		// earlier.
		gr := &b.groups[g]
		floor := int64(0)
		if it.dupOf < 0 || b.order[it.dupOf].stored {
			floor = o.Conversation.LastSeq
		}
		o.Conversation = gr.conv
		o.Conversation.LastSeq = floor
		for _, k := range gr.items {
			if k < j {
				o.Conversation.LastSeq = max(o.Conversation.LastSeq, b.order[k].seq)
			}
		}
	}
}
