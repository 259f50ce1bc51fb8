package statetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// RunLimiter runs the limiter suite in real time. newLimiter is called once
// per subtest and must return an instance whose keys no other test sees.
func RunLimiter(t *testing.T, newLimiter func(t *testing.T) Limiter) {
	tests := []struct {
		name string
		fn   func(*testing.T, Limiter)
	}{
		{"ExactlyLimitUnderConcurrency", testLimitConcurrent},
		{"AllowsAgainAfterWindow", testLimitWindowPasses},
		{"KeysIndependent", testLimitKeys},
		{"Invalid", testLimitInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newLimiter(t))
		})
	}
}

func allow(t *testing.T, l Limiter, key string, limit int, window time.Duration) (bool, time.Duration) {
	t.Helper()
	ok, retry, err := l.Allow(t.Context(), key, limit, window)
	if err != nil {
		t.Fatalf("Allow(%q, %d, %s): %v", key, limit, window, err)
	}
	if ok && retry != 0 {
		t.Fatalf("Allow(%q, %d, %s) allowed with retryAfter %s, want 0", key, limit, window, retry)
	}
	if !ok && (retry <= 0 || retry > window) {
		t.Fatalf("Allow(%q, %d, %s) denied with retryAfter %s, want in (0, %s]", key, limit, window, retry, window)
	}
	return ok, retry
}

func testLimitConcurrent(t *testing.T, l Limiter) {
	const (
		callers = 50
		limit   = 10
		window  = time.Minute
	)
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		mu      sync.Mutex
		allowed int
		errs    []error
	)
	for range callers {
		wg.Go(func() {
			<-start
			ok, retry, err := l.Allow(t.Context(), "login:acct:1:a@example.com", limit, window)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs = append(errs, err)
			case ok && retry != 0:
				errs = append(errs, errors.New("allowed with a retryAfter"))
			case !ok && (retry <= 0 || retry > window):
				errs = append(errs, errors.New("denied with retryAfter "+retry.String()))
			case ok:
				allowed++
			}
		})
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d bad answers, first: %v", len(errs), errs[0])
	}
	if allowed != limit {
		t.Fatalf("%d of %d concurrent attempts allowed, want exactly %d", allowed, callers, limit)
	}
	if ok, _ := allow(t, l, "login:acct:1:a@example.com", limit, window); ok {
		t.Fatal("attempt after the burst allowed, want denied")
	}
}

func testLimitWindowPasses(t *testing.T, l Limiter) {
	const (
		limit  = 3
		window = 300 * time.Millisecond
	)
	start := time.Now()
	for i := range limit {
		if ok, _ := allow(t, l, "k", limit, window); !ok {
			t.Fatalf("attempt %d denied, want allowed", i+1)
		}
	}
	if ok, _ := allow(t, l, "k", limit, window); ok {
		t.Fatalf("attempt %d allowed, want denied", limit+1)
	}
	waitFor(t, pollTimeout, "allowed again after the window", func() (bool, error) {
		ok, _ := allow(t, l, "k", limit, window)
		return ok, nil
	})
	// The first attempt was recorded after start, so the window cannot have
	// passed before start+window. The slack covers a Redis server clock read
	// with gettimeofday against Go's monotonic clock.
	if elapsed := time.Since(start); elapsed < window-5*time.Millisecond {
		t.Fatalf("allowed again after %s, before the %s window passed", elapsed, window)
	}
}

func testLimitKeys(t *testing.T, l Limiter) {
	const window = time.Minute
	for range 2 {
		allow(t, l, "login:addr:10.0.0.1", 2, window)
	}
	if ok, _ := allow(t, l, "login:addr:10.0.0.1", 2, window); ok {
		t.Fatal("third attempt for 10.0.0.1 allowed, want denied")
	}
	if ok, _ := allow(t, l, "login:addr:10.0.0.2", 2, window); !ok {
		t.Fatal("first attempt for 10.0.0.2 denied: keys are not independent")
	}
}

func testLimitInvalid(t *testing.T, l Limiter) {
	tests := []struct {
		name   string
		key    string
		limit  int
		window time.Duration
	}{
		{"empty key", "", 1, time.Minute},
		{"key too long", long(maxKeyLen + 1), 1, time.Minute},
		{"zero limit", "k", 0, time.Minute},
		{"negative limit", "k", -1, time.Minute},
		{"limit too high", "k", maxLimit + 1, time.Minute},
		{"zero window", "k", 1, 0},
		{"sub-millisecond window", "k", 1, 999 * time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, retry, err := l.Allow(t.Context(), tt.key, tt.limit, tt.window)
			if !errors.Is(err, conv.ErrInvalid) || ok || retry != 0 {
				t.Fatalf("Allow = %v, %s, %v; want false, 0, ErrInvalid", ok, retry, err)
			}
		})
	}
	if ok, _ := allow(t, l, long(maxKeyLen), maxLimit, time.Millisecond); !ok {
		t.Fatal("largest valid key and limit denied")
	}
}

// Clock is a fake clock for RunLimiterSliding; safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// Now returns the fake time; pass c.Now to the implementation.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the fake time to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// RunLimiterSliding pins the sliding-window arithmetic with a fake clock.
// newLimiter must return an instance that reads time only from now.
// Expiry of storage (a Redis key TTL) may stay on the real clock: the suite
// finishes long before any window it uses passes in real time.
func RunLimiterSliding(t *testing.T, newLimiter func(t *testing.T, now func() time.Time) Limiter) {
	type step struct {
		at        time.Duration // since the scenario's start
		limit     int
		allowed   bool
		retryWant time.Duration
	}
	const s = time.Second
	scenarios := []struct {
		name   string
		window time.Duration
		steps  []step
	}{
		{"slides one attempt at a time", time.Minute, []step{
			{0, 3, true, 0},
			{20 * s, 3, true, 0},
			{40 * s, 3, true, 0},
			{50 * s, 3, false, 10 * s},
			{60*s - time.Millisecond, 3, false, time.Millisecond},
			// The attempt at 0 leaves the window at exactly 60s.
			{60 * s, 3, true, 0},
			// A fixed window restarting at 60s would allow this one.
			{61 * s, 3, false, 19 * s},
			{80 * s, 3, true, 0},
			{100 * s, 3, true, 0},
			{100 * s, 3, false, 20 * s},
		}},
		{"denied attempts are not counted", 10 * s, []step{
			{0, 1, true, 0},
			{1 * s, 1, false, 9 * s},
			{5 * s, 1, false, 5 * s},
			{9 * s, 1, false, 1 * s},
			{10 * s, 1, true, 0},
			{10 * s, 1, false, 10 * s},
		}},
		{"lowered limit waits for enough attempts to leave", time.Minute, []step{
			{0, 5, true, 0},
			{1 * s, 5, true, 0},
			{2 * s, 5, true, 0},
			// Three in the window, limit 2: two must leave, the second at 61s.
			{3 * s, 2, false, 58 * s},
			{61 * s, 2, true, 0},
			{62 * s, 2, true, 0},
			{62 * s, 2, false, 59 * s},
		}},
		{"raised limit allows more at once", time.Minute, []step{
			{0, 1, true, 0},
			{1 * s, 1, false, 59 * s},
			{1 * s, 2, true, 0},
			{1 * s, 2, false, 59 * s},
		}},
		{"sub-second precision", 1500 * time.Millisecond, []step{
			{0, 2, true, 0},
			{250 * time.Microsecond, 2, true, 0},
			{time.Second, 2, false, 500 * time.Millisecond},
			{1500 * time.Millisecond, 2, true, 0},
			{1500 * time.Millisecond, 2, false, 250 * time.Microsecond},
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			base := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
			clock := &Clock{now: base}
			l := newLimiter(t, clock.Now)
			for i, st := range sc.steps {
				clock.Set(base.Add(st.at))
				ok, retry, err := l.Allow(t.Context(), "k", st.limit, sc.window)
				if err != nil {
					t.Fatalf("step %d (at %s): %v", i, st.at, err)
				}
				if ok != st.allowed || retry != st.retryWant {
					t.Fatalf("step %d (at %s, limit %d): Allow = %v, %s; want %v, %s",
						i, st.at, st.limit, ok, retry, st.allowed, st.retryWant)
				}
			}
		})
	}
}
