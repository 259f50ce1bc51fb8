package memory

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Limiter is a sliding-window log per key: it remembers the time of every
// allowed attempt still inside the window, so it never allows more than
// limit in any window-long span (a fixed window allows up to twice that
// across a boundary). The price is up to limit timestamps per key, which is
// why limit is capped. See statetest.Limiter for the contract.
type Limiter struct {
	now func() time.Time

	mu        sync.Mutex
	logs      map[string]*attempts
	lastSweep time.Time
}

type attempts struct {
	times  []time.Time // allowed attempts inside the window, ascending
	window time.Duration
}

// NewLimiter returns a Limiter with no history.
func NewLimiter(cfg Config) *Limiter {
	cfg.setDefaults()
	return &Limiter{now: cfg.Now, logs: make(map[string]*attempts), lastSweep: cfg.Now()}
}

// Allow records and allows an attempt on key, or denies it with the time
// until the oldest attempts that matter leave the window.
func (l *Limiter) Allow(ctx context.Context, key string, limit int, window time.Duration) (bool, time.Duration, error) {
	const op = "memory.Limiter.Allow"
	if err := checkKey(op, key); err != nil {
		return false, 0, err
	}
	if limit < 1 || limit > maxLimit {
		return false, 0, fmt.Errorf("%s %s: %w: limit %d is outside 1..%d", op, key, conv.ErrInvalid, limit, maxLimit)
	}
	if window < time.Millisecond {
		return false, 0, fmt.Errorf("%s %s: %w: window %s is under a millisecond", op, key, conv.ErrInvalid, window)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.sweep(now)
	a := l.logs[key]
	if a == nil {
		a = &attempts{}
		l.logs[key] = a
	}
	a.window = window
	// An attempt at s counts while now-s < window.
	cut := 0
	for cut < len(a.times) && now.Sub(a.times[cut]) >= window {
		cut++
	}
	a.times = a.times[cut:]
	if n := len(a.times); n >= limit {
		// Allowed again once n-limit+1 attempts have left the window.
		return false, a.times[n-limit].Add(window).Sub(now), nil
	}
	// Insert in order: a clock stepped backwards must not unsort the log.
	i := sort.Search(len(a.times), func(j int) bool { return a.times[j].After(now) })
	a.times = slices.Insert(a.times, i, now)
	return true, 0, nil
}

// sweep drops keys whose every attempt has left the window, once per
// sweepEvery. Callers hold l.mu.
func (l *Limiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < sweepEvery {
		return
	}
	l.lastSweep = now
	for k, a := range l.logs {
		if len(a.times) == 0 || now.Sub(a.times[len(a.times)-1]) >= a.window {
			delete(l.logs, k)
		}
	}
}
