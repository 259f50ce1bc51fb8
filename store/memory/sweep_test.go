package memory

import (
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/live"
)

type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

// Keys of callers that never come back (one per client address) must not
// stay in memory forever.
func TestSweepDropsStaleKeys(t *testing.T) {
	clock := &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	lim := NewLimiter(Config{Now: clock.Now})
	ls := NewLeases(Config{Now: clock.Now})
	ctx := t.Context()
	for _, key := range []string{"login:addr:10.0.0.1", "login:addr:10.0.0.2"} {
		if ok, _, err := lim.Allow(ctx, key, 5, time.Second); !ok || err != nil {
			t.Fatalf("Allow(%s) = %v, %v", key, ok, err)
		}
		if ok, err := ls.Acquire(ctx, key, "node-a", time.Second); !ok || err != nil {
			t.Fatalf("Acquire(%s) = %v, %v", key, ok, err)
		}
	}
	// A long window keeps its key through the sweep.
	if ok, _, err := lim.Allow(ctx, "login:acct:1:a@example.com", 5, time.Hour); !ok || err != nil {
		t.Fatalf("Allow(long window) = %v, %v", ok, err)
	}
	if ok, err := ls.Acquire(ctx, "imap:1", "node-a", time.Hour); !ok || err != nil {
		t.Fatalf("Acquire(long ttl) = %v, %v", ok, err)
	}

	clock.now = clock.now.Add(sweepEvery - time.Nanosecond)
	lim.Allow(ctx, "other", 5, time.Second)
	ls.Acquire(ctx, "other", "node-a", time.Second)
	if len(lim.logs) != 4 || len(ls.leases) != 4 {
		t.Fatalf("before the sweep interval: %d logs, %d leases; want 4 and 4", len(lim.logs), len(ls.leases))
	}

	clock.now = clock.now.Add(time.Nanosecond)
	lim.Allow(ctx, "other", 5, time.Second)
	ls.Acquire(ctx, "other", "node-a", time.Second)
	for _, key := range []string{"login:addr:10.0.0.1", "login:addr:10.0.0.2"} {
		if _, ok := lim.logs[key]; ok {
			t.Errorf("limiter still holds stale key %s", key)
		}
		if _, ok := ls.leases[key]; ok {
			t.Errorf("leases still hold expired key %s", key)
		}
	}
	if _, ok := lim.logs["login:acct:1:a@example.com"]; !ok {
		t.Error("sweep dropped a key whose attempt is still inside its window")
	}
	if _, ok := ls.leases["imap:1"]; !ok {
		t.Error("sweep dropped a live lease")
	}
}

// Timelines and sessions nobody touches again leave at the next sweep; a
// timeline's head stays, so its cursors are never reused.
func TestSweepDropsLapsedLiveState(t *testing.T) {
	clock := &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	tl, err := NewTimelines(TimelinesConfig{Retention: time.Second, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	p := NewPresence(Config{Now: clock.Now})
	ctx := t.Context()
	for _, agent := range []conv.AgentID{1, 2} {
		if _, _, err := tl.Append(ctx, 1, agent, "k", []byte("e")); err != nil {
			t.Fatal(err)
		}
		if err := p.Set(ctx, conv.TenantID(agent), 1, "s", live.Online, time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Set(ctx, 3, 1, "s", live.Online, time.Hour); err != nil {
		t.Fatal(err)
	}

	clock.now = clock.now.Add(sweepEvery)
	if _, err := tl.Head(ctx, 1, 3); err != nil { // Head does not sweep
		t.Fatal(err)
	}
	if _, _, err := tl.Append(ctx, 2, 1, "k", []byte("e")); err != nil {
		t.Fatal(err)
	}
	if err := p.Remove(ctx, 9, 1, "s"); err != nil { // Remove does not sweep
		t.Fatal(err)
	}
	if err := p.Set(ctx, 4, 1, "s", live.Online, time.Second); err != nil {
		t.Fatal(err)
	}
	for _, agent := range []conv.AgentID{1, 2} {
		line := tl.lines[timelineID{1, agent}]
		if line == nil || line.head != 1 {
			t.Fatalf("timeline of agent %d: %+v; want its head kept", agent, line)
		}
		if line.entries != nil || line.keys != nil {
			t.Errorf("sweep kept the lapsed entries of agent %d", agent)
		}
	}
	for tenant, want := range map[conv.TenantID]bool{1: false, 2: false, 3: true, 4: true} {
		if _, ok := p.tenants[tenant]; ok != want {
			t.Errorf("tenant %d has sessions: %v, want %v", tenant, ok, want)
		}
	}
}
