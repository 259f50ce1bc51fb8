package memory

import (
	"testing"
	"time"
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
