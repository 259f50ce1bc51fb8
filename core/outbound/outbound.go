package outbound

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// Publisher puts work on the bus and returns once it is durably accepted.
type Publisher interface {
	PublishOutbound(ctx context.Context, out conv.Outbound) error
	PublishEvents(ctx context.Context, events []conv.Event) error
}

// Lease elects the one node that runs the sweeper.
type Lease interface {
	Acquire(ctx context.Context, key, holder string, ttl time.Duration) (bool, error)
}

// Config configures a Service.
type Config struct {
	Store  storage.Store
	Bus    Publisher
	IDs    *conv.IDGen
	Logger *slog.Logger
	Now    func() time.Time
	// Grace is how old an unpublished pending reply must be before the
	// sweeper republishes it (default 10s): longer than a normal publish.
	Grace time.Duration
	// ReplyQuota is, per channel kind, how many replies the channel
	// accepts after one customer message (WeChat: 5). A reply past it is
	// refused with the reason instead of failing at the channel. Kinds
	// not listed have no quota.
	ReplyQuota map[conv.ChannelKind]int
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Grace <= 0 {
		c.Grace = 10 * time.Second
	}
}

// Service sends replies and applies delivery reports.
type Service struct{ cfg Config }

// New validates cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	cfg.setDefaults()
	switch {
	case cfg.Store == nil:
		return nil, errors.New("outbound: Config.Store is required")
	case cfg.Bus == nil:
		return nil, errors.New("outbound: Config.Bus is required")
	case cfg.IDs == nil:
		return nil, errors.New("outbound: Config.IDs is required")
	}
	return &Service{cfg: cfg}, nil
}

// Reply is an agent's (or bot's) message to a conversation.
type Reply struct {
	ConversationID conv.ConversationID
	Sender         conv.Sender
	Parts          []conv.Part
	// ClientID, when set, makes Reply idempotent: the same ClientID on the
	// same conversation returns the first message instead of a second one.
	ClientID string
}

// MaxClientID bounds idempotency keys.
const MaxClientID = 128

// Reply stores r as a pending outbound message, publishes it to the
// channel's connector and returns the stored message. A message that was
// stored but could not be published is still returned with a nil error:
// it is safely in the outbox and the sweeper will send it.
func (s *Service) Reply(ctx context.Context, tenant conv.TenantID, r Reply) (conv.Message, error) {
	op := fmt.Sprintf("outbound.Reply %s", r.ConversationID)
	if err := conv.ValidateParts(r.Parts); err != nil {
		return conv.Message{}, fmt.Errorf("%s: %w", op, err)
	}
	if len(r.ClientID) > MaxClientID {
		return conv.Message{}, fmt.Errorf("%s: %w: client_id longer than %d", op, conv.ErrInvalid, MaxClientID)
	}
	switch r.Sender.Type {
	case conv.SenderAgent, conv.SenderBot, conv.SenderSystem:
	default:
		return conv.Message{}, fmt.Errorf("%s: %w: sender type %q cannot reply", op, conv.ErrInvalid, r.Sender.Type)
	}
	var (
		msg     conv.Message
		out     conv.Outbound
		c       conv.Conversation
		existed bool
	)
	err := s.cfg.Store.Tx(ctx, tenant, func(tx storage.Tx) error {
		var err error
		existed = false
		if c, err = tx.Conversation(ctx, r.ConversationID); err != nil {
			return err
		}
		if r.ClientID != "" {
			prev, err := tx.MessageByClientID(ctx, c.ID, r.ClientID)
			if err == nil {
				msg, existed = prev, true
				return nil
			}
			if !errors.Is(err, conv.ErrNotFound) {
				return err
			}
		}
		if c.Status != conv.StatusOpen {
			return fmt.Errorf("%w: conversation is %s", conv.ErrConflict, c.Status)
		}
		now := s.cfg.Now().UTC()
		if c.ReplyDeadline != nil && now.After(*c.ReplyDeadline) {
			return fmt.Errorf("%w: the channel's reply window closed at %s", conv.ErrConflict, c.ReplyDeadline.Format(time.RFC3339))
		}
		if out, err = s.target(ctx, tx, c); err != nil {
			return err
		}
		msg, err = tx.AppendMessage(ctx, conv.Message{
			ID:             conv.NewID[conv.MessageID](s.cfg.IDs),
			TenantID:       tenant,
			ConversationID: c.ID,
			ChannelID:      c.ChannelID,
			Direction:      conv.Out,
			Sender:         r.Sender,
			Parts:          r.Parts,
			ClientID:       r.ClientID,
			Status:         conv.MsgPending,
			CreatedAt:      now,
		})
		if err != nil {
			return err
		}
		c.LastSeq = msg.Seq
		// After the append: it holds the conversation's row lock, so two
		// concurrent replies are counted one after the other, not both
		// against the same tail. Over the quota, the append rolls back.
		return s.checkQuota(ctx, tx, c, out.Kind, msg.Seq, len(r.Parts))
	})
	if err != nil {
		return conv.Message{}, fmt.Errorf("%s: %w", op, err)
	}
	if existed {
		return msg, nil
	}
	out.Message = msg
	if err := s.publish(ctx, tenant, out); err != nil {
		s.cfg.Logger.WarnContext(ctx, "reply stored but not yet published; the sweeper will retry",
			"tenant", tenant, "message", msg.ID, "err", err)
		return msg, nil
	}
	if err := s.cfg.Bus.PublishEvents(ctx, []conv.Event{{
		Type: conv.EventMessageCreated, TenantID: tenant, Conversation: &c, Message: &msg, At: s.cfg.Now(),
	}}); err != nil {
		s.cfg.Logger.WarnContext(ctx, "reply sent but message.created not published", "message", msg.ID, "err", err)
	}
	return msg, nil
}

// checkQuota refuses the reply appended at seq, of parts parts, when it would pass the
// channel's quota of sends since the customer's last message. A part is a
// send (WeChat takes a text and an image as two messages); failed replies
// do not count: the channel did not take them.
func (s *Service) checkQuota(ctx context.Context, tx storage.Tx, c conv.Conversation, kind conv.ChannelKind, seq int64, parts int) error {
	quota := s.cfg.ReplyQuota[kind]
	if quota <= 0 {
		return nil
	}
	// Enough of the tail before this reply (seq) to see quota replies and
	// the message before them (a few extra for failed replies and system
	// events in between).
	recent, err := tx.MessagesBefore(ctx, c.ID, seq, 4*quota)
	if err != nil {
		return err
	}
	if used := RepliesSinceCustomer(recent); used+parts > quota {
		return fmt.Errorf("%w: %s accepts %d messages per customer message; %d were sent since the customer last wrote and this reply is %d more; wait for the customer's next message",
			conv.ErrConflict, kind, quota, used, parts)
	}
	return nil
}

// RepliesSinceCustomer counts the sends the channel took after the newest
// customer message in msgs (ascending seq order): every part of every
// outbound message that did not fail.
func RepliesSinceCustomer(msgs []conv.Message) int {
	n := 0
	for i := len(msgs) - 1; i >= 0; i-- {
		m := msgs[i]
		if m.Direction == conv.In && m.Sender.Type == conv.SenderContact {
			break
		}
		if m.Direction == conv.Out && m.Status != conv.MsgFailed {
			n += max(1, len(m.Parts))
		}
	}
	return n
}

// target resolves where a conversation's replies go.
func (s *Service) target(ctx context.Context, tx storage.Tx, c conv.Conversation) (conv.Outbound, error) {
	ch, err := tx.Channel(ctx, c.ChannelID)
	if err != nil {
		return conv.Outbound{}, fmt.Errorf("channel %s: %w", c.ChannelID, err)
	}
	contact, err := tx.Contact(ctx, c.ContactID)
	if err != nil {
		return conv.Outbound{}, fmt.Errorf("contact %s: %w", c.ContactID, err)
	}
	return conv.Outbound{TenantID: c.TenantID, ChannelID: ch.ID, Kind: ch.Kind, To: contact.Identities}, nil
}

// publish sends out to the connector and marks the message published.
func (s *Service) publish(ctx context.Context, tenant conv.TenantID, out conv.Outbound) error {
	if err := s.cfg.Bus.PublishOutbound(ctx, out); err != nil {
		return err
	}
	return s.cfg.Store.Tx(ctx, tenant, func(tx storage.Tx) error {
		return tx.MarkPublished(ctx, out.Message.ID, s.cfg.Now().UTC())
	})
}

// ApplyDelivery records a connector's report and publishes message.updated
// when the status moved.
func (s *Service) ApplyDelivery(ctx context.Context, d conv.Delivery) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("outbound.ApplyDelivery: %w", err)
	}
	var (
		m       conv.Message
		changed bool
	)
	err := s.cfg.Store.Tx(ctx, d.TenantID, func(tx storage.Tx) error {
		var err error
		m, changed, err = tx.SetMessageStatus(ctx, d.MessageID, d.Status, conv.Clip(d.Reason, 1024), d.ExternalID)
		return err
	})
	if err != nil {
		return fmt.Errorf("outbound.ApplyDelivery %s: %w", d.MessageID, err)
	}
	if !changed {
		return nil
	}
	return s.cfg.Bus.PublishEvents(ctx, []conv.Event{{Type: conv.EventMessageUpdated, TenantID: d.TenantID, Message: &m, At: s.cfg.Now()}})
}

// Sweep republishes pending replies whose publish was lost and returns how
// many it sent. It visits every tenant; one tenant's failure does not stop
// the others.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	tenants, err := s.cfg.Store.Tenants(ctx)
	if err != nil {
		return 0, fmt.Errorf("outbound.Sweep: %w", err)
	}
	before := s.cfg.Now().Add(-s.cfg.Grace).UTC()
	sent := 0
	var errs []error
	for _, t := range tenants {
		n, err := s.sweepTenant(ctx, t.ID, before)
		sent += n
		if err != nil {
			errs = append(errs, fmt.Errorf("tenant %s: %w", t.ID, err))
		}
	}
	return sent, errors.Join(errs...)
}

func (s *Service) sweepTenant(ctx context.Context, tenant conv.TenantID, before time.Time) (int, error) {
	const page = 100
	sent := 0
	for {
		var outs []conv.Outbound
		err := s.cfg.Store.Tx(ctx, tenant, func(tx storage.Tx) error {
			outs = outs[:0]
			msgs, err := tx.UnpublishedBefore(ctx, before, page)
			if err != nil {
				return err
			}
			for _, m := range msgs {
				c, err := tx.Conversation(ctx, m.ConversationID)
				if err != nil {
					return err
				}
				out, err := s.target(ctx, tx, c)
				if err != nil {
					return err
				}
				out.Message = m
				outs = append(outs, out)
			}
			return nil
		})
		if err != nil {
			return sent, err
		}
		for _, out := range outs {
			if err := s.publish(ctx, tenant, out); err != nil {
				return sent, err
			}
			sent++
			s.cfg.Logger.InfoContext(ctx, "republished a reply whose publish was lost", "tenant", tenant, "message", out.Message.ID)
		}
		if len(outs) < page {
			return sent, nil
		}
	}
}

// RunSweeper sweeps every interval on the node holding the lease, until ctx
// ends.
func (s *Service) RunSweeper(ctx context.Context, lease Lease, holder string, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		ok, err := lease.Acquire(ctx, "outbound-sweeper", holder, 3*interval)
		if err != nil {
			s.cfg.Logger.WarnContext(ctx, "sweeper lease", "err", err)
			continue
		}
		if !ok {
			continue
		}
		if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.WarnContext(ctx, "sweep", "err", err)
		}
	}
}
