package conv

import (
	"fmt"
	"time"
)

// Inbound is the normalized envelope a connector publishes for one thing a
// customer did on a channel. Its dedup key is (ChannelID, ExternalID): a
// connector that receives the same channel message twice publishes the same
// ExternalID and core stores it once.
type Inbound struct {
	TenantID   TenantID  `json:"tenant_id"`
	ChannelID  ChannelID `json:"channel_id"`
	ExternalID string    `json:"external_id"`
	From       Identity  `json:"from"`
	// FromName is the sender's display name as the channel knows it.
	FromName string `json:"from_name,omitempty"`
	Parts    []Part `json:"parts"`
	// System marks a channel event (subscribe, menu click, enter session)
	// that is recorded on the conversation but asks nothing of an agent.
	System bool      `json:"system,omitempty"`
	Scene  string    `json:"scene,omitempty"`
	SentAt time.Time `json:"sent_at"`
	// ReplyWindow, when set, is how long after this message the channel
	// accepts replies (WeChat: 48h).
	ReplyWindow time.Duration `json:"reply_window,omitempty"`
	// Thread, when set, places the envelope by thread rather than by
	// sender: the channel (email) has threads, a contact may have several
	// conversations open at once, and a reply to a resolved conversation
	// reopens it. Without it the envelope joins the open conversation of
	// (channel, contact), or opens one.
	Thread *Thread `json:"thread,omitempty"`
}

// Thread says which conversation a threaded envelope belongs to. Core
// tries, in order: Conversation; each of Refs; Weak. The first that names a
// conversation of the envelope's channel wins (Weak only while that
// conversation is open, or was resolved less than WeakWindow ago); with
// none, the envelope opens a new conversation. Either way the message is
// then known by Keys and Weak, so later messages that refer to it find it.
type Thread struct {
	// Conversation is one the connector proved the message belongs to
	// (email: an authenticated token in one of our own Message-IDs).
	Conversation ConversationID `json:"conversation,omitempty"`
	// Refs are the keys the message refers to, strongest first (email:
	// In-Reply-To, then References newest first).
	Refs []string `json:"refs,omitempty"`
	// Keys are the keys the message itself is known by (email: its
	// Message-ID).
	Keys []string `json:"keys,omitempty"`
	// Weak is a fallback key for clients that drop the headers (email:
	// sender and normalized subject). It points at the newest conversation
	// it was seen on.
	Weak string `json:"weak,omitempty"`
	// WeakWindow is how long after a conversation is resolved Weak still
	// joins it; zero means only while it is open.
	WeakWindow time.Duration `json:"weak_window,omitempty"`
}

// Bounds on a Thread, so the keys an envelope writes stay bounded.
const (
	MaxThreadKeys   = 64
	MaxThreadKeyLen = 512
)

// Validate checks a Thread's bounds.
func (t *Thread) Validate() error {
	if len(t.Refs)+len(t.Keys) > MaxThreadKeys {
		return fmt.Errorf("%w: thread has %d refs and keys, at most %d", ErrInvalid, len(t.Refs)+len(t.Keys), MaxThreadKeys)
	}
	if t.WeakWindow < 0 {
		return fmt.Errorf("%w: negative thread weak_window", ErrInvalid)
	}
	for _, k := range append(append([]string{t.Weak}, t.Refs...), t.Keys...) {
		if len(k) > MaxThreadKeyLen {
			return fmt.Errorf("%w: thread key longer than %d bytes", ErrInvalid, MaxThreadKeyLen)
		}
	}
	for _, k := range append(t.Refs, t.Keys...) {
		if k == "" {
			return fmt.Errorf("%w: empty thread key", ErrInvalid)
		}
	}
	return nil
}

// MaxExternalID bounds dedup keys.
const MaxExternalID = 512

// Validate checks an envelope before it is stored. A failure here is
// permanent: the envelope goes to the poison queue with this reason.
func (in Inbound) Validate() error {
	switch {
	case in.TenantID.IsZero():
		return fmt.Errorf("%w: envelope has no tenant_id", ErrInvalid)
	case in.ChannelID.IsZero():
		return fmt.Errorf("%w: envelope has no channel_id", ErrInvalid)
	case in.ExternalID == "":
		return fmt.Errorf("%w: envelope has no external_id (the dedup key)", ErrInvalid)
	case len(in.ExternalID) > MaxExternalID:
		return fmt.Errorf("%w: external_id longer than %d bytes", ErrInvalid, MaxExternalID)
	case len(in.FromName) > maxField:
		return fmt.Errorf("%w: from_name longer than %d bytes", ErrInvalid, maxField)
	case len(in.Scene) > maxField:
		return fmt.Errorf("%w: scene longer than %d bytes", ErrInvalid, maxField)
	case in.ReplyWindow < 0:
		return fmt.Errorf("%w: negative reply_window", ErrInvalid)
	}
	if err := in.From.Validate(); err != nil {
		return err
	}
	if in.Thread != nil {
		if err := in.Thread.Validate(); err != nil {
			return err
		}
	}
	return ValidateParts(in.Parts)
}

// EventType names a domain event.
type EventType string

// Domain events published after the transaction that caused them commits.
// Consumers must be idempotent: an event can arrive more than once.
const (
	EventConversationOpened EventType = "conversation.opened"
	EventMessageCreated     EventType = "message.created"
	EventMessageUpdated     EventType = "message.updated"
	// EventConversationAssigned: the assignee changed (Previous holds the
	// one before; a zero assignee means back to the queue).
	EventConversationAssigned EventType = "conversation.assigned"
	// EventConversationUpdated: status or other fields changed (resolved,
	// reopened).
	EventConversationUpdated EventType = "conversation.updated"
	// EventConversationRead: Agent read the conversation up to ReadSeq.
	EventConversationRead EventType = "conversation.read"
)

// Event is a domain event. It carries the records as they were at commit so
// consumers rarely need to read the store.
type Event struct {
	Type         EventType     `json:"type"`
	TenantID     TenantID      `json:"tenant_id"`
	Conversation *Conversation `json:"conversation,omitempty"`
	Message      *Message      `json:"message,omitempty"`
	// Previous is the assignee before a conversation.assigned.
	Previous AgentID `json:"previous_assignee_id,omitempty"`
	// Agent and ReadSeq: who read how far, for conversation.read.
	Agent   AgentID   `json:"agent_id,omitempty"`
	ReadSeq int64     `json:"read_seq,omitempty"`
	At      time.Time `json:"at"`
}

// Key is the event's idempotency key: the same change always yields the
// same key, so a republished event is recognizably the same event.
func (e Event) Key() string {
	switch {
	case e.Type == EventConversationRead && e.Conversation != nil:
		return fmt.Sprintf("%s:%s:%s:%d", e.Type, e.Conversation.ID, e.Agent, e.ReadSeq)
	case e.Message != nil:
		recalled := ""
		if e.Message.RecalledAt != nil {
			recalled = ":recalled"
		}
		return fmt.Sprintf("%s:%s:%s%s", e.Type, e.Message.ID, e.Message.Status, recalled)
	case e.Type == EventConversationOpened && e.Conversation != nil:
		return fmt.Sprintf("%s:%s", e.Type, e.Conversation.ID)
	case e.Conversation != nil:
		// Assignments and updates repeat on one conversation: the change
		// is identified by the state it produced.
		c := e.Conversation
		return fmt.Sprintf("%s:%s:%s:%s:%d", e.Type, c.ID, c.Status, c.AssigneeID, c.UpdatedAt.UnixNano())
	}
	return string(e.Type)
}

// Outbound is what core asks a connector to send: a stored message (status
// pending) plus where it goes. Connectors must treat Message.ID as the
// idempotency key: the same Outbound can arrive more than once.
type Outbound struct {
	TenantID  TenantID    `json:"tenant_id"`
	ChannelID ChannelID   `json:"channel_id"`
	Kind      ChannelKind `json:"kind"`
	// To lists every identity of the contact; the connector picks the one
	// of the kind it speaks (openid, email address, visitor id).
	To      []Identity `json:"to"`
	Message Message    `json:"message"`
}

// Delivery is a connector's report on an Outbound: sent, delivered, read,
// failed, or pending with a Reason while the connector keeps retrying
// (the channel is down or busy).
type Delivery struct {
	TenantID  TenantID      `json:"tenant_id"`
	MessageID MessageID     `json:"message_id"`
	Status    MessageStatus `json:"status"`
	// Reason is the channel's explanation of a failure, for a human
	// ("45015: outside the 48-hour reply window").
	Reason string `json:"reason,omitempty"`
	// ExternalID is the channel's id for the sent message, if it returns one.
	ExternalID string    `json:"external_id,omitempty"`
	At         time.Time `json:"at"`
}

// Validate checks a delivery report.
func (d Delivery) Validate() error {
	switch {
	case d.TenantID.IsZero() || d.MessageID.IsZero():
		return fmt.Errorf("%w: delivery needs tenant_id and message_id", ErrInvalid)
	case !d.Status.Valid() || d.Status == MsgReceived:
		return fmt.Errorf("%w: delivery status %q", ErrInvalid, d.Status)
	case d.Status == MsgPending && d.Reason == "":
		return fmt.Errorf("%w: a pending delivery report must say why (the connector is retrying)", ErrInvalid)
	case len(d.Reason) > maxField || len(d.ExternalID) > MaxExternalID:
		return fmt.Errorf("%w: delivery field too long", ErrInvalid)
	}
	return nil
}

// DeadLetter is a bus message that could not be handled, kept for an admin.
type DeadLetter struct {
	ID        int64             `json:"id,string"`
	Topic     string            `json:"topic"`
	Handler   string            `json:"handler"`
	MessageID string            `json:"message_uuid"`
	Reason    string            `json:"reason"`
	Payload   []byte            `json:"payload"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	TenantID  TenantID          `json:"tenant_id,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
}
