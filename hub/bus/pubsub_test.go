package bus

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"

	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// suiteConfig is the configuration we ship, with two timers shortened.
// Neither changes what is delivered, only when:
//   - AckWait 5s (ships 30s): the suite closes subscribers and cancels
//     subscription contexts with messages in flight and then waits at most
//     15s of silence for them; JetStream hands such messages to the next
//     subscriber only once AckWait has passed.
//   - Redelivery 100ms..2s (ships 1s..1m): TestContinueAfterErrors nacks
//     every message six times and waits at most 15s between deliveries;
//     the shipped backoff reaches 16s at the sixth.
//
// Retry.MaxInterval is lowered with AckWait only because Validate requires
// the in-process retry budget to fit in it (the suite uses no router).
func suiteConfig(t *testing.T) Config {
	return Config{
		Logger:     testLogger(t),
		AckWait:    5 * time.Second,
		Redelivery: Backoff{InitialInterval: 100 * time.Millisecond, MaxInterval: 2 * time.Second},
		Retry:      Retry{MaxInterval: time.Second},
	}
}

// suiteFeatures describes the shipped bus honestly:
//   - ConsumerGroups: Subscriber(group) is a durable queue group.
//   - ExactlyOnceDelivery false: delivery is at least once. TrackMsgId
//     deduplicates publishing (a UUID is stored once per DedupWindow), not
//     delivery: a message whose ack is lost is delivered again.
//   - GuaranteedOrder and GuaranteedOrderWithSingleSubscriber false: one
//     subscriber has Config.Subscribers (64) messages in flight at once,
//     and a nacked message comes back after later ones.
//   - Persistent: file-stored streams.
//   - NewSubscriberReceivesOldMessages false, because of how the suite's
//     group-less constructor maps onto the bus: every subscriber we ship
//     belongs to a group, so the group-less constructor gives all its
//     subscribers one group, like the nodes of one service. A new
//     subscriber is then another member of that group: it shares the
//     group's position and does not re-receive what the group acked. (A
//     new group does start from the oldest message kept: DeliverAll, see
//     TestNewGroupReceivesOldMessages.)
//   - ContextPreserved false: NATS carries no Go context.
func suiteFeatures(topicPrefix string) tests.Features {
	return tests.Features{
		ConsumerGroups:                      true,
		ExactlyOnceDelivery:                 false,
		GuaranteedOrder:                     false,
		GuaranteedOrderWithSingleSubscriber: false,
		Persistent:                          true,
		RequireSingleInstance:               false,
		NewSubscriberReceivesOldMessages:    false,
		ContextPreserved:                    false,
		// The suite's topics live in a stream of their own, configured
		// like the shipped ones (streamConfig).
		GenerateTopicFunc: func(tctx tests.TestContext) string {
			return topicPrefix + "." + string(tctx.TestID)
		},
	}
}

// runSuite runs watermill's universal pub/sub suite against b.
func runSuite(t *testing.T, b *Bus) {
	id := strings.ToLower(watermill.NewShortUUID())
	s := stream{name: "SUITE_" + id, subjects: []string{"suite_" + id + ".>"}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.provision(ctx, s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// On a shared external server, leave nothing behind.
		if err := b.js.DeleteStream(s.name); err != nil {
			t.Errorf("delete %s: %v", s.name, err)
		}
	})

	newPubSub := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		sub, err := b.Subscriber(group)
		if err != nil {
			t.Fatal(err)
		}
		return b.Publisher(), sub
	}
	tests.TestPubSub(t, suiteFeatures("suite_"+id),
		func(t *testing.T) (message.Publisher, message.Subscriber) {
			return newPubSub(t, "suite")
		},
		newPubSub,
	)
}

func TestPubSubEmbedded(t *testing.T) {
	cfg := suiteConfig(t)
	cfg.DataDir = t.TempDir()
	runSuite(t, openBus(t, cfg))
}

func TestPubSubExternal(t *testing.T) {
	url := testenv.Require(t, "SWITCHBOARD_TEST_NATS")
	cfg := suiteConfig(t)
	cfg.URL = url
	runSuite(t, openBus(t, cfg))
}
