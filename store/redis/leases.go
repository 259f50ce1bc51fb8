package redis

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Leases elects one holder per key across every node sharing the Redis.
// A lease is a string key holding the holder's name with a PX expiry.
type Leases struct {
	rdb    *goredis.Client
	prefix string
}

// acquireScript takes a free key or renews the caller's own, in one step:
// a GET followed by a SET from the client could hand the lease to two
// nodes. KEYS[1] lease key; ARGV[1] holder; ARGV[2] ttl in ms.
var acquireScript = goredis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// releaseScript deletes the key only if the caller still holds it, so a
// node whose lease expired cannot delete its successor's.
var releaseScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// Acquire makes holder the holder of key until now+ttl, unless another
// holder's lease is live. See statetest.Leases for the contract.
func (l *Leases) Acquire(ctx context.Context, key, holder string, ttl time.Duration) (bool, error) {
	const op = "redis.Leases.Acquire"
	if err := checkLease(op, key, holder); err != nil {
		return false, err
	}
	if ttl < time.Millisecond {
		return false, fmt.Errorf("%s %s: %w: ttl %s is under a millisecond", op, key, conv.ErrInvalid, ttl)
	}
	// Round up: a lease must never be shorter than asked.
	ms := (ttl + time.Millisecond - 1) / time.Millisecond
	n, err := acquireScript.Run(ctx, l.rdb, []string{l.prefix + key}, holder, int64(ms)).Int64()
	if err != nil {
		return false, unavailable(op, key, err)
	}
	return n == 1, nil
}

// Release ends holder's lease on key; a no-op if holder does not hold it.
func (l *Leases) Release(ctx context.Context, key, holder string) error {
	const op = "redis.Leases.Release"
	if err := checkLease(op, key, holder); err != nil {
		return err
	}
	if err := releaseScript.Run(ctx, l.rdb, []string{l.prefix + key}, holder).Err(); err != nil {
		return unavailable(op, key, err)
	}
	return nil
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
