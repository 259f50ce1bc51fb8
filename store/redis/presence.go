package redis

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/live"
)

// Presence implements live.Presence in Redis. A tenant's sessions are two
// keys sharing the hash tag {<tenant>}: <Prefix>pr:{t}:exp, a sorted set of
// "<agent>|<session>" scored by expiry in microseconds of the Redis
// server's clock (about 2^51 today, exact in a float64), and
// <Prefix>pr:{t}:st, a hash from the same member to its status. Every
// script prunes lapsed sessions from both before it reads or writes, and
// sets both keys to expire with their last session, so a tenant whose
// nodes all died leaves nothing behind. Expiry reads the server's clock,
// so nodes with skewed clocks agree on what is live.
type Presence struct {
	rdb    *goredis.Client
	prefix string
}

// presencePrune is the start of every presence script: it sets now to the
// server time in µs and drops the sessions that lapsed by then. A session
// is live while now < expiry. KEYS[1] expiries, KEYS[2] statuses.
const presencePrune = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, m in ipairs(dead) do
  redis.call('HDEL', KEYS[2], m)
end
if #dead > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
end
`

// presenceSetScript records a session's status and expiry, replacing the
// ones it had, in one step with the expiry of both keys, so that the keys
// never expire before a session in them. ARGV[1] member, ARGV[2] status,
// ARGV[3] ttl in µs.
var presenceSetScript = goredis.NewScript(presencePrune + `
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local at = math.ceil(tonumber(last[2]) / 1000)
redis.call('PEXPIREAT', KEYS[1], at)
redis.call('PEXPIREAT', KEYS[2], at)
return 1
`)

// presenceRemoveScript ends a session in both keys at once. ARGV[1] member.
var presenceRemoveScript = goredis.NewScript(`
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
`)

// presenceAgentsScript returns the live sessions as a flat list of member,
// status: after the prune, the hash holds exactly those.
var presenceAgentsScript = goredis.NewScript(presencePrune + `
return redis.call('HGETALL', KEYS[2])
`)

func (p *Presence) keys(tenant conv.TenantID) []string {
	base := p.prefix + "{" + tenant.String() + "}:"
	return []string{base + "exp", base + "st"}
}

func member(agent conv.AgentID, session string) string {
	return agent.String() + "|" + session
}

// Set records session's status until ttl passes, replacing what it had.
func (p *Presence) Set(ctx context.Context, tenant conv.TenantID, agent conv.AgentID, session string, status live.Status, ttl time.Duration) error {
	const op = "redis.Presence.Set"
	if err := checkSession(op, tenant, agent, session); err != nil {
		return err
	}
	if _, ok := statusRank(status); !ok {
		return fmt.Errorf("%s %s/%s: %w: unknown status %.32q", op, tenant, agent, conv.ErrInvalid, status)
	}
	if ttl < time.Millisecond {
		return fmt.Errorf("%s %s/%s: %w: ttl %s is under a millisecond", op, tenant, agent, conv.ErrInvalid, ttl)
	}
	micros := int64((ttl + time.Microsecond - 1) / time.Microsecond)
	if err := presenceSetScript.Run(ctx, p.rdb, p.keys(tenant), member(agent, session), string(status), micros).Err(); err != nil {
		return unavailable(op, tenant.String()+"/"+agent.String(), err)
	}
	return nil
}

// Remove ends a session at once; a no-op for a session that is not live.
func (p *Presence) Remove(ctx context.Context, tenant conv.TenantID, agent conv.AgentID, session string) error {
	const op = "redis.Presence.Remove"
	if err := checkSession(op, tenant, agent, session); err != nil {
		return err
	}
	if err := presenceRemoveScript.Run(ctx, p.rdb, p.keys(tenant), member(agent, session)).Err(); err != nil {
		return unavailable(op, tenant.String()+"/"+agent.String(), err)
	}
	return nil
}

// Agents returns every agent of tenant with a live session and its best
// status.
func (p *Presence) Agents(ctx context.Context, tenant conv.TenantID) (map[conv.AgentID]live.Status, error) {
	const op = "redis.Presence.Agents"
	if tenant.IsZero() {
		return nil, fmt.Errorf("%s: %w: tenant is required", op, conv.ErrInvalid)
	}
	res, err := presenceAgentsScript.Run(ctx, p.rdb, p.keys(tenant)).StringSlice()
	if err != nil {
		return nil, unavailable(op, tenant.String(), err)
	}
	out := make(map[conv.AgentID]live.Status)
	for i := 0; i+1 < len(res); i += 2 {
		a, _, _ := strings.Cut(res[i], "|")
		id, err := strconv.ParseInt(a, 10, 64)
		st := live.Status(res[i+1])
		rank, ok := statusRank(st)
		if err != nil || !ok {
			return nil, unavailable(op, tenant.String(), fmt.Errorf("malformed session %.40q: %.32q", res[i], res[i+1]))
		}
		agent := conv.AgentID(id)
		if cur, seen := out[agent]; !seen || rank > rankOf(cur) {
			out[agent] = st
		}
	}
	return out, nil
}

// statusRank orders statuses for Agents: online beats away beats offline.
func statusRank(s live.Status) (int, bool) {
	switch s {
	case live.Online:
		return 2, true
	case live.Away:
		return 1, true
	case live.Offline:
		return 0, true
	}
	return 0, false
}

// rankOf ranks a status already checked by statusRank.
func rankOf(s live.Status) int {
	r, _ := statusRank(s)
	return r
}

func checkSession(op string, tenant conv.TenantID, agent conv.AgentID, session string) error {
	if err := checkIDs(op, tenant, agent); err != nil {
		return err
	}
	if session == "" || len(session) > maxSessionLen {
		return fmt.Errorf("%s %s/%s: %w: session must be 1 to %d bytes", op, tenant, agent, conv.ErrInvalid, maxSessionLen)
	}
	return nil
}
