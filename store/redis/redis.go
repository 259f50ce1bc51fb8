package redis

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Config configures a Client.
type Config struct {
	// URL is redis://[user:password@]host:port/db or rediss:// for TLS,
	// with go-redis's query options (dial_timeout, pool_size, …).
	URL string
	// Prefix starts every key (default "sb:"); tests use a unique one each.
	Prefix string
}

func (c *Config) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = "sb:"
	}
}

// Client is a connection pool to Redis and the state kept there.
type Client struct {
	rdb      *goredis.Client
	prefix   string
	leases   *Leases
	limiter  *Limiter
	fanout   *Fanout
	presence *Presence
}

// New connects to cfg.URL and pings it, so a wrong address or password
// fails at start rather than at the first login. ctx bounds the ping.
func New(ctx context.Context, cfg Config) (*Client, error) {
	cfg.setDefaults()
	if cfg.URL == "" {
		return nil, fmt.Errorf("redis.New: %w: Config.URL is required", conv.ErrInvalid)
	}
	opt, err := goredis.ParseURL(cfg.URL)
	if err != nil {
		// url.Error quotes the whole URL, password included; keep only
		// its reason.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("redis.New: %w: Config.URL: %v", conv.ErrInvalid, err)
	}
	rdb := goredis.NewClient(opt)
	c := &Client{
		rdb:      rdb,
		prefix:   cfg.Prefix,
		leases:   &Leases{rdb: rdb, prefix: cfg.Prefix + "lease:"},
		limiter:  newLimiter(rdb, cfg.Prefix+"rl:"),
		fanout:   newFanout(rdb, cfg.Prefix+"fo:"),
		presence: &Presence{rdb: rdb, prefix: cfg.Prefix + "pr:"},
	}
	if err := c.Ping(ctx); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("redis.New: %w", err)
	}
	return c, nil
}

// Ping checks that Redis answers; for readiness probes.
func (c *Client) Ping(ctx context.Context) error {
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis.Ping: %w: %w", conv.ErrUnavailable, err)
	}
	return nil
}

// Close ends the fan-out's subscriptions (closing their channels), then
// closes the connection pool. Leases held are not released: they expire,
// and whoever takes over next does so after their TTL. Presence sessions
// likewise lapse after their TTL.
func (c *Client) Close() error {
	ferr := c.fanout.close()
	if err := c.rdb.Close(); err != nil {
		return err
	}
	return ferr
}

// Leases returns the client's leases.
func (c *Client) Leases() *Leases { return c.leases }

// Limiter returns the client's rate limiter.
func (c *Client) Limiter() *Limiter { return c.limiter }

// Timelines returns the agents' inbox timelines, configured by cfg (zero
// fields take their defaults). Several may share a Client; nodes sharing a
// Redis should pass the same cfg.
func (c *Client) Timelines(cfg TimelinesConfig) (*Timelines, error) {
	return newTimelines(c.rdb, c.prefix+"tl:", cfg)
}

// Fanout returns the client's fan-out. Its subscriptions share one Redis
// connection, made by the first Subscribe.
func (c *Client) Fanout() *Fanout { return c.fanout }

// Presence returns the client's agent presence.
func (c *Client) Presence() *Presence { return c.presence }

// unavailable wraps a Redis error with the operation. A cancelled ctx stays
// visible to errors.Is through the second %w.
func unavailable(op, key string, err error) error {
	return fmt.Errorf("%s %s: %w: %w", op, key, conv.ErrUnavailable, err)
}

// Input bounds, the same as store/memory enforces (see store/statetest).
const (
	maxKeyLen    = 1024
	maxHolderLen = 256
	maxLimit     = 10000
	// maxEventLen bounds a timeline event and a fan-out payload: room for
	// a message of conv.MaxTextRune characters, encoded, with its parts.
	maxEventLen   = 1 << 20
	maxSessionLen = 256
)

func checkKey(op, key string) error {
	if key == "" || len(key) > maxKeyLen {
		return fmt.Errorf("%s: %w: key must be 1 to %d bytes", op, conv.ErrInvalid, maxKeyLen)
	}
	return nil
}

// checkIDs rejects the zero tenant and agent: they are always a caller's
// bug, and keys under them would mix unrelated callers' state.
func checkIDs(op string, tenant conv.TenantID, agent conv.AgentID) error {
	if tenant.IsZero() || agent.IsZero() {
		return fmt.Errorf("%s %s/%s: %w: tenant and agent are required", op, tenant, agent, conv.ErrInvalid)
	}
	return nil
}
