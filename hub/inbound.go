package hub

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// InboundBatch is the payload of an inbound message of type
// "inbound_batch": envelopes that connectors published concurrently and the
// bus stored with one write (see Publisher.GroupInbound).
type InboundBatch struct {
	Envelopes []conv.Inbound `json:"envelopes"`
}

// Inbound message types (MetaType).
const (
	TypeInbound      = "inbound"
	TypeInboundBatch = "inbound_batch"
)

// GroupConfig bounds one group-committed inbound message.
type GroupConfig struct {
	// MaxEnvelopes per message (default 256). Under a steady load groups
	// stay far smaller; the cap decides how fast a backlog that built up
	// during a slow write drains (a cap of 64 added a few ms to the ack
	// p99 at 10,000/s).
	MaxEnvelopes int
	// MaxBytes of encoded envelopes per message (default 512 KiB, well
	// under MaxPayload and NATS's default max_payload of 1 MiB).
	MaxBytes int
	// Flushers is how many group messages may be in flight at once
	// (default 4): a bus a network round trip away overlaps their writes,
	// and one slow write does not hold every connector. A bus that stores
	// one message at a time next to the node (the embedded one) does
	// better with 1: the next group gathers while the write is in flight.
	Flushers int
	// MinInterval is the shortest time from the start of one write of a
	// flusher to the start of its next (default 0: the next starts as soon
	// as the last is done). Under a steady load the pause gathers bigger
	// groups: fewer bus writes and fsyncs, and bigger batches for ingest
	// behind them, which on a machine short of cores or disk flushes takes
	// more off the tail latency than the pause adds (Kafka's linger.ms is
	// the same trade). An envelope after a quiet spell longer than
	// MinInterval waits for nothing. It also bounds the rate of callers
	// that wait on a fixed number of envelopes at once: C in flight get at
	// most C envelopes per MinInterval plus a write (64 connector requests
	// and 4 ms: ~13,000/s, where 19,000 went through without it).
	MinInterval time.Duration

	// now and sleep are the clock (tests replace them).
	now   func() time.Time
	sleep func(time.Duration)
}

func (c *GroupConfig) setDefaults() {
	if c.MaxEnvelopes <= 0 {
		c.MaxEnvelopes = 256
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 512 << 10
	}
	if c.Flushers <= 0 {
		c.Flushers = 4
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.sleep == nil {
		c.sleep = time.Sleep
	}
}

// grouper is the group commit of PublishInbound: one goroutine publishes
// whatever envelopes queued up while its previous publish was in flight, as
// one bus message. A durable bus pays one write (and, embedded, one fsync)
// per message, so under load many envelopes share it, and alone an
// envelope waits for nothing but its own write.
type grouper struct {
	cfg   GroupConfig
	queue chan pending
	mu    sync.RWMutex
	done  bool
}

type pending struct {
	ctx  context.Context
	in   conv.Inbound
	raw  []byte
	errc chan error
}

// GroupInbound makes PublishInbound group-commit concurrent envelopes until
// ctx is done, then publish each on its own again. Call it at most once,
// before connectors start publishing.
func (p *Publisher) GroupInbound(ctx context.Context, cfg GroupConfig) {
	cfg.setDefaults()
	g := &grouper{cfg: cfg, queue: make(chan pending, cfg.MaxEnvelopes)}
	p.group.Store(g)
	go func() {
		<-ctx.Done()
		g.mu.Lock()
		g.done = true
		close(g.queue)
		g.mu.Unlock()
	}()
	for range cfg.Flushers {
		go p.runGroup(g)
	}
}

// PublishInbound puts a connector's envelope on the bus. It returns once the
// bus has durably accepted it: only then may the connector acknowledge the
// channel. An envelope that fails validation is refused here, with the
// reason, rather than stored and poisoned later.
func (p *Publisher) PublishInbound(ctx context.Context, in conv.Inbound) error {
	if err := in.Validate(); err != nil {
		return fmt.Errorf("hub.PublishInbound %s/%s: %w", in.ChannelID, in.ExternalID, err)
	}
	raw, err := Encode(in)
	if err != nil {
		return fmt.Errorf("hub: encode inbound: %w", err)
	}
	g := p.group.Load()
	if g != nil {
		errc := make(chan error, 1)
		g.mu.RLock()
		queued := false
		if !g.done {
			select {
			case g.queue <- pending{ctx: ctx, in: in, raw: raw, errc: errc}:
				queued = true
			case <-ctx.Done():
				// The bus is behind and the connector gave up: nothing
				// was queued, the channel will send it again.
				g.mu.RUnlock()
				return ctx.Err()
			}
		}
		g.mu.RUnlock()
		if queued {
			select {
			case err := <-errc:
				return err
			case <-ctx.Done():
				// The envelope may still be stored: the connector will not
				// acknowledge the channel, which sends it again, and ingest
				// dedups it.
				return ctx.Err()
			}
		}
	}
	return p.publishInbound(ctx, []pending{{ctx: ctx, in: in, raw: raw}})
}

func (p *Publisher) runGroup(g *grouper) {
	var (
		// One buffer for the goroutine's life: a group is done with once
		// its waiters have their answer, and a fresh MaxEnvelopes-sized
		// slice per write was a tenth of what a busy node allocated.
		batch = make([]pending, 0, g.cfg.MaxEnvelopes)
		carry *pending
		// started is when the last write began.
		started time.Time
	)
	for {
		clear(batch)
		batch = batch[:0]
		if carry != nil {
			batch, carry = append(batch, *carry), nil
		} else {
			first, ok := <-g.queue
			if !ok {
				return
			}
			batch = append(batch, first)
		}
		if wait := g.cfg.MinInterval - g.cfg.now().Sub(started); g.cfg.MinInterval > 0 && wait > 0 {
			g.cfg.sleep(wait) // the rest of the group gathers meanwhile
		}
		started = g.cfg.now()
		size := len(batch[0].raw)
	fill:
		for len(batch) < g.cfg.MaxEnvelopes {
			select {
			case next, ok := <-g.queue:
				if !ok {
					break fill
				}
				if size+len(next.raw) > g.cfg.MaxBytes {
					carry = &next
					break fill
				}
				batch, size = append(batch, next), size+len(next.raw)+1
			default:
				break fill
			}
		}
		// Envelopes whose connector gave up waiting still go out: a
		// partial batch would only make the channel's retry the one that
		// counts, and ingest dedups either way.
		err := p.publishInbound(context.WithoutCancel(batch[0].ctx), batch)
		for _, q := range batch {
			q.errc <- err
		}
	}
}

// PublishAlone publishes one envelope as its own message, never grouped
// and without validating it first: for envelopes already on the bus that
// must be handled (or poisoned) separately from the batch they came in.
func (p *Publisher) PublishAlone(ctx context.Context, in conv.Inbound) error {
	raw, err := Encode(in)
	if err != nil {
		return fmt.Errorf("hub: encode inbound: %w", err)
	}
	return p.publishInbound(ctx, []pending{{ctx: ctx, in: in, raw: raw}})
}

// publishInbound publishes envelopes as one message: a plain inbound
// message for one, an inbound_batch for more.
func (p *Publisher) publishInbound(ctx context.Context, batch []pending) error {
	if len(batch) == 1 {
		in := batch[0].in
		m := p.message(ctx, "in-"+key(in.ChannelID.String(), in.ExternalID), in.TenantID, TypeInbound, batch[0].raw)
		return p.pub.Publish(TopicInbound, m)
	}
	keys := make([]string, 0, len(batch))
	tenant := batch[0].in.TenantID
	size := len(`{"envelopes":[]}`) + len(batch)
	for _, q := range batch {
		keys = append(keys, q.in.ChannelID.String()+"/"+q.in.ExternalID)
		size += len(q.raw)
		if q.in.TenantID != tenant {
			tenant = 0
		}
	}
	payload := make([]byte, 0, size)
	payload = append(payload, `{"envelopes":[`...)
	for i, q := range batch {
		if i > 0 {
			payload = append(payload, ',')
		}
		payload = append(payload, q.raw...)
	}
	payload = append(payload, "]}"...)
	// A batch of several tenants carries no tenant: each envelope names
	// its own, and the handler checks each.
	m := p.message(ctx, "inb-"+key(keys...), tenant, TypeInboundBatch, payload)
	if tenant == 0 {
		m.Metadata.Set(MetaTenant, "")
	}
	return p.pub.Publish(TopicInbound, m)
}

// DecodeInbound decodes a message of the inbound topic: one envelope, or
// the envelopes of a batch. A tenant in the metadata must match every
// envelope's.
func DecodeInbound(m *message.Message) ([]conv.Inbound, error) {
	var envs []conv.Inbound
	if m.Metadata.Get(MetaType) == TypeInboundBatch {
		var b InboundBatch
		if err := Decode(m, &b); err != nil {
			return nil, err
		}
		envs = b.Envelopes
	} else {
		var env conv.Inbound
		if err := Decode(m, &env); err != nil {
			return nil, err
		}
		envs = []conv.Inbound{env}
	}
	if t := m.Metadata.Get(MetaTenant); t != "" {
		for _, env := range envs {
			if t != env.TenantID.String() {
				return nil, fmt.Errorf("hub: %w: metadata tenant %s differs from envelope tenant %s", conv.ErrInvalid, t, env.TenantID)
			}
		}
	}
	return envs, nil
}

// describe names envelopes for an error message.
func describe(envs []conv.Inbound) string {
	var b strings.Builder
	for i, e := range envs {
		if i == 3 {
			fmt.Fprintf(&b, " and %d more", len(envs)-3)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s/%s", e.ChannelID, e.ExternalID)
	}
	return b.String()
}
