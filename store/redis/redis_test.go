package redis_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-hq/switchboard/core/auth"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/live"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/store/redis"
	"github.com/switchboard-hq/switchboard/store/statetest"
)

var (
	_ statetest.Leases  = (*redis.Leases)(nil)
	_ statetest.Limiter = (*redis.Limiter)(nil)
	_ auth.Limiter      = (*redis.Limiter)(nil)

	_ live.Timelines    = (*redis.Timelines)(nil)
	_ live.Fanout       = (*redis.Fanout)(nil)
	_ live.Subscription = (*redis.Subscription)(nil)
	_ live.Presence     = (*redis.Presence)(nil)
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
	tl, err := c.Timelines(redis.TimelinesConfig{})
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"Timelines.Append": func() error { _, _, err := tl.Append(ctx, 1, 1, "k", nil); return err },
		"Timelines.Since":  func() error { _, err := tl.Since(ctx, 1, 1, 0, 10); return err },
		"Timelines.Head":   func() error { _, err := tl.Head(ctx, 1, 1); return err },
		"Fanout.Publish":   func() error { return c.Fanout().Publish(ctx, "t", nil) },
		"Fanout.Subscribe": func() error { _, err := c.Fanout().Subscribe(ctx, "t"); return err },
		"Presence.Set":     func() error { return c.Presence().Set(ctx, 1, 1, "s", live.Online, time.Minute) },
		"Presence.Remove":  func() error { return c.Presence().Remove(ctx, 1, 1, "s") },
		"Presence.Agents":  func() error { _, err := c.Presence().Agents(ctx, 1); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, conv.ErrUnavailable) || !errors.Is(err, context.Canceled) {
			t.Fatalf("%s with a cancelled ctx = %v; want ErrUnavailable wrapping context.Canceled", name, err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Ping(t.Context()); !errors.Is(err, conv.ErrUnavailable) {
		t.Fatalf("Ping after Close = %v; want ErrUnavailable", err)
	}
}

// twoNodes returns two clients sharing a fresh prefix: two nodes.
func twoNodes(t *testing.T) (*redis.Client, *redis.Client) {
	prefix := uniquePrefix()
	a, _ := newClient(t, prefix)
	b, _ := newClient(t, prefix)
	return a, b
}

func TestTimelinesConformance(t *testing.T) {
	statetest.RunTimelines(t, func(t *testing.T, cfg statetest.TimelinesConfig) (live.Timelines, live.Timelines) {
		a, b := twoNodes(t)
		rc := redis.TimelinesConfig{MaxEntries: cfg.MaxEntries, Retention: cfg.Retention}
		ta, err := a.Timelines(rc)
		if err != nil {
			t.Fatal(err)
		}
		tb, err := b.Timelines(rc)
		if err != nil {
			t.Fatal(err)
		}
		return ta, tb
	})
}

func TestFanoutConformance(t *testing.T) {
	statetest.RunFanout(t, func(t *testing.T) (live.Fanout, live.Fanout) {
		a, b := twoNodes(t)
		return a.Fanout(), b.Fanout()
	})
}

func TestPresenceConformance(t *testing.T) {
	statetest.RunPresence(t, func(t *testing.T) (live.Presence, live.Presence) {
		a, b := twoNodes(t)
		return a.Presence(), b.Presence()
	})
}

func TestTimelinesConfig(t *testing.T) {
	c, _ := newClient(t, uniquePrefix())
	tests := []struct {
		name string
		cfg  redis.TimelinesConfig
		ok   bool
	}{
		{"defaults", redis.TimelinesConfig{}, true},
		{"smallest", redis.TimelinesConfig{MaxEntries: 1, Retention: time.Millisecond}, true},
		{"negative MaxEntries", redis.TimelinesConfig{MaxEntries: -1}, false},
		{"MaxEntries too large", redis.TimelinesConfig{MaxEntries: 100001}, false},
		{"negative Retention", redis.TimelinesConfig{Retention: -time.Hour}, false},
		{"sub-millisecond Retention", redis.TimelinesConfig{Retention: 999 * time.Microsecond}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl, err := c.Timelines(tt.cfg)
			if tt.ok != (err == nil) || tt.ok != (tl != nil) {
				t.Fatalf("Timelines = %v, %v; want ok %v", tl, err, tt.ok)
			}
			if !tt.ok && !errors.Is(err, conv.ErrInvalid) {
				t.Fatalf("Timelines = %v, want ErrInvalid", err)
			}
		})
	}
}

// Timeline and presence keys are namespaced as documented and carry their
// TTL, except a timeline's head, which must outlive its entries; fan-out
// channels carry the prefix too.
func TestLiveKeysNamespacedAndExpire(t *testing.T) {
	prefix := uniquePrefix()
	c, raw := newClient(t, prefix)
	ctx := t.Context()
	tl, err := c.Timelines(redis.TimelinesConfig{Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tl.Append(ctx, 7, 9, "k", []byte("e")); err != nil {
		t.Fatal(err)
	}
	if err := c.Presence().Set(ctx, 7, 9, "s", live.Online, time.Minute); err != nil {
		t.Fatal(err)
	}
	ttls := []struct {
		key string
		max time.Duration // 0: no TTL
	}{
		{prefix + "tl:{7:9}:n", 0},
		{prefix + "tl:{7:9}:e", time.Hour},
		{prefix + "tl:{7:9}:k", time.Hour},
		{prefix + "pr:{7}:exp", time.Minute},
		{prefix + "pr:{7}:st", time.Minute},
	}
	for _, k := range ttls {
		ttl, err := raw.PTTL(ctx, k.key).Result()
		switch {
		case err != nil:
			t.Fatalf("PTTL %s: %v", k.key, err)
		case k.max == 0 && ttl != -1:
			t.Fatalf("PTTL %s = %s; want no TTL", k.key, ttl)
		case k.max > 0 && (ttl <= 0 || ttl > k.max+time.Millisecond):
			t.Fatalf("PTTL %s = %s; want in (0, %s]", k.key, ttl, k.max)
		}
	}
	if got, err := raw.Get(ctx, prefix+"tl:{7:9}:n").Result(); err != nil || got != "1" {
		t.Fatalf("GET head = %q, %v; want 1", got, err)
	}

	ps := raw.Subscribe(ctx, prefix+"fo:"+live.TenantTopic(7))
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil { // the confirmation
		t.Fatal(err)
	}
	if err := c.Fanout().Publish(ctx, live.TenantTopic(7), []byte("hi")); err != nil {
		t.Fatal(err)
	}
	msg, err := ps.ReceiveMessage(ctx)
	if err != nil || msg.Payload != "hi" {
		t.Fatalf("raw subscriber got %v, %v; want hi", msg, err)
	}
}

// numsub is how many Redis connections subscribe to the channel of topic.
func numsub(t *testing.T, raw *goredis.Client, channel string) func() (int64, error) {
	return func() (int64, error) {
		m, err := raw.PubSubNumSub(t.Context(), channel).Result()
		return m[channel], err
	}
}

func poll(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	testenv.WaitFor(t, 5*time.Second, what, func() bool {
		ok, err := cond()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return ok
	})
}

// A node's subscriptions to one topic share one Redis subscription, which
// the last of them to close ends.
func TestFanoutSharesSubscription(t *testing.T) {
	prefix := uniquePrefix()
	c, raw := newClient(t, prefix)
	ctx := t.Context()
	topic := live.AgentTopic(1, 1)
	channel := prefix + "fo:" + topic
	count := numsub(t, raw, channel)
	s1, err := c.Fanout().Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := c.Fanout().Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := count(); err != nil || n != 1 {
		t.Fatalf("NUMSUB with two local subscribers = %d, %v; want 1", n, err)
	}
	s1.Close()
	if n, err := count(); err != nil || n != 1 {
		t.Fatalf("NUMSUB with one local subscriber left = %d, %v; want 1", n, err)
	}
	s2.Close()
	poll(t, "UNSUBSCRIBE after the last local subscriber closed", func() (bool, error) {
		n, err := count()
		return n == 0, err
	})
	// Subscribing again right after the UNSUBSCRIBE, before its reply, must
	// wait for its own confirmation, not take an earlier one.
	for round := range 20 {
		s, err := c.Fanout().Subscribe(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		s, err = c.Fanout().Subscribe(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprint("round ", round)
		if err := c.Fanout().Publish(ctx, topic, []byte(want)); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-s.C():
			if string(got) != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: resubscribed subscription received nothing", round)
		}
		s.Close()
	}
}

// A subscriber that does not read drops what its buffer cannot hold, and
// says so.
func TestFanoutCountsDrops(t *testing.T) {
	c, _ := newClient(t, uniquePrefix())
	ctx := t.Context()
	s, err := c.Fanout().Subscribe(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sub := s.(*redis.Subscription)
	poll(t, "a drop counted", func() (bool, error) {
		for range 100 {
			if err := c.Fanout().Publish(ctx, "t", []byte("x")); err != nil {
				return false, err
			}
		}
		return sub.Dropped() > 0, nil
	})
	if len(s.C()) != redis.SubscriptionBuffer {
		t.Fatalf("%d buffered while dropping, want %d", len(s.C()), redis.SubscriptionBuffer)
	}
	if got := c.Fanout().Dropped(); got < sub.Dropped() {
		t.Fatalf("Fanout.Dropped = %d, under the subscription's %d", got, sub.Dropped())
	}
}

// Closing the client closes every subscription's channel; the fan-out then
// refuses work.
func TestFanoutClientClose(t *testing.T) {
	url := testenv.Require(t, "SWITCHBOARD_TEST_REDIS")
	c, err := redis.New(t.Context(), redis.Config{URL: url, Prefix: uniquePrefix()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	s, err := c.Fanout().Subscribe(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case _, ok := <-s.C():
		if ok {
			t.Fatal("received a message after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("C still open after Client.Close")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Subscription.Close after Client.Close: %v", err)
	}
	if _, err := c.Fanout().Subscribe(ctx, "t"); !errors.Is(err, conv.ErrUnavailable) {
		t.Fatalf("Subscribe after Close = %v, want ErrUnavailable", err)
	}
	if err := c.Fanout().Publish(ctx, "t", nil); !errors.Is(err, conv.ErrUnavailable) {
		t.Fatalf("Publish after Close = %v, want ErrUnavailable", err)
	}
}

// Subscribe returns only once Redis has confirmed the SUBSCRIBE. Against a
// local Redis a Publish right after an unconfirmed SUBSCRIBE is usually
// received anyway, so the conformance suite cannot tell; holding the
// confirmation back can.
func TestSubscribeWaitsForConfirmation(t *testing.T) {
	c, _ := newClient(t, uniquePrefix())
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // before the client's cleanup closes it
	redis.HoldConfirmations(c.Fanout(), release)
	done := make(chan error, 1)
	go func() {
		s, err := c.Fanout().Subscribe(t.Context(), "t")
		if err == nil {
			s.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Subscribe returned (%v) before its confirmation was handled", err)
	case <-time.After(200 * time.Millisecond): // observing that it does not return
	}
	releaseOnce()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Subscribe did not return after its confirmation")
	}
}

func TestValues(t *testing.T) {
	c, raw := newClient(t, uniquePrefix())
	v := c.Values()
	ctx := t.Context()
	if _, _, ok, err := v.Get(ctx, "wechat:token:wx1"); err != nil || ok {
		t.Fatalf("Get of a missing key = ok %v, %v", ok, err)
	}
	exp := time.Now().Add(2 * time.Hour)
	if err := v.Set(ctx, "wechat:token:wx1", "sealed-token", exp); err != nil {
		t.Fatal(err)
	}
	got, until, ok, err := v.Get(ctx, "wechat:token:wx1")
	if err != nil || !ok || got != "sealed-token" || until.Before(exp.Add(-time.Second)) || until.After(exp.Add(time.Second)) {
		t.Fatalf("Get = %q until %v ok %v %v; want the value until %v", got, until, ok, err, exp)
	}
	if err := v.Set(ctx, "gone", "x", time.Now().Add(-time.Second)); !errors.Is(err, conv.ErrInvalid) {
		t.Fatalf("Set of an expired value = %v, want ErrInvalid", err)
	}
	if n, _ := raw.Exists(ctx, "sealed-token").Result(); n != 0 {
		t.Fatal("value stored under its own text")
	}
}
