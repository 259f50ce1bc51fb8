package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/live"
)

// Presence tracks agents' console sessions in process, implementing
// live.Presence. A session is live while now is before its expiry.
type Presence struct {
	now func() time.Time

	mu        sync.Mutex
	tenants   map[conv.TenantID]map[sessionID]session
	lastSweep time.Time
}

type sessionID struct {
	agent conv.AgentID
	name  string
}

type session struct {
	status  live.Status
	expires time.Time
}

// NewPresence returns Presence with no sessions.
func NewPresence(cfg Config) *Presence {
	cfg.setDefaults()
	return &Presence{now: cfg.Now, tenants: make(map[conv.TenantID]map[sessionID]session), lastSweep: cfg.Now()}
}

// Set records session's status until now+ttl, replacing what it had.
func (p *Presence) Set(ctx context.Context, tenant conv.TenantID, agent conv.AgentID, name string, status live.Status, ttl time.Duration) error {
	const op = "memory.Presence.Set"
	if err := checkSession(op, tenant, agent, name); err != nil {
		return err
	}
	if _, ok := statusRank(status); !ok {
		return fmt.Errorf("%s %s/%s: %w: unknown status %.32q", op, tenant, agent, conv.ErrInvalid, status)
	}
	if ttl < time.Millisecond {
		return fmt.Errorf("%s %s/%s: %w: ttl %s is under a millisecond", op, tenant, agent, conv.ErrInvalid, ttl)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	p.sweep(now)
	sessions := p.tenants[tenant]
	if sessions == nil {
		sessions = make(map[sessionID]session)
		p.tenants[tenant] = sessions
	}
	sessions[sessionID{agent, name}] = session{status: status, expires: now.Add(ttl)}
	return nil
}

// Remove ends a session at once; a no-op for a session that is not live.
func (p *Presence) Remove(ctx context.Context, tenant conv.TenantID, agent conv.AgentID, name string) error {
	if err := checkSession("memory.Presence.Remove", tenant, agent, name); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if sessions := p.tenants[tenant]; sessions != nil {
		delete(sessions, sessionID{agent, name})
		if len(sessions) == 0 {
			delete(p.tenants, tenant)
		}
	}
	return nil
}

// Agents returns every agent of tenant with a live session and its best
// status.
func (p *Presence) Agents(ctx context.Context, tenant conv.TenantID) (map[conv.AgentID]live.Status, error) {
	if tenant.IsZero() {
		return nil, fmt.Errorf("memory.Presence.Agents: %w: tenant is required", conv.ErrInvalid)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	p.sweep(now)
	out := make(map[conv.AgentID]live.Status)
	sessions := p.tenants[tenant]
	for id, s := range sessions {
		if !now.Before(s.expires) {
			delete(sessions, id)
			continue
		}
		if cur, ok := out[id.agent]; !ok || better(s.status, cur) {
			out[id.agent] = s.status
		}
	}
	if sessions != nil && len(sessions) == 0 {
		delete(p.tenants, tenant)
	}
	return out, nil
}

// sweep drops lapsed sessions of every tenant once per sweepEvery, for
// tenants nobody asks about. Callers hold p.mu.
func (p *Presence) sweep(now time.Time) {
	if now.Sub(p.lastSweep) < sweepEvery {
		return
	}
	p.lastSweep = now
	for tenant, sessions := range p.tenants {
		for id, s := range sessions {
			if !now.Before(s.expires) {
				delete(sessions, id)
			}
		}
		if len(sessions) == 0 {
			delete(p.tenants, tenant)
		}
	}
}

// statusRank orders statuses for Agents: online beats away beats offline.
func statusRank(s live.Status) (int, bool) {
	switch s {
	case live.Online:
		return 2, true
	case live.Away:
		return 1, true
	case live.Offline:
		return 0, true
	}
	return 0, false
}

func better(a, b live.Status) bool {
	ra, _ := statusRank(a)
	rb, _ := statusRank(b)
	return ra > rb
}

func checkSession(op string, tenant conv.TenantID, agent conv.AgentID, name string) error {
	if err := checkIDs(op, tenant, agent); err != nil {
		return err
	}
	if name == "" || len(name) > maxSessionLen {
		return fmt.Errorf("%s %s/%s: %w: session must be 1 to %d bytes", op, tenant, agent, conv.ErrInvalid, maxSessionLen)
	}
	return nil
}
