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
	"github.com/switchboard-hq/switchboard/core/live"
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
		{"tl-gap", "Timelines/GaplessCursors"},
		{"tl-nodedup", "Timelines/Dedup"},
		{"tl-racy", "Timelines/ConcurrentAppends"},
		{"tl-nolimit", "Timelines/SinceWindow"},
		{"tl-noexpire", "Timelines/TrimExpiresCursor"},
		{"tl-expireoffbyone", "Timelines/TrimExpiresCursor"},
		{"tl-keeptrimmedkeys", "Timelines/TrimExpiresCursor"},
		{"tl-ahead", "Timelines/CursorAheadOfHead"},
		{"tl-shared", "Timelines/Isolation"},
		{"tl-noretention", "Timelines/RetentionLapse"},
		{"tl-resethead", "Timelines/RetentionLapse"},
		{"tl-novalidate", "Timelines/Invalid"},
		{"fo-onesub", "Fanout/DeliversToEverySubscriber"},
		{"fo-lazy", "Fanout/PublishRightAfterSubscribe"},
		{"fo-noclose", "Fanout/CloseStopsDelivery"},
		{"fo-broadcast", "Fanout/TopicIsolation"},
		{"fo-block", "Fanout/SlowSubscriberDoesNotBlock"},
		{"fo-unbounded", "Fanout/SlowSubscriberDoesNotBlock"},
		{"fo-novalidate", "Fanout/Invalid"},
		{"pr-shared", "Presence/SetAndAgents"},
		{"pr-last", "Presence/BestStatus"},
		{"pr-noremove", "Presence/Remove"},
		{"pr-noexpire", "Presence/SessionsLapse"},
		{"pr-norenew", "Presence/RenewalExtends"},
		{"pr-keeplater", "Presence/RenewalResets"},
		{"pr-novalidate", "Presence/Invalid"},
	}
	// One child per mutation; several cases may read the same output.
	// Most children spend their time waiting for a condition that the bug
	// keeps false until a poll times out, so they start up front, six at a
	// time, rather than two at a time as parallel subtests would. The
	// cleanup, which runs after every subtest, kills the children no
	// subtest wanted (under -run) and waits for all of them.
	var (
		runs = map[string]func() (string, error){}
		sem  = make(chan struct{}, 6)
		wg   sync.WaitGroup
	)
	stop, cancelAll := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancelAll()
		wg.Wait()
	})
	for _, tt := range tests {
		if runs[tt.mutation] != nil {
			continue
		}
		run := sync.OnceValues(func() (string, error) {
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(stop, 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestBrokenSubject$", "-test.v", "-test.count=1",
				"-test.parallel=8")
			cmd.Env = append(os.Environ(), mutationEnv+"="+tt.mutation)
			out, err := cmd.CombinedOutput()
			return string(out), err
		})
		runs[tt.mutation] = run
		wg.Go(func() { run() })
	}
	for _, tt := range tests {
		run := runs[tt.mutation]
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
	// A bug is in one fake; only the suites over that fake run, except
	// for "none", which runs them all.
	group := func(prefix string) bool { return mutation == "none" || strings.HasPrefix(mutation, prefix) }
	if group("lease-") {
		t.Run("Leases", func(t *testing.T) {
			statetest.RunLeases(t, func(t *testing.T) statetest.Leases {
				return &fakeLeases{mutation: mutation, m: map[string]fakeLease{}}
			})
		})
	}
	if group("limit-") {
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
	if group("tl-") {
		t.Run("Timelines", func(t *testing.T) {
			statetest.RunTimelines(t, func(t *testing.T, cfg statetest.TimelinesConfig) (live.Timelines, live.Timelines) {
				f := &fakeTimelines{mutation: mutation, cfg: cfg, lines: map[[2]int64]*fakeLine{}}
				return f, f
			})
		})
	}
	if group("fo-") {
		t.Run("Fanout", func(t *testing.T) {
			statetest.RunFanout(t, func(t *testing.T) (live.Fanout, live.Fanout) {
				f := &fakeFanout{mutation: mutation, subs: map[*fakeSub]struct{}{}}
				return f, f
			})
		})
	}
	if group("pr-") {
		t.Run("Presence", func(t *testing.T) {
			statetest.RunPresence(t, func(t *testing.T) (live.Presence, live.Presence) {
				f := &fakePresence{mutation: mutation, m: map[fakeSessionKey]fakeSession{}}
				return f, f
			})
		})
	}
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
