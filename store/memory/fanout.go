package memory

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/live"
)

// SubscriptionBuffer is how many undelivered messages a Subscription holds;
// Publish drops what does not fit.
const SubscriptionBuffer = 256

// Fanout delivers notifications to subscribers in this process,
// implementing live.Fanout for the one node there is.
//
// Publish sends to each subscriber's buffered channel without waiting,
// under a read lock; Close takes the write lock to remove the subscription
// and close its channel, so a channel is never sent to after it is closed.
type Fanout struct {
	mu      sync.RWMutex
	topics  map[string]map[*Subscription]struct{}
	dropped atomic.Uint64
}

// Subscription is one Subscribe on a Fanout.
type Subscription struct {
	f       *Fanout
	topic   string
	c       chan []byte
	closed  bool // guarded by f.mu
	dropped atomic.Uint64
}

// NewFanout returns a Fanout with no subscribers.
func NewFanout() *Fanout {
	return &Fanout{topics: make(map[string]map[*Subscription]struct{})}
}

// Publish delivers a copy of payload to every current subscriber of topic
// whose buffer has room, and counts a drop for every other. It never
// blocks.
func (f *Fanout) Publish(ctx context.Context, topic string, payload []byte) error {
	const op = "memory.Fanout.Publish"
	if err := checkFanout(op, topic, payload); err != nil {
		return err
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	for s := range f.topics[topic] {
		// A copy each: a subscriber may keep or change what it receives.
		select {
		case s.c <- bytes.Clone(payload):
		default:
			s.dropped.Add(1)
			f.dropped.Add(1)
		}
	}
	return nil
}

// Listening reports whether topic has a subscriber (live.Listener).
func (f *Fanout) Listening(topic string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.topics[topic]) > 0
}

// Subscribe returns a *Subscription receiving what is published to topic
// from now on.
func (f *Fanout) Subscribe(ctx context.Context, topic string) (live.Subscription, error) {
	if err := checkFanout("memory.Fanout.Subscribe", topic, nil); err != nil {
		return nil, err
	}
	s := &Subscription{f: f, topic: topic, c: make(chan []byte, SubscriptionBuffer)}
	f.mu.Lock()
	defer f.mu.Unlock()
	subs := f.topics[topic]
	if subs == nil {
		subs = make(map[*Subscription]struct{})
		f.topics[topic] = subs
	}
	subs[s] = struct{}{}
	return s, nil
}

// Dropped is how many messages all subscriptions, closed ones included,
// lost to a full buffer.
func (f *Fanout) Dropped() uint64 { return f.dropped.Load() }

// C receives the messages. It is closed by Close.
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
	subs := f.topics[s.topic]
	delete(subs, s)
	if len(subs) == 0 {
		delete(f.topics, s.topic)
	}
	close(s.c)
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
