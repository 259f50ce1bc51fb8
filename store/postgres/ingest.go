package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

var _ storage.BatchIngester = (*tx)(nil)

// IngestBatch stores items set-wise: each step below is one statement for
// the whole batch, so Postgres plans and runs five or so statements per
// batch instead of five per envelope (the per-envelope ingest_envelope
// calls this replaced cost ~157 µs of backend CPU per envelope).
//
//  1. lookup, one round trip: the channels, the messages already stored
//     under the batch's (channel, external id) pairs, and the contacts
//     owning the batch's sender identities;
//  2. only when a sender is new: insert its contact and identity (ON
//     CONFLICT DO NOTHING waits for a concurrent claim of the identity;
//     a claim lost drops our contact and reads the winner's);
//  3. one upsert on conversations_one_open per (channel, contact): opens
//     the conversation holding the group's first message, or takes the
//     group's seqs from the open one under its row lock — which
//     serializes appends to a conversation across writers and nodes and
//     keeps seq gapless;
//  4. one insert of every new message.
//
// The rows are locked in storage.IngestOrder (identities, then
// conversations), so concurrent batches sharing senders do not deadlock.
// Outcomes equal storage.IngestEach's, except that every outcome of one
// conversation carries its reply deadline as after the whole batch.
func (t *tx) IngestBatch(ctx context.Context, items []storage.IngestItem) ([]storage.IngestOutcome, error) {
	if len(items) == 0 {
		return []storage.IngestOutcome{}, nil
	}
	// Threaded envelopes (email) are few and take lookups this path does
	// not make: such a batch goes the reference way.
	if slices.ContainsFunc(items, func(it storage.IngestItem) bool { return it.In.Thread != nil }) {
		return storage.IngestEach(ctx, t, items)
	}
	b, err := newIngestBatch(t, items)
	if err != nil {
		return nil, err
	}
	if err := b.lookup(ctx); err != nil {
		return nil, err
	}
	if err := b.readDuplicates(ctx); err != nil {
		return nil, err
	}
	if err := b.createContacts(ctx); err != nil {
		return nil, err
	}
	if err := b.append(ctx); err != nil {
		return nil, err
	}
	b.repeats()
	return b.out, nil
}

// identityKey is a sender identity.
type identityKey struct{ kind, external string }

// dedupKey is what an inbound message is deduplicated on.
type dedupKey struct {
	channel  conv.ChannelID
	external string
}

// batchItem is one envelope of an ingestBatch, in storage.IngestOrder.
type batchItem struct {
	i     int // index into items and out
	in    conv.Inbound
	now   time.Time
	parts string
	// dupOf is the index in ingestBatch.order of the envelope of this batch
	// this one repeats, or -1.
	dupOf int
	// stored: the message was stored before the batch (a duplicate).
	stored  bool
	contact *contactRef
	group   int // index into ingestBatch.groups
	seq     int64
}

// contactRef is the contact of an identity, as found or created.
type contactRef struct {
	id   int64
	name string
}

// group is the envelopes of one (channel, contact) pair: they append to
// one conversation.
type group struct {
	channel conv.ChannelID
	contact int64
	items   []int // indexes into ingestBatch.order
	conv    conv.Conversation
}

type ingestBatch struct {
	t        *tx
	items    []storage.IngestItem
	order    []batchItem
	out      []storage.IngestOutcome
	channels map[conv.ChannelID]int64 // the group of each channel (0: none)
	contacts map[identityKey]*contactRef
	groups   []group
	// dups are the order indexes of envelopes stored before the batch.
	dups []int
}

func newIngestBatch(t *tx, items []storage.IngestItem) (*ingestBatch, error) {
	b := &ingestBatch{t: t, items: items, out: make([]storage.IngestOutcome, len(items)),
		channels: map[conv.ChannelID]int64{}, contacts: map[identityKey]*contactRef{}}
	first := map[dedupKey]int{}
	for _, i := range storage.IngestOrder(items) {
		in := items[i].In
		op := ingestOp(in)
		if in.TenantID != t.tenant {
			return nil, fmt.Errorf("%s: %w: envelope of tenant %s in a transaction of tenant %s",
				op, conv.ErrInvalid, in.TenantID, t.tenant)
		}
		if err := in.From.Validate(); err != nil {
			return nil, fmt.Errorf("%s: contact: %w", op, err)
		}
		parts, err := json.Marshal(in.Parts)
		if err != nil {
			return nil, fmt.Errorf("%s: append: %w: parts: %v", op, conv.ErrInvalid, err)
		}
		it := batchItem{i: i, in: in, now: micros(items[i].Now), parts: string(parts), dupOf: -1}
		k := dedupKey{in.ChannelID, in.ExternalID}
		if j, ok := first[k]; ok {
			it.dupOf = j
		} else {
			first[k] = len(b.order)
		}
		b.channels[in.ChannelID] = 0
		b.order = append(b.order, it)
	}
	return b, nil
}

// lookup reads, in one round trip, the batch's channels, the messages
// already stored under its external ids, and the contacts of its senders.
func (b *ingestBatch) lookup(ctx context.Context) error {
	tenant := int64(b.t.tenant)
	channels := make([]int64, 0, len(b.channels))
	for ch := range b.channels {
		channels = append(channels, int64(ch))
	}
	var (
		extCh   []int64
		extIDs  []string
		idKinds []string
		idExts  []string
	)
	seen := map[identityKey]bool{}
	for _, it := range b.order {
		if it.dupOf < 0 {
			extCh = append(extCh, int64(it.in.ChannelID))
			extIDs = append(extIDs, it.in.ExternalID)
		}
		k := identityKey{it.in.From.Kind, it.in.From.ExternalID}
		if !seen[k] {
			seen[k] = true
			idKinds = append(idKinds, k.kind)
			idExts = append(idExts, k.external)
		}
	}

	batch := &pgx.Batch{}
	batch.Queue(`SELECT id, COALESCE(group_id, 0) FROM channels WHERE tenant_id = $1 AND id = ANY($2)`, tenant, channels)
	// Both lookups are lateral probes fenced by OFFSET 0, so that every
	// plan, even a generic one made while the tables were empty, probes
	// the unique index on all its columns once per key: an IN (unnest)
	// semi-join planned on an empty table walks the tenant's whole index.
	batch.Queue(`SELECT m.* FROM unnest($2::bigint[], $3::text[]) AS k(ch, ext)
		CROSS JOIN LATERAL (SELECT `+messageCols+` FROM messages
			WHERE tenant_id = $1 AND channel_id = k.ch AND external_id = k.ext OFFSET 0) m`,
		tenant, extCh, extIDs)
	queueIdentities(batch, tenant, idKinds, idExts)
	br := b.t.pg.SendBatch(ctx, batch)
	defer br.Close()
	if err := b.scanLookup(br); err != nil {
		return err
	}
	return fail("postgres.IngestBatch lookup", br.Close())
}

func (b *ingestBatch) scanLookup(br pgx.BatchResults) error {
	rows, err := br.Query()
	if err != nil {
		return fail("postgres.IngestBatch channels", err)
	}
	found := map[conv.ChannelID]int64{}
	var id, grp int64
	if _, err := pgx.ForEachRow(rows, []any{&id, &grp}, func() error {
		found[conv.ChannelID(id)] = grp
		return nil
	}); err != nil {
		return fail("postgres.IngestBatch channels", err)
	}
	for _, it := range b.order {
		g, ok := found[it.in.ChannelID]
		if !ok {
			return fmt.Errorf("%s: channel %s of tenant %s: %w", ingestOp(it.in), it.in.ChannelID, b.t.tenant, conv.ErrNotFound)
		}
		b.channels[it.in.ChannelID] = g
	}

	rows, err = br.Query()
	if err != nil {
		return fail("postgres.IngestBatch dedup", err)
	}
	stored := map[dedupKey]conv.Message{}
	var row messageRow
	if _, err := pgx.ForEachRow(rows, row.dest(), func() error {
		m, err := row.message(b.t.tenant)
		stored[dedupKey{m.ChannelID, m.ExternalID}] = m
		return err
	}); err != nil {
		return fail("postgres.IngestBatch dedup", err)
	}
	for j := range b.order {
		it := &b.order[j]
		if it.dupOf >= 0 {
			continue
		}
		if m, ok := stored[dedupKey{it.in.ChannelID, it.in.ExternalID}]; ok {
			it.stored = true
			b.dups = append(b.dups, j)
			b.out[it.i] = storage.IngestOutcome{Message: m, Duplicate: true, Opened: m.Seq == 1}
		}
	}
	return b.scanIdentities(br)
}

// queueIdentities queues the read of the contacts owning identities.
func queueIdentities(batch *pgx.Batch, tenant int64, kinds, exts []string) {
	batch.Queue(`SELECT c.* FROM unnest($2::text[], $3::text[]) AS k(kind, ext)
		CROSS JOIN LATERAL (SELECT i.kind, i.external_id, i.contact_id, ct.name FROM identities i
			JOIN contacts ct ON ct.tenant_id = i.tenant_id AND ct.id = i.contact_id
			WHERE i.tenant_id = $1 AND i.kind = k.kind AND i.external_id = k.ext OFFSET 0) c`,
		tenant, kinds, exts)
}

func (b *ingestBatch) scanIdentities(br pgx.BatchResults) error {
	rows, err := br.Query()
	if err != nil {
		return fail("postgres.IngestBatch contacts", err)
	}
	var (
		k  identityKey
		ct contactRef
	)
	_, err = pgx.ForEachRow(rows, []any{&k.kind, &k.external, &ct.id, &ct.name}, func() error {
		c := ct
		b.contacts[k] = &c
		return nil
	})
	return fail("postgres.IngestBatch contacts", err)
}

// createContacts creates a contact and identity for each new sender of
// envelopes to store.
func (b *ingestBatch) createContacts(ctx context.Context) error {
	var (
		ids   []int64
		names []string
		kinds []string
		exts  []string
		ats   []time.Time
		mine  = map[identityKey]*contactRef{}
	)
	for _, it := range b.order {
		if it.stored || it.dupOf >= 0 {
			continue
		}
		k := identityKey{it.in.From.Kind, it.in.From.ExternalID}
		if b.contacts[k] != nil || mine[k] != nil {
			continue
		}
		c := &contactRef{id: b.t.s.ids.Next(), name: it.in.FromName}
		mine[k] = c
		ids, names, kinds, exts, ats = append(ids, c.id), append(names, c.name), append(kinds, k.kind),
			append(exts, k.external), append(ats, it.now)
	}
	if len(ids) == 0 {
		return b.resolveContacts()
	}
	tenant := int64(b.t.tenant)
	batch := &pgx.Batch{}
	batch.Queue(`INSERT INTO contacts (tenant_id, id, name, created_at)
		SELECT $1, u.id, u.name, u.at FROM unnest($2::bigint[], $3::text[], $4::timestamptz[]) AS u(id, name, at)`,
		tenant, ids, names, ats)
	// ON CONFLICT waits for a transaction claiming the identity first and
	// then does nothing if it committed.
	batch.Queue(`INSERT INTO identities (tenant_id, kind, external_id, contact_id, created_at)
		SELECT $1, u.kind, u.ext, u.id, u.at FROM unnest($2::text[], $3::text[], $4::bigint[], $5::timestamptz[]) AS u(kind, ext, id, at)
		ON CONFLICT (tenant_id, kind, external_id) DO NOTHING
		RETURNING kind, external_id`, tenant, kinds, exts, ids, ats)
	br := b.t.pg.SendBatch(ctx, batch)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return fail("postgres.IngestBatch new contacts", err)
	}
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return fail("postgres.IngestBatch new identities", err)
	}
	var k identityKey
	if _, err := pgx.ForEachRow(rows, []any{&k.kind, &k.external}, func() error {
		b.contacts[k] = mine[k]
		return nil
	}); err != nil {
		br.Close()
		return fail("postgres.IngestBatch new identities", err)
	}
	if err := br.Close(); err != nil {
		return fail("postgres.IngestBatch new contacts", err)
	}

	// Identities another transaction claimed first: drop our contacts and
	// read theirs.
	var orphans []int64
	kinds, exts = kinds[:0], exts[:0]
	for k, c := range mine {
		if b.contacts[k] == nil {
			orphans = append(orphans, c.id)
			kinds, exts = append(kinds, k.kind), append(exts, k.external)
		}
	}
	if len(orphans) > 0 {
		batch := &pgx.Batch{}
		batch.Queue(`DELETE FROM contacts WHERE tenant_id = $1 AND id = ANY($2)`, tenant, orphans)
		queueIdentities(batch, tenant, kinds, exts)
		br := b.t.pg.SendBatch(ctx, batch)
		if _, err := br.Exec(); err != nil {
			br.Close()
			return fail("postgres.IngestBatch orphan contacts", err)
		}
		if err := b.scanIdentities(br); err != nil {
			br.Close()
			return err
		}
		if err := br.Close(); err != nil {
			return fail("postgres.IngestBatch orphan contacts", err)
		}
	}
	return b.resolveContacts()
}

// resolveContacts gives every envelope to store its contact and group.
func (b *ingestBatch) resolveContacts() error {
	type pair struct {
		channel conv.ChannelID
		contact int64
	}
	groups := map[pair]int{}
	for j := range b.order {
		it := &b.order[j]
		if it.stored || it.dupOf >= 0 {
			continue
		}
		c := b.contacts[identityKey{it.in.From.Kind, it.in.From.ExternalID}]
		if c == nil {
			return fmt.Errorf("%s: contact: %w: identity %s:%s vanished", ingestOp(it.in), conv.ErrConflict,
				it.in.From.Kind, it.in.From.ExternalID)
		}
		it.contact = c
		p := pair{it.in.ChannelID, c.id}
		g, ok := groups[p]
		if !ok {
			g = len(b.groups)
			groups[p] = g
			b.groups = append(b.groups, group{channel: p.channel, contact: p.contact})
		}
		it.group = g
		b.groups[g].items = append(b.groups[g].items, j)
	}
	return nil
}

// append opens or extends each group's conversation and inserts the new
// messages.
func (b *ingestBatch) append(ctx context.Context) error {
	if len(b.groups) == 0 {
		return nil
	}
	tenant := int64(b.t.tenant)
	n := len(b.groups)
	var (
		ids, channels, contacts, groupIDs, counts = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		scenes                                    = make([]string, n)
		deadlines                                 = make([]*time.Time, n)
		created, updated                          = make([]time.Time, n), make([]time.Time, n)
	)
	for g, gr := range b.groups {
		first := b.order[gr.items[0]]
		ids[g] = int64(b.items[first.i].ConversationID)
		if ids[g] == 0 {
			ids[g] = b.t.s.ids.Next()
		}
		channels[g], contacts[g], groupIDs[g] = int64(gr.channel), gr.contact, b.channels[gr.channel]
		counts[g] = int64(len(gr.items))
		scenes[g] = first.in.Scene
		created[g] = first.now
		for _, j := range gr.items {
			it := b.order[j]
			updated[g] = it.now
			if d := storage.ReplyDeadline(it.in, it.now); d != nil && (deadlines[g] == nil || d.After(*deadlines[g])) {
				deadlines[g] = d
			}
		}
	}
	// A conversation opened here holds the group's messages as seq 1..n;
	// an open one takes the next n seqs. updated_at moves at most once per
	// storage.ActivityGranularity, and the reply deadline only forward.
	rows, err := b.t.pg.Query(ctx, `INSERT INTO conversations AS cv (tenant_id, id, channel_id, contact_id, status,
			group_id, priority, scene, reply_deadline, last_seq, created_at, updated_at)
		SELECT $1, u.id, u.ch, u.ct, 'open', NULLIF(u.grp, 0), 0, u.scene, u.deadline, u.n, u.created, u.updated
		FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::timestamptz[],
			$8::bigint[], $9::timestamptz[], $10::timestamptz[]) AS u(id, ch, ct, grp, scene, deadline, n, created, updated)
		ON CONFLICT (tenant_id, channel_id, contact_id) WHERE status = 'open' AND thread = '' DO UPDATE
			SET last_seq = cv.last_seq + EXCLUDED.last_seq,
				updated_at = CASE WHEN cv.updated_at <= EXCLUDED.updated_at - interval '1 second'
								THEN EXCLUDED.updated_at ELSE cv.updated_at END,
				reply_deadline = CASE WHEN EXCLUDED.reply_deadline IS NOT NULL
									AND (cv.reply_deadline IS NULL OR EXCLUDED.reply_deadline > cv.reply_deadline)
								THEN EXCLUDED.reply_deadline ELSE cv.reply_deadline END
		RETURNING `+conversationCols,
		tenant, ids, channels, contacts, groupIDs, scenes, deadlines, counts, created, updated)
	if err != nil {
		return fail("postgres.IngestBatch conversations", err)
	}
	type pair struct{ channel, contact int64 }
	index := make(map[pair]int, n)
	for g := range b.groups {
		index[pair{channels[g], contacts[g]}] = g
	}
	var row conversationRow
	got := 0
	if _, err := pgx.ForEachRow(rows, row.dest(), func() error {
		c := row.conversation(b.t.tenant)
		g, ok := index[pair{int64(c.ChannelID), int64(c.ContactID)}]
		if !ok {
			return fmt.Errorf("conversation %s of an unknown channel and contact", c.ID)
		}
		b.groups[g].conv = c
		got++
		return nil
	}); err != nil {
		return fail("postgres.IngestBatch conversations", err)
	}
	if got != n {
		return fmt.Errorf("postgres.IngestBatch conversations: %w: %d of %d upserted", conv.ErrConflict, got, n)
	}

	m := len(b.order) - len(b.dups)
	var (
		msgIDs, convIDs, chIDs, seqs              = make([]int64, 0, m), make([]int64, 0, m), make([]int64, 0, m), make([]int64, 0, m)
		senderTypes, senderIDs, senderNames, exts = make([]string, 0, m), make([]string, 0, m), make([]string, 0, m), make([]string, 0, m)
		parts                                     = make([]string, 0, m)
		ats                                       = make([]time.Time, 0, m)
	)
	for g := range b.groups {
		gr := &b.groups[g]
		base := gr.conv.LastSeq - int64(len(gr.items))
		for k, j := range gr.items {
			it := &b.order[j]
			it.seq = base + int64(k) + 1
			o := b.outcome(it, gr, ids[g])
			b.out[it.i] = o
			msgIDs, convIDs, chIDs, seqs = append(msgIDs, int64(o.Message.ID)), append(convIDs, int64(gr.conv.ID)),
				append(chIDs, int64(gr.channel)), append(seqs, it.seq)
			senderTypes, senderIDs, senderNames = append(senderTypes, string(o.Message.Sender.Type)),
				append(senderIDs, o.Message.Sender.ID), append(senderNames, o.Message.Sender.Name)
			exts, parts, ats = append(exts, it.in.ExternalID), append(parts, it.parts), append(ats, it.now)
		}
	}
	if _, err := b.t.pg.Exec(ctx, `INSERT INTO messages (tenant_id, id, conversation_id, channel_id, seq, direction,
			sender_type, sender_id, sender_name, parts, external_id, status, created_at)
		SELECT $1, u.id, u.conv, u.ch, u.seq, 'in', u.stype, u.sid, u.sname, u.parts::jsonb, u.ext, 'received', u.at
		FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::text[], $8::text[],
			$9::text[], $10::text[], $11::timestamptz[]) AS u(id, conv, ch, seq, stype, sid, sname, parts, ext, at)`,
		tenant, msgIDs, convIDs, chIDs, seqs, senderTypes, senderIDs, senderNames, parts, exts, ats); err != nil {
		return fail("postgres.IngestBatch messages", err)
	}
	return nil
}

// repeats answers the envelopes repeating another of the batch, and moves
// the conversation of every duplicate to where IngestEach reads it: after
// the envelopes of the batch applied before it.
func (b *ingestBatch) repeats() {
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
			orig := b.order[it.dupOf]
			*o = b.out[orig.i]
			o.Duplicate = true
			o.Opened = o.Message.Seq == 1
		}
		g, ok := byConv[o.Message.ConversationID]
		if !ok {
			continue // untouched by this batch: as read
		}
		gr := &b.groups[g]
		if it.dupOf >= 0 && !b.order[it.dupOf].stored {
			o.Conversation = gr.conv
			o.Conversation.LastSeq = 0
		}
		for _, k := range gr.items {
			if k < j {
				o.Conversation.LastSeq = max(o.Conversation.LastSeq, b.order[k].seq)
			}
		}
	}
}

// outcome is what storing it in gr's conversation did; opened is the id
// the group proposed for a conversation it opens.
func (b *ingestBatch) outcome(it *batchItem, gr *group, opened int64) storage.IngestOutcome {
	c := gr.conv
	// As IngestEach reports it: the conversation as after this append,
	// whose activity is this append (the stored updated_at may lag by up
	// to storage.ActivityGranularity).
	c.LastSeq, c.UpdatedAt = it.seq, it.now
	sender := conv.Sender{Type: conv.SenderContact, ID: conv.ContactID(it.contact.id).String(), Name: it.contact.name}
	if it.in.System {
		sender = conv.Sender{Type: conv.SenderSystem}
	}
	id := b.items[it.i].MessageID
	if id.IsZero() {
		id = conv.MessageID(b.t.s.ids.Next())
	}
	return storage.IngestOutcome{
		Conversation: c,
		Opened:       int64(c.ID) == opened && it.seq == 1,
		Message: conv.Message{
			ID:             id,
			TenantID:       b.t.tenant,
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

// readDuplicates reads the conversations of envelopes stored before the
// batch, as stored before the batch's writes.
func (b *ingestBatch) readDuplicates(ctx context.Context) error {
	if len(b.dups) == 0 {
		return nil
	}
	ids := make([]int64, len(b.dups))
	for k, j := range b.dups {
		ids[k] = int64(b.out[b.order[j].i].Message.ConversationID)
	}
	rows, err := b.t.pg.Query(ctx, `SELECT `+conversationCols+` FROM conversations WHERE tenant_id = $1 AND id = ANY($2)`,
		int64(b.t.tenant), ids)
	if err != nil {
		return fail("postgres.IngestBatch duplicates", err)
	}
	convs := map[conv.ConversationID]conv.Conversation{}
	var row conversationRow
	if _, err := pgx.ForEachRow(rows, row.dest(), func() error {
		c := row.conversation(b.t.tenant)
		convs[c.ID] = c
		return nil
	}); err != nil {
		return fail("postgres.IngestBatch duplicates", err)
	}
	for _, j := range b.dups {
		it := b.order[j]
		o := &b.out[it.i]
		c, ok := convs[o.Message.ConversationID]
		if !ok {
			return fmt.Errorf("%s: postgres.IngestBatch: %w: conversation %s of duplicate message %s vanished",
				ingestOp(it.in), conv.ErrNotFound, o.Message.ConversationID, o.Message.ID)
		}
		o.Conversation = c
	}
	return nil
}

// ingestOp names an envelope in errors as storage.IngestEach does.
func ingestOp(in conv.Inbound) string {
	return fmt.Sprintf("ingest %s/%s", in.ChannelID, in.ExternalID)
}
