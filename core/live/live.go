// Package live declares the shared, short-lived state that makes the
// console and the widget live: per-agent inbox timelines (the seed 003
// "sync library"), a fan-out that reaches the node holding a socket, and
// agent presence. store/memory implements it for one node, store/redis for
// many; store/statetest is the conformance suite both pass.
//
// None of it is the source of truth: a lost timeline or a missed fan-out
// message costs a re-sync from the store, never a message.
package live

import (
	"context"
	"errors"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// ErrCursorExpired: the timeline no longer keeps the entries right after
// the cursor a device asked from. The device re-syncs per conversation by
// seq from the store, then continues from Head.
var ErrCursorExpired = errors.New("live: cursor older than the timeline keeps")

// Entry is one event in an agent's timeline.
type Entry struct {
	// Cursor is the agent's sync number: 1, 2, 3… per agent, gapless in
	// what Append handed out, never reused (even after trimming).
	Cursor int64
	Event  []byte
}

// Timelines are per-agent inbox timelines: write diffusion, every event
// that concerns an agent appended to that agent's timeline, each device
// keeping its own cursor. Bounded: each keeps its newest MaxEntries (and,
// in Redis, expires after a retention period of inactivity).
type Timelines interface {
	// Append adds event to agent's timeline under key and returns its
	// cursor. Appending a key the timeline still keeps appends nothing
	// and returns the cursor it got then with dup true: a redelivered
	// domain event lands once.
	Append(ctx context.Context, tenant conv.TenantID, agent conv.AgentID, key string, event []byte) (cursor int64, dup bool, err error)
	// Since returns up to limit entries with Cursor > after, ascending.
	// When after is older than the oldest entry kept minus one (entries
	// in between were trimmed) it returns ErrCursorExpired, and so when
	// after is newer than Head (the timeline was lost and restarted since
	// the device read it). after 0 on a timeline that never trimmed
	// returns from the start.
	Since(ctx context.Context, tenant conv.TenantID, agent conv.AgentID, after int64, limit int) ([]Entry, error)
	// Head returns the newest cursor handed out (0 for a new timeline).
	Head(ctx context.Context, tenant conv.TenantID, agent conv.AgentID) (int64, error)
}

// Fanout delivers small notifications to every node subscribed to a topic,
// at most once, to subscribers present at publish time. Losing one is
// allowed (devices resume from their cursor).
type Fanout interface {
	Publish(ctx context.Context, topic string, payload []byte) error
	// Subscribe returns a subscription receiving what is published to
	// topic from now on. Slow subscribers lose messages rather than block
	// publishers (the channel is buffered; overflow drops and counts).
	Subscribe(ctx context.Context, topic string) (Subscription, error)
}

// Listener is an optional capability of a Fanout: whether a publish to
// topic now would reach any subscriber, so that a publisher can skip
// building a note nobody receives. Only a Fanout that sees every
// subscriber (one node's) can answer; a Fanout across nodes does not
// implement it.
type Listener interface {
	Listening(topic string) bool
}

// Subscription is one Subscribe.
type Subscription interface {
	C() <-chan []byte
	// Close ends the subscription and closes C.
	Close() error
}

// Status is an agent's presence.
type Status string

const (
	Online  Status = "online"
	Away    Status = "away"
	Offline Status = "offline"
)

// Presence tracks which agents have a live console, per device session.
type Presence interface {
	// Set records a session's status until ttl passes without another Set
	// (a node that dies stops refreshing; its sessions lapse).
	Set(ctx context.Context, tenant conv.TenantID, agent conv.AgentID, session string, status Status, ttl time.Duration) error
	// Remove ends a session at once (socket closed cleanly).
	Remove(ctx context.Context, tenant conv.TenantID, agent conv.AgentID, session string) error
	// Agents returns every agent of tenant with at least one live session
	// and its best status (online beats away).
	Agents(ctx context.Context, tenant conv.TenantID) (map[conv.AgentID]Status, error)
}

// Topic names for Fanout, scoped by tenant.
func AgentTopic(t conv.TenantID, a conv.AgentID) string {
	return "t." + t.String() + ".agent." + a.String()
}
func ContactTopic(t conv.TenantID, c conv.ContactID) string {
	return "t." + t.String() + ".contact." + c.String()
}
func TenantTopic(t conv.TenantID) string { return "t." + t.String() + ".tenant" }

// VisitorsTopic carries what a tenant's visitor sockets need (new
// messages, agent typing, presence changes), each note naming its
// contact: a node subscribes once per tenant and routes locally.
func VisitorsTopic(t conv.TenantID) string { return "t." + t.String() + ".visitors" }
