package webchat

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/inbox"
	"github.com/switchboard-hq/switchboard/core/live"
)

// router delivers fan-out notes to this node's visitor sockets. It holds
// one subscription per tenant with sockets here (live.VisitorsTopic), not
// one per socket, and routes each note to the sessions of its contact: an
// idle visitor costs a map entry, not a subscription, a buffer and a
// goroutine.
type router struct {
	c       *Connector
	mu      sync.Mutex
	tenants map[conv.TenantID]*tenantRoute
}

type tenantRoute struct {
	sub      live.Subscription
	sessions map[conv.ContactID]map[*visitorSession]struct{}
	n        int
}

func newRouter(c *Connector) *router {
	return &router{c: c, tenants: map[conv.TenantID]*tenantRoute{}}
}

// add registers s; the first socket of a tenant subscribes its topic.
func (r *router) add(ctx context.Context, s *visitorSession) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := s.v.TenantID
	tr := r.tenants[t]
	if tr == nil {
		sub, err := r.c.cfg.Fanout.Subscribe(context.WithoutCancel(ctx), live.VisitorsTopic(t))
		if err != nil {
			return err
		}
		tr = &tenantRoute{sub: sub, sessions: map[conv.ContactID]map[*visitorSession]struct{}{}}
		r.tenants[t] = tr
		go r.route(t, tr)
	}
	set := tr.sessions[s.v.ContactID]
	if set == nil {
		set = map[*visitorSession]struct{}{}
		tr.sessions[s.v.ContactID] = set
	}
	set[s] = struct{}{}
	tr.n++
	return nil
}

// remove unregisters s; the last socket of a tenant unsubscribes.
func (r *router) remove(s *visitorSession) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tr := r.tenants[s.v.TenantID]
	if tr == nil {
		return
	}
	if set := tr.sessions[s.v.ContactID]; set != nil {
		if _, ok := set[s]; ok {
			delete(set, s)
			tr.n--
		}
		if len(set) == 0 {
			delete(tr.sessions, s.v.ContactID)
		}
	}
	if tr.n == 0 {
		delete(r.tenants, s.v.TenantID)
		tr.sub.Close()
	}
}

// route reads one tenant's notes until its subscription closes.
func (r *router) route(t conv.TenantID, tr *tenantRoute) {
	for b := range tr.sub.C() {
		var n inbox.ContactNote
		if json.Unmarshal(b, &n) != nil {
			continue
		}
		r.mu.Lock()
		var targets []*visitorSession
		if n.Type == "presence" {
			for _, set := range tr.sessions {
				for s := range set {
					targets = append(targets, s)
				}
			}
		} else {
			for s := range tr.sessions[n.ContactID] {
				targets = append(targets, s)
			}
		}
		r.mu.Unlock()
		if n.Type == "presence" {
			r.presence(targets)
			continue
		}
		for _, s := range targets {
			s.note(n)
		}
	}
}

// presence tells every visitor socket whether an agent is online, checked
// once per channel.
func (r *router) presence(targets []*visitorSession) {
	online := map[conv.ChannelID]bool{}
	ctx := context.Background()
	for _, s := range targets {
		on, ok := online[s.v.ChannelID]
		if !ok {
			on = r.c.agentsOnline(ctx, s.ch)
			online[s.v.ChannelID] = on
		}
		s.setOnline(on)
	}
}
