// Package testchan is the loopback connector for channel kind "test": it
// consumes outbound.test, "sends" by recording the message, and reports
// delivery like a real connector would. Tests and `switchboard bench` use
// it to exercise the whole outbound path without a remote service.
//
// A message whose first text part starts with "fail:" is reported failed
// with the rest of the text as the reason. Sends are idempotent on the
// message id: a redelivered outbound is reported again but sent once.
package testchan

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/hub"
)

// Reporter publishes delivery reports (hub.Publisher).
type Reporter interface {
	PublishDelivery(ctx context.Context, d conv.Delivery) error
}

// Connector is the loopback connector.
type Connector struct {
	report Reporter
	mu     sync.Mutex
	sent   map[conv.MessageID]conv.Outbound
	seen   int
}

// New returns a connector reporting through r.
func New(r Reporter) *Connector {
	return &Connector{report: r, sent: make(map[conv.MessageID]conv.Outbound)}
}

// Handler consumes hub.OutboundTopic(conv.KindTest).
func (c *Connector) Handler() message.NoPublishHandlerFunc {
	return func(m *message.Message) error {
		var out conv.Outbound
		if err := hub.Decode(m, &out); err != nil {
			return err
		}
		c.mu.Lock()
		c.seen++
		if _, dup := c.sent[out.Message.ID]; !dup {
			c.sent[out.Message.ID] = out
		}
		c.mu.Unlock()
		d := conv.Delivery{TenantID: out.TenantID, MessageID: out.Message.ID, Status: conv.MsgSent,
			ExternalID: "test-" + out.Message.ID.String(), At: time.Now().UTC()}
		for _, p := range out.Message.Parts {
			if reason, ok := strings.CutPrefix(p.Text, "fail:"); ok && p.Type == conv.PartText {
				d.Status, d.Reason, d.ExternalID = conv.MsgFailed, strings.TrimSpace(reason), ""
			}
			break
		}
		return c.report.PublishDelivery(hub.Context(m), d)
	}
}

// Sent returns what was sent, by message id.
func (c *Connector) Sent() map[conv.MessageID]conv.Outbound {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[conv.MessageID]conv.Outbound, len(c.sent))
	for k, v := range c.sent {
		out[k] = v
	}
	return out
}

// Deliveries counts outbound messages received, redeliveries included.
func (c *Connector) Deliveries() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen
}
