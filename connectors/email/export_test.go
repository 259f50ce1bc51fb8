package email

import (
	"context"

	"github.com/switchboard-hq/switchboard/connectors/email/imapwatch"
	"github.com/switchboard-hq/switchboard/core/conv"
)

// Received is what Receive made of one mail.
type Received struct {
	In         *conv.Inbound
	Delivery   *conv.Delivery
	Unreadable bool
}

// Receive runs the inbound mapping of one mail for stored channel ch, as
// the watcher's handler does before it publishes.
func Receive(ctx context.Context, c *Connector, ch conv.Channel, m imapwatch.Mail) (Received, error) {
	chn, err := newChannel(ch)
	if err != nil {
		return Received{}, err
	}
	r, err := c.receive(ctx, chn, m)
	return Received{In: r.in, Delivery: r.delivery, Unreadable: r.unreadable}, err
}
