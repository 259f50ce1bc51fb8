package redis

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/live"
)

// SubscriptionBuffer is how many undelivered messages a Subscription holds;
// what does not fit is dropped.
const SubscriptionBuffer = 256

// subscribeTimeout bounds the wait for Redis to confirm a SUBSCRIBE when
// the caller's ctx allows longer.
const subscribeTimeout = 10 * time.Second

// Fanout implements live.Fanout with Redis PUBLISH/SUBSCRIBE on channels
// <Prefix>fo:<topic>.
//
// All subscriptions of a Client share one go-redis PubSub, that is one
// connection, rather than one each: a node holds a subscription per open
// console and widget socket, thousands of them, and a connection each would
// run into Redis's maxclients and cost a file descriptor per socket twice.
// Sharing also means Redis sends a message once per node, however many
// sockets there want it; one router goroutine hands it to each local
// subscriber. The price is bookkeeping: the first local subscriber of a
// channel sends SUBSCRIBE, the last to leave sends UNSUBSCRIBE, and
// Subscribe returns only once Redis has confirmed the SUBSCRIBE, so that a
// Publish right after it is received.
//
// Lock order: f.mu, then go-redis's PubSub lock (inside its Subscribe and
// Unsubscribe). The router takes f.mu only to deliver without blocking.
type Fanout struct {
	rdb    *goredis.Client
	prefix string

	mu     sync.Mutex
	ps     *goredis.PubSub // nil until the first Subscribe
	done   chan struct{}   // closed when the router has stopped
	closed bool
	// channels maps a Redis channel to its local subscribers.
	channels map[string]*channelSubs
	// awaiting counts, per Redis channel, the SUBSCRIBE confirmations
	// still to come. Replies arrive in command order, so a channel whose
	// SUBSCRIBE was the n-th outstanding one is confirmed by the n-th
	// confirmation from now.
	awaiting map[string]int

	dropped atomic.Uint64

	// confirmHook, when set, runs in the router before it handles a
	// SUBSCRIBE confirmation; only tests set it, before the first
	// Subscribe.
	confirmHook func()
}

type channelSubs struct {
	subs map[*Subscription]struct{}
	// wait is how many confirmations must still arrive before this
	// channel's own SUBSCRIBE is confirmed; ready is closed at 0.
	wait  int
	ready chan struct{}
}

// Subscription is one Subscribe on a Fanout.
type Subscription struct {
	f       *Fanout
	channel string
	c       chan []byte
	closed  bool // guarded by f.mu
	dropped atomic.Uint64
}

func newFanout(rdb *goredis.Client, prefix string) *Fanout {
	return &Fanout{
		rdb:      rdb,
		prefix:   prefix,
		channels: make(map[string]*channelSubs),
		awaiting: make(map[string]int),
	}
}

// Publish sends payload to every node subscribed to topic. Redis never
// makes a publisher wait for a subscriber.
func (f *Fanout) Publish(ctx context.Context, topic string, payload []byte) error {
	const op = "redis.Fanout.Publish"
	if err := checkFanout(op, topic, payload); err != nil {
		return err
	}
	if err := f.rdb.Publish(ctx, f.prefix+topic, payload).Err(); err != nil {
		return unavailable(op, topic, err)
	}
	return nil
}

// Subscribe returns a *Subscription receiving what is published to topic
// from now on: it returns once Redis has confirmed the subscription.
func (f *Fanout) Subscribe(ctx context.Context, topic string) (live.Subscription, error) {
	const op = "redis.Fanout.Subscribe"
	if err := checkFanout(op, topic, nil); err != nil {
		return nil, err
	}
	name := f.prefix + topic
	s := &Subscription{f: f, channel: name, c: make(chan []byte, SubscriptionBuffer)}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil, fmt.Errorf("%s %s: %w: client closed", op, topic, conv.ErrUnavailable)
	}
	f.start()
	ch := f.channels[name]
	if ch == nil {
		if err := f.ps.Subscribe(ctx, name); err != nil {
			// go-redis remembers the channel to resubscribe after a
			// reconnect even when SUBSCRIBE failed; forget it.
			_ = f.ps.Unsubscribe(context.WithoutCancel(ctx), name)
			f.mu.Unlock()
			return nil, unavailable(op, topic, err)
		}
		f.awaiting[name]++
		ch = &channelSubs{subs: make(map[*Subscription]struct{}), wait: f.awaiting[name], ready: make(chan struct{})}
		f.channels[name] = ch
	}
	ch.subs[s] = struct{}{}
	ready, done := ch.ready, f.done
	f.mu.Unlock()

	select {
	case <-ready: // another local subscriber's SUBSCRIBE already confirmed
		return s, nil
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, subscribeTimeout)
	defer cancel()
	select {
	case <-ready:
		return s, nil
	case <-done:
		return nil, fmt.Errorf("%s %s: %w: client closed", op, topic, conv.ErrUnavailable)
	case <-ctx.Done():
		s.Close()
		f.forget(name)
		return nil, unavailable(op, topic, fmt.Errorf("waiting for Redis to confirm SUBSCRIBE: %w", context.Cause(ctx)))
	}
}

// forget drops the count of confirmations awaited on channel once no local
// subscriber is left to wait for them. A reconnect that lost several
// in-flight SUBSCRIBEs of one channel brings back a single confirmation, so
// without this the count would stay too high and every later Subscribe to
// the channel would time out. The price: a confirmation still in flight may
// now be taken by a later Subscribe as its own, which at worst loses a
// message published in between, as fan-out may.
func (f *Fanout) forget(channel string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.channels[channel] == nil {
		delete(f.awaiting, channel)
	}
}

// Dropped is how many messages all subscriptions of this node, closed ones
// included, lost to a full buffer.
func (f *Fanout) Dropped() uint64 { return f.dropped.Load() }

// start creates the shared PubSub and its router on first use. Callers
// hold f.mu.
func (f *Fanout) start() {
	if f.ps != nil {
		return
	}
	// No channels yet, so no I/O: the connection is made by the first
	// SUBSCRIBE or the receiving goroutine, whichever comes first.
	f.ps = f.rdb.Subscribe(context.Background())
	f.done = make(chan struct{})
	go f.route(f.ps.ChannelWithSubscriptions(goredis.WithChannelSize(SubscriptionBuffer)))
}

// route is the router goroutine: it hands each message to the local
// subscribers of its channel and each confirmation to whoever waits for
// it, until the PubSub closes.
func (f *Fanout) route(in <-chan any) {
	defer close(f.done)
	for m := range in {
		switch m := m.(type) {
		case *goredis.Message:
			f.deliver(m)
		case *goredis.Subscription:
			if m.Kind == "subscribe" {
				if f.confirmHook != nil {
					f.confirmHook()
				}
				f.confirm(m.Channel)
			}
		}
	}
	// The PubSub is closed (Client.Close): nothing more will arrive.
	f.mu.Lock()
	defer f.mu.Unlock()
	for name, ch := range f.channels {
		for s := range ch.subs {
			s.closed = true
			close(s.c)
		}
		delete(f.channels, name)
	}
}

func (f *Fanout) deliver(m *goredis.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := f.channels[m.Channel]
	if ch == nil {
		return // in flight when the last local subscriber left
	}
	for s := range ch.subs {
		select {
		case s.c <- []byte(m.Payload): // a copy each
		default:
			s.dropped.Add(1)
			f.dropped.Add(1)
		}
	}
}

// confirm counts one SUBSCRIBE confirmation for channel. One nobody awaits
// comes from go-redis resubscribing after a reconnect.
func (f *Fanout) confirm(channel string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.awaiting[channel]
	if n == 0 {
		return
	}
	if n == 1 {
		delete(f.awaiting, channel)
	} else {
		f.awaiting[channel] = n - 1
	}
	if ch := f.channels[channel]; ch != nil && ch.wait > 0 {
		ch.wait--
		if ch.wait == 0 {
			close(ch.ready)
		}
	}
}

// close closes the PubSub and waits for the router, which closes every
// subscription still open. For Client.Close.
func (f *Fanout) close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	ps, done := f.ps, f.done
	f.mu.Unlock()
	if ps == nil {
		return nil
	}
	err := ps.Close()
	<-done
	return err
}

// C receives the messages. It is closed by Close, or when the Client
// closes.
func (s *Subscription) C() <-chan []byte { return s.c }

// Close ends the subscription and closes C; closing again does nothing.
// Messages already buffered stay readable.
func (s *Subscription) Close() error {
	f := s.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.c)
	ch := f.channels[s.channel]
	if ch == nil {
		return nil
	}
	delete(ch.subs, s)
	if len(ch.subs) > 0 || f.closed {
		return nil
	}
	delete(f.channels, s.channel)
	// The error is not the caller's concern: go-redis forgets the channel
	// first, so if UNSUBSCRIBE could not be sent, the connection is broken
	// and the one replacing it does not resubscribe. Stray messages until
	// then find no subscriber and are dropped.
	_ = f.ps.Unsubscribe(context.Background(), s.channel)
	return nil
}

// Dropped is how many messages this subscription lost to a full buffer. A
// socket that sees it grow can tell its device to resume from its cursor.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

func checkFanout(op, topic string, payload []byte) error {
	if topic == "" || len(topic) > maxKeyLen {
		return fmt.Errorf("%s: %w: topic must be 1 to %d bytes", op, conv.ErrInvalid, maxKeyLen)
	}
	if len(payload) > maxEventLen {
		return fmt.Errorf("%s %s: %w: payload of %d bytes is over %d", op, topic, conv.ErrInvalid, len(payload), maxEventLen)
	}
	return nil
}
