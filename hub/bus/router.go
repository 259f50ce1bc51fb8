package bus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Metadata a poison message carries besides watermill's own
// (middleware.ReasonForPoisonedKey "reason_poisoned", PoisonedTopicKey
// "topic_poisoned", PoisonedHandlerKey "handler_poisoned",
// PoisonedSubscriberKey "subscriber_poisoned").
const (
	// MetaPoisonedUUID is the UUID of the message that failed. The poison
	// message has its own UUID (derived from it and the handler), so that
	// the same message failing in two handlers is kept twice.
	MetaPoisonedUUID = "uuid_poisoned"
	// MetaPoisonedAt is when it was given up on, RFC 3339.
	MetaPoisonedAt = "time_poisoned"
)

// maxReason bounds the reason kept in a header (a panic's stack can be
// long; NATS headers count against the message size limit).
const maxReason = 8 << 10

// DeadLetterSink keeps messages the bus gave up on, for an admin to list.
// AddDeadLetter may be called more than once for one poison message
// (delivery is at least once); storage.Store implements it.
type DeadLetterSink interface {
	AddDeadLetter(ctx context.Context, d conv.DeadLetter) error
}

// deadLetterHandler names the router handler that feeds the sink.
const deadLetterHandler = "dead-letters"

// NewRouter returns a watermill router whose handlers, outermost first:
//
//  1. recover a panic anywhere below into an error (never a crash);
//  2. carry the correlation id (and give one to a message that has none);
//  3. send to the poison topic a message whose error is permanent
//     (conv.Permanent) or whose deliveries are exhausted, then ack it;
//  4. mark a failure on the MaxDeliver-th delivery as exhausted, and give
//     up at once on a delivery beyond it (the earlier ones timed out);
//  5. retry transient errors in-process with exponential backoff;
//  6. recover a panic in the handler into an error, so that 5 retries it
//     and 3 can poison it.
//
// A transient error that outlasts the retries is returned: the router
// nacks and JetStream redelivers after the Redelivery backoff.
func (b *Bus) NewRouter() (*message.Router, error) {
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: b.cfg.AckWait}, b.wlog)
	if err != nil {
		return nil, fmt.Errorf("bus.NewRouter: %w", err)
	}
	poison, err := middleware.PoisonQueueWithFilter(poisonPublisher{b.Publisher()}, TopicPoison, func(err error) bool {
		var ex *exhaustedError
		return conv.Permanent(err) || errors.As(err, &ex)
	})
	if err != nil {
		return nil, fmt.Errorf("bus.NewRouter: %w", err)
	}
	r.AddMiddleware(
		middleware.Recoverer,
		correlation,
		// The dead-letter handler must not feed the poison topic it
		// reads: its failures are redelivered until the sink works.
		skipTopic(TopicPoison, poison),
		skipTopic(TopicPoison, deliveryLimit(b.cfg.MaxDeliver)),
		middleware.Retry{
			MaxRetries:          b.cfg.Retry.MaxRetries,
			InitialInterval:     b.cfg.Retry.InitialInterval,
			MaxInterval:         b.cfg.Retry.MaxInterval,
			Multiplier:          2,
			RandomizationFactor: 0.2,
			ShouldRetry:         func(p middleware.RetryParams) bool { return !conv.Permanent(p.Err) },
			// A failed attempt may have cancelled a context derived
			// from the message's; the next one starts clean.
			ResetContextOnRetry: true,
		}.Middleware,
		middleware.Recoverer,
	)
	return r, nil
}

// correlation gives a message without a correlation id a new one, then
// lets watermill copy it to whatever the handler produces.
func correlation(h message.HandlerFunc) message.HandlerFunc {
	h = middleware.CorrelationID(h)
	return func(msg *message.Message) ([]*message.Message, error) {
		if middleware.MessageCorrelationID(msg) == "" {
			middleware.SetCorrelationID(watermill.NewShortUUID(), msg)
		}
		return h(msg)
	}
}

// skipTopic applies mw except to messages consumed from topic.
func skipTopic(topic string, mw message.HandlerMiddleware) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		wrapped := mw(h)
		return func(msg *message.Message) ([]*message.Message, error) {
			if message.SubscribeTopicFromCtx(msg.Context()) == topic {
				return h(msg)
			}
			return wrapped(msg)
		}
	}
}

// exhaustedError marks a transient failure on the last delivery allowed.
type exhaustedError struct {
	delivered, max int
	err            error
}

func (e *exhaustedError) Error() string {
	return fmt.Sprintf("gave up after delivery %d of %d: %v", e.delivered, e.max, e.err)
}

func (e *exhaustedError) Unwrap() error { return e.err }

// errUnacked explains a delivery past the limit: the earlier ones ended
// without an error to report (the handler hung past AckWait, its node
// stopped, or publishing to the poison topic failed).
var errUnacked = errors.New("earlier deliveries were not acknowledged (handler hung past AckWait, node stopped, or poisoning failed)")

// deliveryLimit enforces MaxDeliver using JetStream's delivery count.
func deliveryLimit(max int) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			n, _ := strconv.Atoi(msg.Metadata.Get(MetaDeliveryAttempt))
			if n > max {
				return nil, &exhaustedError{delivered: n, max: max, err: errUnacked}
			}
			out, err := h(msg)
			if err != nil && n >= max && !conv.Permanent(err) {
				return out, &exhaustedError{delivered: n, max: max, err: err}
			}
			return out, err
		}
	}
}

// poisonPublisher publishes poison messages as copies with their own
// UUID: JetStream's dedup window would otherwise drop the second of two
// handlers' failures on one message, both carrying its UUID.
type poisonPublisher struct{ pub message.Publisher }

func (p poisonPublisher) Publish(topic string, msgs ...*message.Message) error {
	out := make([]*message.Message, 0, len(msgs))
	for _, m := range msgs {
		md := maps.Clone(m.Metadata)
		if md == nil {
			md = message.Metadata{}
		}
		md.Set(middleware.ReasonForPoisonedKey, conv.Shorten(md.Get(middleware.ReasonForPoisonedKey), maxReason))
		md.Set(MetaPoisonedUUID, m.UUID)
		md.Set(MetaPoisonedAt, time.Now().UTC().Format(time.RFC3339Nano))
		// Deterministic, so that re-poisoning after a crash between
		// publish and ack is deduplicated.
		sum := sha256.Sum256([]byte(m.UUID + "\x00" + md.Get(middleware.PoisonedHandlerKey) + "\x00" + md.Get(middleware.PoisonedTopicKey)))
		c := message.NewMessage("poison-"+hex.EncodeToString(sum[:16]), m.Payload)
		c.Metadata = md
		out = append(out, c)
	}
	return p.pub.Publish(topic, out...)
}

func (p poisonPublisher) Close() error { return nil }

// AddDeadLetterSink adds to r a handler that writes every poison message
// into sink, so that the dead letters can be listed from the store while
// the server runs. A sink error is redelivered until the sink takes it,
// except a permanent one, which is logged (the message stays in the
// POISON stream for MaxAge).
func (b *Bus) AddDeadLetterSink(r *message.Router, sink DeadLetterSink) error {
	sub, err := b.Subscriber(deadLetterHandler)
	if err != nil {
		return fmt.Errorf("bus.AddDeadLetterSink: %w", err)
	}
	r.AddConsumerHandler(deadLetterHandler, TopicPoison, sub, func(msg *message.Message) error {
		d := deadLetter(msg)
		err := sink.AddDeadLetter(msg.Context(), d)
		switch {
		case err == nil, errors.Is(err, conv.ErrConflict):
			b.log.Warn("dead letter", "topic", d.Topic, "handler", d.Handler, "message_uuid", d.MessageID,
				"tenant_id", d.TenantID, "reason", conv.Shorten(d.Reason, 512))
			return nil
		case conv.Permanent(err):
			b.log.Error("dead letter rejected by the sink; it stays in the POISON stream", "topic", d.Topic,
				"handler", d.Handler, "message_uuid", d.MessageID, "err", err)
			return nil
		}
		return fmt.Errorf("bus: dead letter %s: %w", d.MessageID, err)
	})
	return nil
}

// deadLetter turns a poison message into the record an admin reads.
func deadLetter(msg *message.Message) conv.DeadLetter {
	md := maps.Clone(msg.Metadata)
	delete(md, MetaDeliveryAttempt) // the sink's count, not the failed handler's
	d := conv.DeadLetter{
		Topic:     md.Get(middleware.PoisonedTopicKey),
		Handler:   md.Get(middleware.PoisonedHandlerKey),
		MessageID: md.Get(MetaPoisonedUUID),
		Reason:    md.Get(middleware.ReasonForPoisonedKey),
		Payload:   msg.Payload,
		Metadata:  md,
		CreatedAt: time.Now().UTC(),
	}
	if d.MessageID == "" {
		d.MessageID = msg.UUID
	}
	if t, err := time.Parse(time.RFC3339Nano, md.Get(MetaPoisonedAt)); err == nil {
		d.CreatedAt = t
	}
	var body struct {
		TenantID string `json:"tenant_id"`
	}
	if json.Unmarshal(msg.Payload, &body) == nil && body.TenantID != "" {
		d.TenantID, _ = conv.ParseID[conv.TenantID](body.TenantID)
	}
	if d.TenantID.IsZero() {
		// hub puts the tenant in metadata too.
		d.TenantID, _ = conv.ParseID[conv.TenantID](md.Get("tenant_id"))
	}
	return d
}
