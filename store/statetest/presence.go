package statetest

import (
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/live"
)

// RunPresence runs the presence suite against live.Presence. newPresence is
// called once per subtest and returns two handles on one fresh presence
// table: two nodes (two Redis clients sharing a prefix unique to the test)
// or, in process, the same instance twice. It cleans up with t.Cleanup.
//
// Beyond the doc comments of live.Presence the suite pins: a session is
// (tenant, agent, session), so one session name under two agents is two
// sessions; Set replaces the session's status and expiry (a shorter ttl
// shortens it); statuses rank online > away > offline; zero tenant or
// agent, an empty session or one over 256 bytes, a status other than the
// three, or a ttl under a millisecond are conv.ErrInvalid.
func RunPresence(t *testing.T, newPresence func(t *testing.T) (live.Presence, live.Presence)) {
	tests := []struct {
		name string
		fn   func(*testing.T, live.Presence, live.Presence)
	}{
		{"SetAndAgents", testPresenceSet},
		{"BestStatus", testPresenceBest},
		{"Remove", testPresenceRemove},
		{"SessionsLapse", testPresenceLapse},
		{"RenewalExtends", testPresenceRenewalExtends},
		{"RenewalResets", testPresenceRenewalResets},
		{"Invalid", testPresenceInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, b := newPresence(t)
			tt.fn(t, a, b)
		})
	}
}

type agents = map[conv.AgentID]live.Status

func set(t *testing.T, p live.Presence, tenant conv.TenantID, agent conv.AgentID, session string, st live.Status, ttl time.Duration) {
	t.Helper()
	if err := p.Set(t.Context(), tenant, agent, session, st, ttl); err != nil {
		t.Fatalf("Set(%s, %s, %q, %s, %s): %v", tenant, agent, session, st, ttl, err)
	}
}

func remove(t *testing.T, p live.Presence, tenant conv.TenantID, agent conv.AgentID, session string) {
	t.Helper()
	if err := p.Remove(t.Context(), tenant, agent, session); err != nil {
		t.Fatalf("Remove(%s, %s, %q): %v", tenant, agent, session, err)
	}
}

func wantAgents(t *testing.T, p live.Presence, tenant conv.TenantID, want agents) {
	t.Helper()
	got, err := p.Agents(t.Context(), tenant)
	if err != nil {
		t.Fatalf("Agents(%s): %v", tenant, err)
	}
	if got == nil || !maps.Equal(got, want) {
		t.Fatalf("Agents(%s) = %v, want %v", tenant, got, want)
	}
}

// agentsAre reports whether tenant's agents are want now; for waitFor and
// holdsFor.
func agentsAre(t *testing.T, p live.Presence, tenant conv.TenantID, want agents) func() (bool, error) {
	return func() (bool, error) {
		got, err := p.Agents(t.Context(), tenant)
		return maps.Equal(got, want), err
	}
}

// Agents lists every agent with a live session, whichever node set it, and
// only the tenant's.
func testPresenceSet(t *testing.T, a, b live.Presence) {
	wantAgents(t, a, tenant1, agents{})
	set(t, a, tenant1, agent1, "s1", live.Online, time.Minute)
	set(t, b, tenant1, agent2, "s1", live.Away, time.Minute)
	set(t, b, tenant2, agent12, "s1", live.Online, time.Minute)
	wantAgents(t, b, tenant1, agents{agent1: live.Online, agent2: live.Away})
	wantAgents(t, a, tenant2, agents{agent12: live.Online})
	// A second Set of a session replaces its status rather than adding one.
	set(t, b, tenant1, agent1, "s1", live.Away, time.Minute)
	wantAgents(t, a, tenant1, agents{agent1: live.Away, agent2: live.Away})
}

// An agent's best session decides: online beats away beats offline.
func testPresenceBest(t *testing.T, a, b live.Presence) {
	steps := []struct {
		node    live.Presence
		session string
		status  live.Status
		want    live.Status
	}{
		{a, "phone", live.Offline, live.Offline},
		{b, "laptop", live.Away, live.Away},
		{a, "phone", live.Offline, live.Away},
		{b, "desk", live.Online, live.Online},
		{a, "laptop", live.Away, live.Online},
		{a, "desk", live.Away, live.Away},
		{b, "laptop", live.Offline, live.Away},
		{b, "desk", live.Offline, live.Offline},
		{a, "phone", live.Online, live.Online},
	}
	for i, st := range steps {
		set(t, st.node, tenant1, agent1, st.session, st.status, time.Minute)
		got, err := b.Agents(t.Context(), tenant1)
		if err != nil || got[agent1] != st.want || len(got) != 1 {
			t.Fatalf("step %d (%s %s): Agents = %v, %v; want {%s: %s}", i, st.session, st.status, got, err, agent1, st.want)
		}
	}
}

// Remove ends one session at once; the agent leaves with its last one.
func testPresenceRemove(t *testing.T, a, b live.Presence) {
	remove(t, a, tenant1, agent1, "never-set")
	set(t, a, tenant1, agent1, "s1", live.Online, time.Minute)
	set(t, a, tenant1, agent1, "s2", live.Away, time.Minute)
	set(t, b, tenant1, agent2, "s1", live.Online, time.Minute)
	set(t, b, tenant2, agent1, "s1", live.Online, time.Minute)
	remove(t, b, tenant1, agent1, "s1")
	wantAgents(t, a, tenant1, agents{agent1: live.Away, agent2: live.Online})
	remove(t, a, tenant1, agent1, "s2")
	wantAgents(t, b, tenant1, agents{agent2: live.Online})
	wantAgents(t, b, tenant2, agents{agent1: live.Online})
	remove(t, a, tenant1, agent1, "s2")
	wantAgents(t, a, tenant1, agents{agent2: live.Online})
}

// A session that is not refreshed lapses on its own; the others stay.
func testPresenceLapse(t *testing.T, a, b live.Presence) {
	const short = 100 * time.Millisecond
	set(t, a, tenant1, agent1, "s1", live.Online, short)
	set(t, b, tenant1, agent1, "s2", live.Away, time.Minute)
	set(t, a, tenant1, agent2, "s1", live.Online, short)
	set(t, b, tenant2, agent1, "s1", live.Online, time.Minute)
	waitFor(t, pollTimeout, "short sessions lapse", agentsAre(t, b, tenant1, agents{agent1: live.Away}))
	wantAgents(t, a, tenant2, agents{agent1: live.Online})
	// A lapsed session comes back with the next Set.
	set(t, a, tenant1, agent2, "s1", live.Away, time.Minute)
	wantAgents(t, b, tenant1, agents{agent1: live.Away, agent2: live.Away})
}

// A refresh with a long ttl outlives the short ttl of the first Set.
func testPresenceRenewalExtends(t *testing.T, a, b live.Presence) {
	const short = 100 * time.Millisecond
	set(t, a, tenant1, agent1, "s1", live.Online, short)
	set(t, b, tenant1, agent1, "s1", live.Online, time.Minute)
	holdsFor(t, 4*short, "refreshed session stays", agentsAre(t, a, tenant1, agents{agent1: live.Online}))
}

// Set sets the expiry to now+ttl even when that is sooner.
func testPresenceRenewalResets(t *testing.T, a, b live.Presence) {
	set(t, a, tenant1, agent1, "s1", live.Online, time.Hour)
	set(t, b, tenant1, agent1, "s1", live.Online, 50*time.Millisecond)
	waitFor(t, pollTimeout, "session lapses after the shortened ttl", agentsAre(t, a, tenant1, agents{}))
}

func testPresenceInvalid(t *testing.T, p, _ live.Presence) {
	ctx := t.Context()
	tests := []struct {
		name      string
		tenant    conv.TenantID
		agent     conv.AgentID
		session   string
		status    live.Status
		ttl       time.Duration
		badRemove bool // Remove takes no status or ttl
	}{
		{"zero tenant", 0, agent1, "s", live.Online, time.Minute, true},
		{"zero agent", tenant1, 0, "s", live.Online, time.Minute, true},
		{"empty session", tenant1, agent1, "", live.Online, time.Minute, true},
		{"session too long", tenant1, agent1, long(maxSessionLen + 1), live.Online, time.Minute, true},
		{"empty status", tenant1, agent1, "s", "", time.Minute, false},
		{"unknown status", tenant1, agent1, "s", "busy", time.Minute, false},
		{"zero ttl", tenant1, agent1, "s", live.Online, 0, false},
		{"sub-millisecond ttl", tenant1, agent1, "s", live.Online, 999 * time.Microsecond, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := p.Set(ctx, tt.tenant, tt.agent, tt.session, tt.status, tt.ttl); !errors.Is(err, conv.ErrInvalid) {
				t.Fatalf("Set = %v, want ErrInvalid", err)
			}
			if err := p.Remove(ctx, tt.tenant, tt.agent, tt.session); tt.badRemove != errors.Is(err, conv.ErrInvalid) {
				t.Fatalf("Remove = %v, want ErrInvalid: %v", err, tt.badRemove)
			}
		})
	}
	if got, err := p.Agents(ctx, 0); !errors.Is(err, conv.ErrInvalid) || got != nil {
		t.Fatalf("Agents(0) = %v, %v; want nil, ErrInvalid", got, err)
	}
	wantAgents(t, p, tenant1, agents{})
	// The longest valid session is accepted.
	set(t, p, tenant1, agent1, long(maxSessionLen), live.Online, time.Minute)
	wantAgents(t, p, tenant1, agents{agent1: live.Online})
}
