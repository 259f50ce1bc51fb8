package bus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// MetaDeliveryAttempt is set on every consumed message to JetStream's
// delivery count for it (1 on first delivery). It is never published.
const MetaDeliveryAttempt = "delivery_attempt"

// Subscriber returns a subscriber for a consumer group. Every topic it
// subscribes to gets one durable JetStream consumer per group (named from
// group and topic) that delivers all the stream still holds, then resumes
// where the group left off. Subscribers of one group, on this node or
// others, share the messages; different groups each get all of them.
// Each Subscribe has its own NATS connection, which Close drains.
func (b *Bus) Subscriber(group string) (message.Subscriber, error) {
	if strings.TrimSpace(group) == "" {
		return nil, fmt.Errorf("bus.Subscriber: %w: empty consumer group", conv.ErrInvalid)
	}
	s := &subscriber{b: b, group: group}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, fmt.Errorf("bus.Subscriber %s: %w: bus closed", group, conv.ErrUnavailable)
	}
	b.subs[s] = struct{}{}
	return s, nil
}

// subscriber is a consumer group's watermill subscriber. It differs from
// a bare watermill-nats subscriber in four ways:
//   - the bus, not nats.go, creates the durable consumers: nats.go deletes
//     a consumer it created when the subscription ends, which would make
//     every restart of a group replay the whole stream;
//   - its subscriptions bind to that consumer without looking it up, so
//     Config.Subscribers queue subscriptions cost no JetStream API calls;
//   - stopping (Close, or the Subscribe context ending) first waits for
//     the messages it handed out to be acked or nacked, so that a clean
//     shutdown does not leave them for AckWait;
//   - it never lets watermill-nats close its output channel while one of
//     its queue-subscription callbacks may still send on it (v2.1.3 does
//     that on close and on context cancel: a data race, and a "send on
//     closed channel" panic when the callback's select picks the send).
type subscriber struct {
	b     *Bus
	group string

	mu     sync.Mutex
	closed bool
	subs   []*topicSub
}

// Subscribe ensures the group's consumer on topic, then subscribes to it.
// The channel closes once ctx ends or the subscriber is closed, after the
// messages already handed out are acked or nacked (at most AckWait).
func (s *subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	c, err := s.ensureConsumer(ctx, topic)
	if err != nil {
		return nil, err
	}
	ts, err := s.newTopicSub(ctx, c)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ts.close(0)
		return nil, fmt.Errorf("bus.Subscribe %s %s: %w: subscriber closed", s.group, topic, conv.ErrUnavailable)
	}
	s.subs = append(s.subs, ts)
	s.mu.Unlock()

	// watermill-nats gets a context that only we end (by closing it):
	// ending ctx would make it close its output under running callbacks.
	in, err := ts.inner.Subscribe(context.WithoutCancel(ctx), topic)
	if err != nil {
		return nil, fmt.Errorf("bus.Subscribe %s %s: %w: %w", s.group, topic, conv.ErrUnavailable, err)
	}
	out := make(chan *message.Message)
	go ts.forward(in, out)
	go func() {
		select {
		case <-ctx.Done():
			ts.close(s.b.cfg.AckWait)
		case <-ts.connClosed:
		}
	}()
	return out, nil
}

// consumer identifies the durable consumer of a group on a topic.
type consumer struct {
	topic, stream, name, deliver string
}

// ensureConsumer creates the durable push consumer for (group, topic), or
// updates it when its configuration is not ours (a new AckWait).
func (s *subscriber) ensureConsumer(ctx context.Context, topic string) (consumer, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	js := s.b.js
	stream, err := js.StreamNameBySubject(topic, nats.Context(ctx))
	if err != nil {
		return consumer{}, fmt.Errorf("bus.Subscribe %s %s: no stream for topic: %w: %w", s.group, topic, conv.ErrUnavailable, err)
	}
	c := consumer{topic: topic, stream: stream, name: durableName(s.group, topic)}
	c.deliver = "_INBOX.bus." + c.name
	want := &nats.ConsumerConfig{
		Durable:        c.name,
		Description:    fmt.Sprintf("group %s on %s", s.group, topic),
		DeliverSubject: c.deliver,
		DeliverGroup:   c.name,
		DeliverPolicy:  nats.DeliverAllPolicy,
		AckPolicy:      nats.AckExplicitPolicy,
		AckWait:        s.b.cfg.AckWait,
		MaxAckPending:  s.b.cfg.MaxAckPending,
		// Unlimited: the router gives up after Config.MaxDeliver and
		// sends the message to the poison topic. A JetStream limit
		// would instead stop delivering it silently.
		MaxDeliver:    -1,
		FilterSubject: topic,
		ReplayPolicy:  nats.ReplayInstantPolicy,
	}
	ci, err := js.ConsumerInfo(stream, c.name, nats.Context(ctx))
	switch {
	case errors.Is(err, nats.ErrConsumerNotFound):
		_, err = js.AddConsumer(stream, want, nats.Context(ctx))
		var apiErr *nats.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == nats.JSErrCodeConsumerAlreadyExists || apiErr.ErrorCode == nats.JSErrCodeConsumerNameExists) {
			_, err = js.UpdateConsumer(stream, want, nats.Context(ctx))
		}
	case err == nil && !sameConsumer(ci.Config, *want):
		_, err = js.UpdateConsumer(stream, want, nats.Context(ctx))
	}
	if err != nil {
		return consumer{}, fmt.Errorf("bus.Subscribe %s %s: consumer %s: %w: %w", s.group, topic, c.name, conv.ErrUnavailable, err)
	}
	return c, nil
}

// sameConsumer compares the fields the bus sets.
func sameConsumer(have, want nats.ConsumerConfig) bool {
	return have.Durable == want.Durable && have.Description == want.Description &&
		have.DeliverSubject == want.DeliverSubject && have.DeliverGroup == want.DeliverGroup &&
		have.DeliverPolicy == want.DeliverPolicy && have.AckPolicy == want.AckPolicy &&
		have.AckWait == want.AckWait && have.MaxDeliver == want.MaxDeliver && have.MaxAckPending == want.MaxAckPending &&
		have.FilterSubject == want.FilterSubject && have.ReplayPolicy == want.ReplayPolicy
}

// topicSub is one Subscribe: a connection, Config.Subscribers queue
// subscriptions bound to the consumer, and the gate its messages pass.
type topicSub struct {
	conn       *nats.Conn
	connClosed chan struct{} // closed by nats.go once conn is closed
	inner      *wmnats.Subscriber
	gate       gate
	closeOnce  sync.Once
	closeErr   error
}

func (s *subscriber) newTopicSub(ctx context.Context, c consumer) (*topicSub, error) {
	b := s.b
	conn, err := b.connect(ctx, "sub-"+s.group)
	if err != nil {
		return nil, err
	}
	ts := &topicSub{conn: conn, connClosed: make(chan struct{})}
	ts.gate.init()
	conn.SetClosedHandler(func(*nats.Conn) { close(ts.connClosed) })
	ts.inner, err = wmnats.NewSubscriberWithNatsConn(conn, wmnats.SubscriberSubscriptionConfig{
		Unmarshaler:      marshaler{gate: &ts.gate},
		SubscribersCount: b.cfg.Subscribers,
		// How long watermill-nats waits for the handler's ack; past it
		// JetStream redelivers anyway.
		AckWaitTimeout:   b.cfg.AckWait,
		CloseTimeout:     b.cfg.AckWait,
		SubscribeTimeout: b.cfg.AckWait,
		QueueGroupPrefix: s.group,
		// Queue group = consumer name = its DeliverGroup.
		SubjectCalculator: func(group, topic string) *wmnats.SubjectDetail {
			return &wmnats.SubjectDetail{Primary: topic, QueueGroup: durableName(group, topic)}
		},
		NakDelay: backoffDelay(b.cfg.Redelivery),
		JetStream: wmnats.JetStreamConfig{
			AutoProvision: false,
			SubscribeOptions: []nats.SubOpt{
				nats.Bind(c.stream, c.name),
				nats.DeliverSubject(c.deliver),
				// ensureConsumer just did the lookup.
				nats.SkipConsumerLookup(),
				// Without ManualAck nats.go acks whatever the callback
				// returns from, and watermill-nats returns without an
				// ack on close, cancel or ack timeout: those messages
				// would be lost instead of redelivered.
				nats.ManualAck(),
			},
			// Acks are published, not awaited: close waits until every
			// ack is handed to the connection, then drains it, which
			// flushes them. An ack lost otherwise means one more
			// delivery, which at-least-once allows.
			AckAsync:          true,
			DurablePrefix:     s.group,
			DurableCalculator: durableName,
		},
	}, &quietStopping{b.wlog})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("bus.Subscribe %s %s: %w", s.group, c.topic, err)
	}
	return ts, nil
}

// forward reads watermill-nats's output at once, so that its callbacks
// never wait to send, and hands each message to the consumer from a
// goroutine of its own. That goroutine then waits for watermill-nats to be
// done with the message (its context ends once the ack or nack is sent,
// or the ack wait passed) and lets it out of the gate.
func (ts *topicSub) forward(in <-chan *message.Message, out chan<- *message.Message) {
	var wg sync.WaitGroup
	for msg := range in {
		done := msg.Context().Done()
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case out <- msg:
			case <-ts.gate.stopping():
				// Never handed out: give it back at once.
				msg.Nack()
			}
			<-done
			ts.gate.exit()
		}()
	}
	wg.Wait()
	close(out)
}

// close shuts the gate, waits up to grace for the messages inside (handed
// out: until the handler acks; not handed out: nacked), then unsubscribes
// and drains the connection.
func (ts *topicSub) close(grace time.Duration) error {
	ts.closeOnce.Do(func() {
		// Once the gate is empty no callback is between unmarshal and
		// sending on watermill-nats's output, and none can get there:
		// closing it is safe.
		ts.gate.stopAndWait(grace)
		if err := ts.inner.Close(); err != nil {
			ts.closeErr = err
		}
		// inner.Close only starts draining: wait so that no goroutine
		// of this subscription outlives close.
		select {
		case <-ts.connClosed:
		case <-time.After(10 * time.Second):
			ts.conn.Close()
			<-ts.connClosed
		}
	})
	return ts.closeErr
}

// Close stops every subscription after its messages in flight are acked
// or nacked (at most AckWait). Messages JetStream had sent it that were
// not yet let in are redelivered after AckWait.
func (s *subscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	subs := s.subs
	s.mu.Unlock()

	var wg sync.WaitGroup
	errs := make([]error, len(subs))
	for i, ts := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = ts.close(s.b.cfg.AckWait)
		}()
	}
	wg.Wait()
	s.b.mu.Lock()
	delete(s.b.subs, s)
	s.b.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bus: close subscriber %s: %w", s.group, err)
	}
	return nil
}

// errStopping is what the unmarshaler returns for a message arriving
// while its subscription stops: watermill-nats then drops it without an
// ack, and JetStream redelivers it after AckWait (nacking could bounce it
// straight back to this subscription and use up its deliveries).
var errStopping = errors.New("bus: subscription stopping")

// gate counts messages from the moment watermill-nats unmarshals them
// until it is done with them, and refuses new ones once stopping.
type gate struct {
	mu     sync.Mutex
	n      int
	closed bool
	stop   chan struct{} // closed when stopping starts
	empty  chan struct{} // closed when n reaches 0 while stopping
}

func (g *gate) init() {
	g.stop = make(chan struct{})
	g.empty = make(chan struct{})
}

func (g *gate) stopping() <-chan struct{} { return g.stop }

// enter lets one more message in unless stopping.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.n++
	return true
}

func (g *gate) exit() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	if g.n == 0 && g.closed {
		close(g.empty)
	}
}

// stopAndWait refuses new messages and waits up to grace for the gate to
// empty.
func (g *gate) stopAndWait(grace time.Duration) {
	g.mu.Lock()
	g.closed = true
	close(g.stop)
	if g.n == 0 {
		close(g.empty)
	}
	g.mu.Unlock()
	select {
	case <-g.empty:
	case <-time.After(grace):
	}
}

// quietStopping lowers watermill-nats's "Cannot unmarshal message" error
// for messages refused while stopping: they are expected, and redelivered.
type quietStopping struct{ watermill.LoggerAdapter }

func (q *quietStopping) Error(msg string, err error, fields watermill.LogFields) {
	if errors.Is(err, errStopping) {
		q.Debug(msg+": "+err.Error(), fields)
		return
	}
	q.LoggerAdapter.Error(msg, err, fields)
}

func (q *quietStopping) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return &quietStopping{q.LoggerAdapter.With(fields)}
}

// durableName maps a group and topic to a JetStream consumer name, which
// may not contain '.', '*', '>' or whitespace and is a directory name in
// the file store. The readable part helps operators; the hash keeps
// names that sanitize alike apart.
func durableName(group, topic string) string {
	var b strings.Builder
	for _, r := range group + "_" + topic {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	readable := b.String()
	if len(readable) > 48 {
		readable = readable[:48]
	}
	sum := sha256.Sum256([]byte(group + "\x00" + topic))
	return readable + "_" + hex.EncodeToString(sum[:5])
}

// backoffDelay is the redelivery delay after a nack: it doubles with each
// delivery. It never returns wmnats.TermSignal: a message is never
// dropped by the transport, only by the router, into the poison topic.
type backoffDelay Backoff

func (d backoffDelay) WaitTime(delivered uint64) time.Duration {
	delay := d.InitialInterval
	for i := uint64(1); i < delivered && delay < d.MaxInterval; i++ {
		delay *= 2
	}
	return min(delay, d.MaxInterval)
}

// marshaler is watermill-nats's NATSMarshaler (UUID and metadata in NATS
// headers, payload as is) with two changes:
//   - Marshal sets Nats-Msg-Id, JetStream's dedup key, to topic and UUID.
//     JetStream dedups per stream and OUTBOUND holds every outbound.<kind>:
//     keyed on the UUID alone (watermill-nats's TrackMsgId), the same UUID
//     on two topics of one stream would be stored once.
//   - Unmarshal fails only while its subscription stops (see gate): a
//     message another client sent with repeated headers is delivered
//     (first value wins) instead of being left unacked forever, and every
//     message carries its delivery count.
type marshaler struct {
	gate *gate // nil on the publisher
}

func (marshaler) Marshal(topic string, msg *message.Message) (*nats.Msg, error) {
	m, err := (&wmnats.NATSMarshaler{}).Marshal(topic, msg)
	if err != nil {
		return nil, err
	}
	m.Header.Del(MetaDeliveryAttempt)
	if msg.UUID != "" {
		// Subjects cannot contain spaces: the key is unambiguous.
		m.Header.Set(nats.MsgIdHdr, topic+" "+msg.UUID)
	}
	return m, nil
}

func (u marshaler) Unmarshal(m *nats.Msg) (*message.Message, error) {
	if u.gate != nil && !u.gate.enter() {
		return nil, errStopping
	}
	for k, v := range m.Header {
		if len(v) > 1 {
			m.Header[k] = v[:1]
		}
	}
	msg, err := (&wmnats.NATSMarshaler{}).Unmarshal(m)
	if err != nil {
		// Cannot happen once headers are single-valued; keep the
		// gate balanced if it ever does.
		if u.gate != nil {
			u.gate.exit()
		}
		return nil, err
	}
	if md, err := m.Metadata(); err == nil {
		msg.Metadata.Set(MetaDeliveryAttempt, strconv.FormatUint(md.NumDelivered, 10))
	}
	return msg, nil
}

var (
	_ message.Subscriber = (*subscriber)(nil)
	_ wmnats.Delay       = backoffDelay{}
	_ wmnats.Marshaler   = marshaler{}
	_ wmnats.Unmarshaler = marshaler{}
)
