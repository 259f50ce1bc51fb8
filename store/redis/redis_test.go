package redis_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-hq/switchboard/core/auth"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/store/redis"
	"github.com/switchboard-hq/switchboard/store/statetest"
)

var (
	_ statetest.Leases  = (*redis.Leases)(nil)
	_ statetest.Limiter = (*redis.Limiter)(nil)
	_ auth.Limiter      = (*redis.Limiter)(nil)
)

// newClient connects with a prefix no other test (or concurrent test run
// on the same Redis) uses, and deletes its keys afterwards. It also returns
// a raw go-redis client for looking at keys.
func newClient(t *testing.T, prefix string) (*redis.Client, *goredis.Client) {
	t.Helper()
	url := testenv.Require(t, "SWITCHBOARD_TEST_REDIS")
	c, err := redis.New(t.Context(), redis.Config{URL: url, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	opt, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	raw := goredis.NewClient(opt)
	t.Cleanup(func() {
		// t.Context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		match := prefix + "*"
		if prefix == "" {
			match = "sb:*" + t.Name() + "*" // default prefix: only this test's keys
		}
		iter := raw.Scan(ctx, 0, match, 100).Iterator()
		for iter.Next(ctx) {
			if err := raw.Del(ctx, iter.Val()).Err(); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		if err := iter.Err(); err != nil {
			t.Errorf("cleanup scan: %v", err)
		}
		c.Close()
		raw.Close()
	})
	return c, raw
}

func uniquePrefix() string { return "sbtest:" + rand.Text() + ":" }

func TestLeasesConformance(t *testing.T) {
	statetest.RunLeases(t, func(t *testing.T) statetest.Leases {
		c, _ := newClient(t, uniquePrefix())
		return c.Leases()
	})
}

func TestLimiterConformance(t *testing.T) {
	statetest.RunLimiter(t, func(t *testing.T) statetest.Limiter {
		c, _ := newClient(t, uniquePrefix())
		return c.Limiter()
	})
}

func TestLimiterSliding(t *testing.T) {
	statetest.RunLimiterSliding(t, func(t *testing.T, now func() time.Time) statetest.Limiter {
		c, _ := newClient(t, uniquePrefix())
		redis.SetClock(c.Limiter(), now)
		return c.Limiter()
	})
}

// Keys are namespaced as documented and always carry a TTL, so nothing a
// caller abandons stays in Redis.
func TestKeysNamespacedAndExpire(t *testing.T) {
	tests := []struct {
		name, prefix, want string
	}{
		{"custom prefix", "sbtest:" + rand.Text() + ":", ""},
		{"default prefix", "", "sb:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, raw := newClient(t, tt.prefix)
			want := tt.prefix
			if want == "" {
				want = tt.want
			}
			key := "t1:" + t.Name()
			if ok, err := c.Leases().Acquire(t.Context(), key, "node-a", time.Minute); !ok || err != nil {
				t.Fatalf("Acquire = %v, %v", ok, err)
			}
			if ok, _, err := c.Limiter().Allow(t.Context(), key, 5, time.Minute); !ok || err != nil {
				t.Fatalf("Allow = %v, %v", ok, err)
			}
			ctx := t.Context()
			if got, err := raw.Get(ctx, want+"lease:"+key).Result(); err != nil || got != "node-a" {
				t.Fatalf("GET %slease:%s = %q, %v; want node-a", want, key, got, err)
			}
			if got, err := raw.ZCard(ctx, want+"rl:"+key).Result(); err != nil || got != 1 {
				t.Fatalf("ZCARD %srl:%s = %d, %v; want 1", want, key, got, err)
			}
			for _, k := range []string{want + "lease:" + key, want + "rl:" + key} {
				ttl, err := raw.PTTL(ctx, k).Result()
				if err != nil || ttl <= 0 || ttl > time.Minute {
					t.Fatalf("PTTL %s = %s, %v; want in (0, 1m]", k, ttl, err)
				}
			}
		})
	}
}

func TestNewConfig(t *testing.T) {
	tests := []struct {
		name   string
		url    string
		kind   error
		secret string // must not appear in the error
	}{
		{"empty URL", "", conv.ErrInvalid, ""},
		{"wrong scheme", "http://127.0.0.1:6379/0", conv.ErrInvalid, ""},
		{"bad database", "redis://127.0.0.1:6379/x", conv.ErrInvalid, ""},
		{"unparseable URL with a password", "redis://user:s3cret-pw@[::1/0", conv.ErrInvalid, "s3cret-pw"},
		{"nothing listening", "redis://:s3cret-pw@127.0.0.1:1/0?dial_timeout=500ms", conv.ErrUnavailable, "s3cret-pw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := redis.New(t.Context(), redis.Config{URL: tt.url})
			if !errors.Is(err, tt.kind) || c != nil {
				t.Fatalf("New = %v, %v; want %v", c, err, tt.kind)
			}
			if tt.secret != "" && strings.Contains(err.Error(), tt.secret) {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
}

func TestPingAndErrors(t *testing.T) {
	c, _ := newClient(t, uniquePrefix())
	if err := c.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := c.Leases().Acquire(ctx, "k", "node-a", time.Minute)
	if !errors.Is(err, conv.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire with a cancelled ctx = %v; want ErrUnavailable wrapping context.Canceled", err)
	}
	_, _, err = c.Limiter().Allow(ctx, "k", 1, time.Minute)
	if !errors.Is(err, conv.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Allow with a cancelled ctx = %v; want ErrUnavailable wrapping context.Canceled", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Ping(t.Context()); !errors.Is(err, conv.ErrUnavailable) {
		t.Fatalf("Ping after Close = %v; want ErrUnavailable", err)
	}
}
