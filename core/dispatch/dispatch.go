// Package dispatch is the minimal dispatcher: a new conversation goes to the
// online agent of its group with the fewest open conversations under their
// capacity; when nobody can take it, it waits in the queue (open and
// unassigned, oldest first) and is assigned as soon as an agent comes
// online or frees a slot.
//
// Drain is the one operation: it walks a tenant's queue oldest first and
// assigns what it can. It runs on conversation.opened, on a conversation
// leaving an agent (resolved, unassigned), when an agent comes online, and
// on a slow timer as a safety net. Assignment is a conditional update (only
// if still unassigned), so two nodes draining at once never assign one
// conversation twice; within a node, drains of one tenant are serialized.
// Across nodes two drains may each give one agent a conversation and
// overshoot a capacity by one; the next drain does not add to it.
package dispatch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/live"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// DefaultCapacity is the open conversations an agent takes when their
// Capacity is unset.
const DefaultCapacity = 5

// Publisher publishes domain events.
type Publisher interface {
	PublishEvents(ctx context.Context, events []conv.Event) error
}

// Config configures a Dispatcher.
type Config struct {
	Store    storage.Store
	Presence live.Presence
	Events   Publisher
	Logger   *slog.Logger
	Now      func() time.Time
	// QueueScan bounds how many queued conversations one Drain looks at.
	QueueScan int
}

// Dispatcher assigns queued conversations.
type Dispatcher struct {
	cfg   Config
	mu    sync.Mutex
	locks map[conv.TenantID]*sync.Mutex
}

// New returns a Dispatcher.
func New(cfg Config) (*Dispatcher, error) {
	if cfg.Store == nil || cfg.Presence == nil || cfg.Events == nil {
		return nil, errors.New("dispatch: Config.Store, Presence and Events are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.QueueScan <= 0 {
		cfg.QueueScan = 200
	}
	return &Dispatcher{cfg: cfg, locks: map[conv.TenantID]*sync.Mutex{}}, nil
}

func (d *Dispatcher) lock(t conv.TenantID) func() {
	d.mu.Lock()
	l, ok := d.locks[t]
	if !ok {
		l = &sync.Mutex{}
		d.locks[t] = l
	}
	d.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// Triggers are the event types that may make queued work assignable: a
// conversation opened, left its agent, or was resolved. Handle ignores the
// rest, so a consumer may skip messages holding none of these.
var Triggers = []conv.EventType{conv.EventConversationOpened, conv.EventConversationAssigned, conv.EventConversationUpdated}

// Handle drains the queue of every tenant with an event among Triggers.
func (d *Dispatcher) Handle(ctx context.Context, events []conv.Event) error {
	var tenants []conv.TenantID
	for _, e := range events {
		if !slices.Contains(Triggers, e.Type) {
			continue
		}
		if !slices.Contains(tenants, e.TenantID) {
			tenants = append(tenants, e.TenantID)
		}
	}
	for _, t := range tenants {
		if _, err := d.Drain(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

// Drain assigns queued conversations of tenant to online agents with free
// capacity, oldest conversation first, and returns how many it assigned.
func (d *Dispatcher) Drain(ctx context.Context, tenant conv.TenantID) (int, error) {
	defer d.lock(tenant)()
	present, err := d.cfg.Presence.Agents(ctx, tenant)
	if err != nil {
		return 0, fmt.Errorf("dispatch.Drain %s: presence: %w", tenant, err)
	}
	if !slices.Contains(mapsValues(present), live.Online) {
		return 0, nil
	}
	var (
		agents []conv.Agent
		load   map[conv.AgentID]int
		queue  []conv.Conversation
	)
	err = d.cfg.Store.Read(ctx, tenant, func(tx storage.Tx) error {
		var err error
		if agents, err = tx.Agents(ctx); err != nil {
			return err
		}
		if load, err = tx.OpenLoad(ctx); err != nil {
			return err
		}
		queue, err = tx.Queued(ctx, 0, d.cfg.QueueScan)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("dispatch.Drain %s: %w", tenant, err)
	}
	online := agents[:0:0]
	for _, a := range agents {
		if !a.Disabled && present[a.ID] == live.Online {
			online = append(online, a)
		}
	}
	assigned := 0
	for _, c := range queue {
		a, ok := Pick(c, online, load)
		if !ok {
			continue
		}
		var got conv.Conversation
		err := d.cfg.Store.Tx(ctx, tenant, func(tx storage.Tx) error {
			var err error
			got, err = tx.AssignConversation(ctx, c.ID, 0, a.ID)
			return err
		})
		if errors.Is(err, conv.ErrConflict) || errors.Is(err, conv.ErrNotFound) {
			continue // assigned, resolved or gone meanwhile
		}
		if err != nil {
			return assigned, fmt.Errorf("dispatch.Drain %s: assign %s: %w", tenant, c.ID, err)
		}
		load[a.ID]++
		assigned++
		d.cfg.Logger.InfoContext(ctx, "conversation assigned", "tenant", tenant, "conversation", c.ID, "agent", a.ID)
		if err := d.cfg.Events.PublishEvents(ctx, []conv.Event{{
			Type: conv.EventConversationAssigned, TenantID: tenant, Conversation: &got, At: d.cfg.Now(),
		}}); err != nil {
			return assigned, fmt.Errorf("dispatch.Drain %s: publish assignment of %s: %w", tenant, c.ID, err)
		}
	}
	return assigned, nil
}

// Pick chooses the agent for c among online agents: in c's group (any
// when c has none), under capacity, fewest open conversations, then lowest
// id (stable).
func Pick(c conv.Conversation, online []conv.Agent, load map[conv.AgentID]int) (conv.Agent, bool) {
	var cands []conv.Agent
	for _, a := range online {
		if !c.GroupID.IsZero() && !slices.Contains(a.GroupIDs, c.GroupID) {
			continue
		}
		if load[a.ID] >= Capacity(a) {
			continue
		}
		cands = append(cands, a)
	}
	if len(cands) == 0 {
		return conv.Agent{}, false
	}
	return slices.MinFunc(cands, func(x, y conv.Agent) int {
		return cmp.Or(cmp.Compare(load[x.ID], load[y.ID]), cmp.Compare(x.ID, y.ID))
	}), true
}

// Capacity is a's open-conversation limit.
func Capacity(a conv.Agent) int {
	if a.Capacity > 0 {
		return a.Capacity
	}
	return DefaultCapacity
}

// Run drains every tenant's queue every interval until ctx ends: the
// safety net for triggers that were missed (a presence lapse, a lost
// event).
func (d *Dispatcher) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		tenants, err := d.cfg.Store.Tenants(ctx)
		if err != nil {
			d.cfg.Logger.WarnContext(ctx, "dispatch sweep: list tenants", "err", err)
			continue
		}
		for _, tn := range tenants {
			if _, err := d.Drain(ctx, tn.ID); err != nil && ctx.Err() == nil {
				d.cfg.Logger.WarnContext(ctx, "dispatch sweep", "tenant", tn.ID, "err", err)
			}
		}
	}
}

func mapsValues(m map[conv.AgentID]live.Status) []live.Status {
	out := make([]live.Status, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
