package hub

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/ingest"
)

// Ingester is the part of core/ingest the inbound handler drives.
type Ingester interface {
	Accept(ctx context.Context, in conv.Inbound) (ingest.Result, error)
}

// DeliveryApplier is the part of core/outbound the delivery handler drives.
type DeliveryApplier interface {
	ApplyDelivery(ctx context.Context, d conv.Delivery) error
}

// InboundHandler stores envelopes from the inbound topic. It returns nil
// (ack) only once the message is stored and its events are published.
func InboundHandler(in Ingester) message.NoPublishHandlerFunc {
	return func(m *message.Message) error {
		var env conv.Inbound
		if err := Decode(m, &env); err != nil {
			return err
		}
		if t := m.Metadata.Get(MetaTenant); t != "" && t != env.TenantID.String() {
			return fmt.Errorf("hub: %w: metadata tenant %s differs from envelope tenant %s", conv.ErrInvalid, t, env.TenantID)
		}
		_, err := in.Accept(Context(m), env)
		return err
	}
}

// DeliveryHandler applies connectors' delivery reports.
func DeliveryHandler(d DeliveryApplier) message.NoPublishHandlerFunc {
	return func(m *message.Message) error {
		var rep conv.Delivery
		if err := Decode(m, &rep); err != nil {
			return err
		}
		return d.ApplyDelivery(Context(m), rep)
	}
}
