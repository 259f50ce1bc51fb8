package hub

import (
	"context"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/ingest"
)

// Ingester is the part of core/ingest the inbound handler drives.
type Ingester interface {
	Accept(ctx context.Context, in conv.Inbound) (ingest.Result, error)
}

// BatchAccepter is an Ingester that takes a batch's envelopes in one call
// (core/ingest's Service), returning each one's error in order.
type BatchAccepter interface {
	AcceptAll(ctx context.Context, envs []conv.Inbound) []error
}

// DeliveryApplier is the part of core/outbound the delivery handler drives.
type DeliveryApplier interface {
	ApplyDelivery(ctx context.Context, d conv.Delivery) error
}

// InboundHandler stores envelopes from the inbound topic. It returns nil
// (ack) only once every envelope of the message is stored and its events
// are published. The envelopes of a batch are accepted concurrently, so
// ingest commits them together. A transient failure of any redelivers the
// whole batch (ingest dedups what was stored); an envelope that fails
// permanently is published again on its own through pub, so it alone
// reaches the poison queue, with its reason.
func InboundHandler(in Ingester, pub *Publisher) message.NoPublishHandlerFunc {
	return func(m *message.Message) error {
		envs, err := DecodeInbound(m)
		if err != nil {
			return err
		}
		ctx := Context(m)
		if len(envs) == 1 {
			_, err := in.Accept(ctx, envs[0])
			return err
		}
		var errs []error
		if all, ok := in.(BatchAccepter); ok {
			errs = all.AcceptAll(ctx, envs)
		} else {
			errs = make([]error, len(envs))
			var wg sync.WaitGroup
			for i, env := range envs {
				wg.Go(func() { _, errs[i] = in.Accept(ctx, env) })
			}
			wg.Wait()
		}
		var failed []conv.Inbound
		for i, err := range errs {
			switch {
			case err == nil:
			case conv.Permanent(err):
				failed = append(failed, envs[i])
			default:
				return fmt.Errorf("hub: batch of %d envelopes (%s): %w", len(envs), describe(envs), err)
			}
		}
		for _, env := range failed {
			if err := pub.PublishAlone(ctx, env); err != nil {
				return fmt.Errorf("hub: requeue %s/%s on its own: %w", env.ChannelID, env.ExternalID, err)
			}
		}
		return nil
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
