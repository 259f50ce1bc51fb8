package ingest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
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
	// MaxBatch caps envelopes per transaction (default 256); the last
	// share a writer takes in (one caller's envelopes for it, at most one
	// bus batch) may take a transaction past it.
	MaxBatch int
	// Writers is the number of concurrent committing goroutines (default 1:
	// right for SQLite's single writer; Postgres benefits from a few). Each
	// sender's envelopes always go to the same writer (a hash of tenant,
	// channel and sender identity), so concurrent transactions do not touch
	// the same contact and conversation rows and wait on each other's row
	// locks, and a sender's envelopes are committed in the order accepted.
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
	// Reopened: this envelope joined a resolved thread and reopened it.
	Reopened bool
}

// Events returns the domain events the result publishes.
func (r Result) Events(at time.Time) []conv.Event {
	c, m := r.Conversation, r.Message
	var evs []conv.Event
	if r.Opened {
		evs = append(evs, conv.Event{Type: conv.EventConversationOpened, TenantID: c.TenantID, Conversation: &c, At: at})
	}
	if r.Reopened {
		evs = append(evs, conv.Event{Type: conv.EventConversationUpdated, TenantID: c.TenantID, Conversation: &c, At: at})
	}
	return append(evs, conv.Event{Type: conv.EventMessageCreated, TenantID: m.TenantID, Conversation: &c, Message: &m, At: at})
}

type request struct {
	ctx context.Context
	in  conv.Inbound
	// i is the request's index among those answered on done.
	i    int
	done chan response
}

type response struct {
	i   int
	res Result
	err error
}

// Service ingests envelopes. Create with New, start with Run.
//
// Envelopes pass two stages: writers gather concurrent Accepts into one
// transaction per tenant (group commit) — each writer its share of the
// senders — and one publisher publishes the
// events of every committed batch waiting for it in one call, in commit
// order, then answers the Accepts. The stages overlap: the next batch
// commits while the previous one's events are published.
type Service struct {
	cfg Config
	// reqs has one channel per writer; writerFor picks it. A send hands
	// over every request of one caller for that writer at once.
	reqs      []chan []request
	committed chan []answer
	stop      chan struct{}
}

// answer is a committed (or failed) request waiting for its events.
type answer struct {
	req  request
	resp response
}

// New validates cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	reqs := make([]chan []request, cfg.Writers)
	for i := range reqs {
		reqs[i] = make(chan []request)
	}
	return &Service{cfg: cfg, reqs: reqs, committed: make(chan []answer, 4*cfg.Writers),
		stop: make(chan struct{})}, nil
}

// writerFor is the writer that commits in's sender's envelopes.
func (s *Service) writerFor(in conv.Inbound) int {
	if len(s.reqs) == 1 {
		return 0
	}
	h := fnv.New64a()
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], uint64(in.TenantID))
	binary.LittleEndian.PutUint64(b[8:], uint64(in.ChannelID))
	h.Write(b[:])
	h.Write([]byte(in.From.Kind))
	h.Write([]byte{0})
	h.Write([]byte(in.From.ExternalID))
	return int(h.Sum64() % uint64(len(s.reqs)))
}

// Run commits queued envelopes until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	done := make(chan struct{})
	for _, reqs := range s.reqs {
		go func() {
			s.writer(ctx, reqs)
			done <- struct{}{}
		}()
	}
	published := make(chan struct{})
	go func() {
		s.publisher(ctx)
		close(published)
	}()
	for range s.cfg.Writers {
		<-done
	}
	// Every batch committed is answered: its events are published even
	// while shutting down, so a stored message never waits for a
	// redelivery to announce it.
	close(s.committed)
	<-published
	close(s.stop)
	return nil
}

// Accept ingests one envelope and publishes its events. It returns once the
// message is stored and the events are on the bus (published together with
// those of the other envelopes committed around it). Errors wrapping
// conv.ErrInvalid or conv.ErrNotFound are permanent (the envelope is bad or
// names an unknown tenant/channel); others are worth retrying.
func (s *Service) Accept(ctx context.Context, in conv.Inbound) (Result, error) {
	if err := in.Validate(); err != nil {
		return Result{}, fmt.Errorf("ingest.Accept %s/%s: %w", in.ChannelID, in.ExternalID, err)
	}
	req := request{ctx: ctx, in: in, done: make(chan response, 1)}
	select {
	case s.reqs[s.writerFor(in)] <- []request{req}:
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
	return resp.res, nil
}

// AcceptAll ingests envs as Accept does each, and returns each one's
// error (nil when it was stored and its events published), in order. It
// hands each writer its share of the envelopes in one send rather than
// from a goroutine per envelope (the bus delivers envelopes in batches,
// and a goroutine per envelope costs a stack growth each); the shares go
// to the writers concurrently, so one writer still committing does not
// hold up the others.
func (s *Service) AcceptAll(ctx context.Context, envs []conv.Inbound) []error {
	errs := make([]error, len(envs))
	// Every answer fits: neither the publisher nor a failed hand-over
	// ever waits on done.
	done := make(chan response, len(envs))
	byWriter := make([][]request, len(s.reqs))
	pending := make([]bool, len(envs))
	waiting := 0
	for i, in := range envs {
		if err := in.Validate(); err != nil {
			errs[i] = fmt.Errorf("ingest.Accept %s/%s: %w", in.ChannelID, in.ExternalID, err)
			continue
		}
		w := s.writerFor(in)
		byWriter[w] = append(byWriter[w], request{ctx: ctx, in: in, i: i, done: done})
		pending[i] = true
		waiting++
	}
	handOver := func(w int, reqs []request) {
		select {
		case s.reqs[w] <- reqs:
			return
		case <-ctx.Done():
		case <-s.stop:
		}
		err := ctx.Err()
		if err == nil {
			err = fmt.Errorf("ingest.Accept: %w: ingest is shutting down", conv.ErrUnavailable)
		}
		for _, r := range reqs {
			done <- response{i: r.i, err: err}
		}
	}
	last := -1
	for w, reqs := range byWriter {
		if len(reqs) == 0 {
			continue
		}
		if last >= 0 {
			go handOver(last, byWriter[last])
		}
		last = w
	}
	if last >= 0 {
		handOver(last, byWriter[last]) // the last (with one writer, the only) share inline
	}
	for ; waiting > 0; waiting-- {
		select {
		case r := <-done:
			errs[r.i], pending[r.i] = r.err, false
		case <-ctx.Done():
			for i, p := range pending {
				if p {
					errs[i] = ctx.Err()
				}
			}
			return errs
		}
	}
	return errs
}

func (s *Service) writer(ctx context.Context, reqs <-chan []request) {
	batch := make([]request, 0, s.cfg.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return
		case rs := <-reqs:
			batch = append(batch, rs...)
		}
	fill:
		for len(batch) < s.cfg.MaxBatch {
			select {
			case rs := <-reqs:
				batch = append(batch, rs...)
			default:
				break fill
			}
		}
		s.commit(ctx, batch)
	}
}

// commit stores a batch, one transaction per tenant, and hands every
// request in it to the publisher.
func (s *Service) commit(ctx context.Context, batch []request) {
	answers := make([]answer, 0, len(batch))
	defer func() { s.committed <- answers }()
	byTenant := make(map[conv.TenantID][]request)
	var order []conv.TenantID
	for _, r := range batch {
		if r.ctx.Err() != nil {
			answers = append(answers, answer{r, response{err: r.ctx.Err()}})
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
				answers = append(answers, answer{r, responseOf(res, err)})
			}
			continue
		}
		for i, r := range reqs {
			if err != nil {
				answers = append(answers, answer{r, response{err: err}})
			} else {
				answers = append(answers, answer{r, response{res: results[i]}})
			}
		}
	}
}

// publisher publishes the events of committed batches, everything waiting
// at once in commit order, and then answers their requests. A failed
// publish fails every stored request of those batches: their envelopes are
// redelivered, store nothing twice, and publish again.
func (s *Service) publisher(ctx context.Context) {
	for first := range s.committed {
		pending := first
	drain:
		for len(pending) < 4*s.cfg.MaxBatch {
			select {
			case more, ok := <-s.committed:
				if !ok {
					break drain
				}
				pending = append(pending, more...)
			default:
				break drain
			}
		}
		var events []conv.Event
		at := s.cfg.Now()
		for _, a := range pending {
			if a.resp.err == nil {
				events = append(events, a.resp.res.Events(at)...)
			}
		}
		var err error
		if len(events) > 0 {
			if err = s.cfg.Events.PublishEvents(context.WithoutCancel(ctx), events); err != nil {
				err = fmt.Errorf("ingest: publish %d events: %w", len(events), err)
				s.cfg.Logger.Warn("publishing events failed; their envelopes will be redelivered", "err", err)
			}
		}
		for _, a := range pending {
			if a.resp.err == nil && err != nil {
				a.resp = response{err: err}
			}
			a.resp.i = a.req.i
			a.req.done <- a.resp
		}
	}
}

func responseOf(res []Result, err error) response {
	if err != nil {
		return response{err: err}
	}
	return response{res: res[0]}
}

// conflictRetries is how many more times store runs a transaction that
// failed with conv.ErrConflict. Such a conflict is a race lost to another
// writer that has committed by the time Postgres reports it (the same
// envelope redelivered to another writer, typically): the next attempt
// finds its row and answers a duplicate.
const conflictRetries = 2

// store ingests reqs in one transaction of tenant. The ids of what an
// envelope may create are chosen once, so a retried transaction reuses them.
func (s *Service) store(ctx context.Context, tenant conv.TenantID, reqs []request) ([]Result, error) {
	items := make([]storage.IngestItem, len(reqs))
	for i, r := range reqs {
		items[i] = storage.IngestItem{
			In:             r.in,
			ConversationID: conv.NewID[conv.ConversationID](s.cfg.IDs),
			MessageID:      conv.NewID[conv.MessageID](s.cfg.IDs),
			Now:            s.cfg.Now(),
		}
	}
	var outcomes []storage.IngestOutcome
	ingest := func(tx storage.Tx) error {
		var err error
		outcomes, err = storage.Ingest(ctx, tx, items)
		return err
	}
	err := s.cfg.Store.Tx(ctx, tenant, ingest)
	for range conflictRetries {
		if !errors.Is(err, conv.ErrConflict) {
			break
		}
		err = s.cfg.Store.Tx(ctx, tenant, ingest)
	}
	if err != nil {
		return nil, err
	}
	results := make([]Result, len(outcomes))
	for i, o := range outcomes {
		results[i] = Result{Message: o.Message, Conversation: o.Conversation, Duplicate: o.Duplicate, Opened: o.Opened, Reopened: o.Reopened}
	}
	return results, nil
}
