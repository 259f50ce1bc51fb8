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

// ingestCall runs ingest_envelope (0003_ingest.sql) for one envelope. The
// conversation columns come in conversationCols order, for conversationRow.
const ingestCall = `SELECT o_duplicate, o_opened, o_message_id, o_seq, COALESCE(o_contact_id, 0),
	COALESCE(o_contact_name, ''), c_id, c_channel_id, c_contact_id, c_status, c_assignee_id, c_group_id,
	c_priority, c_scene, c_reply_deadline, c_last_seq, c_created_at, c_updated_at, c_resolved_at
	FROM ingest_envelope($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::text::jsonb, $13, $14)`

// ingestRow is one ingestCall result as scanned.
type ingestRow struct {
	duplicate, opened     bool
	message, seq, contact int64
	contactName           string
	conversation          conversationRow
}

func (r *ingestRow) dest() []any {
	return append([]any{&r.duplicate, &r.opened, &r.message, &r.seq, &r.contact, &r.contactName},
		r.conversation.dest()...)
}

// IngestBatch stores items with one call of ingest_envelope each, all sent
// in one pipelined round trip (plus one more to read back the messages of
// duplicates, if any), instead of storage.IngestEach's eight or so round
// trips per envelope.
//
// The calls go in storage.IngestOrder, so that concurrent batches lock the
// contacts and conversations they share in one order.
func (t *tx) IngestBatch(ctx context.Context, items []storage.IngestItem) ([]storage.IngestOutcome, error) {
	if len(items) == 0 {
		return []storage.IngestOutcome{}, nil
	}
	// Threaded envelopes (email) are few and take lookups ingest_envelope
	// does not make: such a batch goes the reference way.
	if slices.ContainsFunc(items, func(it storage.IngestItem) bool { return it.In.Thread != nil }) {
		return storage.IngestEach(ctx, t, items)
	}
	type call struct {
		i                     int
		now                   time.Time
		parts                 string
		conversation, message int64
	}
	calls := make([]call, 0, len(items))
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
		c := call{i: i, now: micros(items[i].Now), parts: string(parts),
			conversation: int64(items[i].ConversationID), message: int64(items[i].MessageID)}
		// As OpenConversation and AppendMessage do for IngestEach.
		if c.conversation == 0 {
			c.conversation = t.s.ids.Next()
		}
		if c.message == 0 {
			c.message = t.s.ids.Next()
		}
		calls = append(calls, c)
	}

	batch := &pgx.Batch{}
	for _, c := range calls {
		it := items[c.i]
		in := it.In
		batch.Queue(ingestCall, int64(t.tenant), int64(in.ChannelID), in.ExternalID, in.From.Kind, in.From.ExternalID,
			in.FromName, t.s.ids.Next(), c.conversation, c.message, in.Scene, in.System, c.parts,
			c.now, storage.ReplyDeadline(in, c.now))
	}
	br := t.pg.SendBatch(ctx, batch)
	out := make([]storage.IngestOutcome, len(items))
	var dups []int64
	for _, c := range calls {
		var r ingestRow
		if err := br.QueryRow().Scan(r.dest()...); err != nil {
			br.Close()
			return nil, fail(ingestOp(items[c.i].In)+": postgres.IngestBatch", err)
		}
		in := items[c.i].In
		o := storage.IngestOutcome{Conversation: r.conversation.conversation(t.tenant), Duplicate: r.duplicate, Opened: r.opened}
		if r.duplicate {
			o.Message.ID = conv.MessageID(r.message)
			dups = append(dups, r.message)
		} else {
			// As IngestEach reports it: the conversation's activity is
			// this append, though the stored updated_at may lag by up to
			// storage.ActivityGranularity.
			o.Conversation.UpdatedAt = c.now
			sender := conv.Sender{Type: conv.SenderContact, ID: conv.ContactID(r.contact).String(), Name: r.contactName}
			if in.System {
				sender = conv.Sender{Type: conv.SenderSystem}
			}
			o.Message = conv.Message{
				ID:             conv.MessageID(r.message),
				TenantID:       t.tenant,
				ConversationID: o.Conversation.ID,
				ChannelID:      in.ChannelID,
				Seq:            r.seq,
				Direction:      conv.In,
				Sender:         sender,
				Parts:          in.Parts,
				ExternalID:     in.ExternalID,
				Status:         conv.MsgReceived,
				CreatedAt:      c.now,
			}
		}
		out[c.i] = o
	}
	if err := br.Close(); err != nil {
		return nil, fail("postgres.IngestBatch", err)
	}
	if len(dups) == 0 {
		return out, nil
	}
	// The duplicates' messages as stored, in one more round trip.
	stored, err := t.messages(ctx, "postgres.IngestBatch duplicates",
		`SELECT `+messageCols+` FROM messages WHERE tenant_id = $1 AND id = ANY($2)`, int64(t.tenant), dups)
	if err != nil {
		return nil, err
	}
	byID := make(map[conv.MessageID]conv.Message, len(stored))
	for _, m := range stored {
		byID[m.ID] = m
	}
	for i := range out {
		if !out[i].Duplicate {
			continue
		}
		m, ok := byID[out[i].Message.ID]
		if !ok {
			return nil, fmt.Errorf("%s: postgres.IngestBatch: %w: duplicate message %s vanished",
				ingestOp(items[i].In), conv.ErrNotFound, out[i].Message.ID)
		}
		out[i].Message = m
	}
	return out, nil
}

// ingestOp names an envelope in errors as storage.IngestEach does.
func ingestOp(in conv.Inbound) string {
	return fmt.Sprintf("ingest %s/%s", in.ChannelID, in.ExternalID)
}
