package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Leases elects one holder per key within this process. On a single node
// that is all the election there is; the embedded node still takes leases so
// that the same code runs on one node and on N.
type Leases struct {
	now func() time.Time

	mu        sync.Mutex
	leases    map[string]lease
	lastSweep time.Time
}

type lease struct {
	holder  string
	expires time.Time
}

// NewLeases returns empty Leases.
func NewLeases(cfg Config) *Leases {
	cfg.setDefaults()
	return &Leases{now: cfg.Now, leases: make(map[string]lease), lastSweep: cfg.Now()}
}

// Acquire makes holder the holder of key until now+ttl, unless another
// holder's lease is live. See statetest.Leases for the contract.
func (l *Leases) Acquire(ctx context.Context, key, holder string, ttl time.Duration) (bool, error) {
	if err := checkLease("memory.Leases.Acquire", key, holder); err != nil {
		return false, err
	}
	if ttl < time.Millisecond {
		return false, fmt.Errorf("memory.Leases.Acquire %s: %w: ttl %s is under a millisecond", key, conv.ErrInvalid, ttl)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.sweep(now)
	if cur, ok := l.leases[key]; ok && cur.holder != holder && now.Before(cur.expires) {
		return false, nil
	}
	l.leases[key] = lease{holder: holder, expires: now.Add(ttl)}
	return true, nil
}

// Release ends holder's lease on key; a no-op if holder does not hold it.
func (l *Leases) Release(ctx context.Context, key, holder string) error {
	if err := checkLease("memory.Leases.Release", key, holder); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.leases[key]; ok && cur.holder == holder {
		delete(l.leases, key)
	}
	return nil
}

// sweep drops expired leases once per sweepEvery. Callers hold l.mu.
func (l *Leases) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < sweepEvery {
		return
	}
	l.lastSweep = now
	for k, v := range l.leases {
		if !now.Before(v.expires) {
			delete(l.leases, k)
		}
	}
}

func checkLease(op, key, holder string) error {
	if err := checkKey(op, key); err != nil {
		return err
	}
	if holder == "" || len(holder) > maxHolderLen {
		return fmt.Errorf("%s %s: %w: holder must be 1 to %d bytes", op, key, conv.ErrInvalid, maxHolderLen)
	}
	return nil
}
