package statetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/live"
)

// RunFanout runs the fan-out suite against live.Fanout. newFanout is called
// once per subtest and returns two handles on one fresh fan-out: two nodes
// (two Redis clients sharing a prefix unique to the test) or, in process,
// the same instance twice. It cleans up with t.Cleanup.
//
// Beyond the doc comments of live.Fanout the suite pins: a Subscribe that
// returned receives a Publish made right after it, from any node; Close is
// idempotent and safe while publishers run; an empty topic or one over 1024
// bytes, and a payload over 1 MiB, are conv.ErrInvalid.
func RunFanout(t *testing.T, newFanout func(t *testing.T) (live.Fanout, live.Fanout)) {
	tests := []struct {
		name string
		fn   func(*testing.T, live.Fanout, live.Fanout)
	}{
		{"DeliversToEverySubscriber", testFanoutEvery},
		{"PublishRightAfterSubscribe", testFanoutRightAfter},
		{"CloseStopsDelivery", testFanoutClose},
		{"CloseDuringPublish", testFanoutCloseRace},
		{"TopicIsolation", testFanoutIsolation},
		{"SlowSubscriberDoesNotBlock", testFanoutSlow},
		{"Invalid", testFanoutInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, b := newFanout(t)
			tt.fn(t, a, b)
		})
	}
}

func subscribe(t *testing.T, f live.Fanout, topic string) live.Subscription {
	t.Helper()
	s, err := f.Subscribe(t.Context(), topic)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", topic, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func publish(t *testing.T, f live.Fanout, topic, payload string) {
	t.Helper()
	if err := f.Publish(t.Context(), topic, []byte(payload)); err != nil {
		t.Fatalf("Publish(%q, %q): %v", topic, payload, err)
	}
}

// receive waits for the next message on s and checks it is want.
func receive(t *testing.T, s live.Subscription, what, want string) {
	t.Helper()
	select {
	case got, ok := <-s.C():
		if !ok {
			t.Fatalf("%s: channel closed, want %q", what, want)
		}
		if string(got) != want {
			t.Fatalf("%s: received %.40q, want %.40q", what, got, want)
		}
	case <-time.After(pollTimeout):
		t.Fatalf("%s: nothing received in %s, want %q", what, pollTimeout, want)
	}
}

// Every subscriber of a topic gets every message, on whichever node it
// subscribed and whichever node published.
func testFanoutEvery(t *testing.T, a, b live.Fanout) {
	topic := live.AgentTopic(tenant1, agent1)
	subs := []live.Subscription{subscribe(t, a, topic), subscribe(t, b, topic), subscribe(t, a, topic)}
	publish(t, a, topic, "one")
	for i, s := range subs {
		receive(t, s, fmt.Sprintf("subscriber %d", i), "one")
	}
	publish(t, b, topic, "two")
	for i, s := range subs {
		receive(t, s, fmt.Sprintf("subscriber %d", i), "two")
	}
}

// Subscribe is active when it returns: a device that subscribes and then
// reads its timeline must not miss a note published in between.
func testFanoutRightAfter(t *testing.T, a, b live.Fanout) {
	for round := range 20 {
		sub, pub := a, b
		if round%2 == 1 {
			sub, pub = b, a
		}
		topic := live.AgentTopic(tenant1, conv.AgentID(100+round))
		s := subscribe(t, sub, topic)
		publish(t, pub, topic, fmt.Sprintf("round %d", round))
		receive(t, s, fmt.Sprintf("round %d", round), fmt.Sprintf("round %d", round))
	}
}

// Close closes C; other subscribers of the topic carry on; a second Close
// is harmless.
func testFanoutClose(t *testing.T, a, b live.Fanout) {
	topic := live.TenantTopic(tenant1)
	gone := subscribe(t, b, topic)
	stays := subscribe(t, a, topic)
	stays2 := subscribe(t, b, topic)
	publish(t, a, topic, "before")
	receive(t, gone, "closing subscriber", "before")
	if err := gone.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	publish(t, a, topic, "after")
	receive(t, stays, "subscriber on the other node", "before")
	receive(t, stays, "subscriber on the other node", "after")
	receive(t, stays2, "subscriber on the same node", "before")
	receive(t, stays2, "subscriber on the same node", "after")
	select {
	case m, ok := <-gone.C():
		if ok {
			t.Fatalf("closed subscription received %q", m)
		}
	case <-time.After(pollTimeout):
		t.Fatal("C not closed after Close")
	}
	if err := gone.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// The topic's last subscriber on a node leaving does not stop the
	// others.
	stays2.Close()
	publish(t, b, topic, "last")
	receive(t, stays, "remaining subscriber", "last")
}

// waitClosed drains s until C is closed.
func waitClosed(t *testing.T, s live.Subscription, what string) {
	t.Helper()
	deadline := time.After(pollTimeout)
	for {
		select {
		case _, ok := <-s.C():
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("%s: C not closed %s after Close", what, pollTimeout)
		}
	}
}

// Subscriptions closing while a publisher floods their topic: no send on a
// closed channel, no data race (run with -race), no Publish error.
func testFanoutCloseRace(t *testing.T, a, b live.Fanout) {
	topic := live.AgentTopic(tenant1, agent2)
	stop := make(chan struct{})
	var (
		wg     sync.WaitGroup
		pubErr error
	)
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-t.Context().Done(): // the test failed and ended
				return
			default:
			}
			if err := a.Publish(t.Context(), topic, []byte("flood")); err != nil {
				pubErr = err
				return
			}
		}
	})
	for i := range 20 {
		f := a
		if i%2 == 1 {
			f = b
		}
		s := subscribe(t, f, topic)
		if i%4 < 2 {
			receive(t, s, fmt.Sprintf("subscriber %d", i), "flood")
		}
		if err := s.Close(); err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("Close of subscriber %d: %v", i, err)
		}
		waitClosed(t, s, fmt.Sprintf("subscriber %d", i))
	}
	close(stop)
	wg.Wait()
	if pubErr != nil {
		t.Fatalf("Publish: %v", pubErr)
	}
}

// A topic's subscribers see its messages and no other topic's, not even a
// topic the name of which starts with theirs.
func testFanoutIsolation(t *testing.T, a, b live.Fanout) {
	target := live.AgentTopic(tenant1, agent1)
	others := []string{
		live.AgentTopic(tenant2, agent1),
		live.AgentTopic(tenant1, agent12),
		live.AgentTopic(tenant1, agent2),
		live.TenantTopic(tenant1),
		live.ContactTopic(tenant1, 1),
	}
	s := subscribe(t, b, target)
	type sub struct {
		topic string
		s     live.Subscription
	}
	var subs []sub
	for _, topic := range others {
		subs = append(subs, sub{topic, subscribe(t, a, topic)}, sub{topic, subscribe(t, b, topic)})
	}
	publish(t, a, target, "target")
	for _, topic := range others {
		publish(t, a, topic, "marker "+topic)
	}
	// Sequential publishes arrive in order, so a leak of "target" into
	// another topic would come before that topic's marker.
	receive(t, s, target, "target")
	for _, o := range subs {
		receive(t, o.s, o.topic, "marker "+o.topic)
	}
}

// A subscriber that stops reading loses messages; it neither blocks the
// publisher nor stalls other subscriptions on its node, and it receives
// again once it reads.
func testFanoutSlow(t *testing.T, a, b live.Fanout) {
	slowTopic := live.AgentTopic(tenant1, agent1)
	fastTopic := live.AgentTopic(tenant1, agent2)
	slow := subscribe(t, b, slowTopic)
	fast := subscribe(t, b, fastTopic)
	const flood = 2000
	published := make(chan error, 1)
	go func() {
		for i := range flood {
			if err := a.Publish(t.Context(), slowTopic, []byte(fmt.Sprint("flood ", i))); err != nil {
				published <- err
				return
			}
		}
		published <- nil
	}()
	select {
	case err := <-published:
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
	case <-time.After(2 * pollTimeout):
		t.Fatalf("%d Publishes to a subscriber that does not read did not finish in %s", flood, 2*pollTimeout)
	}
	publish(t, a, fastTopic, "fast")
	receive(t, fast, "subscriber beside a slow one", "fast")
	received := 0
	waitFor(t, pollTimeout, "slow subscriber receives again once it reads", func() (bool, error) {
		if err := a.Publish(t.Context(), slowTopic, []byte("marker")); err != nil {
			return false, err
		}
		for {
			select {
			case m, ok := <-slow.C():
				if !ok {
					return false, errors.New("slow subscriber's channel closed")
				}
				if string(m) == "marker" {
					return true, nil
				}
				received++
			default:
				return false, nil
			}
		}
	})
	if received >= flood {
		t.Fatalf("slow subscriber received all %d messages: no buffer overflowed, so the test proved nothing", flood)
	}
}

func testFanoutInvalid(t *testing.T, a, b live.Fanout) {
	ctx := t.Context()
	for _, topic := range []string{"", long(maxKeyLen + 1)} {
		if err := a.Publish(ctx, topic, []byte("x")); !errors.Is(err, conv.ErrInvalid) {
			t.Fatalf("Publish to a %d-byte topic = %v, want ErrInvalid", len(topic), err)
		}
		if s, err := a.Subscribe(ctx, topic); !errors.Is(err, conv.ErrInvalid) || s != nil {
			t.Fatalf("Subscribe to a %d-byte topic = %v, %v; want nil, ErrInvalid", len(topic), s, err)
		}
	}
	if err := a.Publish(ctx, "t", make([]byte, maxEventLen+1)); !errors.Is(err, conv.ErrInvalid) {
		t.Fatalf("Publish of %d bytes = %v, want ErrInvalid", maxEventLen+1, err)
	}
	// The largest valid topic and payload go through.
	topic := long(maxKeyLen)
	big := string(slices.Repeat([]byte("p"), maxEventLen))
	s := subscribe(t, a, topic)
	publish(t, b, topic, big)
	receive(t, s, "largest payload", big)
}
