package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/live"
)

// Timeline defaults, the same as store/memory.
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
	// (default DefaultMaxEntries, at most 100000). Nodes sharing a Redis
	// should agree; each trims to its own value when it appends.
	MaxEntries int
	// Retention is how long a timeline keeps its entries after its last
	// append (default DefaultRetention), rounded up to a millisecond.
	Retention time.Duration
}

func (c *TimelinesConfig) setDefaults() {
	if c.MaxEntries == 0 {
		c.MaxEntries = DefaultMaxEntries
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
}

func (c *TimelinesConfig) validate() error {
	if c.MaxEntries < 1 || c.MaxEntries > maxMaxEntries {
		return fmt.Errorf("redis.Timelines: %w: MaxEntries %d is outside 1..%d", conv.ErrInvalid, c.MaxEntries, maxMaxEntries)
	}
	if c.Retention < time.Millisecond {
		return fmt.Errorf("redis.Timelines: %w: Retention %s is under a millisecond", conv.ErrInvalid, c.Retention)
	}
	return nil
}

// Timelines keeps every agent's inbox timeline in Redis, implementing
// live.Timelines for N nodes. A timeline is three keys sharing the hash tag
// {<tenant>:<agent>}, so a script may touch all three on a Redis Cluster:
//
//   - <Prefix>tl:{t:a}:n, the head: an INCR counter that hands out cursors.
//     It has no TTL, on purpose: were it to expire with the entries, an
//     idle timeline would restart at 1 and hand out cursors that devices
//     already hold, which would then skip the new entries without knowing.
//     It is one small string per agent.
//   - <Prefix>tl:{t:a}:e, the entries: a sorted set scored by cursor.
//     Cursors stay far below 2^53, so a float64 score holds them exactly.
//     A member is "<cursor>:<len(key)>:<key><event>": the cursor keeps
//     members unique, and the key lets a trim find the dedup field to drop.
//   - <Prefix>tl:{t:a}:k, the dedup map: a hash from key to cursor, for
//     every entry kept.
//
// Entries and dedup map expire together Retention after the last append.
type Timelines struct {
	rdb         *goredis.Client
	prefix      string
	max         int
	retentionMS int64
}

// appendScript dedups, appends, trims and refreshes the retention in one
// step: done from the client, two nodes appending one key could both miss
// the dedup check, and a crash between append and trim could leave the
// dedup map pointing at trimmed entries. KEYS[1] head, KEYS[2] entries,
// KEYS[3] dedup map; ARGV[1] key, ARGV[2] event, ARGV[3] max entries,
// ARGV[4] retention in ms. Returns {cursor, dup}.
var appendScript = goredis.NewScript(`
local got = redis.call('HGET', KEYS[3], ARGV[1])
if got then
  return {tonumber(got), 1}
end
local cur = redis.call('INCR', KEYS[1])
local id = string.format('%d', cur)
redis.call('ZADD', KEYS[2], id, id .. ':' .. #ARGV[1] .. ':' .. ARGV[1] .. ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], id)
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if over > 0 then
  for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, over - 1)) do
    local a = string.find(m, ':', 1, true)
    local b = string.find(m, ':', a + 1, true)
    local n = tonumber(string.sub(m, a + 1, b - 1))
    redis.call('HDEL', KEYS[3], string.sub(m, b + 1, b + n))
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return {cur, 0}
`)

// sinceScript reads the head, the oldest entry kept and the entries after
// the cursor at one instant, so a concurrent trim cannot slip between the
// expiry check and the read. KEYS[1] head, KEYS[2] entries; ARGV[1] after,
// ARGV[2] limit. Returns {1, members} or, when entries after the cursor
// are gone, {0, head, oldest}.
var sinceScript = goredis.NewScript(`
local head = tonumber(redis.call('GET', KEYS[1]) or '0')
local after = tonumber(ARGV[1])
local oldest = head + 1
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if first[2] then
  oldest = tonumber(first[2])
end
if after > head or after + 1 < oldest then
  return {0, head, oldest}
end
return {1, redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf', 'LIMIT', 0, ARGV[2])}
`)

func newTimelines(rdb *goredis.Client, prefix string, cfg TimelinesConfig) (*Timelines, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Timelines{
		rdb:         rdb,
		prefix:      prefix,
		max:         cfg.MaxEntries,
		retentionMS: int64((cfg.Retention + time.Millisecond - 1) / time.Millisecond),
	}, nil
}

// keys returns the head, entries and dedup keys of agent's timeline.
func (t *Timelines) keys(tenant conv.TenantID, agent conv.AgentID) []string {
	base := t.prefix + "{" + tenant.String() + ":" + agent.String() + "}:"
	return []string{base + "n", base + "e", base + "k"}
}

// Append adds event to agent's timeline under key, or returns the cursor
// key got before with dup true while the timeline keeps it.
func (t *Timelines) Append(ctx context.Context, tenant conv.TenantID, agent conv.AgentID, key string, event []byte) (int64, bool, error) {
	const op = "redis.Timelines.Append"
	if err := checkIDs(op, tenant, agent); err != nil {
		return 0, false, err
	}
	if err := checkKey(op, key); err != nil {
		return 0, false, err
	}
	if len(event) > maxEventLen {
		return 0, false, fmt.Errorf("%s %s/%s: %w: event of %d bytes is over %d", op, tenant, agent, conv.ErrInvalid, len(event), maxEventLen)
	}
	res, err := appendScript.Run(ctx, t.rdb, t.keys(tenant, agent), key, event, t.max, t.retentionMS).Int64Slice()
	if err != nil {
		return 0, false, unavailable(op, tenant.String()+"/"+agent.String(), err)
	}
	if len(res) != 2 {
		return 0, false, unavailable(op, tenant.String()+"/"+agent.String(), fmt.Errorf("script returned %d values, want 2", len(res)))
	}
	return res[0], res[1] == 1, nil
}

// Since returns up to limit entries after the cursor after, ascending, or
// an error wrapping live.ErrCursorExpired when the timeline no longer has
// every entry after it (trimmed, expired, or after is newer than the head).
func (t *Timelines) Since(ctx context.Context, tenant conv.TenantID, agent conv.AgentID, after int64, limit int) ([]live.Entry, error) {
	const op = "redis.Timelines.Since"
	if err := checkIDs(op, tenant, agent); err != nil {
		return nil, err
	}
	if after < 0 || limit < 1 {
		return nil, fmt.Errorf("%s %s/%s: %w: after %d is negative or limit %d under 1", op, tenant, agent, conv.ErrInvalid, after, limit)
	}
	id := tenant.String() + "/" + agent.String()
	res, err := sinceScript.Run(ctx, t.rdb, t.keys(tenant, agent), after, limit).Slice()
	if err != nil {
		return nil, unavailable(op, id, err)
	}
	var (
		members []any
		ok      bool
	)
	switch {
	case len(res) == 3 && res[0] == int64(0):
		return nil, fmt.Errorf("%s %s after %d (oldest kept %v, head %v): %w", op, id, after, res[2], res[1], live.ErrCursorExpired)
	case len(res) == 2 && res[0] == int64(1):
		members, ok = res[1].([]any)
	}
	if !ok {
		return nil, unavailable(op, id, fmt.Errorf("script returned %v", res))
	}
	out := make([]live.Entry, 0, len(members))
	for _, m := range members {
		s, _ := m.(string)
		e, err := parseEntry(s)
		if err != nil {
			return nil, unavailable(op, id, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// Head returns the newest cursor handed out on agent's timeline.
func (t *Timelines) Head(ctx context.Context, tenant conv.TenantID, agent conv.AgentID) (int64, error) {
	const op = "redis.Timelines.Head"
	if err := checkIDs(op, tenant, agent); err != nil {
		return 0, err
	}
	n, err := t.rdb.Get(ctx, t.keys(tenant, agent)[0]).Int64()
	if errors.Is(err, goredis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, unavailable(op, tenant.String()+"/"+agent.String(), err)
	}
	return n, nil
}

// parseEntry reads a member "<cursor>:<len(key)>:<key><event>".
func parseEntry(m string) (live.Entry, error) {
	c, rest, ok := strings.Cut(m, ":")
	n, rest2, ok2 := strings.Cut(rest, ":")
	cursor, err := strconv.ParseInt(c, 10, 64)
	klen, err2 := strconv.Atoi(n)
	if !ok || !ok2 || err != nil || err2 != nil || klen < 0 || klen > len(rest2) {
		return live.Entry{}, fmt.Errorf("malformed timeline entry %.40q", m)
	}
	return live.Entry{Cursor: cursor, Event: []byte(rest2[klen:])}, nil
}
