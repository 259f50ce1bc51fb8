package storage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// IngestItem is one inbound envelope to store, with what the caller chose
// for the records it may create.
type IngestItem struct {
	In conv.Inbound
	// ConversationID is the id of the conversation the envelope opens, if
	// it opens one; MessageID is the id of its message, if it is new.
	ConversationID conv.ConversationID
	MessageID      conv.MessageID
	// Now stamps what the envelope creates and is the reply window's
	// clock. Stores keep it to the microsecond, and outcomes carry it so,
	// equal to what a later read returns.
	Now time.Time
}

// IngestOutcome is what storing one envelope did.
type IngestOutcome struct {
	// Message is the stored message; Conversation its conversation after
	// the append (LastSeq is the message's seq).
	Message      conv.Message
	Conversation conv.Conversation
	// Duplicate: the envelope was stored before (same channel and external
	// id); nothing was written now, and Message and Conversation are as
	// stored.
	Duplicate bool
	// Opened: this envelope opened the conversation (also on a duplicate
	// of the envelope that did, whose seq is 1).
	Opened bool
	// Reopened: this threaded envelope joined a resolved conversation and
	// opened it again (not reported again on a duplicate).
	Reopened bool
}

// Ingest stores items in tx and returns their outcomes in the order given
// (applying them in IngestOrder): set-wise (IngestSets) when tx is a
// SetIngester, else IngestEach. An error means the transaction must roll
// back; it wraps the conv error kind of what failed, so a caller can retry
// the envelopes one by one to isolate a bad one. Then a conversation that a system
// envelope opened and that holds nothing but that event is resolved: a
// channel event (a follow, a QR scan) is recorded on the customer's history
// but does not put a conversation in front of an agent. The customer's
// next message opens one that does.
func Ingest(ctx context.Context, tx Tx, items []IngestItem) ([]IngestOutcome, error) {
	var (
		out []IngestOutcome
		err error
	)
	if s, ok := tx.(SetIngester); ok {
		out, err = IngestSets(ctx, s, items)
	} else {
		out, err = IngestEach(ctx, tx, items)
	}
	if err != nil {
		return nil, err
	}
	return out, settleSystemOpens(ctx, tx, items, out)
}

// settleSystemOpens resolves the conversations system envelopes of the
// batch opened, unless something else joined them in the same batch.
func settleSystemOpens(ctx context.Context, tx Tx, items []IngestItem, out []IngestOutcome) error {
	for i, o := range out {
		if !o.Opened || o.Duplicate || !items[i].In.System {
			continue
		}
		c, err := tx.Conversation(ctx, o.Conversation.ID)
		if err != nil {
			return fmt.Errorf("%s: settle system event: %w", ingestOp(items[i].In), err)
		}
		if c.Status != conv.StatusOpen || c.LastSeq > int64(len(items)) {
			continue
		}
		// Opened in this batch, so every message in it came from the
		// batch: resolve it if they are all channel events (a follow and a
		// location report together still need no agent).
		msgs, err := tx.Messages(ctx, c.ID, 0, int(c.LastSeq))
		if err != nil {
			return fmt.Errorf("%s: settle system event: %w", ingestOp(items[i].In), err)
		}
		if !allSystem(msgs) {
			continue
		}
		at := items[i].Now.UTC().Truncate(time.Microsecond)
		c.Status, c.ResolvedAt = conv.StatusResolved, &at
		if err := tx.UpdateConversation(ctx, c); err != nil {
			return fmt.Errorf("%s: settle system event: %w", ingestOp(items[i].In), err)
		}
		if c, err = tx.Conversation(ctx, c.ID); err != nil {
			return fmt.Errorf("%s: settle system event: %w", ingestOp(items[i].In), err)
		}
		out[i].Conversation = c
	}
	return nil
}

func allSystem(msgs []conv.Message) bool {
	for _, m := range msgs {
		if m.Sender.Type != conv.SenderSystem {
			return false
		}
	}
	return true
}

func ingestOp(in conv.Inbound) string {
	return fmt.Sprintf("ingest %s/%s", in.ChannelID, in.ExternalID)
}

// IngestOrder is the order in which a batch is applied: by channel and
// sender identity, each sender's envelopes in the order given. Concurrent
// transactions then lock the contacts and conversations they share in the
// same order and do not deadlock on each other, as two batches naming two
// senders in opposite orders would (the store retries what deadlock
// remains, such as two identities of one merged contact). It returns
// indexes into items.
func IngestOrder(items []IngestItem) []int {
	order := make([]int, len(items))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		x, y := items[a].In, items[b].In
		return cmp.Or(cmp.Compare(x.ChannelID, y.ChannelID), cmp.Compare(x.From.Kind, y.From.Kind),
			cmp.Compare(x.From.ExternalID, y.From.ExternalID))
	})
	return order
}

// IngestEach stores items one after another, in IngestOrder, through Tx's
// methods. It is the reference semantics IngestSets reproduces.
// For each envelope: dedup on (channel, external id), returning the stored message
// and its conversation; resolve or create the contact by identity (named
// FromName); reuse the open conversation of (channel, contact) or open one
// (ConversationID, Scene, the channel's group, Now) — or, for a threaded
// envelope, place it as conv.Thread says (reopening a resolved thread for
// anything but a system event) and afterwards record its Keys and Weak key
// (WeakKey) for the conversation; push the reply
// deadline to SentAt (Now when zero or later) plus ReplyWindow unless the
// envelope is a system event or the deadline is already later; append the
// message (MessageID, received, sender the contact or the system) with the
// next seq. An envelope of another tenant than tx's is ErrInvalid. The
// first failure ends the batch with an error naming its envelope.
func IngestEach(ctx context.Context, tx Tx, items []IngestItem) ([]IngestOutcome, error) {
	out := make([]IngestOutcome, len(items))
	channels := make(map[conv.ChannelID]conv.Channel)
	for _, i := range IngestOrder(items) {
		o, err := ingestOne(ctx, tx, items[i], channels)
		if err != nil {
			return nil, err
		}
		out[i] = o
	}
	return out, nil
}

// ReplyDeadline is the reply deadline an envelope asks for, at the
// precision stores keep, or nil when it asks for none (no window, or a
// system event). now is the item's Now.
func ReplyDeadline(in conv.Inbound, now time.Time) *time.Time {
	if in.ReplyWindow <= 0 || in.System {
		return nil
	}
	sent := in.SentAt
	if sent.IsZero() || sent.After(now) {
		sent = now
	}
	d := sent.Add(in.ReplyWindow).UTC().Truncate(time.Microsecond)
	return &d
}

// ingestOne stores one envelope; channels caches the batch's channels,
// which cannot change under the transaction's writes.
func ingestOne(ctx context.Context, tx Tx, it IngestItem, channels map[conv.ChannelID]conv.Channel) (IngestOutcome, error) {
	in := it.In
	op := fmt.Sprintf("ingest %s/%s", in.ChannelID, in.ExternalID)
	if in.TenantID != tx.Tenant() {
		return IngestOutcome{}, fmt.Errorf("%s: %w: envelope of tenant %s in a transaction of tenant %s",
			op, conv.ErrInvalid, in.TenantID, tx.Tenant())
	}
	ch, ok := channels[in.ChannelID]
	if !ok {
		var err error
		if ch, err = tx.Channel(ctx, in.ChannelID); err != nil {
			return IngestOutcome{}, fmt.Errorf("%s: channel %s of tenant %s: %w", op, in.ChannelID, tx.Tenant(), err)
		}
		channels[in.ChannelID] = ch
	}
	if prev, err := tx.MessageByExternalID(ctx, ch.ID, in.ExternalID); err == nil {
		c, err := tx.Conversation(ctx, prev.ConversationID)
		if err != nil {
			return IngestOutcome{}, fmt.Errorf("%s: conversation of duplicate: %w", op, err)
		}
		return IngestOutcome{Message: prev, Conversation: c, Duplicate: true, Opened: prev.Seq == 1}, nil
	} else if !errors.Is(err, conv.ErrNotFound) {
		return IngestOutcome{}, fmt.Errorf("%s: dedup: %w", op, err)
	}

	contact, _, err := tx.EnsureContact(ctx, in.From, in.FromName)
	if err != nil {
		return IngestOutcome{}, fmt.Errorf("%s: contact: %w", op, err)
	}
	now := it.Now.UTC().Truncate(time.Microsecond)
	tmpl := conv.Conversation{
		ID:        it.ConversationID,
		Scene:     in.Scene,
		GroupID:   ch.GroupID,
		CreatedAt: now,
	}
	var (
		c                conv.Conversation
		opened, reopened bool
	)
	if in.Thread != nil {
		c, opened, reopened, err = placeThreaded(ctx, tx, in, ch.ID, contact.ID, tmpl)
	} else {
		c, opened, err = tx.OpenConversation(ctx, ch.ID, contact.ID, tmpl)
	}
	if err != nil {
		return IngestOutcome{}, fmt.Errorf("%s: conversation: %w", op, err)
	}
	if d := ReplyDeadline(in, now); d != nil && (c.ReplyDeadline == nil || d.After(*c.ReplyDeadline)) {
		c.ReplyDeadline = d
		if err := tx.UpdateConversation(ctx, c); err != nil {
			return IngestOutcome{}, fmt.Errorf("%s: reply window: %w", op, err)
		}
	}
	sender := conv.Sender{Type: conv.SenderContact, ID: contact.ID.String(), Name: contact.Name}
	if in.System {
		sender = conv.Sender{Type: conv.SenderSystem}
	}
	m, err := tx.AppendMessage(ctx, conv.Message{
		ID:             it.MessageID,
		TenantID:       tx.Tenant(),
		ConversationID: c.ID,
		ChannelID:      ch.ID,
		Direction:      conv.In,
		Sender:         sender,
		Parts:          in.Parts,
		ExternalID:     in.ExternalID,
		Status:         conv.MsgReceived,
		CreatedAt:      now,
	})
	if err != nil {
		return IngestOutcome{}, fmt.Errorf("%s: append: %w", op, err)
	}
	c.LastSeq = m.Seq
	c.UpdatedAt = now
	if th := in.Thread; th != nil {
		keys := th.Keys
		if th.Weak != "" {
			keys = append(slices.Clip(keys), WeakKey(th.Weak))
		}
		if len(keys) > 0 {
			if err := tx.SetThreadKeys(ctx, ch.ID, c.ID, keys, now); err != nil {
				return IngestOutcome{}, fmt.Errorf("%s: thread keys: %w", op, err)
			}
		}
	}
	return IngestOutcome{Message: m, Conversation: c, Opened: opened, Reopened: reopened}, nil
}

// WeakKey is the thread key under which a Thread's Weak key is recorded,
// apart from the keys messages are known by.
func WeakKey(weak string) string { return "weak:" + weak }

// placeThreaded finds the conversation a threaded envelope belongs to, as
// conv.Thread describes, reopening it if it was resolved (unless the
// envelope is a system event), or opens a conversation of its own thread.
func placeThreaded(ctx context.Context, tx Tx, in conv.Inbound, channel conv.ChannelID, contact conv.ContactID, tmpl conv.Conversation) (c conv.Conversation, opened, reopened bool, err error) {
	th := in.Thread
	found := false
	if !th.Conversation.IsZero() {
		c, err = tx.Conversation(ctx, th.Conversation)
		switch {
		case err == nil:
			found = c.ChannelID == channel
		case !errors.Is(err, conv.ErrNotFound):
			return c, false, false, err
		}
	}
	if !found && len(th.Refs) > 0 {
		if c, found, err = threadLookup(ctx, tx, channel, th.Refs); err != nil {
			return c, false, false, err
		}
	}
	if !found && th.Weak != "" {
		if c, found, err = threadLookup(ctx, tx, channel, []string{WeakKey(th.Weak)}); err != nil {
			return c, false, false, err
		}
		// The weak key joins a conversation only while it is open or
		// within WeakWindow of its resolution.
		found = found && (c.Status == conv.StatusOpen ||
			(c.ResolvedAt != nil && tmpl.CreatedAt.Sub(*c.ResolvedAt) < th.WeakWindow))
	}
	if !found {
		c, err = tx.NewConversation(ctx, channel, contact, tmpl)
		return c, err == nil, false, err
	}
	if c.Status == conv.StatusOpen || in.System {
		return c, false, false, nil
	}
	c.Status, c.ResolvedAt = conv.StatusOpen, nil
	if err := tx.UpdateConversation(ctx, c); err != nil {
		return c, false, false, fmt.Errorf("reopen %s: %w", c.ID, err)
	}
	if c, err = tx.Conversation(ctx, c.ID); err != nil {
		return c, false, false, err
	}
	return c, false, true, nil
}

// threadLookup reads the conversation the first recorded key names.
func threadLookup(ctx context.Context, tx Tx, channel conv.ChannelID, keys []string) (conv.Conversation, bool, error) {
	id, err := tx.ThreadConversation(ctx, channel, keys)
	if errors.Is(err, conv.ErrNotFound) {
		return conv.Conversation{}, false, nil
	}
	if err != nil {
		return conv.Conversation{}, false, err
	}
	c, err := tx.Conversation(ctx, id)
	if err != nil {
		return c, false, err
	}
	return c, true, nil
}
