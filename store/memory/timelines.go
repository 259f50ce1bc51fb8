package memory

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/live"
)

// Timeline defaults, the same as store/redis.
const (
	DefaultMaxEntries = 1000
	DefaultRetention  = 7 * 24 * time.Hour
)

// maxMaxEntries caps TimelinesConfig.MaxEntries: a timeline is a sync
// window, not an archive (the store is).
const maxMaxEntries = 100000

// TimelinesConfig configures Timelines.
type TimelinesConfig struct {
	// MaxEntries is how many of its newest entries a timeline keeps
	// (default DefaultMaxEntries, at most 100000).
	MaxEntries int
	// Retention is how long a timeline keeps its entries after its last
	// append (default DefaultRetention). Its head outlives it, so cursors
	// are never reused.
	Retention time.Duration
	// Now is the clock (default time.Now); tests pass a fake.
	Now func() time.Time
}

func (c *TimelinesConfig) setDefaults() {
	if c.MaxEntries == 0 {
		c.MaxEntries = DefaultMaxEntries
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

func (c *TimelinesConfig) validate() error {
	if c.MaxEntries < 1 || c.MaxEntries > maxMaxEntries {
		return fmt.Errorf("memory.NewTimelines: %w: MaxEntries %d is outside 1..%d", conv.ErrInvalid, c.MaxEntries, maxMaxEntries)
	}
	if c.Retention < time.Millisecond {
		return fmt.Errorf("memory.NewTimelines: %w: Retention %s is under a millisecond", conv.ErrInvalid, c.Retention)
	}
	return nil
}

// Timelines keeps every agent's inbox timeline in process, implementing
// live.Timelines with the semantics store/redis has on N nodes: a timeline
// keeps its newest MaxEntries, and one without appends for Retention drops
// its entries and dedup keys but keeps its head.
type Timelines struct {
	max       int
	retention time.Duration
	now       func() time.Time

	mu        sync.Mutex
	lines     map[timelineID]*timeline
	lastSweep time.Time
}

type timelineID struct {
	tenant conv.TenantID
	agent  conv.AgentID
}

type timeline struct {
	head int64
	// entries are the kept entries, ascending and contiguous: their
	// cursors run from entries[0].cursor to head.
	entries []timelineEntry
	keys    map[string]int64 // key → cursor of every kept entry
	expires time.Time        // when entries and keys lapse
}

type timelineEntry struct {
	cursor int64
	key    string
	event  []byte
}

// NewTimelines returns empty Timelines.
func NewTimelines(cfg TimelinesConfig) (*Timelines, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Timelines{
		max:       cfg.MaxEntries,
		retention: cfg.Retention,
		now:       cfg.Now,
		lines:     make(map[timelineID]*timeline),
		lastSweep: cfg.Now(),
	}, nil
}

// Append adds event to agent's timeline under key, or returns the cursor
// key got before with dup true while the timeline keeps it.
func (t *Timelines) Append(ctx context.Context, tenant conv.TenantID, agent conv.AgentID, key string, event []byte) (int64, bool, error) {
	const op = "memory.Timelines.Append"
	if err := checkIDs(op, tenant, agent); err != nil {
		return 0, false, err
	}
	if err := checkKey(op, key); err != nil {
		return 0, false, err
	}
	if len(event) > maxEventLen {
		return 0, false, fmt.Errorf("%s %s/%s: %w: event of %d bytes is over %d", op, tenant, agent, conv.ErrInvalid, len(event), maxEventLen)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	t.sweep(now)
	id := timelineID{tenant, agent}
	tl := t.lines[id]
	if tl == nil {
		tl = &timeline{}
		t.lines[id] = tl
	}
	tl.lapse(now)
	if c, ok := tl.keys[key]; ok {
		return c, true, nil
	}
	if tl.keys == nil {
		tl.keys = make(map[string]int64)
	}
	tl.head++
	tl.entries = append(tl.entries, timelineEntry{cursor: tl.head, key: key, event: bytes.Clone(event)})
	tl.keys[key] = tl.head
	if over := len(tl.entries) - t.max; over > 0 {
		for _, e := range tl.entries[:over] {
			delete(tl.keys, e.key)
		}
		// Zero the trimmed entries so their events can be collected
		// before append moves the slice to a new array.
		clear(tl.entries[:over])
		tl.entries = tl.entries[over:]
	}
	tl.expires = now.Add(t.retention)
	return tl.head, false, nil
}

// Since returns up to limit entries after the cursor after, ascending, or
// an error wrapping live.ErrCursorExpired when the timeline no longer has
// every entry after it (trimmed, lapsed, or after is newer than the head).
func (t *Timelines) Since(ctx context.Context, tenant conv.TenantID, agent conv.AgentID, after int64, limit int) ([]live.Entry, error) {
	const op = "memory.Timelines.Since"
	if err := checkSince(op, tenant, agent, after, limit); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	t.sweep(now)
	var head int64
	var entries []timelineEntry
	if tl := t.lines[timelineID{tenant, agent}]; tl != nil {
		tl.lapse(now)
		head, entries = tl.head, tl.entries
	}
	oldest := head + 1
	if len(entries) > 0 {
		oldest = entries[0].cursor
	}
	if after > head || after+1 < oldest {
		return nil, fmt.Errorf("%s %s/%s after %d (oldest kept %d, head %d): %w", op, tenant, agent, after, oldest, head, live.ErrCursorExpired)
	}
	// Cursors are contiguous, so the first entry after the cursor is at
	// after+1-oldest.
	rest := entries[after+1-oldest:]
	out := make([]live.Entry, 0, min(limit, len(rest)))
	for _, e := range rest[:min(limit, len(rest))] {
		out = append(out, live.Entry{Cursor: e.cursor, Event: bytes.Clone(e.event)})
	}
	return out, nil
}

// Head returns the newest cursor handed out on agent's timeline.
func (t *Timelines) Head(ctx context.Context, tenant conv.TenantID, agent conv.AgentID) (int64, error) {
	if err := checkIDs("memory.Timelines.Head", tenant, agent); err != nil {
		return 0, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if tl := t.lines[timelineID{tenant, agent}]; tl != nil {
		return tl.head, nil
	}
	return 0, nil
}

// lapse drops the entries and keys once the retention has passed since the
// last append. The head stays.
func (tl *timeline) lapse(now time.Time) {
	if len(tl.entries) > 0 && !now.Before(tl.expires) {
		tl.entries, tl.keys = nil, nil
	}
}

// sweep lapses timelines nobody touched, once per sweepEvery. What stays of
// them is the head: a few words per agent. Callers hold t.mu.
func (t *Timelines) sweep(now time.Time) {
	if now.Sub(t.lastSweep) < sweepEvery {
		return
	}
	t.lastSweep = now
	for _, tl := range t.lines {
		tl.lapse(now)
	}
}

func checkSince(op string, tenant conv.TenantID, agent conv.AgentID, after int64, limit int) error {
	if err := checkIDs(op, tenant, agent); err != nil {
		return err
	}
	if after < 0 || limit < 1 {
		return fmt.Errorf("%s %s/%s: %w: after %d is negative or limit %d under 1", op, tenant, agent, conv.ErrInvalid, after, limit)
	}
	return nil
}
