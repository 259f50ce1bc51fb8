package memory_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/auth"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/live"
	"github.com/switchboard-hq/switchboard/store/memory"
	"github.com/switchboard-hq/switchboard/store/statetest"
)

var (
	_ statetest.Leases  = (*memory.Leases)(nil)
	_ statetest.Limiter = (*memory.Limiter)(nil)
	_ auth.Limiter      = (*memory.Limiter)(nil)

	_ live.Timelines    = (*memory.Timelines)(nil)
	_ live.Fanout       = (*memory.Fanout)(nil)
	_ live.Subscription = (*memory.Subscription)(nil)
	_ live.Presence     = (*memory.Presence)(nil)
)

func TestLeasesConformance(t *testing.T) {
	statetest.RunLeases(t, func(t *testing.T) statetest.Leases {
		return memory.NewLeases(memory.Config{})
	})
}

func TestLimiterConformance(t *testing.T) {
	statetest.RunLimiter(t, func(t *testing.T) statetest.Limiter {
		return memory.NewLimiter(memory.Config{})
	})
}

func TestLimiterSliding(t *testing.T) {
	statetest.RunLimiterSliding(t, func(t *testing.T, now func() time.Time) statetest.Limiter {
		return memory.NewLimiter(memory.Config{Now: now})
	})
}

// The lease boundary to the nanosecond, which real time cannot pin.
func TestLeaseExpiryBoundary(t *testing.T) {
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := &statetest.Clock{}
	l := memory.NewLeases(memory.Config{Now: clock.Now})
	steps := []struct {
		name   string
		at     time.Duration
		holder string
		ttl    time.Duration
		want   bool
	}{
		{"a acquires", 0, "a", 10 * time.Second, true},
		{"b refused just before expiry", 10*time.Second - 1, "b", time.Second, false},
		{"a renews just before expiry", 10*time.Second - 1, "a", 10 * time.Second, true},
		{"b refused at the old expiry", 10 * time.Second, "b", time.Second, false},
		{"b refused just before the new expiry", 20*time.Second - 2, "b", time.Second, false},
		{"b acquires at exactly the new expiry", 20*time.Second - 1, "b", time.Second, true},
		{"a refused", 20*time.Second - 1, "a", time.Second, false},
	}
	for _, st := range steps {
		clock.Set(base.Add(st.at))
		got, err := l.Acquire(t.Context(), "k", st.holder, st.ttl)
		if err != nil || got != st.want {
			t.Fatalf("%s: Acquire = %v, %v; want %v", st.name, got, err, st.want)
		}
	}
}

// One node: the suites' two nodes are the same instance.

func TestTimelinesConformance(t *testing.T) {
	statetest.RunTimelines(t, func(t *testing.T, cfg statetest.TimelinesConfig) (live.Timelines, live.Timelines) {
		tl, err := memory.NewTimelines(memory.TimelinesConfig{MaxEntries: cfg.MaxEntries, Retention: cfg.Retention})
		if err != nil {
			t.Fatal(err)
		}
		return tl, tl
	})
}

func TestFanoutConformance(t *testing.T) {
	statetest.RunFanout(t, func(t *testing.T) (live.Fanout, live.Fanout) {
		f := memory.NewFanout()
		return f, f
	})
}

func TestPresenceConformance(t *testing.T) {
	statetest.RunPresence(t, func(t *testing.T) (live.Presence, live.Presence) {
		p := memory.NewPresence(memory.Config{})
		return p, p
	})
}

func TestNewTimelinesConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  memory.TimelinesConfig
		ok   bool
	}{
		{"defaults", memory.TimelinesConfig{}, true},
		{"smallest", memory.TimelinesConfig{MaxEntries: 1, Retention: time.Millisecond}, true},
		{"negative MaxEntries", memory.TimelinesConfig{MaxEntries: -1}, false},
		{"MaxEntries too large", memory.TimelinesConfig{MaxEntries: 100001}, false},
		{"negative Retention", memory.TimelinesConfig{Retention: -time.Hour}, false},
		{"sub-millisecond Retention", memory.TimelinesConfig{Retention: 999 * time.Microsecond}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl, err := memory.NewTimelines(tt.cfg)
			if tt.ok != (err == nil) || tt.ok != (tl != nil) {
				t.Fatalf("NewTimelines = %v, %v; want ok %v", tl, err, tt.ok)
			}
			if !tt.ok && !errors.Is(err, conv.ErrInvalid) {
				t.Fatalf("NewTimelines = %v, want ErrInvalid", err)
			}
		})
	}
}

// Every append restarts the retention; a dedup hit, which appends nothing,
// does not. To the nanosecond, which real time cannot pin.
func TestTimelineRetentionBoundary(t *testing.T) {
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := &statetest.Clock{}
	clock.Set(base)
	tl, err := memory.NewTimelines(memory.TimelinesConfig{Retention: time.Hour, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	appendAt := func(at time.Duration, key string, want int64, wantDup bool) {
		t.Helper()
		clock.Set(base.Add(at))
		c, dup, err := tl.Append(ctx, 1, 1, key, []byte(key))
		if err != nil || c != want || dup != wantDup {
			t.Fatalf("at %s: Append(%s) = %d, %v, %v; want %d, %v", at, key, c, dup, err, want, wantDup)
		}
	}
	sinceAt := func(at time.Duration, want int) {
		t.Helper()
		clock.Set(base.Add(at))
		es, err := tl.Since(ctx, 1, 1, 0, 10)
		switch {
		case want < 0 && !errors.Is(err, live.ErrCursorExpired):
			t.Fatalf("at %s: Since(0) = %d entries, %v; want ErrCursorExpired", at, len(es), err)
		case want >= 0 && (err != nil || len(es) != want):
			t.Fatalf("at %s: Since(0) = %d entries, %v; want %d", at, len(es), err, want)
		}
	}
	appendAt(0, "a", 1, false)
	appendAt(59*time.Minute, "b", 2, false)
	appendAt(90*time.Minute, "a", 1, true) // a dup: no refresh
	sinceAt(119*time.Minute-1, 2)
	sinceAt(119*time.Minute, -1)
	appendAt(119*time.Minute, "a", 3, false)
	sinceAt(119*time.Minute, -1) // 1 and 2 lapsed
	es, err := tl.Since(ctx, 1, 1, 2, 10)
	if err != nil || len(es) != 1 || es[0].Cursor != 3 {
		t.Fatalf("Since(2) after the lapse = %v, %v; want cursor 3", es, err)
	}
}

// A subscriber that does not read keeps the oldest SubscriptionBuffer
// messages; the rest are dropped and counted.
func TestFanoutCountsDrops(t *testing.T) {
	f := memory.NewFanout()
	ctx := t.Context()
	s, err := f.Subscribe(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	reader, err := f.Subscribe(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	const extra = 10
	for i := range memory.SubscriptionBuffer + extra {
		if err := f.Publish(ctx, "t", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		if got := <-reader.C(); string(got) != fmt.Sprint(i) {
			t.Fatalf("reading subscriber got %q, want %d", got, i)
		}
	}
	if got := s.(*memory.Subscription).Dropped(); got != extra {
		t.Fatalf("Subscription.Dropped = %d, want %d", got, extra)
	}
	if got := reader.(*memory.Subscription).Dropped(); got != 0 {
		t.Fatalf("reading subscriber dropped %d", got)
	}
	if got := f.Dropped(); got != extra {
		t.Fatalf("Fanout.Dropped = %d, want %d", got, extra)
	}
	if got := len(s.C()); got != memory.SubscriptionBuffer {
		t.Fatalf("%d buffered, want %d", got, memory.SubscriptionBuffer)
	}
	if got := <-s.C(); string(got) != "0" {
		t.Fatalf("first buffered message = %q, want the oldest, 0", got)
	}
}

// Publish hands each subscriber its own copy.
func TestFanoutCopiesPayload(t *testing.T) {
	f := memory.NewFanout()
	ctx := t.Context()
	a, _ := f.Subscribe(ctx, "t")
	b, _ := f.Subscribe(ctx, "t")
	payload := []byte("note")
	if err := f.Publish(ctx, "t", payload); err != nil {
		t.Fatal(err)
	}
	payload[0] = 'X'
	got := <-a.C()
	got[1] = 'Y'
	if other := <-b.C(); string(got) != "nYte" || string(other) != "note" {
		t.Fatalf("subscribers got %q and %q; want their own copies of note", got, other)
	}
}

// A session is live until its expiry, exclusive, to the nanosecond.
func TestPresenceExpiryBoundary(t *testing.T) {
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := &statetest.Clock{}
	clock.Set(base)
	p := memory.NewPresence(memory.Config{Now: clock.Now})
	ctx := t.Context()
	if err := p.Set(ctx, 1, 1, "s", live.Online, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, st := range []struct {
		at   time.Duration
		live bool
	}{{10*time.Second - 1, true}, {10 * time.Second, false}} {
		clock.Set(base.Add(st.at))
		got, err := p.Agents(ctx, 1)
		if err != nil || (got[1] == live.Online) != st.live || len(got) > 1 {
			t.Fatalf("at %s: Agents = %v, %v; want live %v", st.at, got, err, st.live)
		}
	}
}

// Listening follows the subscriptions of a topic.
func TestFanoutListening(t *testing.T) {
	f := memory.NewFanout()
	if f.Listening("t") {
		t.Fatal("listening before any Subscribe")
	}
	a, _ := f.Subscribe(t.Context(), "t")
	b, _ := f.Subscribe(t.Context(), "t")
	if !f.Listening("t") || f.Listening("u") {
		t.Fatalf("Listening(t) = %v, Listening(u) = %v; want true, false", f.Listening("t"), f.Listening("u"))
	}
	a.Close()
	if !f.Listening("t") {
		t.Fatal("not listening with one subscription left")
	}
	b.Close()
	if f.Listening("t") {
		t.Fatal("listening after every subscription closed")
	}
}
