package statetest_test

import (
	"bytes"
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/live"
	"github.com/switchboard-hq/switchboard/store/statetest"
)

// fakeTimelines is a correct set of timelines unless mutation names a bug.
type fakeTimelines struct {
	mutation string
	cfg      statetest.TimelinesConfig
	mu       sync.Mutex
	lines    map[[2]int64]*fakeLine
}

type fakeLine struct {
	head    int64
	entries []live.Entry // contiguous, ascending
	keys    map[string]int64
	keyOf   map[int64]string
	expires time.Time
}

func (f *fakeTimelines) line(tenant conv.TenantID, agent conv.AgentID) *fakeLine {
	id := [2]int64{int64(tenant), int64(agent)}
	if f.mutation == "tl-shared" {
		id = [2]int64{}
	}
	l := f.lines[id]
	if l == nil {
		l = &fakeLine{keys: map[string]int64{}, keyOf: map[int64]string{}}
		f.lines[id] = l
	}
	if len(l.entries) > 0 && !time.Now().Before(l.expires) && f.mutation != "tl-noretention" {
		l.entries, l.keys, l.keyOf = nil, map[string]int64{}, map[int64]string{}
		if f.mutation == "tl-resethead" {
			l.head = 0
		}
	}
	return l
}

func (f *fakeTimelines) valid(tenant conv.TenantID, agent conv.AgentID) bool {
	return f.mutation == "tl-novalidate" || (tenant != 0 && agent != 0)
}

func (f *fakeTimelines) Append(ctx context.Context, tenant conv.TenantID, agent conv.AgentID, key string, event []byte) (int64, bool, error) {
	if !f.valid(tenant, agent) || (f.mutation != "tl-novalidate" && (key == "" || len(key) > 1024 || len(event) > 1<<20)) {
		return 0, false, conv.ErrInvalid
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.line(tenant, agent)
	if c, ok := l.keys[key]; ok && f.mutation != "tl-nodedup" {
		return c, true, nil
	}
	c := l.head + 1
	if f.mutation == "tl-racy" {
		// Read, let others run, then write: a lost update.
		f.mu.Unlock()
		runtime.Gosched()
		f.mu.Lock()
	}
	if f.mutation == "tl-gap" && c == 5 {
		c++
	}
	l.head = c
	l.entries = append(l.entries, live.Entry{Cursor: c, Event: bytes.Clone(event)})
	l.keys[key], l.keyOf[c] = c, key
	for len(l.entries) > f.cfg.MaxEntries {
		if f.mutation != "tl-keeptrimmedkeys" {
			delete(l.keys, l.keyOf[l.entries[0].Cursor])
		}
		l.entries = l.entries[1:]
	}
	l.expires = time.Now().Add(f.cfg.Retention)
	return c, false, nil
}

func (f *fakeTimelines) Since(ctx context.Context, tenant conv.TenantID, agent conv.AgentID, after int64, limit int) ([]live.Entry, error) {
	if !f.valid(tenant, agent) || (f.mutation != "tl-novalidate" && (after < 0 || limit < 1)) {
		return nil, conv.ErrInvalid
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.line(tenant, agent)
	oldest := l.head + 1
	if len(l.entries) > 0 {
		oldest = l.entries[0].Cursor
	}
	expired := after+1 < oldest
	switch f.mutation {
	case "tl-noexpire":
		expired = false
	case "tl-expireoffbyone":
		expired = after+1 <= oldest && after < l.head
	}
	if (after > l.head && f.mutation != "tl-ahead") || expired {
		return nil, live.ErrCursorExpired
	}
	var out []live.Entry
	for _, e := range l.entries {
		if e.Cursor > after && (len(out) < limit || f.mutation == "tl-nolimit") {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f *fakeTimelines) Head(ctx context.Context, tenant conv.TenantID, agent conv.AgentID) (int64, error) {
	if !f.valid(tenant, agent) {
		return 0, conv.ErrInvalid
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.line(tenant, agent).head, nil
}

// fakeFanout is a correct in-process fan-out unless mutation names a bug.
type fakeFanout struct {
	mutation string
	mu       sync.Mutex
	subs     map[*fakeSub]struct{}
}

type fakeSub struct {
	f     *fakeFanout
	topic string
	c     chan []byte
	done  chan struct{} // closed first by Close, to free a blocked send
	once  sync.Once
	mu    sync.Mutex // held while sending to c, so Close cannot close it under a send
}

func (f *fakeFanout) Publish(ctx context.Context, topic string, payload []byte) error {
	if f.mutation != "fo-novalidate" && (topic == "" || len(topic) > 1024 || len(payload) > 1<<20) {
		return conv.ErrInvalid
	}
	f.mu.Lock()
	var to []*fakeSub
	for s := range f.subs {
		if s.topic == topic || f.mutation == "fo-broadcast" {
			to = append(to, s)
			if f.mutation == "fo-onesub" {
				break
			}
		}
	}
	f.mu.Unlock()
	for _, s := range to {
		s.mu.Lock()
		select {
		case <-s.done:
		default:
			if f.mutation == "fo-block" {
				select {
				case s.c <- bytes.Clone(payload):
				case <-s.done:
				}
			} else {
				select {
				case s.c <- bytes.Clone(payload):
				default:
				}
			}
		}
		s.mu.Unlock()
	}
	return nil
}

func (f *fakeFanout) Subscribe(ctx context.Context, topic string) (live.Subscription, error) {
	if f.mutation != "fo-novalidate" && (topic == "" || len(topic) > 1024) {
		return nil, conv.ErrInvalid
	}
	size := 16
	if f.mutation == "fo-unbounded" {
		size = 1 << 20
	}
	s := &fakeSub{f: f, topic: topic, c: make(chan []byte, size), done: make(chan struct{})}
	register := func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		select {
		case <-s.done:
		default:
			f.subs[s] = struct{}{}
		}
	}
	if f.mutation == "fo-lazy" {
		go func() {
			time.Sleep(20 * time.Millisecond) // the bug: active some time after returning
			register()
		}()
	} else {
		register()
	}
	return s, nil
}

func (s *fakeSub) C() <-chan []byte { return s.c }

func (s *fakeSub) Close() error {
	s.once.Do(func() {
		close(s.done)
		s.f.mu.Lock()
		delete(s.f.subs, s)
		s.f.mu.Unlock()
		if s.f.mutation != "fo-noclose" {
			s.mu.Lock()
			close(s.c)
			s.mu.Unlock()
		}
	})
	return nil
}

// fakePresence is a correct presence table unless mutation names a bug.
type fakePresence struct {
	mutation string
	mu       sync.Mutex
	seq      int
	m        map[fakeSessionKey]fakeSession
}

type fakeSessionKey struct {
	tenant  conv.TenantID
	agent   conv.AgentID
	session string
}

type fakeSession struct {
	status  live.Status
	expires time.Time
	seq     int // order of Set, for pr-last
}

func (f *fakePresence) check(tenant conv.TenantID, agent conv.AgentID, session string) error {
	if f.mutation != "pr-novalidate" && (tenant == 0 || agent == 0 || session == "" || len(session) > 256) {
		return conv.ErrInvalid
	}
	return nil
}

func (f *fakePresence) Set(ctx context.Context, tenant conv.TenantID, agent conv.AgentID, session string, status live.Status, ttl time.Duration) error {
	if err := f.check(tenant, agent, session); err != nil {
		return err
	}
	if f.mutation != "pr-novalidate" && (fakeRank(status) < 0 || ttl < time.Millisecond) {
		return conv.ErrInvalid
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mutation == "pr-shared" {
		tenant = 0
	}
	k := fakeSessionKey{tenant, agent, session}
	expires := time.Now().Add(ttl)
	if cur, ok := f.m[k]; ok && time.Now().Before(cur.expires) {
		switch {
		case f.mutation == "pr-norenew":
			expires = cur.expires
		case f.mutation == "pr-keeplater" && cur.expires.After(expires):
			expires = cur.expires
		}
	}
	f.seq++
	f.m[k] = fakeSession{status: status, expires: expires, seq: f.seq}
	return nil
}

func (f *fakePresence) Remove(ctx context.Context, tenant conv.TenantID, agent conv.AgentID, session string) error {
	if err := f.check(tenant, agent, session); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mutation == "pr-shared" {
		tenant = 0
	}
	if f.mutation != "pr-noremove" {
		delete(f.m, fakeSessionKey{tenant, agent, session})
	}
	return nil
}

func (f *fakePresence) Agents(ctx context.Context, tenant conv.TenantID) (map[conv.AgentID]live.Status, error) {
	if f.mutation != "pr-novalidate" && tenant == 0 {
		return nil, conv.ErrInvalid
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mutation == "pr-shared" {
		tenant = 0
	}
	out := map[conv.AgentID]live.Status{}
	seqs := map[conv.AgentID]int{}
	for k, s := range f.m {
		if k.tenant != tenant || (!time.Now().Before(s.expires) && f.mutation != "pr-noexpire") {
			continue
		}
		cur, ok := out[k.agent]
		better := fakeRank(s.status) > fakeRank(cur)
		if f.mutation == "pr-last" {
			better = s.seq > seqs[k.agent]
		}
		if !ok || better {
			out[k.agent], seqs[k.agent] = s.status, s.seq
		}
	}
	return out, nil
}

func fakeRank(s live.Status) int {
	switch s {
	case live.Online:
		return 2
	case live.Away:
		return 1
	case live.Offline:
		return 0
	}
	return -1
}
