// Package inbox is the "sync library" of seed 003: it turns domain events
// into entries of each concerned agent's inbox timeline (write diffusion;
// the store keeps one copy per conversation, read diffusion) and nudges the
// nodes holding those agents' sockets, and the visitor's, through the
// fan-out. Devices keep their own cursor into the timeline and resume from
// it; a device whose cursor fell out of the bounded timeline re-syncs per
// conversation by seq from the store.
//
// Which agents an event concerns: the conversation's assignee; the previous
// assignee of a reassignment (they see it leave); while the conversation is
// open and unassigned, every enabled agent of its group (of the tenant when
// it has none). conversation.read concerns only the agent who read.
//
// Handle is idempotent: the timeline drops an event key it already holds,
// so a redelivered batch appends nothing twice.
package inbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/switchboard-hq/switchboard/internal/jsonenc"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/live"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// Config configures a Service.
type Config struct {
	Store     storage.Store
	Timelines live.Timelines
	Fanout    live.Fanout
	Logger    *slog.Logger
}

// Service routes events to timelines.
type Service struct {
	cfg Config
	// names caches what a conversation's events carry besides its own
	// state (channel kind and name, contact name), and agents each
	// tenant's agent list, for a short while: at chat rates most events
	// then need no store read at all. A rename shows within namesTTL.
	mu     sync.Mutex
	names  map[conv.ConversationID]cachedNames
	agents map[conv.TenantID]cachedAgents
}

type cachedNames struct {
	sum storage.ConversationSummary
	at  time.Time
}

type cachedAgents struct {
	list []conv.Agent
	at   time.Time
}

// Cache lifetimes.
const (
	namesTTL  = time.Minute
	agentsTTL = 2 * time.Second
	// maxNames bounds the names cache; past it the cache starts over.
	maxNames = 100_000
)

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Timelines == nil || cfg.Fanout == nil {
		return nil, errors.New("inbox: Config.Store, Timelines and Fanout are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, names: map[conv.ConversationID]cachedNames{}, agents: map[conv.TenantID]cachedAgents{}}, nil
}

// Event is a timeline entry as devices receive it (docs/api.md, EVENT).
type Event struct {
	Type           conv.EventType               `json:"type"`
	Conversation   *storage.ConversationSummary `json:"conversation,omitempty"`
	ConversationID conv.ConversationID          `json:"conversation_id,omitempty"`
	Message        *conv.Message                `json:"message,omitempty"`
	Previous       conv.AgentID                 `json:"previous_assignee_id,omitempty"`
	ReadSeq        int64                        `json:"read_seq,omitempty"`
}

// AgentNote is what the fan-out carries on an agent's topic: either "the
// timeline grew to Cursor" or an ephemeral event (typing) not kept in it.
type AgentNote struct {
	Cursor int64           `json:"cursor,omitempty"`
	Event  json.RawMessage `json:"event,omitempty"`
	// Status: the agent switched presence on some device; every console
	// session of theirs applies it.
	Status live.Status `json:"status,omitempty"`
}

// ContactNote is what the fan-out carries on a tenant's visitors topic
// (live.VisitorsTopic): a new or changed message of one of a contact's
// conversations, an agent typing to them, or "presence" (agents came or
// went: visitor sockets re-check whether anyone is online).
type ContactNote struct {
	Type      string         `json:"type"` // "message", "typing" or "presence"
	ContactID conv.ContactID `json:"contact_id,omitempty"`
	Message   *conv.Message  `json:"message,omitempty"`
	// ChannelID scopes the note: a visitor socket shows its channel's only.
	ChannelID conv.ChannelID `json:"channel_id,omitempty"`
	Typing    bool           `json:"typing,omitempty"`
	Sender    *conv.Sender   `json:"sender,omitempty"`
}

// Handle appends one tenant's events to the timelines they concern and
// notifies the devices. Events of several tenants may be mixed.
func (s *Service) Handle(ctx context.Context, events []conv.Event) error {
	byTenant := map[conv.TenantID][]conv.Event{}
	var order []conv.TenantID
	for _, e := range events {
		if _, ok := byTenant[e.TenantID]; !ok {
			order = append(order, e.TenantID)
		}
		byTenant[e.TenantID] = append(byTenant[e.TenantID], e)
	}
	for _, t := range order {
		if err := s.handleTenant(ctx, t, byTenant[t]); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) handleTenant(ctx context.Context, tenant conv.TenantID, events []conv.Event) error {
	summaries, agents, err := s.load(ctx, tenant, events)
	if err != nil {
		return fmt.Errorf("inbox: tenant %s: %w", tenant, err)
	}

	heads := map[conv.AgentID]int64{}
	var agentOrder []conv.AgentID
	for _, e := range events {
		id := conversationOf(e)
		sum, ok := summaries[id]
		if !ok {
			continue
		}
		if e.Conversation != nil && e.Type != conv.EventConversationRead {
			// The event's state is what the change produced; the summary
			// read now adds names and may be newer.
			sum.Conversation = *e.Conversation
		}
		entry, recipients := s.route(e, sum, agents)
		if len(recipients) > 0 {
			payload, err := jsonenc.Marshal(entry)
			if err != nil {
				return fmt.Errorf("inbox: encode %s: %w", e.Key(), err)
			}
			for _, a := range recipients {
				cur, _, err := s.cfg.Timelines.Append(ctx, tenant, a, e.Key(), payload)
				if err != nil {
					return fmt.Errorf("inbox: append %s to agent %s: %w", e.Key(), a, err)
				}
				if _, seen := heads[a]; !seen {
					agentOrder = append(agentOrder, a)
				}
				heads[a] = max(heads[a], cur)
			}
		}
		if e.Message != nil && (e.Type == conv.EventMessageCreated || e.Type == conv.EventMessageUpdated) {
			m := e.Message.Redacted()
			s.notify(ctx, live.VisitorsTopic(tenant), ContactNote{Type: "message", ContactID: sum.ContactID, Message: &m, ChannelID: sum.ChannelID})
		}
	}
	for _, a := range agentOrder {
		s.notify(ctx, live.AgentTopic(tenant, a), AgentNote{Cursor: heads[a]})
	}
	return nil
}

// load returns, for the batch, each conversation's summary and the
// tenant's agents. An event that carries its conversation and whose names
// are cached needs no read; the rest are read in one read transaction.
// Events without their conversation (message.updated) always read it:
// routing needs the current assignee.
func (s *Service) load(ctx context.Context, tenant conv.TenantID, events []conv.Event) (map[conv.ConversationID]storage.ConversationSummary, []conv.Agent, error) {
	now := time.Now()
	summaries := map[conv.ConversationID]storage.ConversationSummary{}
	var need []conv.ConversationID
	s.mu.Lock()
	ca, haveAgents := s.agents[tenant]
	haveAgents = haveAgents && now.Sub(ca.at) < agentsTTL
	for _, e := range events {
		id := conversationOf(e)
		if id.IsZero() {
			continue
		}
		if _, done := summaries[id]; done || slices.Contains(need, id) {
			continue
		}
		if cn, ok := s.names[id]; ok && e.Conversation != nil && now.Sub(cn.at) < namesTTL {
			summaries[id] = cn.sum
			continue
		}
		need = append(need, id)
	}
	s.mu.Unlock()
	if len(need) == 0 && haveAgents {
		return summaries, ca.list, nil
	}
	err := s.cfg.Store.Read(ctx, tenant, func(tx storage.Tx) error {
		if !haveAgents {
			list, err := tx.Agents(ctx)
			if err != nil {
				return err
			}
			ca = cachedAgents{list: list, at: now}
		}
		for _, id := range need {
			sum, err := tx.ConversationSummary(ctx, 0, id)
			if errors.Is(err, conv.ErrNotFound) {
				continue // deleted since: nobody to tell
			}
			if err != nil {
				return err
			}
			summaries[id] = sum
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.agents[tenant] = ca
	if len(s.names) > maxNames {
		clear(s.names)
	}
	for _, id := range need {
		if sum, ok := summaries[id]; ok {
			// Only the names are worth keeping: state comes with each
			// event, and a stale last message must not travel.
			sum.Last = nil
			s.names[id] = cachedNames{sum: sum, at: now}
		}
	}
	return summaries, ca.list, nil
}

// notify publishes a fan-out note. A lost note costs latency only (devices
// resume from their cursor), so failures are logged, not returned.
func (s *Service) notify(ctx context.Context, topic string, note any) {
	if l, ok := s.cfg.Fanout.(live.Listener); ok && !l.Listening(topic) {
		return // nobody on this node listens (and there is no other node)
	}
	b, err := jsonenc.Marshal(note)
	if err == nil {
		err = s.cfg.Fanout.Publish(ctx, topic, b)
	}
	if err != nil {
		s.cfg.Logger.WarnContext(ctx, "fan-out note lost; devices will catch up on resume", "topic", topic, "err", err)
	}
}

func conversationOf(e conv.Event) conv.ConversationID {
	switch {
	case e.Conversation != nil:
		return e.Conversation.ID
	case e.Message != nil:
		return e.Message.ConversationID
	}
	return 0
}

// route builds the timeline entry for e and lists the agents it concerns.
func (s *Service) route(e conv.Event, sum storage.ConversationSummary, agents []conv.Agent) (Event, []conv.AgentID) {
	entry := Event{Type: e.Type}
	switch e.Type {
	case conv.EventConversationRead:
		entry.ConversationID, entry.ReadSeq = sum.ID, e.ReadSeq
		if e.Agent.IsZero() {
			return entry, nil
		}
		return entry, []conv.AgentID{e.Agent}
	case conv.EventMessageUpdated:
		m := e.Message.Redacted()
		entry.ConversationID, entry.Message = sum.ID, &m
	case conv.EventMessageCreated:
		m := e.Message.Redacted()
		sum.Last = &m
		entry.Conversation, entry.Message = &sum, &m
	default:
		entry.Conversation, entry.Previous = &sum, e.Previous
	}
	return entry, Concerned(sum.Conversation, e.Previous, agents)
}

// Concerned lists the agents an event on c concerns (see the package doc).
func Concerned(c conv.Conversation, previous conv.AgentID, agents []conv.Agent) []conv.AgentID {
	var out []conv.AgentID
	add := func(a conv.AgentID) {
		if !a.IsZero() && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	add(c.AssigneeID)
	add(previous)
	if c.AssigneeID.IsZero() && c.Status == conv.StatusOpen {
		for _, a := range agents {
			if a.Disabled {
				continue
			}
			if c.GroupID.IsZero() || slices.Contains(a.GroupIDs, c.GroupID) {
				add(a.ID)
			}
		}
	}
	return out
}
