package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/ingest"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// gated is a message.Publisher whose first Publish waits for release, the
// way a bus write in flight holds the group's flusher.
type gated struct {
	mu      sync.Mutex
	msgs    []*message.Message
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gated) Publish(_ string, msgs ...*message.Message) error {
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.started)
		<-g.release
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.msgs = append(g.msgs, msgs...)
	return nil
}
func (g *gated) Close() error { return nil }

func envelope(i int) conv.Inbound {
	return conv.Inbound{TenantID: 1, ChannelID: 2, ExternalID: fmt.Sprintf("m%d", i),
		From: conv.Identity{Kind: "test", ExternalID: "c"}, Parts: []conv.Part{{Type: conv.PartText, Text: "hi"}}, SentAt: time.Now()}
}

func TestGroupInboundSharesOneWrite(t *testing.T) {
	g := &gated{started: make(chan struct{}), release: make(chan struct{})}
	p := NewPublisher(g)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	p.GroupInbound(ctx, GroupConfig{Flushers: 1})

	errs := make(chan error, 21)
	go func() { errs <- p.PublishInbound(ctx, envelope(0)) }()
	<-g.started // envelope 0's write is in flight
	for i := 1; i <= 20; i++ {
		go func() { errs <- p.PublishInbound(ctx, envelope(i)) }()
	}
	testenv.WaitFor(t, 10*time.Second, "20 envelopes queued behind the write in flight",
		func() bool { return len(p.group.Load().queue) == 20 })
	close(g.release)
	for range 21 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if len(g.msgs) != 2 {
		t.Fatalf("%d bus messages, want 2 (one alone, then one group of 20)", len(g.msgs))
	}
	if typ := g.msgs[0].Metadata.Get(MetaType); typ != TypeInbound {
		t.Errorf("first message type %q, want %q", typ, TypeInbound)
	}
	if typ := g.msgs[1].Metadata.Get(MetaType); typ != TypeInboundBatch {
		t.Errorf("second message type %q, want %q", typ, TypeInboundBatch)
	}
	seen := map[string]bool{}
	for _, m := range g.msgs {
		envs, err := DecodeInbound(m)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range envs {
			if seen[e.ExternalID] {
				t.Errorf("%s published twice", e.ExternalID)
			}
			seen[e.ExternalID] = true
		}
	}
	if len(seen) != 21 {
		t.Errorf("%d distinct envelopes on the bus, want 21", len(seen))
	}
}

// With MinInterval a write that would start too soon after the last one
// waits out the rest, and envelopes arriving meanwhile join it; after a
// quiet spell nothing waits.
func TestGroupInboundMinInterval(t *testing.T) {
	var c capture
	p := NewPublisher(&c)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var mu sync.Mutex
	clock := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	waits := make(chan time.Duration, 4)
	proceed := make(chan struct{})
	sleep := func(d time.Duration) { waits <- d; <-proceed }
	p.GroupInbound(ctx, GroupConfig{Flushers: 1, MinInterval: 5 * time.Millisecond, now: now, sleep: sleep})

	errs := make(chan error, 21)
	publish := func(i int) { errs <- p.PublishInbound(ctx, envelope(i)) }
	// done waits for n publishes, failing on any wait meanwhile.
	done := func(n int, what string) {
		t.Helper()
		for range n {
			select {
			case err := <-errs:
				if err != nil {
					t.Fatal(err)
				}
			case d := <-waits:
				t.Fatalf("%s: the write waited %v", what, d)
			}
		}
	}

	go publish(0)
	done(1, "first write") // nothing was written before: no wait
	advance(time.Millisecond)
	go publish(1)
	select {
	case d := <-waits:
		if d != 4*time.Millisecond {
			t.Fatalf("1 ms after the last write started, the next waited %v, want the remaining 4ms", d)
		}
	case err := <-errs:
		t.Fatalf("1 ms after the last write started, the next went out at once (%v)", err)
	}
	for i := 2; i <= 20; i++ {
		go publish(i)
	}
	testenv.WaitFor(t, 10*time.Second, "19 envelopes queued during the wait",
		func() bool { return len(p.group.Load().queue) == 19 })
	advance(4 * time.Millisecond)
	proceed <- struct{}{}
	done(20, "the group after the wait")
	if len(c.msgs) != 2 || c.msgs[1].Metadata.Get(MetaType) != TypeInboundBatch {
		t.Fatalf("%d bus messages, want 2 (envelope 0 alone, then 1–20 as one group)", len(c.msgs))
	}
	if envs, err := DecodeInbound(c.msgs[1]); err != nil || len(envs) != 20 {
		t.Fatalf("second write holds %d envelopes (%v), want 20", len(envs), err)
	}

	advance(time.Second) // a quiet spell
	go publish(21)
	done(1, "after a quiet spell")
	if len(c.msgs) != 3 {
		t.Fatalf("%d bus messages, want 3", len(c.msgs))
	}
}

func TestPublishInboundRefusesInvalidEnvelope(t *testing.T) {
	var c capture
	bad := envelope(1)
	bad.Parts = nil
	err := NewPublisher(&c).PublishInbound(t.Context(), bad)
	if !errors.Is(err, conv.ErrInvalid) || len(c.msgs) != 0 {
		t.Fatalf("PublishInbound(no parts) = %v with %d messages, want ErrInvalid and nothing published", err, len(c.msgs))
	}
}

// acceptor fails the envelopes named in fail with their error.
type acceptor struct {
	mu       sync.Mutex
	accepted []string
	fail     map[string]error
}

func (a *acceptor) Accept(_ context.Context, in conv.Inbound) (ingest.Result, error) {
	if err := a.fail[in.ExternalID]; err != nil {
		return ingest.Result{}, err
	}
	a.mu.Lock()
	a.accepted = append(a.accepted, in.ExternalID)
	a.mu.Unlock()
	return ingest.Result{}, nil
}

func TestInboundHandlerBatch(t *testing.T) {
	batchOf := func(t *testing.T, n int) *message.Message {
		t.Helper()
		var c capture
		p := NewPublisher(&c)
		var batch []pending
		for i := range n {
			raw, _ := json.Marshal(envelope(i))
			batch = append(batch, pending{in: envelope(i), raw: raw})
		}
		if err := p.publishInbound(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
		return c.msgs[0]
	}
	t.Run("all stored", func(t *testing.T) {
		a := &acceptor{}
		var requeued capture
		if err := InboundHandler(a, NewPublisher(&requeued))(batchOf(t, 5)); err != nil {
			t.Fatal(err)
		}
		if len(a.accepted) != 5 || len(requeued.msgs) != 0 {
			t.Fatalf("accepted %v, requeued %d; want all 5 accepted, none requeued", a.accepted, len(requeued.msgs))
		}
	})
	t.Run("permanent failure goes on alone", func(t *testing.T) {
		a := &acceptor{fail: map[string]error{"m3": fmt.Errorf("channel gone: %w", conv.ErrNotFound)}}
		var requeued capture
		if err := InboundHandler(a, NewPublisher(&requeued))(batchOf(t, 5)); err != nil {
			t.Fatalf("handler = %v, want the batch acked", err)
		}
		if len(a.accepted) != 4 || len(requeued.msgs) != 1 {
			t.Fatalf("accepted %v, requeued %d; want 4 accepted and m3 requeued", a.accepted, len(requeued.msgs))
		}
		envs, err := DecodeInbound(requeued.msgs[0])
		if err != nil || len(envs) != 1 || envs[0].ExternalID != "m3" || requeued.msgs[0].Metadata.Get(MetaType) != TypeInbound {
			t.Fatalf("requeued %+v (%v), want m3 alone as a plain inbound message", envs, err)
		}
	})
	t.Run("transient failure redelivers the batch", func(t *testing.T) {
		a := &acceptor{fail: map[string]error{"m1": fmt.Errorf("store down: %w", conv.ErrUnavailable)}}
		var requeued capture
		err := InboundHandler(a, NewPublisher(&requeued))(batchOf(t, 5))
		if err == nil || conv.Permanent(err) || len(requeued.msgs) != 0 {
			t.Fatalf("handler = %v with %d requeued, want a transient error and nothing requeued", err, len(requeued.msgs))
		}
	})
}
