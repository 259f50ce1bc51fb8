package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Values is a small key-value store with expiry that every node sharing the
// Redis sees: for values a cluster must hold once, such as a WeChat app's
// access token (one per app, not one per node). Callers seal what is
// secret before it reaches here.
type Values struct {
	rdb    *goredis.Client
	prefix string
}

// Values returns the client's shared values.
func (c *Client) Values() *Values { return &Values{rdb: c.rdb, prefix: c.prefix + "val:"} }

// Get returns key's value and when it expires; ok is false when there is
// none (never set, or expired).
func (v *Values) Get(ctx context.Context, key string) (value string, expires time.Time, ok bool, err error) {
	const op = "redis.Values.Get"
	pipe := v.rdb.Pipeline()
	get := pipe.Get(ctx, v.prefix+key)
	ttl := pipe.PTTL(ctx, v.prefix+key)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return "", time.Time{}, false, unavailable(op, key, err)
	}
	value, err = get.Result()
	if errors.Is(err, goredis.Nil) {
		return "", time.Time{}, false, nil
	}
	if err != nil {
		return "", time.Time{}, false, unavailable(op, key, err)
	}
	d := ttl.Val()
	if d <= 0 {
		// Expiring this very moment, or stored without an expiry (never by Set).
		return "", time.Time{}, false, nil
	}
	return value, time.Now().Add(d), true, nil
}

// Set stores value under key until expires.
func (v *Values) Set(ctx context.Context, key, value string, expires time.Time) error {
	const op = "redis.Values.Set"
	d := time.Until(expires)
	if d < time.Millisecond {
		return fmt.Errorf("%s %s: %w: already expired", op, key, conv.ErrInvalid)
	}
	if err := v.rdb.Set(ctx, v.prefix+key, value, d).Err(); err != nil {
		return unavailable(op, key, err)
	}
	return nil
}
