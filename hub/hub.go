package hub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	jsonv2 "github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/internal/jsonenc"
)

// Topics.
const (
	TopicInbound  = "inbound"
	TopicEvents   = "events"
	TopicDelivery = "delivery"
	TopicPoison   = "poison"
)

// OutboundTopic is the topic a kind's connector consumes replies from.
func OutboundTopic(kind conv.ChannelKind) string { return "outbound." + string(kind) }

// Metadata keys.
const (
	MetaTenant = "tenant_id"
	MetaType   = "type"
	// MetaEventTypes lists, comma-separated, the distinct event types in an
	// events message, so a consumer interested in a few types can ack the
	// rest without decoding them (see EventsOf).
	MetaEventTypes = "event_types"
)

// MaxPayload bounds what a handler decodes from the bus.
const MaxPayload = 1 << 20

type correlationKey struct{}

// WithCorrelation returns ctx carrying a correlation id that every message
// published with it will carry.
func WithCorrelation(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey{}, id)
}

// Correlation returns the correlation id in ctx, or "".
func Correlation(ctx context.Context) string {
	id, _ := ctx.Value(correlationKey{}).(string)
	return id
}

// Publisher encodes and publishes hub messages. It implements the publisher
// interfaces core declares (ingest.Publisher, outbound.Publisher).
type Publisher struct {
	pub   message.Publisher
	group atomic.Pointer[grouper]
}

// NewPublisher wraps a watermill publisher.
func NewPublisher(pub message.Publisher) *Publisher { return &Publisher{pub: pub} }

func (p *Publisher) encode(ctx context.Context, uuid string, tenant conv.TenantID, typ string, v any) (*message.Message, error) {
	b, err := Encode(v)
	if err != nil {
		return nil, fmt.Errorf("hub: encode %s: %w", typ, err)
	}
	return p.message(ctx, uuid, tenant, typ, b), nil
}

// message wraps an encoded payload with the metadata every bus message
// carries: tenant, type and correlation id.
func (p *Publisher) message(ctx context.Context, uuid string, tenant conv.TenantID, typ string, payload []byte) *message.Message {
	m := message.NewMessage(uuid, payload)
	m.Metadata.Set(MetaTenant, tenant.String())
	m.Metadata.Set(MetaType, typ)
	cid := Correlation(ctx)
	if cid == "" {
		cid = watermill.NewShortUUID()
	}
	middleware.SetCorrelationID(cid, m)
	m.SetContext(ctx)
	return m
}

func key(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// EventBatch is the payload of a message on the events topic: the events
// of one tenant from one commit (or a slice of it), in commit order. One
// bus message per commit instead of one per event is what keeps the events
// stream from costing an fsync per message.
type EventBatch struct {
	Events []conv.Event `json:"events"`
}

// MaxEventBatch bounds the encoded size of one events message; a commit
// whose events are larger is split over several messages, in order.
const MaxEventBatch = 256 << 10

// PublishEvents publishes domain events: one message per tenant holding
// that tenant's events in order, split where the encoding passes
// MaxEventBatch. A message's UUID derives from the keys of the events it
// holds, so republishing the same events is dropped by the bus's dedup.
func (p *Publisher) PublishEvents(ctx context.Context, events []conv.Event) error {
	var msgs []*message.Message
	flush := func(tenant conv.TenantID, raws [][]byte, keys []string, types []string) error {
		if len(raws) == 0 {
			return nil
		}
		// The batch is assembled from the encoded events rather than
		// marshalled again: a marshal would re-validate and compact
		// every event it was just given.
		size := len(`{"events":[]}`) + len(raws) - 1
		for _, r := range raws {
			size += len(r)
		}
		payload := make([]byte, 0, size)
		payload = append(payload, `{"events":[`...)
		for i, r := range raws {
			if i > 0 {
				payload = append(payload, ',')
			}
			payload = append(payload, r...)
		}
		payload = append(payload, "]}"...)
		m := p.message(ctx, "ev-"+key(append([]string{tenant.String()}, keys...)...), tenant, "events", payload)
		m.Metadata.Set(MetaEventTypes, strings.Join(types, ","))
		msgs = append(msgs, m)
		return nil
	}
	byTenant := map[conv.TenantID][]conv.Event{}
	var order []conv.TenantID
	for _, e := range events {
		if _, ok := byTenant[e.TenantID]; !ok {
			order = append(order, e.TenantID)
		}
		byTenant[e.TenantID] = append(byTenant[e.TenantID], e)
	}
	for _, t := range order {
		var (
			raws  [][]byte
			keys  []string
			types []string
			size  int
		)
		for _, e := range byTenant[t] {
			b, err := Encode(e)
			if err != nil {
				return fmt.Errorf("hub: encode event %s: %w", e.Key(), err)
			}
			if size+len(b) > MaxEventBatch && len(raws) > 0 {
				if err := flush(t, raws, keys, types); err != nil {
					return err
				}
				raws, keys, types, size = nil, nil, nil, 0
			}
			raws, keys, size = append(raws, b), append(keys, e.Key()), size+len(b)+1
			if !slices.Contains(types, string(e.Type)) {
				types = append(types, string(e.Type))
			}
		}
		if err := flush(t, raws, keys, types); err != nil {
			return err
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return p.pub.Publish(TopicEvents, msgs...)
}

// EventsOf reports whether an events message may hold an event of one of
// types. It reads only the metadata; a message without MetaEventTypes
// (published before it existed) may hold anything.
func EventsOf(m *message.Message, types ...conv.EventType) bool {
	listed, ok := m.Metadata[MetaEventTypes]
	if !ok {
		return true
	}
	for t := range strings.SplitSeq(listed, ",") {
		if slices.Contains(types, conv.EventType(t)) {
			return true
		}
	}
	return false
}

// TenantOf is the tenant a message names in its metadata; a message
// without a valid one is permanently invalid.
func TenantOf(m *message.Message) (conv.TenantID, error) {
	t, err := conv.ParseID[conv.TenantID](m.Metadata.Get(MetaTenant))
	if err != nil || t.IsZero() {
		return 0, fmt.Errorf("hub: %w: message %s names no valid tenant (%q)", conv.ErrInvalid, m.UUID, m.Metadata.Get(MetaTenant))
	}
	return t, nil
}

// DecodeEvents decodes a message of the events topic. Every event must
// belong to the tenant in the message's metadata; anything else is
// permanently invalid.
func DecodeEvents(m *message.Message) ([]conv.Event, error) {
	var b EventBatch
	if err := Decode(m, &b); err != nil {
		return nil, err
	}
	t := m.Metadata.Get(MetaTenant)
	for _, e := range b.Events {
		if e.TenantID.String() != t {
			return nil, fmt.Errorf("hub: %w: event %s of tenant %s in a message of tenant %q", conv.ErrInvalid, e.Key(), e.TenantID, t)
		}
	}
	return b.Events, nil
}

// PublishOutbound hands a reply to the connector of its channel kind.
func (p *Publisher) PublishOutbound(ctx context.Context, out conv.Outbound) error {
	m, err := p.encode(ctx, "out-"+out.Message.ID.String(), out.TenantID, "outbound", out)
	if err != nil {
		return err
	}
	return p.pub.Publish(OutboundTopic(out.Kind), m)
}

// PublishDelivery reports a delivery status back to core.
func (p *Publisher) PublishDelivery(ctx context.Context, d conv.Delivery) error {
	// A status is reported once; "still pending" may be reported again
	// whenever its reason changes.
	k := key(d.MessageID.String(), string(d.Status))
	if d.Status == conv.MsgPending {
		k = key(d.MessageID.String(), string(d.Status), d.Reason)
	}
	m, err := p.encode(ctx, "dl-"+k, d.TenantID, "delivery", d)
	if err != nil {
		return err
	}
	return p.pub.Publish(TopicDelivery, m)
}

// Decode unmarshals a hub message payload into v. A payload that is not
// valid JSON for v, or too large, is permanently invalid (conv.ErrInvalid),
// so the router sends it to the poison queue instead of retrying it.
func Decode(m *message.Message, v any) error {
	if len(m.Payload) > MaxPayload {
		return fmt.Errorf("hub: %w: payload of %d bytes exceeds %d", conv.ErrInvalid, len(m.Payload), MaxPayload)
	}
	if err := jsonv2.Unmarshal(m.Payload, v, decodeOptions); err != nil {
		return fmt.Errorf("hub: %w: payload is not a valid %T: %v", conv.ErrInvalid, v, err)
	}
	return nil
}

// Encode renders a bus payload exactly as encoding/json would (the bytes
// every consumer, older nodes included, expects), faster (internal/jsonenc).
func Encode(v any) ([]byte, error) { return jsonenc.Marshal(v) }

// decodeOptions: bus payloads are written with v1 semantics (Encode), and
// every consumer group decodes every message, so decoding is the bus's
// largest CPU cost; the v2 decoder takes half the time of encoding/json's.
// Its one incompatibility with what encoding/json writes is time.Duration
// (v1 writes nanoseconds; v2 has no default), set here. The round trip of
// every payload type is pinned by TestDecodeRoundTrip.
var decodeOptions = jsonv1.FormatDurationAsNano(true)

// Context returns the message's context carrying its correlation id, so
// everything published while handling it keeps the same id.
func Context(m *message.Message) context.Context {
	return WithCorrelation(m.Context(), middleware.MessageCorrelationID(m))
}
