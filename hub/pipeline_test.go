package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/switchboard-hq/switchboard/connectors/testchan"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/ingest"
	"github.com/switchboard-hq/switchboard/core/outbound"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/hub"
	"github.com/switchboard-hq/switchboard/hub/bus"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// env is one test deployment: an embedded bus and a store.
type env struct {
	t       *testing.T
	bus     *bus.Bus
	store   storage.Store
	pub     *hub.Publisher
	ids     *conv.IDGen
	tenant  conv.TenantID
	channel conv.ChannelID
}

func newEnv(t *testing.T, st storage.Store, ids *conv.IDGen) *env {
	t.Helper()
	ctx := context.Background()
	b, err := bus.Open(ctx, bus.Config{DataDir: filepath.Join(t.TempDir(), "nats"), AckWait: 10 * time.Second, NodeID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	e := &env{t: t, bus: b, store: st, pub: hub.NewPublisher(b.Publisher()), ids: ids,
		tenant: conv.NewID[conv.TenantID](ids), channel: conv.NewID[conv.ChannelID](ids)}
	if err := st.CreateTenant(ctx, conv.Tenant{ID: e.tenant, Name: "acme-" + e.tenant.String(), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	err = st.Tx(ctx, e.tenant, func(tx storage.Tx) error {
		return tx.CreateChannel(ctx, conv.Channel{ID: e.channel, TenantID: e.tenant, Kind: conv.KindTest, Name: "loop", CreatedAt: time.Now()})
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// consumer is a core node's ingest side: a router feeding ingest.
type consumer struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (e *env) startIngest(writers int) *consumer {
	e.t.Helper()
	svc, err := ingest.New(ingest.Config{Store: e.store, Events: e.pub, IDs: e.ids, Writers: writers})
	if err != nil {
		e.t.Fatal(err)
	}
	r, err := e.bus.NewRouter()
	if err != nil {
		e.t.Fatal(err)
	}
	sub, err := e.bus.Subscriber("core-ingest")
	if err != nil {
		e.t.Fatal(err)
	}
	r.AddConsumerHandler("ingest", hub.TopicInbound, sub, hub.InboundHandler(svc, e.pub))
	ctx, cancel := context.WithCancel(context.Background())
	c := &consumer{cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); svc.Run(ctx) }()
	go func() { defer wg.Done(); r.Run(ctx) }()
	go func() { wg.Wait(); close(c.done) }()
	select {
	case <-r.Running():
	case <-time.After(30 * time.Second):
		e.t.Fatal("router did not start")
	}
	return c
}

// kill stops the consumer abruptly: in-flight messages are neither acked
// nor finished, so the bus redelivers them to the next consumer.
func (c *consumer) kill() {
	c.cancel()
	<-c.done
}

// eventLog records every message.created id seen on the events topic.
type eventLog struct {
	mu      sync.Mutex
	created map[conv.MessageID]int
}

func (e *env) watchEvents() *eventLog {
	e.t.Helper()
	log := &eventLog{created: map[conv.MessageID]int{}}
	r, err := e.bus.NewRouter()
	if err != nil {
		e.t.Fatal(err)
	}
	sub, err := e.bus.Subscriber("test-events")
	if err != nil {
		e.t.Fatal(err)
	}
	r.AddConsumerHandler("events", hub.TopicEvents, sub, func(m *message.Message) error {
		evs, err := hub.DecodeEvents(m)
		if err != nil {
			return err
		}
		log.mu.Lock()
		defer log.mu.Unlock()
		for _, ev := range evs {
			if ev.Type == conv.EventMessageCreated {
				log.created[ev.Message.ID]++
			}
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	e.t.Cleanup(func() { cancel(); <-done })
	<-r.Running()
	return log
}

func (l *eventLog) distinct() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.created)
}

// publishRaw publishes an envelope as a fresh bus message (a new UUID), as
// a connector retrying after the bus's dedup window would: only ingest's
// own dedup can catch it.
func (e *env) publishRaw(in conv.Inbound) error {
	b, _ := json.Marshal(in)
	m := message.NewMessage(watermill.NewUUID(), b)
	m.Metadata.Set(hub.MetaTenant, in.TenantID.String())
	return e.bus.Publisher().Publish(hub.TopicInbound, m)
}

// runIngestAtLeastOnce is the acceptance test for ingest: n
// envelopes, 30% of them delivered 2–4 times, published concurrently,
// with the consumer killed and restarted twice mid-run.
func runIngestAtLeastOnce(t *testing.T, st storage.Store, ids *conv.IDGen, n, writers int) {
	e := newEnv(t, st, ids)
	events := e.watchEvents()
	const contacts = 250
	rng := rand.New(rand.NewPCG(1, 2))
	var deliveries []conv.Inbound
	for i := range n {
		in := conv.Inbound{TenantID: e.tenant, ChannelID: e.channel, ExternalID: fmt.Sprintf("ext-%d", i),
			From:  conv.Identity{Kind: "visitor", ExternalID: fmt.Sprintf("visitor-%d", i%contacts)},
			Parts: []conv.Part{{Type: conv.PartText, Text: fmt.Sprintf("message %d", i)}}, SentAt: time.Now()}
		copies := 1
		if rng.Float64() < 0.30 {
			copies = 2 + rng.IntN(3)
		}
		for range copies {
			deliveries = append(deliveries, in)
		}
	}
	rng.Shuffle(len(deliveries), func(i, j int) { deliveries[i], deliveries[j] = deliveries[j], deliveries[i] })

	c := e.startIngest(writers)
	var wg sync.WaitGroup
	const publishers = 8
	errs := make(chan error, publishers)
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p; i < len(deliveries); i += publishers {
				if err := e.publishRaw(deliveries[i]); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for _, at := range []int{n / 5, n * 3 / 5} {
		testenv.WaitFor(t, 3*time.Minute, fmt.Sprintf("%d messages before a kill", at), func() bool { return events.distinct() >= at })
		c.kill()
		c = e.startIngest(writers)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("publish: %v", err)
	}
	testenv.WaitFor(t, 5*time.Minute, fmt.Sprintf("message.created for all %d messages", n), func() bool { return events.distinct() >= n })
	c.kill()

	// Exactly n messages stored, each conversation's seq gapless, and every
	// stored message's message.created seen.
	ctx := context.Background()
	convs := map[conv.ConversationID]bool{}
	stored := map[conv.MessageID]bool{}
	err := st.Tx(ctx, e.tenant, func(tx storage.Tx) error {
		for i := range contacts {
			m, err := tx.MessageByExternalID(ctx, e.channel, fmt.Sprintf("ext-%d", i))
			if err != nil {
				return err
			}
			convs[m.ConversationID] = true
		}
		for id := range convs {
			msgs, err := tx.Messages(ctx, id, 0, n+1)
			if err != nil {
				return err
			}
			for i, m := range msgs {
				if m.Seq != int64(i+1) {
					return fmt.Errorf("conversation %s: position %d has seq %d", id, i, m.Seq)
				}
				stored[m.ID] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(convs) != contacts {
		t.Fatalf("%d conversations, want %d (one per contact)", len(convs), contacts)
	}
	if len(stored) != n {
		t.Fatalf("%d messages stored, want exactly %d", len(stored), n)
	}
	events.mu.Lock()
	defer events.mu.Unlock()
	for id := range stored {
		if events.created[id] == 0 {
			t.Fatalf("message %s stored but its message.created never seen", id)
		}
	}
	if len(events.created) != n {
		t.Fatalf("message.created for %d distinct messages, want %d", len(events.created), n)
	}
	t.Logf("%d deliveries of %d envelopes, two consumer kills: %d stored, %d conversations gapless", len(deliveries), n, len(stored), len(convs))
}

// TestOutboundPathWithTestConnector: a reply is stored pending, reaches the
// connector and comes back sent (or failed with the reason); a reply whose
// publish was lost is found by the sweeper and sent exactly once.
func runOutbound(t *testing.T, st storage.Store, ids *conv.IDGen) {
	e := newEnv(t, st, ids)
	ctx := context.Background()
	var now atomic.Int64 // the delivery handler reads the clock concurrently
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	lossy := &lossyBus{Publisher: e.pub}
	svc, err := outbound.New(outbound.Config{Store: st, Bus: lossy, IDs: ids, Now: clock, Grace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	conn := testchan.New(e.pub)
	r, err := e.bus.NewRouter()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []struct {
		name, topic, group string
		fn                 message.NoPublishHandlerFunc
	}{
		{"testchan", hub.OutboundTopic(conv.KindTest), "connector-test", conn.Handler()},
		{"delivery", hub.TopicDelivery, "core-delivery", hub.DeliveryHandler(svc)},
	} {
		sub, err := e.bus.Subscriber(h.group)
		if err != nil {
			t.Fatal(err)
		}
		r.AddConsumerHandler(h.name, h.topic, sub, h.fn)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { r.Run(rctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	<-r.Running()

	// A conversation to reply to, through ingest.
	in, err := ingest.New(ingest.Config{Store: st, Events: e.pub, IDs: ids})
	if err != nil {
		t.Fatal(err)
	}
	ictx, icancel := context.WithCancel(ctx)
	idone := make(chan struct{})
	go func() { in.Run(ictx); close(idone) }()
	defer func() { icancel(); <-idone }()
	res, err := in.Accept(ctx, conv.Inbound{TenantID: e.tenant, ChannelID: e.channel, ExternalID: "q1",
		From: conv.Identity{Kind: "visitor", ExternalID: "v1"}, Parts: []conv.Part{{Type: conv.PartText, Text: "hi"}}})
	if err != nil {
		t.Fatal(err)
	}
	agent := conv.Sender{Type: conv.SenderAgent, ID: "1", Name: "Ann"}
	reply := func(text, clientID string) conv.Message {
		t.Helper()
		m, err := svc.Reply(ctx, e.tenant, outbound.Reply{ConversationID: res.Conversation.ID, Sender: agent,
			Parts: []conv.Part{{Type: conv.PartText, Text: text}}, ClientID: clientID})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	status := func(id conv.MessageID) conv.Message {
		var m conv.Message
		st.Tx(ctx, e.tenant, func(tx storage.Tx) error { m, err = tx.Message(ctx, id); return err })
		return m
	}

	ok := reply("hello there", "c1")
	if ok.Status != conv.MsgPending || ok.Direction != conv.Out || ok.Seq != 2 {
		t.Fatalf("reply stored as %+v, want pending out seq 2", ok)
	}
	testenv.WaitFor(t, 30*time.Second, "reply sent", func() bool { return status(ok.ID).Status == conv.MsgSent })
	if got := status(ok.ID).StatusReason; got != "" {
		t.Fatalf("sent reply has reason %q", got)
	}
	if again := reply("hello there", "c1"); again.ID != ok.ID {
		t.Fatalf("same client_id stored a second message %s", again.ID)
	}
	sent := conn.Sent()[ok.ID]
	if len(sent.To) == 0 || sent.To[0].ExternalID != "v1" {
		t.Fatalf("connector got recipient %+v, want visitor v1", sent.To)
	}

	bad := reply("fail: 45015 outside the reply window", "c2")
	testenv.WaitFor(t, 30*time.Second, "reply failed", func() bool { return status(bad.ID).Status == conv.MsgFailed })
	if got := status(bad.ID).StatusReason; got != "45015 outside the reply window" {
		t.Fatalf("failure reason %q", got)
	}

	// The process "dies" between commit and publish: the outbox keeps it.
	lossy.setDrop(true)
	lost := reply("this publish is lost", "c3")
	lossy.setDrop(false)
	if st := status(lost.ID).Status; st != conv.MsgPending {
		t.Fatalf("lost reply status %s, want pending", st)
	}
	if n, err := svc.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("sweep inside the grace period sent %d (%v), want 0", n, err)
	}
	now.Add(int64(2 * time.Second))
	if n, err := svc.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("sweep sent %d (%v), want 1", n, err)
	}
	testenv.WaitFor(t, 30*time.Second, "swept reply sent", func() bool { return status(lost.ID).Status == conv.MsgSent })
	if n, err := svc.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("second sweep sent %d (%v), want 0", n, err)
	}
	if got := len(conn.Sent()); got != 3 {
		t.Fatalf("connector sent %d distinct messages, want 3", got)
	}
}

// lossyBus drops outbound publishes on demand, as if the process died
// right after the commit.
type lossyBus struct {
	*hub.Publisher
	mu   sync.Mutex
	drop bool
}

func (l *lossyBus) setDrop(v bool) { l.mu.Lock(); l.drop = v; l.mu.Unlock() }

func (l *lossyBus) PublishOutbound(ctx context.Context, out conv.Outbound) error {
	l.mu.Lock()
	drop := l.drop
	l.mu.Unlock()
	if drop {
		return fmt.Errorf("%w: simulated crash before publish", conv.ErrUnavailable)
	}
	return l.Publisher.PublishOutbound(ctx, out)
}
