// Package storage is the persistence contract core needs. Core packages
// (ingest, outbound, auth) consume it; store/sqlite and store/postgres
// implement it; storagetest is the one conformance suite both pass.
//
// Tenancy: every tenant-scoped operation runs inside Store.Tx for an explicit
// tenant. Implementations put tenant_id in every statement, and Postgres
// additionally enforces it with Row-Level Security set per transaction, so
// a Tx can neither read nor write another tenant's rows.
//
// Secrets: Channel.Secrets are sealed with the store's Sealer before they are
// written and opened when read; plaintext never reaches disk.
package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Store is the source of truth.
type Store interface {
	// Tx runs fn in one transaction scoped to tenant. If fn returns an error
	// the transaction rolls back and Tx returns that error. fn may be called
	// again when the database asks for a retry (serialization, busy); it must
	// not have effects outside the transaction.
	Tx(ctx context.Context, tenant conv.TenantID, fn func(Tx) error) error
	// Read runs fn in a read-only transaction scoped to tenant: one
	// consistent snapshot that does not wait for writers (SQLite admits
	// one writer at a time; readers run beside it). Write methods fail.
	// Console lists, history and event routing read through it.
	Read(ctx context.Context, tenant conv.TenantID, fn func(Tx) error) error

	CreateTenant(ctx context.Context, t conv.Tenant) error
	// Tenant and TenantByName return ErrNotFound for an unknown tenant.
	Tenant(ctx context.Context, id conv.TenantID) (conv.Tenant, error)
	TenantByName(ctx context.Context, name string) (conv.Tenant, error)
	Tenants(ctx context.Context) ([]conv.Tenant, error)

	// AddDeadLetter keeps a message the bus could not handle; DeadLetters
	// lists them newest first.
	AddDeadLetter(ctx context.Context, d conv.DeadLetter) error
	DeadLetters(ctx context.Context, limit int) ([]conv.DeadLetter, error)

	// ChannelTenant returns the tenant owning a channel, ErrNotFound for an
	// unknown channel. It is the one lookup not scoped to a tenant: the web
	// chat widget names only its channel. It reveals nothing but the id.
	ChannelTenant(ctx context.Context, channel conv.ChannelID) (conv.TenantID, error)

	// Ping checks the store answers; /readyz uses it.
	Ping(ctx context.Context) error
	Close() error
}

// Tx is a tenant-scoped transaction. Every method acts on the tenant the Tx
// was opened for; ids of another tenant's records answer ErrNotFound.
type Tx interface {
	Tenant() conv.TenantID

	// CreateChannel stores c (ID, CreatedAt filled by the caller), sealing
	// its secrets. Channel opens them again.
	CreateChannel(ctx context.Context, c conv.Channel) error
	Channel(ctx context.Context, id conv.ChannelID) (conv.Channel, error)
	// UpdateChannel rewrites c's name, config, group, disabled flag and
	// secrets (the whole set: fields not in c.Secrets are removed). Kind
	// and creation time do not change. An unknown id is ErrNotFound.
	UpdateChannel(ctx context.Context, c conv.Channel) error
	Channels(ctx context.Context) ([]conv.Channel, error)
	// ResealSecrets re-encrypts every channel secret of the tenant under the
	// Sealer's current key and returns how many it rewrote.
	ResealSecrets(ctx context.Context) (int, error)

	// EnsureContact returns the contact owning identity, creating it (with
	// name) when there is none; created reports which.
	EnsureContact(ctx context.Context, identity conv.Identity, name string) (c conv.Contact, created bool, err error)
	Contact(ctx context.Context, id conv.ContactID) (conv.Contact, error)

	// OpenConversation returns the open conversation for (channel, contact)
	// or opens one from tmpl (its ID, Priority, Scene, GroupID, CreatedAt);
	// opened reports which.
	OpenConversation(ctx context.Context, channel conv.ChannelID, contact conv.ContactID, tmpl conv.Conversation) (c conv.Conversation, opened bool, err error)
	// NewConversation opens a conversation of its own thread from tmpl (as
	// OpenConversation), even when (channel, contact) has others open: a
	// threaded channel (email) keeps one conversation per thread.
	// OpenConversation never returns one of these.
	NewConversation(ctx context.Context, channel conv.ChannelID, contact conv.ContactID, tmpl conv.Conversation) (conv.Conversation, error)
	Conversation(ctx context.Context, id conv.ConversationID) (conv.Conversation, error)
	// UpdateConversation writes status, assignee, group, priority, scene,
	// reply deadline and resolved_at of c.
	UpdateConversation(ctx context.Context, c conv.Conversation) error

	// AppendMessage stores m as the next message of its conversation: it
	// sets m.Seq to the conversation's last seq + 1 and returns the stored
	// message. A duplicate (channel, external id) or (conversation, client
	// id) is ErrConflict; the caller must then roll back, since the seq was
	// already taken in this transaction.
	AppendMessage(ctx context.Context, m conv.Message) (conv.Message, error)
	Message(ctx context.Context, id conv.MessageID) (conv.Message, error)
	// MessageByExternalID finds a message by its channel dedup key.
	MessageByExternalID(ctx context.Context, channel conv.ChannelID, externalID string) (conv.Message, error)
	// MessageByClientID finds a message by its sender's idempotency key.
	MessageByClientID(ctx context.Context, conversation conv.ConversationID, clientID string) (conv.Message, error)
	// Messages lists a conversation's messages with afterSeq < seq, ascending,
	// at most limit.
	Messages(ctx context.Context, conversation conv.ConversationID, afterSeq int64, limit int) ([]conv.Message, error)
	// SetMessageStatus moves a message to status if conv.Updates allows it
	// (the status advances, or a pending message gets a new reason),
	// recording reason and (when non-empty) the channel's external id.
	// changed is false when nothing moved.
	SetMessageStatus(ctx context.Context, id conv.MessageID, status conv.MessageStatus, reason, externalID string) (m conv.Message, changed bool, err error)

	// ThreadConversation returns the conversation of channel that the
	// first of keys (in order) is recorded for, ErrNotFound if none is.
	ThreadConversation(ctx context.Context, channel conv.ChannelID, keys []string) (conv.ConversationID, error)
	// SetThreadKeys records keys for conversation, replacing what each key
	// named before (a key follows the newest conversation it was seen on).
	SetThreadKeys(ctx context.Context, channel conv.ChannelID, conversation conv.ConversationID, keys []string, at time.Time) error

	// ChannelState returns what a connector saved for channel under key (a
	// mailbox position, a connection status), ErrNotFound if nothing.
	ChannelState(ctx context.Context, channel conv.ChannelID, key string) (string, error)
	// SetChannelState saves value under key for channel. Keys are at most
	// MaxStateKey bytes, values MaxStateValue; longer is ErrInvalid.
	SetChannelState(ctx context.Context, channel conv.ChannelID, key, value string, at time.Time) error

	// Outbox: a pending outbound message is "unpublished" until
	// MarkPublished; the sweeper republishes those older than a grace period.
	MarkPublished(ctx context.Context, id conv.MessageID, at time.Time) error
	UnpublishedBefore(ctx context.Context, before time.Time, limit int) ([]conv.Message, error)

	CreateAgent(ctx context.Context, a conv.Agent) error
	Agent(ctx context.Context, id conv.AgentID) (conv.Agent, error)
	// AgentByEmail matches case-insensitively.
	AgentByEmail(ctx context.Context, email string) (conv.Agent, error)
	Agents(ctx context.Context) ([]conv.Agent, error)

	CreateGroup(ctx context.Context, g conv.Group) error
	Groups(ctx context.Context) ([]conv.Group, error)

	CreateToken(ctx context.Context, t conv.Token) error
	// TokenByHash returns the token whose Hash equals hash, active or not.
	TokenByHash(ctx context.Context, hash []byte) (conv.Token, error)
	RevokeToken(ctx context.Context, id conv.TokenID, at time.Time) error

	ConsoleTx
}

// Bounds on channel state.
const (
	MaxStateKey   = 128
	MaxStateValue = 64 << 10
)

// CheckState checks a channel state key and value against their bounds.
func CheckState(key, value string) error {
	switch {
	case key == "" || len(key) > MaxStateKey:
		return fmt.Errorf("%w: channel state key must be 1 to %d bytes", conv.ErrInvalid, MaxStateKey)
	case len(value) > MaxStateValue:
		return fmt.Errorf("%w: channel state value over %d bytes", conv.ErrInvalid, MaxStateValue)
	}
	return nil
}

// Sealer encrypts and decrypts one secret bound to its place (tenant,
// channel, field), so a ciphertext copied to another row does not open.
// core/secret.Keyring implements it.
type Sealer interface {
	Seal(plaintext []byte, aad string) (string, error)
	Open(sealed string, aad string) ([]byte, error)
	// Current reports whether sealed was made with the current key.
	Current(sealed string) bool
}

// SecretAAD is the associated data binding a channel secret to its row.
func SecretAAD(tenant conv.TenantID, channel conv.ChannelID, field string) string {
	return "tenant=" + tenant.String() + ";table=channel_secrets;channel=" + channel.String() + ";field=" + field
}
