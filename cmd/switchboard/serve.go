package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"golang.org/x/sync/errgroup"

	"github.com/switchboard-hq/switchboard/api"
	"github.com/switchboard-hq/switchboard/connectors/email"
	"github.com/switchboard-hq/switchboard/connectors/webchat"
	"github.com/switchboard-hq/switchboard/connectors/wechat"
	"github.com/switchboard-hq/switchboard/connectors/wechat/wxapi"
	"github.com/switchboard-hq/switchboard/core/auth"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/dispatch"
	"github.com/switchboard-hq/switchboard/core/inbox"
	"github.com/switchboard-hq/switchboard/core/ingest"
	"github.com/switchboard-hq/switchboard/core/outbound"
	"github.com/switchboard-hq/switchboard/hub"
	"github.com/switchboard-hq/switchboard/hub/bus"
	"github.com/switchboard-hq/switchboard/internal/media"
	"github.com/switchboard-hq/switchboard/store/memory"
	sbredis "github.com/switchboard-hq/switchboard/store/redis"
)

// sharedState is what nodes share: leases and rate limits.
type sharedState interface {
	outbound.Lease
	auth.Limiter
}

// stateOf pairs a leases and a limiter implementation.
type stateOf[L outbound.Lease, R auth.Limiter] struct {
	leases  L
	limiter R
}

func (s stateOf[L, R]) Acquire(ctx context.Context, key, holder string, ttl time.Duration) (bool, error) {
	return s.leases.Acquire(ctx, key, holder, ttl)
}

// Release hands a lease over at once (both lease stores have it).
func (s stateOf[L, R]) Release(ctx context.Context, key, holder string) error {
	if r, ok := any(s.leases).(interface {
		Release(ctx context.Context, key, holder string) error
	}); ok {
		return r.Release(ctx, key, holder)
	}
	return nil
}

func (s stateOf[L, R]) Allow(ctx context.Context, key string, limit int, window time.Duration) (bool, time.Duration, error) {
	return s.limiter.Allow(ctx, key, limit, window)
}

// node is one running Switchboard process, wired.
type node struct {
	cfg      config
	log      *slog.Logger
	store    migrator
	bus      *bus.Bus
	pub      *hub.Publisher
	ingest   *ingest.Service
	outbound *outbound.Service
	api      *api.Server
	router   *message.Router
	state    sharedState
	live     liveState
	inbox    *inbox.Service
	dispatch *dispatch.Dispatcher
	webchat  *webchat.Connector
	wechat   *wechat.Connector
	email    *email.Connector
	media    *media.Store
	// tokens shares WeChat access tokens between nodes (Redis); nil on
	// a single node, where the connector keeps them in process.
	tokens  wxapi.TokenCache
	auth    *auth.Service
	ids     *conv.IDGen
	checks  []api.Check
	closers []func() error
}

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	if err := parse(newFlags("serve", &c, stderr), args); err != nil {
		return err
	}
	if c.NodeID < 0 {
		c.NodeID = 0
	}
	if c.NodeID >= adminNodeID {
		return fmt.Errorf("%w: --node-id must be 0..%d (%d is reserved for admin commands)", conv.ErrInvalid, adminNodeID-1, adminNodeID)
	}
	log := c.logger(stderr)
	n, firstStart, err := wire(ctx, c, log)
	if err != nil {
		return err
	}
	defer n.close()
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("%w: listen on %s: %v", conv.ErrUnavailable, c.Addr, err)
	}
	if pa := os.Getenv("SWITCHBOARD_PPROF_ADDR"); pa != "" {
		// Profiling for operators, on its own (loopback) address only.
		go func() {
			log.Info("pprof listening", "addr", pa)
			if err := http.ListenAndServe(pa, pprofMux()); err != nil {
				log.Warn("pprof", "err", err)
			}
		}()
	}
	if firstStart {
		d, err := createDemo(ctx, n.store, n.ids, n.auth)
		if err != nil {
			log.Warn("demo tenant not created", "err", err)
		}
		printWelcome(stderr, c, ln.Addr().String(), d)
	}
	return n.serve(ctx, ln)
}

// wire opens every dependency and builds the services. firstStart is true
// when the embedded default created its master key just now.
func wire(ctx context.Context, c config, log *slog.Logger) (_ *node, firstStart bool, err error) {
	n := &node{cfg: c, log: log}
	defer func() {
		if err != nil {
			n.close() // whatever was opened before the failure
		}
	}()
	ids, err := conv.NewIDGen(c.NodeID)
	if err != nil {
		return nil, false, err
	}
	writers, err := c.ingestWriters()
	if err != nil {
		return nil, false, err
	}
	keys, created, err := c.keyring(c.embedded())
	if err != nil {
		return nil, false, err
	}
	if n.store, err = c.openStore(ctx, ids, keys, log); err != nil {
		return nil, false, err
	}
	n.closers = append(n.closers, n.store.Close)
	n.checks = append(n.checks, api.Check{Name: "store", Fn: n.store.Ping})

	if n.bus, err = bus.Open(ctx, bus.Config{
		URL: c.NATS, DataDir: c.Data, NodeID: strconv.Itoa(c.NodeID), Logger: log,
	}); err != nil {
		return nil, false, fmt.Errorf("open bus: %w", err)
	}
	n.closers = append(n.closers, n.bus.Close)
	n.checks = append(n.checks, api.Check{Name: "bus", Fn: n.bus.Ready})
	n.pub = hub.NewPublisher(n.bus.Publisher())

	if c.Redis != "" {
		rc, err := sbredis.New(ctx, sbredis.Config{URL: c.Redis})
		if err != nil {
			return nil, false, fmt.Errorf("open redis: %w", err)
		}
		n.closers = append(n.closers, rc.Close)
		n.checks = append(n.checks, api.Check{Name: "redis", Fn: rc.Ping})
		n.state = stateOf[*sbredis.Leases, *sbredis.Limiter]{rc.Leases(), rc.Limiter()}
		n.tokens = sealedTokens{values: rc.Values(), keys: keys}
		if n.live, err = redisLive(rc); err != nil {
			return nil, false, err
		}
	} else {
		n.state = stateOf[*memory.Leases, *memory.Limiter]{memory.NewLeases(memory.Config{}), memory.NewLimiter(memory.Config{})}
		tl, err := memory.NewTimelines(memory.TimelinesConfig{})
		if err != nil {
			return nil, false, err
		}
		n.live = liveState{timelines: tl, fanout: memory.NewFanout(), presence: memory.NewPresence(memory.Config{})}
	}
	n.ids = ids

	if n.ingest, err = ingest.New(ingest.Config{Store: n.store, Events: n.pub, IDs: ids, Logger: log, Writers: writers}); err != nil {
		return nil, false, err
	}
	if n.outbound, err = outbound.New(outbound.Config{Store: n.store, Bus: n.pub, IDs: ids, Logger: log, ReplyQuota: wechat.ReplyQuota()}); err != nil {
		return nil, false, err
	}
	authSvc, err := auth.New(auth.Config{Store: n.store, Limiter: n.state, IDs: ids, Logger: log})
	if err != nil {
		return nil, false, err
	}
	n.auth = authSvc
	if n.inbox, err = inbox.New(inbox.Config{Store: n.store, Timelines: n.live.timelines, Fanout: n.live.fanout, Logger: log}); err != nil {
		return nil, false, err
	}
	if n.dispatch, err = dispatch.New(dispatch.Config{Store: n.store, Presence: n.live.presence, Events: n.pub, Logger: log}); err != nil {
		return nil, false, err
	}
	if err := n.openChannels(ids); err != nil {
		return nil, false, err
	}
	n.closers = append(n.closers, n.webchat.Close)
	if n.api, err = api.New(api.Config{Auth: authSvc, Checks: n.checks, Logger: log, Console: &api.Console{
		Store: n.store, Replies: n.outbound, Events: n.pub, Timelines: n.live.timelines, Fanout: n.live.fanout,
		Presence: n.live.presence, Dispatch: n.dispatch, Typing: n.wechat, Media: n.media,
	}}); err != nil {
		return nil, false, err
	}
	n.routeChannels()
	n.routeWeb()
	if n.router, err = n.bus.NewRouter(); err != nil {
		return nil, false, err
	}
	if err := n.addHandlers(); err != nil {
		return nil, false, err
	}
	return n, created, nil
}

// addHandlers subscribes core to its topics.
func (n *node) addHandlers() error {
	for _, h := range []struct {
		name, topic, group string
		fn                 message.NoPublishHandlerFunc
	}{
		{"ingest", hub.TopicInbound, "core-ingest", hub.InboundHandler(n.ingest, n.pub)},
		{"delivery", hub.TopicDelivery, "core-delivery", hub.DeliveryHandler(n.outbound)},
		{"inbox", hub.TopicEvents, "core-inbox", eventsHandler(n.inbox.Handle)},
		{"dispatch", hub.TopicEvents, "core-dispatch", drainHandler(n.dispatch)},
		{"webchat", hub.OutboundTopic(conv.KindWebchat), "connector-webchat", outboundHandler(n.webchat.Outbound)},
		{"wechat_oa", hub.OutboundTopic(conv.KindWeChatOA), "connector-wechat-oa", outboundHandler(n.wechat.Outbound)},
		{"wechat_mp", hub.OutboundTopic(conv.KindWeChatMP), "connector-wechat-mp", outboundHandler(n.wechat.Outbound)},
		{"wechat_identity", hub.TopicEvents, "connector-wechat", eventsHandler(n.wechat.Events, conv.EventConversationOpened)},
		{"email", hub.OutboundTopic(conv.KindEmail), "connector-email", outboundHandler(n.email.Outbound)},
	} {
		sub, err := n.bus.Subscriber(h.group)
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", h.topic, err)
		}
		n.router.AddConsumerHandler(h.name, h.topic, sub, h.fn)
	}
	return n.bus.AddDeadLetterSink(n.router, n.store)
}

// serveWorkers runs ingest, the bus router and the outbound sweeper until
// ctx ends.
func (n *node) serveWorkers(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	// Connectors' envelopes share bus writes (and the embedded bus's
	// fsyncs) while the node works. The embedded bus gets one write in
	// flight: its stream stores one message at a time anyway, so a second
	// write only waits behind the first and splits the group into smaller
	// ones (more fsyncs, more ingest batches: ack p50 5.3 → 3.4 ms at
	// 10,000/s, docs/PERFORMANCE.md). And at most one write each 4 ms: at
	// 2,000 chat messages/s the node fsynced ~2,000 times a second (bus
	// writes, SQLite commits, event writes), and gathering for 4 ms halved
	// the chat p99 (43–63 → 30 ms) for +1.5 ms on the median ack. An
	// external NATS is a round trip away; overlapping writes hide it.
	group := hub.GroupConfig{}
	if n.cfg.NATS == "" {
		group.Flushers, group.MinInterval = 1, 4*time.Millisecond
	}
	n.pub.GroupInbound(gctx, group)
	g.Go(func() error { return n.ingest.Run(gctx) })
	g.Go(func() error {
		if err := n.router.Run(gctx); err != nil {
			return fmt.Errorf("bus router: %w", err)
		}
		return nil
	})
	g.Go(func() error { return n.dispatch.Run(gctx, 15*time.Second) })
	g.Go(func() error { return n.wechat.Run(gctx) })
	g.Go(func() error { return n.email.Run(gctx) })
	if k, ok := n.store.(interface {
		KeepStats(context.Context, time.Duration) error
	}); ok {
		// Postgres: planner statistics for tables too young for autovacuum.
		g.Go(func() error { return k.KeepStats(gctx, time.Second) })
	}
	g.Go(func() error {
		return n.outbound.RunSweeper(gctx, n.state, "node-"+strconv.Itoa(n.cfg.NodeID)+"-"+strconv.Itoa(os.Getpid()), 5*time.Second)
	})
	return g.Wait()
}

// serve runs the node until ctx ends, then shuts down in order: stop taking
// HTTP requests (readyz fails first), stop the bus router (in-flight
// handlers finish and ack), then stop ingest and close stores.
func (n *node) serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           n.api,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
	}
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	g, gctx := errgroup.WithContext(workCtx)
	g.Go(func() error { return n.serveWorkers(gctx) })
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	select {
	case <-n.router.Running():
	case <-gctx.Done():
	}
	n.log.Info("switchboard is serving", "addr", ln.Addr().String(), "store", n.storeName(), "bus", n.busName(), "node_id", n.cfg.NodeID)

	select {
	case <-ctx.Done():
		n.log.Info("shutting down: draining in-flight work")
	case <-gctx.Done():
	}
	n.api.Drain()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	// Close waits for in-flight handlers (they finish and ack or nack).
	if err := n.router.Close(); err != nil {
		n.log.Warn("router close", "err", err)
	}
	stopWork()
	err := g.Wait()
	n.log.Info("stopped")
	return err
}

func (n *node) storeName() string {
	if n.cfg.embedded() {
		return "sqlite " + filepath.Join(n.cfg.Data, "switchboard.db")
	}
	return "postgres"
}

func (n *node) busName() string {
	if n.cfg.NATS == "" {
		return "embedded nats " + filepath.Join(n.cfg.Data, "nats")
	}
	return "nats"
}

func (n *node) close() {
	for i := len(n.closers) - 1; i >= 0; i-- {
		if err := n.closers[i](); err != nil {
			n.log.Warn("close", "err", err)
		}
	}
	n.closers = nil
}

func printWelcome(w io.Writer, c config, addr string, d demo) {
	fmt.Fprintf(w, `
Switchboard is running on its embedded default:
  data       %[1]s (SQLite, embedded NATS JetStream, master key)
  http       http://%[2]s   (health: /healthz, readiness: /readyz)

A new master key was written to %[1]s/master.key. Back it up: channel
secrets cannot be read without it.
`, c.Data, addr)
	if d.Password != "" {
		fmt.Fprintf(w, `
Try it now — a demo tenant is ready:
  1. open the agent console   http://%[1]s/console/
     tenant %[2]s · email %[3]s · password %[4]s
  2. open the demo shop page  http://%[1]s/demo   and chat from its widget
     (web chat channel %[5]s)
`, addr, demoTenant, demoEmail, d.Password, d.Channel.ID)
	}
	fmt.Fprintf(w, `
Your own tenant, in another terminal:
  go run ./cmd/switchboard tenant create --name acme
  go run ./cmd/switchboard agent create --tenant acme --email you@example.com --name You --password 'choose-a-long-one'
  go run ./cmd/switchboard channel create --tenant acme --kind webchat --name Website --config '{"allowed_origins":["https://www.example.com"]}'

`)
}

// pprofMux serves net/http/pprof's handlers.
func pprofMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	m.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	return m
}
