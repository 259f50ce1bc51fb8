package storage

import (
	"context"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// ConsoleTx is what the agent console, the web chat widget and dispatch
// need beyond ingest: lists with read state, scrolling back, recall,
// assignment, queues, visitor sessions and contact merging. Every method
// acts on the Tx's tenant.
type ConsoleTx interface {
	// ContactByIdentity returns the contact owning identity, ErrNotFound
	// when there is none.
	ContactByIdentity(ctx context.Context, identity conv.Identity) (conv.Contact, error)
	// RenameContact sets a contact's display name.
	RenameContact(ctx context.Context, id conv.ContactID, name string) error
	// MergeContacts moves every identity, conversation and visitor session
	// of from to into, then deletes from. Where both have an open
	// conversation on the same channel, from's is resolved first (its
	// history stays, under into). Merging a contact into itself is a no-op;
	// an unknown id is ErrNotFound.
	MergeContacts(ctx context.Context, from, into conv.ContactID) error

	// MessagesBefore lists up to limit messages with seq < beforeSeq: the
	// newest ones before it, in ascending seq order (scrolling back).
	MessagesBefore(ctx context.Context, conversation conv.ConversationID, beforeSeq int64, limit int) ([]conv.Message, error)
	// LatestConversation returns the contact's conversation on channel that
	// a returning customer continues: the open one, else the most recently
	// created. ErrNotFound when there is none.
	LatestConversation(ctx context.Context, channel conv.ChannelID, contact conv.ContactID) (conv.Conversation, error)
	// RecallMessage sets RecalledAt to at unless already set; changed
	// reports whether it did. The message is returned as stored.
	RecallMessage(ctx context.Context, id conv.MessageID, at time.Time) (m conv.Message, changed bool, err error)

	// AssignConversation sets the open conversation's assignee to to (zero:
	// back to the queue) only if its assignee is still from; otherwise
	// ErrConflict (somebody else assigned it first). A resolved
	// conversation is ErrConflict too. It bumps UpdatedAt.
	AssignConversation(ctx context.Context, id conv.ConversationID, from, to conv.AgentID) (conv.Conversation, error)
	// OpenLoad counts the open conversations of each agent that has any.
	OpenLoad(ctx context.Context) (map[conv.AgentID]int, error)
	// Queued lists open, unassigned conversations, oldest first (CreatedAt,
	// then ID); only those of group when group is non-zero; at most limit.
	Queued(ctx context.Context, group conv.GroupID, limit int) ([]conv.Conversation, error)

	// SetRead records that agent has read conversation up to seq. The
	// stored value never decreases; SetRead returns it.
	SetRead(ctx context.Context, agent conv.AgentID, conversation conv.ConversationID, seq int64) (int64, error)
	// ListConversations lists conversations for the console, most recently
	// updated first.
	ListConversations(ctx context.Context, q ConversationQuery) ([]ConversationSummary, error)
	// ConversationSummary is one conversation as ListConversations shows it.
	ConversationSummary(ctx context.Context, reader conv.AgentID, id conv.ConversationID) (ConversationSummary, error)

	// CreateVisitor stores a web chat visitor session (its token hashed).
	CreateVisitor(ctx context.Context, v conv.Visitor) error
	// VisitorByHash returns the session whose Hash equals hash.
	VisitorByHash(ctx context.Context, hash []byte) (conv.Visitor, error)
	// UpdateVisitorContact points a session at another contact (after the
	// site identified its user).
	UpdateVisitorContact(ctx context.Context, id conv.VisitorID, contact conv.ContactID) error
}

// ActivityGranularity is how far a conversation's UpdatedAt may lag its
// newest message: a store may move it at most this often while messages
// keep arriving, because the console's list indexes include it and
// rewriting it on every append made appends several times slower.
const ActivityGranularity = time.Second

// AssigneeFilter selects conversations by assignee.
type AssigneeFilter int

const (
	AnyAssignee AssigneeFilter = iota
	Unassigned                 // queued: no assignee
	AssignedTo                 // ConversationQuery.Agent's
)

// ConversationQuery selects conversations for ListConversations.
type ConversationQuery struct {
	// Status filters by status; empty means any.
	Status   conv.ConversationStatus
	Assignee AssigneeFilter
	Agent    conv.AgentID // with AssignedTo
	// Reader is the agent whose read state fills ReadSeq and Unread.
	Reader conv.AgentID
	// Before pages: only conversations ordered after (UpdatedAt, ID) of the
	// last one of the previous page. Zero: from the newest.
	BeforeUpdated time.Time
	BeforeID      conv.ConversationID
	// Limit caps the page (the store may cap it lower, at 200).
	Limit int
}

// ConversationSummary is a conversation as the console lists it.
type ConversationSummary struct {
	conv.Conversation
	ChannelKind conv.ChannelKind `json:"channel_kind"`
	ChannelName string           `json:"channel_name"`
	ContactName string           `json:"contact_name"`
	// Last is the newest message, nil in a conversation without one.
	Last *conv.Message `json:"last_message,omitempty"`
	// ReadSeq is the reader's read position, Unread the number of inbound
	// messages after it.
	ReadSeq int64 `json:"read_seq"`
	Unread  int64 `json:"unread"`
}
