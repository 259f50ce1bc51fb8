package bus

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// testWriter sends log lines to t until the test's cleanups have run;
// after that (a straggling goroutine) they are dropped, as t.Log would
// panic.
type testWriter struct {
	t    testing.TB
	done atomic.Bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// testLogger logs at Warn and above into t: the bus's dead-letter and
// error lines show in a failing test's output.
func testLogger(t testing.TB) *slog.Logger {
	t.Helper()
	w := &testWriter{t: t}
	// Registered first, so it runs last: after the bus has closed.
	t.Cleanup(func() { w.done.Store(true) })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// fastConfig is the production configuration with its timers shortened
// so that redelivery and giving up happen within a test's patience.
func fastConfig(t testing.TB) Config {
	t.Helper()
	return Config{
		DataDir:     t.TempDir(),
		Logger:      testLogger(t),
		AckWait:     2 * time.Second,
		Subscribers: 4,
		MaxDeliver:  3,
		Retry:       Retry{MaxRetries: 2, InitialInterval: 10 * time.Millisecond, MaxInterval: 50 * time.Millisecond},
		Redelivery:  Backoff{InitialInterval: 20 * time.Millisecond, MaxInterval: 100 * time.Millisecond},
	}
}

// openBus opens a bus for the test and closes it when the test ends.
func openBus(t testing.TB, cfg Config) *Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// runRouter runs r until the test ends.
func runRouter(t testing.TB, r *message.Router) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("router.Run: %v", err)
		}
	})
	select {
	case <-r.Running():
	case err := <-done:
		t.Fatalf("router stopped before running: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("router not running after 30s")
	}
}

// settled waits until the group's consumer on topic has nothing left to
// deliver and nothing unacked: from then on no handler call can happen.
func settled(t testing.TB, b *Bus, group, topic string) {
	t.Helper()
	stream, err := b.js.StreamNameBySubject(topic)
	if err != nil {
		t.Fatalf("stream for %s: %v", topic, err)
	}
	testenv.WaitFor(t, 30*time.Second, "consumer "+group+" on "+topic+" to settle", func() bool {
		ci, err := b.js.ConsumerInfo(stream, durableName(group, topic))
		if errors.Is(err, nats.ErrConsumerNotFound) {
			return false
		}
		if err != nil {
			t.Fatalf("consumer info: %v", err)
		}
		return ci.NumPending == 0 && ci.NumAckPending == 0 && ci.NumRedelivered == 0 && ci.Delivered.Stream > 0
	})
}

// streamMsgs is how many messages the stream behind topic stores.
func streamMsgs(t testing.TB, b *Bus, topic string) uint64 {
	t.Helper()
	stream, err := b.js.StreamNameBySubject(topic)
	if err != nil {
		t.Fatalf("stream for %s: %v", topic, err)
	}
	si, err := b.js.StreamInfo(stream)
	if err != nil {
		t.Fatalf("stream info %s: %v", stream, err)
	}
	return si.State.Msgs
}

// collector records what a handler receives.
type collector struct {
	mu   sync.Mutex
	msgs []*message.Message
}

func (c *collector) add(m *message.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, m)
}

func (c *collector) all() []*message.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*message.Message(nil), c.msgs...)
}

// readN reads n messages from ch, acking each, within timeout.
func readN(t testing.TB, ch <-chan *message.Message, n int, timeout time.Duration) []*message.Message {
	t.Helper()
	var got []*message.Message
	deadline := time.After(timeout)
	for len(got) < n {
		select {
		case m, ok := <-ch:
			if !ok {
				t.Fatalf("channel closed after %d of %d messages", len(got), n)
			}
			got = append(got, m)
			m.Ack()
		case <-deadline:
			t.Fatalf("got %d of %d messages in %s", len(got), n, timeout)
		}
	}
	return got
}
