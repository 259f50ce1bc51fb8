package statetest

import (
	"context"
	"strings"
	"testing"
	"time"
)

// Leases elects a single runner per key across nodes ("only one node re-sends
// lost outbound messages"). Holders must be unique per process (node id plus
// something random), because a holder that restarts with the same name would
// silently inherit its previous lease.
type Leases interface {
	// Acquire returns true if holder now holds key for ttl: a fresh acquire,
	// or a renewal by the current holder, which resets the expiry to
	// now+ttl. It returns false, nil while another holder's lease is live.
	// Empty key or holder, a key over 1024 bytes, a holder over 256 bytes or
	// a ttl under a millisecond are conv.ErrInvalid.
	Acquire(ctx context.Context, key, holder string, ttl time.Duration) (bool, error)
	// Release ends holder's lease on key at once. Releasing a lease one does
	// not hold (expired, taken over, never held) is a no-op returning nil,
	// so a node shutting down need not know what it lost.
	Release(ctx context.Context, key, holder string) error
}

// Limiter caps attempts per key with a sliding-window log: an attempt is
// allowed while fewer than limit allowed attempts happened in the last
// window. Denied attempts are not recorded, so hammering does not extend the
// lockout.
type Limiter interface {
	// Allow records and allows one attempt, or denies it and says how long
	// until one would be allowed (retryAfter > 0 exactly when denied). Empty
	// key, a key over 1024 bytes, limit < 1 or > 10000, or a window under a
	// millisecond are conv.ErrInvalid.
	Allow(ctx context.Context, key string, limit int, window time.Duration) (allowed bool, retryAfter time.Duration, err error)
}

// Bounds every implementation enforces (see the interface docs).
const (
	maxKeyLen    = 1024
	maxHolderLen = 256
	maxLimit     = 10000
	// maxEventLen bounds a timeline event and a fan-out payload; topics
	// and timeline keys share maxKeyLen.
	maxEventLen   = 1 << 20
	maxSessionLen = 256
)

// pollTimeout bounds every wait for a condition. Generous, because -race on
// a loaded two-core machine can stall a goroutine for a long time; a correct
// implementation meets the condition within a few TTLs.
const pollTimeout = 5 * time.Second

// waitFor polls cond until it reports true, failing t after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still false after %s", what, timeout)
		}
		<-tick.C
	}
}

// holdsFor polls cond for at least d and fails t the first time it is false.
// It observes a property over time; it does not wait for anything to happen.
func holdsFor(t *testing.T, d time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	end := time.Now().Add(d)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !ok {
			t.Fatalf("%s: became false", what)
		}
		if time.Now().After(end) {
			return
		}
		<-tick.C
	}
}

func long(n int) string { return strings.Repeat("k", n) }
