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
	rdb     *goredis.Client
	leases  *Leases
	limiter *Limiter
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
		rdb:     rdb,
		leases:  &Leases{rdb: rdb, prefix: cfg.Prefix + "lease:"},
		limiter: newLimiter(rdb, cfg.Prefix+"rl:"),
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

// Close closes the connection pool. Leases held are not released: they
// expire, and whoever takes over next does so after their TTL.
func (c *Client) Close() error { return c.rdb.Close() }

// Leases returns the client's leases.
func (c *Client) Leases() *Leases { return c.leases }

// Limiter returns the client's rate limiter.
func (c *Client) Limiter() *Limiter { return c.limiter }

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
)

func checkKey(op, key string) error {
	if key == "" || len(key) > maxKeyLen {
		return fmt.Errorf("%s: %w: key must be 1 to %d bytes", op, conv.ErrInvalid, maxKeyLen)
	}
	return nil
}
