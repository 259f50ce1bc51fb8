package redis

import (
	"context"
	"crypto/rand"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Limiter is a sliding-window log per key in a sorted set: one member per
// allowed attempt, scored by its time in microseconds (about 2^51 today,
// inside a float64's 53 exact bits). It never allows more than limit in any
// window-long span; a fixed window allows up to twice that across a
// boundary. The price is up to limit members per key, hence the cap on
// limit. See statetest.Limiter for the contract.
type Limiter struct {
	rdb    *goredis.Client
	prefix string
	// nonce and seq make members unique: two attempts in the same
	// microsecond, from this node or another, must both count.
	nonce string
	seq   atomic.Uint64
	// now, when set, replaces the server clock; only tests set it.
	now func() time.Time
}

func newLimiter(rdb *goredis.Client, prefix string) *Limiter {
	return &Limiter{rdb: rdb, prefix: prefix, nonce: rand.Text()}
}

// allowScript prunes attempts that left the window, then records this one
// if fewer than limit remain, all in one step: a count read by the client
// and an add sent after it would let concurrent callers all pass.
// KEYS[1] log key; ARGV[1] limit; ARGV[2] window in µs; ARGV[3] member;
// ARGV[4] now in µs, or "" for the server clock. Returns {allowed,
// retry-after in µs}. An attempt at s counts while now-s < window.
var allowScript = goredis.NewScript(`
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local now
if ARGV[4] ~= '' then
  now = tonumber(ARGV[4])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if n < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
  return {1, 0}
end
-- Allowed again once n-limit+1 attempts have left the window.
local e = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
return {0, tonumber(e[2]) + window - now}
`)

// Allow records and allows an attempt on key, or denies it with the time
// until the oldest attempts that matter leave the window.
func (l *Limiter) Allow(ctx context.Context, key string, limit int, window time.Duration) (bool, time.Duration, error) {
	const op = "redis.Limiter.Allow"
	if err := checkKey(op, key); err != nil {
		return false, 0, err
	}
	if limit < 1 || limit > maxLimit {
		return false, 0, fmt.Errorf("%s %s: %w: limit %d is outside 1..%d", op, key, conv.ErrInvalid, limit, maxLimit)
	}
	if window < time.Millisecond {
		return false, 0, fmt.Errorf("%s %s: %w: window %s is under a millisecond", op, key, conv.ErrInvalid, window)
	}
	windowMicros := int64((window + time.Microsecond - 1) / time.Microsecond)
	member := l.nonce + ":" + strconv.FormatUint(l.seq.Add(1), 36)
	now := ""
	if l.now != nil {
		now = strconv.FormatInt(l.now().UnixMicro(), 10)
	}
	res, err := allowScript.Run(ctx, l.rdb, []string{l.prefix + key}, limit, windowMicros, member, now).Int64Slice()
	if err != nil {
		return false, 0, unavailable(op, key, err)
	}
	if len(res) != 2 {
		return false, 0, unavailable(op, key, fmt.Errorf("script returned %d values, want 2", len(res)))
	}
	if res[0] == 1 {
		return true, 0, nil
	}
	return false, time.Duration(res[1]) * time.Microsecond, nil
}
