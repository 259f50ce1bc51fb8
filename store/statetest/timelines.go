package statetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/live"
)

// TimelinesConfig is what RunTimelines asks of an implementation for one
// subtest.
type TimelinesConfig struct {
	// MaxEntries is how many entries each timeline keeps.
	MaxEntries int
	// Retention is how long a timeline without appends keeps its entries
	// (its head survives; see RetentionLapse).
	Retention time.Duration
}

// RunTimelines runs the timeline suite against live.Timelines. newTimelines
// is called once per subtest and returns two handles on one fresh set of
// timelines configured by cfg: two nodes (two Redis clients sharing a prefix
// unique to the test) or, in process, the same instance twice. It cleans up
// with t.Cleanup.
//
// Beyond the doc comments of live.Timelines the suite pins: a cursor newer
// than Head is ErrCursorExpired (the timeline was lost and restarted); the
// head survives retention, so cursors are never reused; zero tenant or
// agent, an empty key or one over 1024 bytes, an event over 1 MiB, a
// negative after or a limit under 1 are conv.ErrInvalid.
func RunTimelines(t *testing.T, newTimelines func(t *testing.T, cfg TimelinesConfig) (live.Timelines, live.Timelines)) {
	roomy := TimelinesConfig{MaxEntries: 1000, Retention: time.Hour}
	tests := []struct {
		name string
		cfg  TimelinesConfig
		fn   func(*testing.T, live.Timelines, live.Timelines)
	}{
		{"GaplessCursors", roomy, testTimelineGapless},
		{"Dedup", roomy, testTimelineDedup},
		{"ConcurrentAppends", roomy, testTimelineConcurrent},
		{"SinceWindow", roomy, testTimelineSince},
		{"TrimExpiresCursor", TimelinesConfig{MaxEntries: 5, Retention: time.Hour}, testTimelineTrim},
		{"CursorAheadOfHead", roomy, testTimelineAhead},
		{"Isolation", roomy, testTimelineIsolation},
		{"RetentionLapse", TimelinesConfig{MaxEntries: 5, Retention: 200 * time.Millisecond}, testTimelineRetention},
		{"Invalid", roomy, testTimelineInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, b := newTimelines(t, tt.cfg)
			tt.fn(t, a, b)
		})
	}
}

// Ids the live suites use. Two of each, so that isolation shows.
const (
	tenant1 conv.TenantID = 1
	tenant2 conv.TenantID = 2
	agent1  conv.AgentID  = 1
	agent2  conv.AgentID  = 2
	// agent12's topic has agent1's as a prefix; a prefix match must miss.
	agent12 conv.AgentID = 12
)

func appendOK(t *testing.T, tl live.Timelines, tenant conv.TenantID, agent conv.AgentID, key, event string) (int64, bool) {
	t.Helper()
	c, dup, err := tl.Append(t.Context(), tenant, agent, key, []byte(event))
	if err != nil {
		t.Fatalf("Append(%s, %s, %q): %v", tenant, agent, key, err)
	}
	return c, dup
}

func mustAppendAt(t *testing.T, tl live.Timelines, tenant conv.TenantID, agent conv.AgentID, key, event string, want int64, wantDup bool) {
	t.Helper()
	c, dup := appendOK(t, tl, tenant, agent, key, event)
	if c != want || dup != wantDup {
		t.Fatalf("Append(%s, %s, %q) = %d, dup %v; want %d, dup %v", tenant, agent, key, c, dup, want, wantDup)
	}
}

func sinceOK(t *testing.T, tl live.Timelines, tenant conv.TenantID, agent conv.AgentID, after int64, limit int) []live.Entry {
	t.Helper()
	es, err := tl.Since(t.Context(), tenant, agent, after, limit)
	if err != nil {
		t.Fatalf("Since(%s, %s, %d, %d): %v", tenant, agent, after, limit, err)
	}
	return es
}

func mustExpire(t *testing.T, tl live.Timelines, tenant conv.TenantID, agent conv.AgentID, after int64) {
	t.Helper()
	es, err := tl.Since(t.Context(), tenant, agent, after, 100)
	if !errors.Is(err, live.ErrCursorExpired) {
		t.Fatalf("Since(%s, %s, %d) = %s, %v; want ErrCursorExpired", tenant, agent, after, cursors(es), err)
	}
	if es != nil {
		t.Fatalf("Since(%s, %s, %d) returned entries %s with ErrCursorExpired", tenant, agent, after, cursors(es))
	}
}

func mustHead(t *testing.T, tl live.Timelines, tenant conv.TenantID, agent conv.AgentID, want int64) {
	t.Helper()
	h, err := tl.Head(t.Context(), tenant, agent)
	if err != nil || h != want {
		t.Fatalf("Head(%s, %s) = %d, %v; want %d", tenant, agent, h, err, want)
	}
}

// wantEntries checks es against want, cursor to event.
func wantEntries(t *testing.T, what string, es []live.Entry, want ...live.Entry) {
	t.Helper()
	if len(es) != len(want) {
		t.Fatalf("%s = %s, want %s", what, cursors(es), cursors(want))
	}
	for i := range es {
		if es[i].Cursor != want[i].Cursor || string(es[i].Event) != string(want[i].Event) {
			t.Fatalf("%s[%d] = {%d %q}, want {%d %q}", what, i, es[i].Cursor, es[i].Event, want[i].Cursor, want[i].Event)
		}
	}
}

func entry(c int64, event string) live.Entry { return live.Entry{Cursor: c, Event: []byte(event)} }

// numbered returns entries from..to whose events are "e<cursor>".
func numbered(from, to int64) []live.Entry {
	var es []live.Entry
	for c := from; c <= to; c++ {
		es = append(es, entry(c, fmt.Sprintf("e%d", c)))
	}
	return es
}

func cursors(es []live.Entry) string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = fmt.Sprint(e.Cursor)
	}
	return "[" + strings.Join(s, " ") + "]"
}

// fill appends keys k<from>..k<to> with events e<cursor>, expecting the
// cursors from..to: callers use it on timelines whose head is from-1.
func fill(t *testing.T, tl live.Timelines, tenant conv.TenantID, agent conv.AgentID, from, to int64) {
	t.Helper()
	for c := from; c <= to; c++ {
		mustAppendAt(t, tl, tenant, agent, fmt.Sprintf("k%d", c), fmt.Sprintf("e%d", c), c, false)
	}
}

// Cursors count 1, 2, 3… whichever node appends, and both nodes read the
// same timeline.
func testTimelineGapless(t *testing.T, a, b live.Timelines) {
	mustHead(t, a, tenant1, agent1, 0)
	wantEntries(t, "Since(0) on a new timeline", sinceOK(t, a, tenant1, agent1, 0, 10))
	for c := int64(1); c <= 10; c++ {
		tl := a
		if c%2 == 0 {
			tl = b
		}
		mustAppendAt(t, tl, tenant1, agent1, fmt.Sprintf("k%d", c), fmt.Sprintf("e%d", c), c, false)
	}
	mustHead(t, a, tenant1, agent1, 10)
	mustHead(t, b, tenant1, agent1, 10)
	wantEntries(t, "Since(0) on node a", sinceOK(t, a, tenant1, agent1, 0, 100), numbered(1, 10)...)
	wantEntries(t, "Since(0) on node b", sinceOK(t, b, tenant1, agent1, 0, 100), numbered(1, 10)...)
}

// A redelivered event lands once: the same key returns the cursor it got,
// from either node, and appends nothing.
func testTimelineDedup(t *testing.T, a, b live.Timelines) {
	mustAppendAt(t, a, tenant1, agent1, "message.created:7", "first", 1, false)
	mustAppendAt(t, b, tenant1, agent1, "message.created:7", "second", 1, true)
	mustHead(t, a, tenant1, agent1, 1)
	mustAppendAt(t, b, tenant1, agent1, "message.created:8", "other", 2, false)
	mustAppendAt(t, a, tenant1, agent1, "message.created:7", "third", 1, true)
	mustAppendAt(t, a, tenant1, agent1, "message.created:8", "other again", 2, true)
	mustHead(t, b, tenant1, agent1, 2)
	wantEntries(t, "Since(0)", sinceOK(t, a, tenant1, agent1, 0, 100), entry(1, "first"), entry(2, "other"))
}

// Appends racing from many goroutines on two nodes get distinct, gapless
// cursors, and a key raced by all of them lands exactly once.
func testTimelineConcurrent(t *testing.T, a, b live.Timelines) {
	const (
		goroutines = 16
		each       = 25
	)
	type result struct {
		key    string
		cursor int64
		dup    bool
	}
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		mu      sync.Mutex
		results []result
		errs    []error
	)
	for g := range goroutines {
		tl := a
		if g%2 == 1 {
			tl = b
		}
		wg.Go(func() {
			<-start
			keys := []string{"shared"}
			for i := range each {
				keys = append(keys, fmt.Sprintf("g%d-%d", g, i))
			}
			for _, key := range keys {
				c, dup, err := tl.Append(t.Context(), tenant1, agent1, key, []byte("event "+key))
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				results = append(results, result{key, c, dup})
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d Append errors, first: %v", len(errs), errs[0])
	}
	byCursor := map[int64]string{}
	var shared []result
	for _, r := range results {
		if r.key == "shared" {
			shared = append(shared, r)
			continue
		}
		if r.dup {
			t.Fatalf("distinct key %s reported as a duplicate of cursor %d", r.key, r.cursor)
		}
		if prev, ok := byCursor[r.cursor]; ok {
			t.Fatalf("cursor %d handed to both %s and %s", r.cursor, prev, r.key)
		}
		byCursor[r.cursor] = r.key
	}
	firsts := 0
	for _, r := range shared {
		if !r.dup {
			firsts++
		}
		if r.cursor != shared[0].cursor {
			t.Fatalf("key raced by every goroutine got cursors %d and %d", shared[0].cursor, r.cursor)
		}
	}
	if firsts != 1 {
		t.Fatalf("key raced by every goroutine appended %d times, want once", firsts)
	}
	if prev, ok := byCursor[shared[0].cursor]; ok {
		t.Fatalf("cursor %d handed to both shared and %s", shared[0].cursor, prev)
	}
	byCursor[shared[0].cursor] = "shared"
	const total = goroutines*each + 1
	var want []live.Entry
	for c := int64(1); c <= total; c++ {
		key, ok := byCursor[c]
		if !ok {
			t.Fatalf("cursor %d never handed out: cursors have gaps", c)
		}
		want = append(want, entry(c, "event "+key))
	}
	if len(byCursor) != total {
		t.Fatalf("%d cursors handed out for %d keys", len(byCursor), total)
	}
	mustHead(t, a, tenant1, agent1, total)
	wantEntries(t, "Since(0)", sinceOK(t, b, tenant1, agent1, 0, 1000), want...)
}

// Since returns entries strictly after the cursor, ascending, at most limit.
func testTimelineSince(t *testing.T, a, b live.Timelines) {
	fill(t, a, tenant1, agent1, 1, 10)
	tests := []struct {
		after int64
		limit int
		want  []live.Entry
	}{
		{0, 1, numbered(1, 1)},
		{0, 100, numbered(1, 10)},
		{3, 4, numbered(4, 7)},
		{7, 3, numbered(8, 10)},
		{7, 100, numbered(8, 10)},
		{9, 100, numbered(10, 10)},
		{10, 5, nil},
	}
	for _, tt := range tests {
		wantEntries(t, fmt.Sprintf("Since(%d, %d)", tt.after, tt.limit), sinceOK(t, b, tenant1, agent1, tt.after, tt.limit), tt.want...)
	}
}

// Trimming keeps the newest MaxEntries. A cursor right before the oldest
// kept entry still reads; one older has lost entries and expires. A key
// whose entry was trimmed is a new event again.
func testTimelineTrim(t *testing.T, a, b live.Timelines) {
	fill(t, a, tenant1, agent1, 1, 8) // keeps 4..8
	mustHead(t, b, tenant1, agent1, 8)
	wantEntries(t, "Since(3) with 4 the oldest kept", sinceOK(t, b, tenant1, agent1, 3, 100), numbered(4, 8)...)
	wantEntries(t, "Since(3, 1)", sinceOK(t, b, tenant1, agent1, 3, 1), numbered(4, 4)...)
	wantEntries(t, "Since(5, 2)", sinceOK(t, b, tenant1, agent1, 5, 2), numbered(6, 7)...)
	wantEntries(t, "Since(8)", sinceOK(t, b, tenant1, agent1, 8, 100))
	mustExpire(t, b, tenant1, agent1, 2)
	mustExpire(t, a, tenant1, agent1, 0)

	mustAppendAt(t, b, tenant1, agent1, "k1", "k1 again", 9, false) // keeps 5..9
	mustAppendAt(t, a, tenant1, agent1, "k5", "k5 again", 5, true)
	mustAppendAt(t, a, tenant1, agent1, "k4", "k4 again", 10, false) // keeps 6..10
	mustExpire(t, a, tenant1, agent1, 4)
	want := append(numbered(6, 8), entry(9, "k1 again"), entry(10, "k4 again"))
	wantEntries(t, "Since(5) after re-appending trimmed keys", sinceOK(t, b, tenant1, agent1, 5, 100), want...)
	mustHead(t, a, tenant1, agent1, 10)
}

// A cursor the timeline never handed out comes from a timeline that was
// lost and restarted (a Redis flush or failover): the device must re-sync,
// or it would skip the restarted timeline's first entries.
func testTimelineAhead(t *testing.T, a, b live.Timelines) {
	mustExpire(t, a, tenant1, agent1, 1)
	fill(t, a, tenant1, agent1, 1, 3)
	mustExpire(t, b, tenant1, agent1, 4)
	wantEntries(t, "Since(head)", sinceOK(t, b, tenant1, agent1, 3, 100))
}

// Timelines of other agents and other tenants share nothing: not cursors,
// not dedup keys, not entries.
func testTimelineIsolation(t *testing.T, a, b live.Timelines) {
	mustAppendAt(t, a, tenant1, agent1, "k", "t1a1", 1, false)
	mustAppendAt(t, b, tenant1, agent2, "k", "t1a2", 1, false)
	mustAppendAt(t, a, tenant2, agent1, "k", "t2a1", 1, false)
	mustAppendAt(t, b, tenant1, agent1, "k2", "t1a1 again", 2, false)
	mustHead(t, a, tenant1, agent1, 2)
	mustHead(t, a, tenant1, agent2, 1)
	mustHead(t, b, tenant2, agent1, 1)
	mustHead(t, b, tenant2, agent2, 0)
	wantEntries(t, "Since(t1, a1)", sinceOK(t, b, tenant1, agent1, 0, 100), entry(1, "t1a1"), entry(2, "t1a1 again"))
	wantEntries(t, "Since(t1, a2)", sinceOK(t, a, tenant1, agent2, 0, 100), entry(1, "t1a2"))
	wantEntries(t, "Since(t2, a1)", sinceOK(t, a, tenant2, agent1, 0, 100), entry(1, "t2a1"))
	wantEntries(t, "Since(t2, a2)", sinceOK(t, a, tenant2, agent2, 0, 100))
}

// A timeline without appends for Retention loses its entries and dedup
// keys, but not its head: cursors go on from where they were, so a device
// holding an old cursor learns it expired instead of reading reused ones.
func testTimelineRetention(t *testing.T, a, b live.Timelines) {
	fill(t, a, tenant1, agent1, 1, 3)
	waitFor(t, pollTimeout, "entries lapse after the retention", func() (bool, error) {
		_, err := b.Since(t.Context(), tenant1, agent1, 0, 100)
		if errors.Is(err, live.ErrCursorExpired) {
			return true, nil
		}
		return false, err
	})
	mustExpire(t, a, tenant1, agent1, 2)
	mustHead(t, a, tenant1, agent1, 3)
	wantEntries(t, "Since(head) after the lapse", sinceOK(t, b, tenant1, agent1, 3, 100))
	mustAppendAt(t, b, tenant1, agent1, "k1", "k1 after the lapse", 4, false)
	wantEntries(t, "Since(3) after the lapse", sinceOK(t, a, tenant1, agent1, 3, 100), entry(4, "k1 after the lapse"))
}

func testTimelineInvalid(t *testing.T, tl, _ live.Timelines) {
	ctx := t.Context()
	appends := []struct {
		name   string
		tenant conv.TenantID
		agent  conv.AgentID
		key    string
		event  []byte
	}{
		{"zero tenant", 0, agent1, "k", nil},
		{"zero agent", tenant1, 0, "k", nil},
		{"empty key", tenant1, agent1, "", nil},
		{"key too long", tenant1, agent1, long(maxKeyLen + 1), nil},
		{"event too long", tenant1, agent1, "k", make([]byte, maxEventLen+1)},
	}
	for _, tt := range appends {
		t.Run("Append "+tt.name, func(t *testing.T) {
			c, dup, err := tl.Append(ctx, tt.tenant, tt.agent, tt.key, tt.event)
			if !errors.Is(err, conv.ErrInvalid) || c != 0 || dup {
				t.Fatalf("Append = %d, %v, %v; want 0, false, ErrInvalid", c, dup, err)
			}
		})
	}
	sinces := []struct {
		name   string
		tenant conv.TenantID
		agent  conv.AgentID
		after  int64
		limit  int
	}{
		{"zero tenant", 0, agent1, 0, 10},
		{"zero agent", tenant1, 0, 0, 10},
		{"negative after", tenant1, agent1, -1, 10},
		{"zero limit", tenant1, agent1, 0, 0},
		{"negative limit", tenant1, agent1, 0, -1},
	}
	for _, tt := range sinces {
		t.Run("Since "+tt.name, func(t *testing.T) {
			es, err := tl.Since(ctx, tt.tenant, tt.agent, tt.after, tt.limit)
			if !errors.Is(err, conv.ErrInvalid) || es != nil {
				t.Fatalf("Since = %s, %v; want nil, ErrInvalid", cursors(es), err)
			}
		})
	}
	for _, id := range []struct {
		tenant conv.TenantID
		agent  conv.AgentID
	}{{0, agent1}, {tenant1, 0}} {
		if h, err := tl.Head(ctx, id.tenant, id.agent); !errors.Is(err, conv.ErrInvalid) || h != 0 {
			t.Fatalf("Head(%s, %s) = %d, %v; want 0, ErrInvalid", id.tenant, id.agent, h, err)
		}
	}
	// The largest valid key and event are accepted and read back whole.
	big := slices.Repeat([]byte("x"), maxEventLen)
	mustAppendAt(t, tl, tenant1, agent1, long(maxKeyLen), string(big), 1, false)
	wantEntries(t, "Since(0) of the largest event", sinceOK(t, tl, tenant1, agent1, 0, 10), entry(1, string(big)))
	mustHead(t, tl, tenant1, agent1, 1)
}
