package statetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// RunLeases runs the lease suite. newLeases is called once per subtest and
// must return an instance whose keys no other test sees (a fresh map, or a
// Redis prefix unique to the test); it cleans up with t.Cleanup.
func RunLeases(t *testing.T, newLeases func(t *testing.T) Leases) {
	tests := []struct {
		name string
		fn   func(*testing.T, Leases)
	}{
		{"Exclusive", testLeaseExclusive},
		{"RenewalExtends", testLeaseRenewalExtends},
		{"RenewalResetsExpiry", testLeaseRenewalResets},
		{"ExpiryHandsOver", testLeaseExpiry},
		{"ReleaseOnlyByHolder", testLeaseRelease},
		{"ConcurrentAcquire", testLeaseConcurrent},
		{"Invalid", testLeaseInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newLeases(t))
		})
	}
}

func mustAcquire(t *testing.T, l Leases, key, holder string, ttl time.Duration, want bool) {
	t.Helper()
	got, err := l.Acquire(t.Context(), key, holder, ttl)
	if err != nil {
		t.Fatalf("Acquire(%q, %q, %s): %v", key, holder, ttl, err)
	}
	if got != want {
		t.Fatalf("Acquire(%q, %q, %s) = %v, want %v", key, holder, ttl, got, want)
	}
}

func mustRelease(t *testing.T, l Leases, key, holder string) {
	t.Helper()
	if err := l.Release(t.Context(), key, holder); err != nil {
		t.Fatalf("Release(%q, %q): %v", key, holder, err)
	}
}

// acquires reports whether holder gets key now; for waitFor and holdsFor.
func acquires(t *testing.T, l Leases, key, holder string, ttl time.Duration) func() (bool, error) {
	return func() (bool, error) { return l.Acquire(t.Context(), key, holder, ttl) }
}

func refused(t *testing.T, l Leases, key, holder string, ttl time.Duration) func() (bool, error) {
	return func() (bool, error) {
		ok, err := l.Acquire(t.Context(), key, holder, ttl)
		return !ok, err
	}
}

func testLeaseExclusive(t *testing.T, l Leases) {
	mustAcquire(t, l, "resend", "node-a", time.Minute, true)
	mustAcquire(t, l, "resend", "node-b", time.Minute, false)
	mustAcquire(t, l, "resend", "node-a", time.Minute, true) // renewal
	mustAcquire(t, l, "resend", "node-b", time.Minute, false)
	// Keys are independent; a tenant's key does not block another's.
	mustAcquire(t, l, "t1:imap:1", "node-b", time.Minute, true)
	mustAcquire(t, l, "t2:imap:1", "node-a", time.Minute, true)
	mustAcquire(t, l, "t1:imap:1", "node-a", time.Minute, false)
}

// A renewal with a long ttl outlives the short ttl of the first acquire.
func testLeaseRenewalExtends(t *testing.T, l Leases) {
	const short = 100 * time.Millisecond
	mustAcquire(t, l, "k", "node-a", short, true)
	mustAcquire(t, l, "k", "node-a", time.Minute, true)
	// Without the extension node-b would win from 100ms on.
	holdsFor(t, 4*short, "node-b refused after node-a renewed", refused(t, l, "k", "node-b", time.Minute))
}

// A renewal sets the expiry to now+ttl even when that is sooner: the holder
// says how long it wants the lease, not how long it wants at least.
func testLeaseRenewalResets(t *testing.T, l Leases) {
	mustAcquire(t, l, "k", "node-a", time.Hour, true)
	mustAcquire(t, l, "k", "node-a", 50*time.Millisecond, true)
	waitFor(t, pollTimeout, "node-b acquires after the shortened lease expires", acquires(t, l, "k", "node-b", time.Minute))
}

func testLeaseExpiry(t *testing.T, l Leases) {
	mustAcquire(t, l, "k", "node-a", 50*time.Millisecond, true)
	waitFor(t, pollTimeout, "node-b acquires after node-a's lease expires", acquires(t, l, "k", "node-b", time.Minute))
	// node-a lost it: it cannot renew, and its Release does not free node-b's lease.
	mustAcquire(t, l, "k", "node-a", time.Minute, false)
	mustRelease(t, l, "k", "node-a")
	mustAcquire(t, l, "k", "node-c", time.Minute, false)
	mustAcquire(t, l, "k", "node-b", time.Minute, true)
}

func testLeaseRelease(t *testing.T, l Leases) {
	mustRelease(t, l, "never-held", "node-a")
	mustAcquire(t, l, "k", "node-a", time.Minute, true)
	mustRelease(t, l, "k", "node-b")
	mustAcquire(t, l, "k", "node-c", time.Minute, false)
	mustRelease(t, l, "k", "node-a")
	mustAcquire(t, l, "k", "node-c", time.Minute, true)
	// node-a released; releasing again must not free node-c's lease.
	mustRelease(t, l, "k", "node-a")
	mustAcquire(t, l, "k", "node-d", time.Minute, false)
	mustAcquire(t, l, "k", "node-c", time.Minute, true)
}

func testLeaseConcurrent(t *testing.T, l Leases) {
	const acquirers = 20
	for round := range 5 {
		key := fmt.Sprintf("race-%d", round)
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			mu      sync.Mutex
			winners []string
			errs    []error
		)
		for i := range acquirers {
			holder := fmt.Sprintf("node-%d", i)
			wg.Go(func() {
				<-start
				ok, err := l.Acquire(t.Context(), key, holder, time.Minute)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				if ok {
					winners = append(winners, holder)
				}
			})
		}
		close(start)
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("round %d: %d Acquire errors, first: %v", round, len(errs), errs[0])
		}
		if len(winners) != 1 {
			t.Fatalf("round %d: %d winners %v, want exactly 1", round, len(winners), winners)
		}
		// The winner holds it; every loser is still refused.
		mustAcquire(t, l, key, winners[0], time.Minute, true)
		for i := range acquirers {
			if h := fmt.Sprintf("node-%d", i); h != winners[0] {
				mustAcquire(t, l, key, h, time.Minute, false)
			}
		}
	}
}

func testLeaseInvalid(t *testing.T, l Leases) {
	tests := []struct {
		name, key, holder string
		ttl               time.Duration
		badTTL            bool // Release takes no ttl, so it accepts these
	}{
		{"empty key", "", "node-a", time.Minute, false},
		{"empty holder", "k", "", time.Minute, false},
		{"key too long", long(maxKeyLen + 1), "node-a", time.Minute, false},
		{"holder too long", "k", long(maxHolderLen + 1), time.Minute, false},
		{"zero ttl", "k", "node-a", 0, true},
		{"negative ttl", "k", "node-a", -time.Second, true},
		{"sub-millisecond ttl", "k", "node-a", 999 * time.Microsecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := l.Acquire(t.Context(), tt.key, tt.holder, tt.ttl)
			if !errors.Is(err, conv.ErrInvalid) || ok {
				t.Fatalf("Acquire = %v, %v; want false, ErrInvalid", ok, err)
			}
			if !tt.badTTL {
				if err := l.Release(t.Context(), tt.key, tt.holder); !errors.Is(err, conv.ErrInvalid) {
					t.Fatalf("Release = %v; want ErrInvalid", err)
				}
			}
		})
	}
	// The largest valid key and holder are accepted.
	mustAcquire(t, l, long(maxKeyLen), long(maxHolderLen), time.Millisecond, true)
}
