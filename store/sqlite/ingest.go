package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// tx is a storage.SetIngester: storage.Ingest stores a batch set-wise
// (storage.IngestSets). The lookups are one statement each for the whole
// batch, its keys passed as one JSON array read with json_each; the writes
// are multi-row statements of up to 64 rows with bound values (parsing
// JSON per row cost a fifth of the writes). That replaces the eight or so
// statements per envelope of storage.IngestEach (~230 µs of the single
// writer's time each, most of it per-statement overhead).
var _ storage.SetIngester = (*tx)(nil)

// IDs makes the ids of what a batch creates when its items name none.
func (t *tx) IDs() *conv.IDGen { return t.s.ids }

// int64s renders ids as JSON numbers (conv ids marshal as strings).
func int64s[T ~int64](ids []T) []int64 {
	out := make([]int64, len(ids))
	for i, id := range ids {
		out[i] = int64(id)
	}
	return out
}

// jsonRows renders rows for json_each.
func jsonRows(rows any) (string, error) {
	b, err := json.Marshal(rows)
	return string(b), err
}

// The statements of LookupIngest and ConversationsByID, whose plans
// TestQueryPlans pins.
const (
	lookupChannelsSQL = `SELECT id, COALESCE(group_id, 0) FROM channels
		WHERE tenant_id = ? AND id IN (SELECT value FROM json_each(?))`
	lookupStoredSQL = `SELECT ` + messageCols + ` FROM messages WHERE tenant_id = ? AND id IN (
		SELECT m.id FROM json_each(?) AS k CROSS JOIN messages AS m
		WHERE m.tenant_id = ? AND m.channel_id = k.value ->> 0 AND m.external_id = k.value ->> 1)`
	lookupContactsSQL = `SELECT i.kind, i.external_id, i.contact_id, ct.name
		FROM json_each(?) AS k CROSS JOIN identities AS i
		JOIN contacts AS ct ON ct.tenant_id = i.tenant_id AND ct.id = i.contact_id
		WHERE i.tenant_id = ? AND i.kind = k.value ->> 0 AND i.external_id = k.value ->> 1`
	conversationsByIDSQL = `SELECT ` + conversationCols + ` FROM conversations
		WHERE tenant_id = ? AND id IN (SELECT value FROM json_each(?))`
)

// LookupIngest reads the channels, the stored messages and the senders'
// contacts. Every lookup joins the keys first (CROSS JOIN fixes SQLite's
// join order), so each key is one probe of a unique index.
func (t *tx) LookupIngest(ctx context.Context, channels []conv.ChannelID, keys []storage.DedupKey, identities []conv.Identity) (storage.IngestLookup, error) {
	out := storage.IngestLookup{Groups: map[conv.ChannelID]conv.GroupID{}, Stored: map[storage.DedupKey]conv.Message{},
		Contacts: map[conv.Identity]storage.ContactRef{}}
	chs, err := jsonRows(int64s(channels))
	if err != nil {
		return out, err
	}
	rows, err := t.query(ctx, lookupChannelsSQL, t.tenant, chs)
	if err != nil {
		return out, fmt.Errorf("sqlite.LookupIngest channels: %w", mapErr(err))
	}
	if _, err := collect(rows, func(r scanner) (struct{}, error) {
		var (
			id  conv.ChannelID
			grp conv.GroupID
		)
		err := r.Scan(&id, &grp)
		out.Groups[id] = grp
		return struct{}{}, err
	}); err != nil {
		return out, fmt.Errorf("sqlite.LookupIngest channels: %w", mapErr(err))
	}

	pairs := make([][2]any, len(keys))
	for i, k := range keys {
		pairs[i] = [2]any{int64(k.Channel), k.ExternalID}
	}
	ks, err := jsonRows(pairs)
	if err != nil {
		return out, err
	}
	rows, err = t.query(ctx, lookupStoredSQL, t.tenant, ks, t.tenant)
	if err != nil {
		return out, fmt.Errorf("sqlite.LookupIngest dedup: %w", mapErr(err))
	}
	stored, err := collect(rows, t.scanMessage)
	if err != nil {
		return out, fmt.Errorf("sqlite.LookupIngest dedup: %w", mapErr(err))
	}
	for _, m := range stored {
		out.Stored[storage.DedupKey{Channel: m.ChannelID, ExternalID: m.ExternalID}] = m
	}

	ids := make([][2]string, len(identities))
	for i, id := range identities {
		ids[i] = [2]string{id.Kind, id.ExternalID}
	}
	is, err := jsonRows(ids)
	if err != nil {
		return out, err
	}
	rows, err = t.query(ctx, lookupContactsSQL, is, t.tenant)
	if err != nil {
		return out, fmt.Errorf("sqlite.LookupIngest contacts: %w", mapErr(err))
	}
	if _, err := collect(rows, func(r scanner) (struct{}, error) {
		var (
			id conv.Identity
			c  storage.ContactRef
		)
		err := r.Scan(&id.Kind, &id.ExternalID, &c.ID, &c.Name)
		out.Contacts[id] = c
		return struct{}{}, err
	}); err != nil {
		return out, fmt.Errorf("sqlite.LookupIngest contacts: %w", mapErr(err))
	}
	return out, nil
}

// CreateContacts inserts the contacts and their identities. SQLite has one
// writer, so no other transaction can claim an identity meanwhile: every
// claim is won (a conflict is an error).
func (t *tx) CreateContacts(ctx context.Context, contacts []storage.NewContact) (map[conv.Identity]storage.ContactRef, error) {
	rows := make([][5]any, len(contacts))
	owners := make(map[conv.Identity]storage.ContactRef, len(contacts))
	for i, c := range contacts {
		rows[i] = [5]any{int64(c.ID), c.Name, micros(c.At), c.Identity.Kind, c.Identity.ExternalID}
		owners[c.Identity] = c.ContactRef
	}
	js, err := jsonRows(rows)
	if err != nil {
		return nil, err
	}
	if _, err := t.exec(ctx, `INSERT INTO contacts (tenant_id, id, name, created_at)
		SELECT ?, k.value ->> 0, k.value ->> 1, k.value ->> 2 FROM json_each(?) AS k`, t.tenant, js); err != nil {
		return nil, fmt.Errorf("sqlite.CreateContacts: %w", mapErr(err))
	}
	if _, err := t.exec(ctx, `INSERT INTO identities (tenant_id, kind, external_id, contact_id)
		SELECT ?, k.value ->> 3, k.value ->> 4, k.value ->> 0 FROM json_each(?) AS k`, t.tenant, js); err != nil {
		return nil, fmt.Errorf("sqlite.CreateContacts identities: %w", mapErr(err))
	}
	return owners, nil
}

// chunkSizes are the row counts of the multi-row statements AppendGroups
// and InsertMessages run, their values bound as parameters: a batch of up
// to 4 rows is one statement, and one of under 64 at most five. Small
// batches are what a moderate load makes (~3 envelopes a transaction at
// 2,000 chat messages/s), and with sizes 64, 16, 4 and 1 a batch of 3 took
// three statements of each (BenchmarkIngest/batch/batch=3: 5,199–6,138 →
// 6,173–6,486 envelopes/s).
var chunkSizes = []int{64, 32, 16, 8, 4, 3, 2, 1}

// chunked calls run for each chunk of n rows: its offset and size.
func chunked(n int, run func(off, size int) error) error {
	off := 0
	for _, size := range chunkSizes {
		for ; n-off >= size; off += size {
			if err := run(off, size); err != nil {
				return err
			}
		}
	}
	return nil
}

// multiRow renders head, then tuple repeated for each chunk size, then
// tail: one statement text per chunk size.
func multiRow(head, tuple, tail string) map[int]string {
	out := make(map[int]string, len(chunkSizes))
	for _, n := range chunkSizes {
		out[n] = head + strings.TrimSuffix(strings.Repeat(tuple+", ", n), ", ") + tail
	}
	return out
}

var appendGroupsSQL = multiRow(`INSERT INTO conversations (tenant_id, id, channel_id, contact_id, status, group_id,
		priority, scene, reply_deadline, last_seq, created_at, updated_at) VALUES `,
	`(?, ?, ?, ?, 'open', ?, 0, ?, ?, ?, ?, ?)`,
	` ON CONFLICT (tenant_id, channel_id, contact_id, thread) WHERE status = 'open' DO UPDATE
		SET last_seq = last_seq + excluded.last_seq,
			updated_at = CASE WHEN updated_at <= excluded.updated_at - `+strconv.FormatInt(storage.ActivityGranularity.Microseconds(), 10)+`
							THEN excluded.updated_at ELSE updated_at END,
			reply_deadline = CASE WHEN excluded.reply_deadline IS NOT NULL
								AND (reply_deadline IS NULL OR excluded.reply_deadline > reply_deadline)
							THEN excluded.reply_deadline ELSE reply_deadline END
	RETURNING `+conversationCols)

// AppendGroups is one upsert on conversations_one_open for every group.
func (t *tx) AppendGroups(ctx context.Context, groups []storage.GroupAppend) ([]conv.Conversation, error) {
	type pair struct {
		channel conv.ChannelID
		contact conv.ContactID
	}
	index := make(map[pair]int, len(groups))
	for i, g := range groups {
		index[pair{g.Channel, g.Contact}] = i
	}
	out := make([]conv.Conversation, len(groups))
	args := make([]any, 0, 64*11)
	err := chunked(len(groups), func(off, size int) error {
		args = args[:0]
		for _, g := range groups[off : off+size] {
			args = append(args, t.tenant, g.ID, g.Channel, g.Contact, nullID(g.Group), g.Scene, microsPtr(g.Deadline),
				g.N, micros(g.Created), micros(g.Updated))
		}
		rows, err := t.query(ctx, appendGroupsSQL[size], args...)
		if err != nil {
			return err
		}
		convs, err := collect(rows, t.scanConversation)
		if err != nil {
			return err
		}
		for _, c := range convs {
			i, ok := index[pair{c.ChannelID, c.ContactID}]
			if !ok {
				return fmt.Errorf("conversation %s of an unknown channel and contact", c.ID)
			}
			out[i] = c
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite.AppendGroups: %w", mapErr(err))
	}
	return out, nil
}

var insertMessagesSQL = multiRow(`INSERT INTO messages (tenant_id, id, conversation_id, channel_id, seq, direction,
		sender_type, sender_id, sender_name, parts, external_id, status, created_at) VALUES `,
	`(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, ``)

// InsertMessages inserts new messages, up to 64 a statement.
func (t *tx) InsertMessages(ctx context.Context, msgs []conv.Message) error {
	args := make([]any, 0, 64*13)
	err := chunked(len(msgs), func(off, size int) error {
		args = args[:0]
		for _, m := range msgs[off : off+size] {
			parts, err := json.Marshal(m.Parts)
			if err != nil {
				return fmt.Errorf("message %s: %w: parts: %v", m.ID, conv.ErrInvalid, err)
			}
			args = append(args, t.tenant, m.ID, m.ConversationID, m.ChannelID, m.Seq, string(m.Direction), string(m.Sender.Type),
				m.Sender.ID, m.Sender.Name, string(parts), nullString(m.ExternalID), string(m.Status), micros(m.CreatedAt))
		}
		_, err := t.exec(ctx, insertMessagesSQL[size], args...)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite.InsertMessages: %w", mapErr(err))
	}
	return nil
}

// ConversationsByID reads conversations in one statement.
func (t *tx) ConversationsByID(ctx context.Context, ids []conv.ConversationID) (map[conv.ConversationID]conv.Conversation, error) {
	js, err := jsonRows(int64s(ids))
	if err != nil {
		return nil, err
	}
	rows, err := t.query(ctx, conversationsByIDSQL, t.tenant, js)
	if err != nil {
		return nil, fmt.Errorf("sqlite.ConversationsByID: %w", mapErr(err))
	}
	convs, err := collect(rows, t.scanConversation)
	if err != nil {
		return nil, fmt.Errorf("sqlite.ConversationsByID: %w", mapErr(err))
	}
	out := make(map[conv.ConversationID]conv.Conversation, len(convs))
	for _, c := range convs {
		out[c.ID] = c
	}
	return out, nil
}
