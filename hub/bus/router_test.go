package bus

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// recorder is a handler that records each call's delivery attempt and
// correlation id, and behaves as told by its call number (1-based).
type recorder struct {
	mu       sync.Mutex
	attempts []string
	corr     []string
	behave   func(call int) error
}

func (r *recorder) handle(m *message.Message) error {
	r.mu.Lock()
	r.attempts = append(r.attempts, m.Metadata.Get(MetaDeliveryAttempt))
	r.corr = append(r.corr, middleware.MessageCorrelationID(m))
	call := len(r.attempts)
	r.mu.Unlock()
	return r.behave(call)
}

func (r *recorder) calls() (attempts, corr []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.attempts), slices.Clone(r.corr)
}

// poisonReader reads the poison topic as an outside observer would.
func poisonReader(t *testing.T, b *Bus) <-chan *message.Message {
	t.Helper()
	sub, err := b.Subscriber("observer")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	ch, err := sub.Subscribe(context.Background(), TopicPoison)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func TestRouter(t *testing.T) {
	invalid := fmt.Errorf("decode envelope: %w", conv.ErrInvalid)
	down := fmt.Errorf("store: %w", conv.ErrUnavailable)
	// fastConfig: MaxDeliver 3, Retry.MaxRetries 2.
	cases := []struct {
		name   string
		behave func(call int) error
		// delivery attempt seen by each call: in-process retries repeat
		// an attempt, redeliveries increase it.
		wantAttempts []string
		wantReason   string // "" = not poisoned
	}{
		{
			name:         "permanent error is poisoned without retries",
			behave:       func(int) error { return invalid },
			wantAttempts: []string{"1"},
			wantReason:   "decode envelope: invalid",
		},
		{
			name: "transient error recovering on the third try is handled",
			behave: func(call int) error {
				if call < 3 {
					return down
				}
				return nil
			},
			wantAttempts: []string{"1", "1", "1"},
		},
		{
			name: "transient error outlasting the retries is redelivered",
			behave: func(call int) error {
				if call <= 3 {
					return down
				}
				return nil
			},
			wantAttempts: []string{"1", "1", "1", "2"},
		},
		{
			name:         "transient error on every delivery is poisoned after MaxDeliver",
			behave:       func(int) error { return down },
			wantAttempts: []string{"1", "1", "1", "2", "2", "2", "3", "3", "3"},
			wantReason:   "gave up after delivery 3 of 3: store: unavailable",
		},
		{
			name: "transient then permanent stops at the permanent one",
			behave: func(call int) error {
				if call == 1 {
					return down
				}
				return fmt.Errorf("tenant: %w", conv.ErrNotFound)
			},
			wantAttempts: []string{"1", "1"},
			wantReason:   "tenant: not found",
		},
		{
			name: "panic is an error: retried, then handled",
			behave: func(call int) error {
				if call == 1 {
					panic("nil map")
				}
				return nil
			},
			wantAttempts: []string{"1", "1"},
		},
		{
			name:         "panic on every delivery is poisoned with its value",
			behave:       func(int) error { panic("nil map") },
			wantAttempts: []string{"1", "1", "1", "2", "2", "2", "3", "3", "3"},
			wantReason:   `panic occurred: "nil map"`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := openBus(t, fastConfig(t))
			poison := poisonReader(t, b)
			r, err := b.NewRouter()
			if err != nil {
				t.Fatal(err)
			}
			rec := &recorder{behave: tc.behave}
			sub, err := b.Subscriber("core-ingest")
			if err != nil {
				t.Fatal(err)
			}
			r.AddConsumerHandler("ingest", TopicInbound, sub, rec.handle)
			runRouter(t, r)

			msg := message.NewMessage("in-1", []byte(`{"tenant_id":"42"}`))
			if err := b.Publisher().Publish(TopicInbound, msg); err != nil {
				t.Fatal(err)
			}
			var poisoned *message.Message
			if tc.wantReason != "" {
				poisoned = readN(t, poison, 1, 30*time.Second)[0]
			}
			// Acked: no call can follow, and a poison message is
			// published before the ack.
			settled(t, b, "core-ingest", TopicInbound)

			attempts, corr := rec.calls()
			if !slices.Equal(attempts, tc.wantAttempts) {
				t.Errorf("delivery attempts per call = %v, want %v", attempts, tc.wantAttempts)
			}
			// In-process retries keep the id the first attempt got; a
			// redelivery starts from the stored message again.
			perDelivery := map[string]string{}
			for i, c := range corr {
				if prev, ok := perDelivery[attempts[i]]; c == "" || (ok && prev != c) {
					t.Errorf("correlation ids per call = %v (attempts %v), want one non-empty per delivery", corr, attempts)
					break
				}
				perDelivery[attempts[i]] = c
			}
			wantPoison := uint64(0)
			if tc.wantReason != "" {
				wantPoison = 1
			}
			if n := streamMsgs(t, b, TopicPoison); n != wantPoison {
				t.Fatalf("POISON holds %d messages, want %d", n, wantPoison)
			}
			if poisoned == nil {
				return
			}
			md := poisoned.Metadata
			for key, want := range map[string]string{
				middleware.PoisonedTopicKey:   TopicInbound,
				middleware.PoisonedHandlerKey: "ingest",
				MetaPoisonedUUID:              "in-1",
			} {
				if md.Get(key) != want {
					t.Errorf("poison metadata %s = %q, want %q", key, md.Get(key), want)
				}
			}
			if reason := md.Get(middleware.ReasonForPoisonedKey); !strings.Contains(reason, tc.wantReason) {
				t.Errorf("poison reason = %q, want it to contain %q", reason, tc.wantReason)
			}
			if string(poisoned.Payload) != `{"tenant_id":"42"}` {
				t.Errorf("poison payload = %q", poisoned.Payload)
			}
			if poisoned.UUID == "in-1" {
				t.Error("poison message reuses the failed message's UUID")
			}
		})
	}
}

// TestRouterGivesUpOnHungHandler: a handler that never returns (past
// AckWait) gets no error to report; the delivery after MaxDeliver goes to
// the poison topic without calling it.
func TestRouterGivesUpOnHungHandler(t *testing.T) {
	cfg := fastConfig(t)
	cfg.AckWait = 300 * time.Millisecond
	b := openBus(t, cfg)
	poison := poisonReader(t, b)
	r, err := b.NewRouter()
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	rec := &recorder{behave: func(int) error { <-release; return nil }}
	sub, err := b.Subscriber("hung")
	if err != nil {
		t.Fatal(err)
	}
	r.AddConsumerHandler("hung", TopicEvents, sub, rec.handle)
	runRouter(t, r)
	defer close(release) // before the router's cleanup waits for handlers

	if err := b.Publisher().Publish(TopicEvents, message.NewMessage("ev-1", nil)); err != nil {
		t.Fatal(err)
	}
	p := readN(t, poison, 1, 30*time.Second)[0]
	if reason := p.Metadata.Get(middleware.ReasonForPoisonedKey); !strings.Contains(reason, "delivery 4 of 3: earlier deliveries were not acknowledged") {
		t.Errorf("reason = %q", reason)
	}
	if attempts, _ := rec.calls(); !slices.Equal(attempts, []string{"1", "2", "3"}) {
		t.Errorf("handler calls = %v, want deliveries 1, 2, 3 (the 4th is poisoned unseen)", attempts)
	}
}

// TestRouterCorrelation: a message without a correlation id gets one, a
// message with one keeps it, and what a handler produces carries it.
func TestRouterCorrelation(t *testing.T) {
	b := openBus(t, fastConfig(t))
	r, err := b.NewRouter()
	if err != nil {
		t.Fatal(err)
	}
	sub, err := b.Subscriber("relay")
	if err != nil {
		t.Fatal(err)
	}
	r.AddHandler("relay", TopicInbound, sub, TopicEvents, b.Publisher(), func(m *message.Message) ([]*message.Message, error) {
		return []*message.Message{message.NewMessage("ev-"+m.UUID, nil)}, nil
	})
	runRouter(t, r)

	with := message.NewMessage("with", nil)
	middleware.SetCorrelationID("req-7", with)
	if err := b.Publisher().Publish(TopicInbound, with, message.NewMessage("without", nil)); err != nil {
		t.Fatal(err)
	}
	events, err := b.Subscriber("events-reader")
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()
	ch, err := events.Subscribe(context.Background(), TopicEvents)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, m := range readN(t, ch, 2, 30*time.Second) {
		got[m.UUID] = middleware.MessageCorrelationID(m)
	}
	if got["ev-with"] != "req-7" {
		t.Errorf("produced from a message with correlation req-7: %q", got["ev-with"])
	}
	if got["ev-without"] == "" || got["ev-without"] == "req-7" {
		t.Errorf("produced from a message without correlation: %q, want a new id", got["ev-without"])
	}
}

// TestPoisonKeepsEachHandlersFailure: one message failing in two handlers
// is two poison messages, not one dropped by the dedup window.
func TestPoisonKeepsEachHandlersFailure(t *testing.T) {
	b := openBus(t, fastConfig(t))
	r, err := b.NewRouter()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"qa", "tickets"} {
		sub, err := b.Subscriber(name)
		if err != nil {
			t.Fatal(err)
		}
		r.AddConsumerHandler(name, TopicEvents, sub, func(*message.Message) error { return conv.ErrInvalid })
	}
	runRouter(t, r)
	if err := b.Publisher().Publish(TopicEvents, message.NewMessage("ev-1", nil)); err != nil {
		t.Fatal(err)
	}
	handlers := map[string]bool{}
	for _, m := range readN(t, poisonReader(t, b), 2, 30*time.Second) {
		handlers[m.Metadata.Get(middleware.PoisonedHandlerKey)] = true
	}
	if !handlers["qa"] || !handlers["tickets"] {
		t.Errorf("poisoned by %v, want qa and tickets", handlers)
	}
}

// fakeSink is a DeadLetterSink that fails its first calls.
type fakeSink struct {
	mu    sync.Mutex
	fails int
	calls int
	got   []conv.DeadLetter
}

func (f *fakeSink) AddDeadLetter(_ context.Context, d conv.DeadLetter) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls <= f.fails {
		return fmt.Errorf("db: %w", conv.ErrUnavailable)
	}
	f.got = append(f.got, d)
	return nil
}

func (f *fakeSink) letters() []conv.DeadLetter {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

func TestDeadLetterSink(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fails int
	}{
		{"stores the poison message", 0},
		{"redelivers until the sink takes it", 4}, // more than Retry.MaxRetries
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := openBus(t, fastConfig(t))
			r, err := b.NewRouter()
			if err != nil {
				t.Fatal(err)
			}
			sub, err := b.Subscriber("core-ingest")
			if err != nil {
				t.Fatal(err)
			}
			r.AddConsumerHandler("ingest", TopicInbound, sub, func(*message.Message) error {
				return fmt.Errorf("envelope has no channel_id: %w", conv.ErrInvalid)
			})
			sink := &fakeSink{fails: tc.fails}
			if err := b.AddDeadLetterSink(r, sink); err != nil {
				t.Fatal(err)
			}
			runRouter(t, r)

			start := time.Now()
			payload := []byte(`{"tenant_id":"77","external_id":"x"}`)
			msg := message.NewMessage("in-9", payload)
			msg.Metadata.Set("tenant_id", "77")
			middleware.SetCorrelationID("req-9", msg)
			if err := b.Publisher().Publish(TopicInbound, msg); err != nil {
				t.Fatal(err)
			}
			testenv.WaitFor(t, 30*time.Second, "a dead letter", func() bool { return len(sink.letters()) > 0 })
			settled(t, b, deadLetterHandler, TopicPoison)

			got := sink.letters()
			if len(got) != 1 {
				t.Fatalf("sink got %d dead letters, want 1", len(got))
			}
			d := got[0]
			if d.Topic != TopicInbound || d.Handler != "ingest" || d.MessageID != "in-9" || d.TenantID != 77 {
				t.Errorf("dead letter topic=%q handler=%q uuid=%q tenant=%v", d.Topic, d.Handler, d.MessageID, d.TenantID)
			}
			if !strings.Contains(d.Reason, "envelope has no channel_id: invalid") {
				t.Errorf("reason = %q", d.Reason)
			}
			if string(d.Payload) != string(payload) {
				t.Errorf("payload = %q", d.Payload)
			}
			if d.Metadata["correlation_id"] != "req-9" {
				t.Errorf("metadata = %v, want the correlation id kept", d.Metadata)
			}
			if _, ok := d.Metadata[MetaDeliveryAttempt]; ok {
				t.Errorf("metadata keeps the sink's own %s", MetaDeliveryAttempt)
			}
			if d.CreatedAt.Before(start.Add(-time.Second)) || d.CreatedAt.After(time.Now()) {
				t.Errorf("created at %s, want the time it was poisoned", d.CreatedAt)
			}
		})
	}
}

func TestDeadLetterTenant(t *testing.T) {
	for _, tc := range []struct {
		name, payload, meta string
		want                conv.TenantID
	}{
		{"from the payload", `{"tenant_id":"77"}`, "9", 77},
		{"metadata when the payload has none", `{"x":1}`, "9", 9},
		{"metadata when the payload is not JSON", `<xml/>`, "9", 9},
		{"numeric tenant_id is not ours", `{"tenant_id":77}`, "", 0},
		{"none", `{}`, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := message.NewMessage("u", []byte(tc.payload))
			if tc.meta != "" {
				m.Metadata.Set("tenant_id", tc.meta)
			}
			if got := deadLetter(m).TenantID; got != tc.want {
				t.Errorf("TenantID = %v, want %v", got, tc.want)
			}
		})
	}
}
