package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// Publisher publishes domain events durably; it returns once the bus has
// accepted them.
type Publisher interface {
	PublishEvents(ctx context.Context, events []conv.Event) error
}

// Config configures a Service.
type Config struct {
	Store  storage.Store
	Events Publisher
	IDs    *conv.IDGen
	Logger *slog.Logger
	// MaxBatch caps envelopes per transaction (default 256).
	MaxBatch int
	// Writers is the number of concurrent committing goroutines (default 1:
	// right for SQLite's single writer; Postgres benefits from a few).
	Writers int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 256
	}
	if c.Writers <= 0 {
		c.Writers = 1
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports a missing dependency.
func (c *Config) Validate() error {
	switch {
	case c.Store == nil:
		return errors.New("ingest: Config.Store is required")
	case c.Events == nil:
		return errors.New("ingest: Config.Events is required")
	case c.IDs == nil:
		return errors.New("ingest: Config.IDs is required")
	}
	return nil
}

// Result is what ingesting one envelope did.
type Result struct {
	Message      conv.Message
	Conversation conv.Conversation
	// Duplicate: the envelope was stored before; nothing was written now.
	Duplicate bool
	// Opened: this envelope opened the conversation (also on a duplicate of
	// the envelope that did).
	Opened bool
}

// Events returns the domain events the result publishes.
func (r Result) Events(at time.Time) []conv.Event {
	c, m := r.Conversation, r.Message
	var evs []conv.Event
	if r.Opened {
		evs = append(evs, conv.Event{Type: conv.EventConversationOpened, TenantID: c.TenantID, Conversation: &c, At: at})
	}
	return append(evs, conv.Event{Type: conv.EventMessageCreated, TenantID: m.TenantID, Conversation: &c, Message: &m, At: at})
}

type request struct {
	ctx  context.Context
	in   conv.Inbound
	done chan response
}

type response struct {
	res Result
	err error
}

// Service ingests envelopes. Create with New, start with Run.
type Service struct {
	cfg  Config
	reqs chan request
	stop chan struct{}
}

// New validates cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, reqs: make(chan request), stop: make(chan struct{})}, nil
}

// Run commits queued envelopes until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	done := make(chan struct{})
	for range s.cfg.Writers {
		go func() {
			s.writer(ctx)
			done <- struct{}{}
		}()
	}
	for range s.cfg.Writers {
		<-done
	}
	close(s.stop)
	return nil
}

// Accept ingests one envelope and publishes its events. It returns once the
// message is stored and the events are on the bus. Errors wrapping
// conv.ErrInvalid or conv.ErrNotFound are permanent (the envelope is bad or
// names an unknown tenant/channel); others are worth retrying.
func (s *Service) Accept(ctx context.Context, in conv.Inbound) (Result, error) {
	if err := in.Validate(); err != nil {
		return Result{}, fmt.Errorf("ingest.Accept %s/%s: %w", in.ChannelID, in.ExternalID, err)
	}
	req := request{ctx: ctx, in: in, done: make(chan response, 1)}
	select {
	case s.reqs <- req:
	case <-ctx.Done():
		return Result{}, ctx.Err()
	case <-s.stop:
		return Result{}, fmt.Errorf("ingest.Accept: %w: ingest is shutting down", conv.ErrUnavailable)
	}
	var resp response
	select {
	case resp = <-req.done:
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	if resp.err != nil {
		return Result{}, resp.err
	}
	if err := s.cfg.Events.PublishEvents(ctx, resp.res.Events(s.cfg.Now())); err != nil {
		return Result{}, fmt.Errorf("ingest.Accept %s: publish events: %w", resp.res.Message.ID, err)
	}
	return resp.res, nil
}

func (s *Service) writer(ctx context.Context) {
	batch := make([]request, 0, s.cfg.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return
		case r := <-s.reqs:
			batch = append(batch, r)
		}
	fill:
		for len(batch) < s.cfg.MaxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.commit(ctx, batch)
	}
}

// commit stores a batch, one transaction per tenant, and answers every
// request in it.
func (s *Service) commit(ctx context.Context, batch []request) {
	byTenant := make(map[conv.TenantID][]request)
	var order []conv.TenantID
	for _, r := range batch {
		if r.ctx.Err() != nil {
			r.done <- response{err: r.ctx.Err()}
			continue
		}
		t := r.in.TenantID
		if _, ok := byTenant[t]; !ok {
			order = append(order, t)
		}
		byTenant[t] = append(byTenant[t], r)
	}
	for _, t := range order {
		reqs := byTenant[t]
		results, err := s.store(ctx, t, reqs)
		if err != nil && len(reqs) > 1 {
			// Isolate the failure: each envelope in its own transaction.
			for _, r := range reqs {
				res, err := s.store(ctx, t, []request{r})
				r.done <- responseOf(res, err)
			}
			continue
		}
		for i, r := range reqs {
			if err != nil {
				r.done <- response{err: err}
			} else {
				r.done <- response{res: results[i]}
			}
		}
	}
}

func responseOf(res []Result, err error) response {
	if err != nil {
		return response{err: err}
	}
	return response{res: res[0]}
}

func (s *Service) store(ctx context.Context, tenant conv.TenantID, reqs []request) ([]Result, error) {
	var results []Result
	err := s.cfg.Store.Tx(ctx, tenant, func(tx storage.Tx) error {
		results = results[:0]
		for _, r := range reqs {
			res, err := s.apply(ctx, tx, r.in)
			if err != nil {
				return err
			}
			results = append(results, res)
		}
		return nil
	})
	return results, err
}

// apply ingests one envelope inside tx.
func (s *Service) apply(ctx context.Context, tx storage.Tx, in conv.Inbound) (Result, error) {
	op := fmt.Sprintf("ingest %s/%s", in.ChannelID, in.ExternalID)
	ch, err := tx.Channel(ctx, in.ChannelID)
	if err != nil {
		return Result{}, fmt.Errorf("%s: channel %s of tenant %s: %w", op, in.ChannelID, in.TenantID, err)
	}
	if prev, err := tx.MessageByExternalID(ctx, ch.ID, in.ExternalID); err == nil {
		c, err := tx.Conversation(ctx, prev.ConversationID)
		if err != nil {
			return Result{}, fmt.Errorf("%s: conversation of duplicate: %w", op, err)
		}
		return Result{Message: prev, Conversation: c, Duplicate: true, Opened: prev.Seq == 1}, nil
	} else if !errors.Is(err, conv.ErrNotFound) {
		return Result{}, fmt.Errorf("%s: dedup: %w", op, err)
	}

	contact, _, err := tx.EnsureContact(ctx, in.From, in.FromName)
	if err != nil {
		return Result{}, fmt.Errorf("%s: contact: %w", op, err)
	}
	now := s.cfg.Now().UTC()
	c, opened, err := tx.OpenConversation(ctx, ch.ID, contact.ID, conv.Conversation{
		ID:        conv.NewID[conv.ConversationID](s.cfg.IDs),
		Scene:     in.Scene,
		GroupID:   ch.GroupID,
		CreatedAt: now,
	})
	if err != nil {
		return Result{}, fmt.Errorf("%s: conversation: %w", op, err)
	}
	if in.ReplyWindow > 0 && !in.System {
		sent := in.SentAt
		if sent.IsZero() || sent.After(now) {
			sent = now
		}
		deadline := sent.Add(in.ReplyWindow).UTC()
		if c.ReplyDeadline == nil || deadline.After(*c.ReplyDeadline) {
			c.ReplyDeadline = &deadline
			if err := tx.UpdateConversation(ctx, c); err != nil {
				return Result{}, fmt.Errorf("%s: reply window: %w", op, err)
			}
		}
	}
	sender := conv.Sender{Type: conv.SenderContact, ID: contact.ID.String(), Name: contact.Name}
	if in.System {
		sender = conv.Sender{Type: conv.SenderSystem}
	}
	m, err := tx.AppendMessage(ctx, conv.Message{
		ID:             conv.NewID[conv.MessageID](s.cfg.IDs),
		TenantID:       in.TenantID,
		ConversationID: c.ID,
		ChannelID:      ch.ID,
		Direction:      conv.In,
		Sender:         sender,
		Parts:          in.Parts,
		ExternalID:     in.ExternalID,
		Status:         conv.MsgReceived,
		CreatedAt:      now,
	})
	if err != nil {
		return Result{}, fmt.Errorf("%s: append: %w", op, err)
	}
	c.LastSeq = m.Seq
	c.UpdatedAt = now
	return Result{Message: m, Conversation: c, Opened: opened}, nil
}
