package wxapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/connectors/wechat/wechattest"
	"github.com/switchboard-hq/switchboard/core/conv"
)

// TestBreakerPerApp: five 5xx in a row open app A's circuit (calls fail
// fast without reaching WeChat) while app B on the same WeChat keeps
// sending; after the cooldown one probe closes A's circuit again.
func TestBreakerPerApp(t *testing.T) {
	e := newEnv(t, wechattest.Config{})
	e.fake.AddApp("wxoa2", "secret2")
	e.fake.AddUser("wxoa2", user1, "")
	a := e.client(t, oaApp, KindOA, nil)
	b := e.client(t, "wxoa2", KindOA, func(c *Config) {
		st, err := NewSharedTokens(TokensConfig{AppID: "wxoa2", Secret: "secret2", APIBase: e.fake.URL(), HTTPClient: e.hc, Cache: e.cache, Lease: e.leases, Now: e.clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		c.Tokens = st
	})
	ctx := ctxT(t)
	e.open(oaApp)
	e.fake.Interact("wxoa2", user1, e.clk.Now())

	e.fake.FailHTTP(PathSend, http.StatusServiceUnavailable, 5)
	for i := range 5 {
		if err := a.SendText(ctx, user1, "x"); !Retryable(err) || errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("failure %d: %v, want a retryable 503", i, err)
		}
	}
	calls := e.fake.Calls(PathSend)
	err := a.SendText(ctx, user1, "x")
	if !errors.Is(err, ErrCircuitOpen) || !errors.Is(err, conv.ErrUnavailable) || !Retryable(err) {
		t.Fatalf("sixth call: %v, want ErrCircuitOpen", err)
	}
	if e.fake.Calls(PathSend) != calls {
		t.Fatal("an open circuit let a call through")
	}
	if err := b.SendText(ctx, user1, "b is fine"); err != nil {
		t.Fatalf("app B while A's circuit is open: %v", err)
	}

	e.clk.Advance(29 * time.Second)
	if err := a.SendText(ctx, user1, "x"); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("before the cooldown: %v, want ErrCircuitOpen", err)
	}
	e.clk.Advance(time.Second)
	if err := a.SendText(ctx, user1, "probe"); err != nil {
		t.Fatalf("probe after the cooldown: %v", err)
	}
	if err := a.SendText(ctx, user1, "closed again"); err != nil {
		t.Fatalf("after a good probe: %v", err)
	}
}

func TestBreakerProbeFailureReopens(t *testing.T) {
	e := newEnv(t, wechattest.Config{})
	a := e.client(t, oaApp, KindOA, func(c *Config) { c.BreakerThreshold = 2; c.BreakerCooldown = time.Minute })
	ctx := ctxT(t)
	e.open(oaApp)
	e.fake.FailNext(PathSend, CodeBusy, "system error", 3)
	for range 2 {
		_ = a.SendText(ctx, user1, "x")
	}
	if err := a.SendText(ctx, user1, "x"); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("after 2 failures: %v", err)
	}
	e.clk.Advance(time.Minute)
	if err := a.SendText(ctx, user1, "probe"); !errors.Is(err, conv.ErrUnavailable) || errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("probe: %v, want the -1 it met", err)
	}
	if err := a.SendText(ctx, user1, "x"); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("after a failed probe: %v, want the circuit open again", err)
	}
	if n := e.fake.Calls(PathSend); n != 3 {
		t.Fatalf("%d send calls, want 3", n)
	}
}

func TestBreakerIgnoresVerdictsAndCancels(t *testing.T) {
	e := newEnv(t, wechattest.Config{})
	a := e.client(t, oaApp, KindOA, func(c *Config) { c.BreakerThreshold = 2 })
	ctx := ctxT(t)
	e.fake.FailNext(PathSend, CodeOutOfWindow, "response out of time limit", 5)
	for i := range 5 {
		if err := a.SendText(ctx, user1, "x"); errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("call %d: a permanent verdict opened the circuit", i)
		}
	}
	e.open(oaApp)
	if err := a.SendText(ctx, user1, "x"); err != nil {
		t.Fatalf("after verdicts: %v", err)
	}

	// Cancellations neither count nor reset: fail, cancel, fail opens it.
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	e.fake.FailHTTP(PathSend, http.StatusBadGateway, 1)
	if err := a.SendText(ctx, user1, "x"); !Retryable(err) {
		t.Fatalf("first failure: %v", err)
	}
	for range 5 {
		if err := a.SendText(canceled, user1, "x"); !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled call: %v", err)
		}
	}
	e.fake.FailHTTP(PathSend, http.StatusBadGateway, 1)
	if err := a.SendText(ctx, user1, "x"); !Retryable(err) || errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("second failure: %v", err)
	}
	if err := a.SendText(ctx, user1, "x"); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("after fail, cancels, fail: %v, want the circuit open", err)
	}
}

func TestBreakerDisabled(t *testing.T) {
	e := newEnv(t, wechattest.Config{})
	a := e.client(t, oaApp, KindOA, func(c *Config) { c.BreakerThreshold = -1 })
	e.fake.FailHTTP(PathSend, 500, 10)
	for i := range 10 {
		if err := a.SendText(ctxT(t), user1, "x"); errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("call %d refused by a disabled breaker", i)
		}
	}
	if n := e.fake.Calls(PathSend); n != 10 {
		t.Fatalf("%d calls, want 10", n)
	}
}

// TestBreakerOneProbe: a half-open circuit lets exactly one of many
// concurrent callers through.
func TestBreakerOneProbe(t *testing.T) {
	clk := wechattest.NewClock(t0)
	b := newBreaker(1, time.Second, clk.Now, slog.New(slog.DiscardHandler))
	probe, err := b.allow()
	if probe || err != nil {
		t.Fatal(probe, err)
	}
	b.done(false, &HTTPError{Status: 500})
	if _, err := b.allow(); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("not open: %v", err)
	}
	clk.Advance(time.Second)
	var mu sync.Mutex
	probes := 0
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			p, err := b.allow()
			if err == nil {
				mu.Lock()
				probes++
				mu.Unlock()
			}
			if p != (err == nil) {
				t.Errorf("allowed a non-probe call in half-open: %v %v", p, err)
			}
		})
	}
	wg.Wait()
	if probes != 1 {
		t.Fatalf("%d probes, want 1", probes)
	}
	b.done(true, nil)
	if p, err := b.allow(); p || err != nil {
		t.Fatalf("after a good probe: %v %v", p, err)
	}
}
