package statetest_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/store/statetest"
)

// mutationEnv names the broken variant TestBrokenSubject runs the suite on.
const mutationEnv = "STATETEST_MUTATION"

// A suite that passes a broken implementation proves nothing. Each case
// runs the whole suite, in a child process because a failing *testing.T
// cannot be caught in-process, against a small fake with one bug, and
// checks that the subtest meant to catch that bug fails. The unbroken fake
// must pass, so the failures are the bugs' doing.
func TestSuiteCatchesBrokenImplementations(t *testing.T) {
	tests := []struct {
		mutation string
		failIn   string // "" for must pass
	}{
		{"none", ""},
		{"lease-shared", "Leases/Exclusive"},
		{"lease-shared", "Leases/ConcurrentAcquire"},
		{"lease-norenew", "Leases/RenewalExtends"},
		{"lease-noexpire", "Leases/ExpiryHandsOver"},
		{"lease-releaseany", "Leases/ReleaseOnlyByHolder"},
		{"lease-novalidate", "Leases/Invalid"},
		{"limit-offbyone", "Limiter/ExactlyLimitUnderConcurrency"},
		{"limit-noreset", "Limiter/AllowsAgainAfterWindow"},
		{"limit-zeroretry", "Limiter/KeysIndependent"},
		{"limit-novalidate", "Limiter/Invalid"},
		{"limit-fixed", "Sliding/slides_one_attempt_at_a_time"},
		{"limit-countdenied", "Sliding/denied_attempts_are_not_counted"},
	}
	// One child per mutation; several cases may read the same output.
	var (
		mu   sync.Mutex
		runs = map[string]func() (string, error){}
	)
	for _, tt := range tests {
		mu.Lock()
		if runs[tt.mutation] == nil {
			runs[tt.mutation] = sync.OnceValues(func() (string, error) {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestBrokenSubject$", "-test.v", "-test.count=1")
				cmd.Env = append(os.Environ(), mutationEnv+"="+tt.mutation)
				out, err := cmd.CombinedOutput()
				return string(out), err
			})
		}
		run := runs[tt.mutation]
		mu.Unlock()
		name := tt.failIn
		if name == "" {
			name = "passes"
		}
		t.Run(tt.mutation+"/"+name, func(t *testing.T) {
			t.Parallel()
			out, err := run()
			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				t.Fatalf("running the child: %v", err)
			}
			if tt.failIn == "" {
				if err != nil {
					t.Fatalf("the unbroken fake fails the suite:\n%s", out)
				}
				return
			}
			if err == nil {
				t.Fatalf("the suite passes an implementation with bug %q", tt.mutation)
			}
			if want := "--- FAIL: TestBrokenSubject/" + tt.failIn + " "; !strings.Contains(out, want) {
				t.Fatalf("bug %q: %s did not fail; output:\n%s", tt.mutation, tt.failIn, out)
			}
		})
	}
}

// TestBrokenSubject is the child process of the test above; it does
// nothing when run directly.
func TestBrokenSubject(t *testing.T) {
	mutation := os.Getenv(mutationEnv)
	if mutation == "" {
		return
	}
	t.Run("Leases", func(t *testing.T) {
		statetest.RunLeases(t, func(t *testing.T) statetest.Leases {
			return &fakeLeases{mutation: mutation, m: map[string]fakeLease{}}
		})
	})
	t.Run("Limiter", func(t *testing.T) {
		statetest.RunLimiter(t, func(t *testing.T) statetest.Limiter {
			return &fakeLimiter{mutation: mutation, now: time.Now, m: map[string]*fakeLog{}}
		})
	})
	t.Run("Sliding", func(t *testing.T) {
		statetest.RunLimiterSliding(t, func(t *testing.T, now func() time.Time) statetest.Limiter {
			return &fakeLimiter{mutation: mutation, now: now, m: map[string]*fakeLog{}}
		})
	})
}

// fakeLeases is a correct lease table unless mutation names a bug.
type fakeLeases struct {
	mutation string
	mu       sync.Mutex
	m        map[string]fakeLease
}

type fakeLease struct {
	holder  string
	expires time.Time
}

func (f *fakeLeases) check(key, holder string) error {
	if f.mutation != "lease-novalidate" && (key == "" || len(key) > 1024 || holder == "" || len(holder) > 256) {
		return conv.ErrInvalid
	}
	return nil
}

func (f *fakeLeases) Acquire(ctx context.Context, key, holder string, ttl time.Duration) (bool, error) {
	if err := f.check(key, holder); err != nil {
		return false, err
	}
	if f.mutation != "lease-novalidate" && ttl < time.Millisecond {
		return false, conv.ErrInvalid
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	cur, ok := f.m[key]
	live := ok && (now.Before(cur.expires) || f.mutation == "lease-noexpire")
	switch {
	case live && cur.holder != holder && f.mutation != "lease-shared":
		return false, nil
	case live && cur.holder == holder && f.mutation == "lease-norenew":
		return true, nil
	}
	f.m[key] = fakeLease{holder: holder, expires: now.Add(ttl)}
	return true, nil
}

func (f *fakeLeases) Release(ctx context.Context, key, holder string) error {
	if err := f.check(key, holder); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if cur, ok := f.m[key]; ok && (cur.holder == holder || f.mutation == "lease-releaseany") {
		delete(f.m, key)
	}
	return nil
}

// fakeLimiter is a correct sliding-window log unless mutation names a bug.
type fakeLimiter struct {
	mutation string
	now      func() time.Time
	mu       sync.Mutex
	m        map[string]*fakeLog
}

type fakeLog struct {
	times []time.Time
	start time.Time // limit-fixed: the fixed window's start
	count int       // limit-fixed: attempts in it
}

func (f *fakeLimiter) Allow(ctx context.Context, key string, limit int, window time.Duration) (bool, time.Duration, error) {
	if f.mutation != "limit-novalidate" && (key == "" || len(key) > 1024 || limit < 1 || limit > 10000 || window < time.Millisecond) {
		return false, 0, conv.ErrInvalid
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	l := f.m[key]
	if l == nil {
		l = &fakeLog{start: now}
		f.m[key] = l
	}
	if f.mutation == "limit-fixed" {
		if now.Sub(l.start) >= window {
			l.start, l.count = now, 0
		}
		if l.count >= limit {
			return false, l.start.Add(window).Sub(now), nil
		}
		l.count++
		return true, 0, nil
	}
	if f.mutation != "limit-noreset" {
		kept := l.times[:0]
		for _, s := range l.times {
			if now.Sub(s) < window {
				kept = append(kept, s)
			}
		}
		l.times = kept
	}
	n := len(l.times)
	if f.mutation == "limit-offbyone" {
		n--
	}
	if n >= limit {
		if f.mutation == "limit-countdenied" {
			l.times = append(l.times, now)
		}
		if f.mutation == "limit-zeroretry" {
			return false, 0, nil
		}
		sort.Slice(l.times, func(i, j int) bool { return l.times[i].Before(l.times[j]) })
		return false, l.times[len(l.times)-limit].Add(window).Sub(now), nil
	}
	l.times = append(l.times, now)
	return true, 0, nil
}
