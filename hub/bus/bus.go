package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Topics the bus provisions streams for. They match package hub's topic
// names; hub/bus does not import hub so that hub stays free to wire the bus.
const (
	TopicInbound  = "inbound"
	TopicEvents   = "events"
	TopicDelivery = "delivery"
	TopicPoison   = "poison"
	// OutboundPrefix starts every "outbound.<kind>" topic.
	OutboundPrefix = "outbound."
)

// stream is one JetStream stream the bus owns.
type stream struct {
	name     string
	subjects []string
}

// streams maps topics (NATS subjects) to the streams that store them.
var streams = []stream{
	{"INBOUND", []string{TopicInbound}},
	{"EVENTS", []string{TopicEvents}},
	{"OUTBOUND", []string{OutboundPrefix + ">"}},
	{"DELIVERY", []string{TopicDelivery}},
	{"POISON", []string{TopicPoison}},
}

// Bus is the durable message bus: JetStream streams, a publisher and
// per-group subscribers. It is safe for concurrent use.
type Bus struct {
	cfg  Config
	log  *slog.Logger
	wlog watermill.LoggerAdapter

	srv  *server.Server // nil with an external URL
	conn *nats.Conn     // the publisher's, also used for stream management
	js   nats.JetStreamContext
	pub  *wmnats.Publisher

	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

// Open starts (or connects to) NATS, provisions the streams and returns a
// ready bus. Close it when done.
func Open(ctx context.Context, cfg Config) (_ *Bus, err error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &Bus{
		cfg:  cfg,
		log:  cfg.Logger.With("component", "bus"),
		wlog: newWatermillLogger(cfg.Logger.With("component", "watermill")),
		subs: map[*subscriber]struct{}{},
	}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	if cfg.URL == "" {
		if b.srv, err = startServer(ctx, cfg); err != nil {
			return nil, err
		}
	}
	if b.conn, err = b.connect(ctx, "publisher"); err != nil {
		return nil, err
	}
	if b.js, err = b.conn.JetStream(); err != nil {
		return nil, fmt.Errorf("bus.Open: jetstream: %w: %w", conv.ErrUnavailable, err)
	}
	for _, s := range streams {
		if err := b.provision(ctx, s); err != nil {
			return nil, err
		}
	}
	b.pub, err = wmnats.NewPublisherWithNatsConn(b.conn, wmnats.PublisherPublishConfig{
		Marshaler:         marshaler{},
		SubjectCalculator: wmnats.DefaultSubjectCalculator,
		JetStream: wmnats.JetStreamConfig{
			// Streams are ours (provision); watermill's would be
			// named after the topic with default limits.
			AutoProvision: false,
			// Off because it would overwrite the Nats-Msg-Id the
			// marshaler sets (topic and UUID); JetStream drops a
			// republish of that key within DedupWindow.
			TrackMsgId: false,
		},
	}, b.wlog)
	if err != nil {
		return nil, fmt.Errorf("bus.Open: publisher: %w", err)
	}
	b.log.Info("bus open", "embedded", b.srv != nil, "node", cfg.NodeID)
	return b, nil
}

// startServer runs the embedded NATS server. It listens on no port:
// clients connect through in-process pipes, so it never collides with a
// NATS already running on the machine.
func startServer(ctx context.Context, cfg Config) (*server.Server, error) {
	dir := filepath.Join(cfg.DataDir, "nats")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bus.Open: %w", err)
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "switchboard-" + cfg.NodeID,
		DontListen: true,
		JetStream:  true,
		StoreDir:   dir,
		// fsync every write before the publish ack: an acknowledged
		// message survives a power cut, which is what lets a connector
		// acknowledge the channel once Publish returns.
		SyncAlways: true,
		// The process owns signals (graceful shutdown in cmd).
		NoSigs: true,
	})
	if err != nil {
		return nil, fmt.Errorf("bus.Open: embedded nats: %w", err)
	}
	srv.SetLoggerV2(serverLogger{cfg.Logger.With("component", "nats-server")}, false, false, false)
	srv.Start()
	wait := 30 * time.Second
	if d, ok := ctx.Deadline(); ok {
		wait = time.Until(d)
	}
	if !srv.ReadyForConnections(wait) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("bus.Open: embedded nats not ready after %s: %w", wait, conv.ErrUnavailable)
	}
	return srv, nil
}

// connect opens a NATS connection named for this node and role: in-process
// to the embedded server, or to URL with reconnects forever (a NATS
// outage stalls the node; it does not end it).
func (b *Bus) connect(ctx context.Context, role string) (*nats.Conn, error) {
	name := "switchboard-" + b.cfg.NodeID + "-" + role
	log := b.log.With("conn", name)
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			subj := ""
			if s != nil {
				subj = s.Subject
			}
			log.Error("nats async error", "subject", subj, "err", err)
		}),
	}
	if b.srv != nil {
		opts = append(opts, nats.InProcessServer(b.srv))
	}
	if d, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(time.Until(d)))
	}
	c, err := nats.Connect(b.cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("bus: connect %s: %w: %w", name, conv.ErrUnavailable, err)
	}
	return c, nil
}

// streamConfig is the one configuration of every stream the bus owns.
func (b *Bus) streamConfig(s stream) *nats.StreamConfig {
	return &nats.StreamConfig{
		Name:      s.name,
		Subjects:  s.subjects,
		Retention: nats.LimitsPolicy,
		Storage:   nats.FileStorage,
		Discard:   nats.DiscardOld,
		MaxAge:    b.cfg.MaxAge,
		// The dedup window over Nats-Msg-Id (the watermill UUID).
		Duplicates: DedupWindow,
		Replicas:   b.cfg.Replicas,
	}
}

// provision creates s or brings its configuration to ours. Several nodes
// may do this at once; JetStream accepts an identical create.
func (b *Bus) provision(ctx context.Context, s stream) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	cfg := b.streamConfig(s)
	_, err := b.js.StreamInfo(s.name, nats.Context(ctx))
	switch {
	case errors.Is(err, nats.ErrStreamNotFound):
		_, err = b.js.AddStream(cfg, nats.Context(ctx))
		if errors.Is(err, nats.ErrStreamNameAlreadyInUse) {
			_, err = b.js.UpdateStream(cfg, nats.Context(ctx))
		}
	case err == nil:
		_, err = b.js.UpdateStream(cfg, nats.Context(ctx))
	}
	if err != nil {
		return fmt.Errorf("bus: provision stream %s: %w: %w", s.name, conv.ErrUnavailable, err)
	}
	return nil
}

// withTimeout bounds a JetStream API call: nats.go refuses a context
// without a deadline.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 10*time.Second)
}

// Ready reports whether the bus can take work: the connection is up and
// JetStream answers. /readyz calls it.
func (b *Bus) Ready(ctx context.Context) error {
	if st := b.conn.Status(); st != nats.CONNECTED {
		return fmt.Errorf("bus.Ready: nats connection %s: %w", st, conv.ErrUnavailable)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if _, err := b.js.AccountInfo(nats.Context(ctx)); err != nil {
		return fmt.Errorf("bus.Ready: jetstream: %w: %w", conv.ErrUnavailable, err)
	}
	return nil
}

// Publisher returns the bus publisher. Publish returns once JetStream has
// stored every message (fsynced when embedded); a message whose UUID was
// published to the same topic within DedupWindow is stored once (and
// Publish succeeds). Its Close does nothing:
// the connection belongs to the Bus, and watermill's router closes the
// publishers of its handlers.
func (b *Bus) Publisher() message.Publisher { return publisher{b.pub} }

type publisher struct{ pub *wmnats.Publisher }

func (p publisher) Publish(topic string, msgs ...*message.Message) error {
	if err := p.pub.Publish(topic, msgs...); err != nil {
		kind := conv.ErrUnavailable
		if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadHeaderMsg) {
			kind = conv.ErrInvalid
		}
		return fmt.Errorf("bus.Publish %s: %w: %w", topic, kind, err)
	}
	return nil
}

func (publisher) Close() error { return nil }

// Close closes every subscriber still open, the publisher's connection and
// the embedded server. Messages in flight are redelivered after AckWait.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	subs := make([]*subscriber, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()

	var errs []error
	for _, s := range subs {
		if err := s.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if b.conn != nil {
		// Flush so that nothing published is left in the client buffer;
		// sync publishes are acked already, this is for acks in flight.
		_ = b.conn.FlushTimeout(time.Second)
		b.conn.Close()
	}
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bus.Close: %w", err)
	}
	return nil
}
