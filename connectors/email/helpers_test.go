package email_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/connectors/email"
	"github.com/switchboard-hq/switchboard/connectors/email/imapwatch"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/ingest"
	"github.com/switchboard-hq/switchboard/core/outbound"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/hub"
	"github.com/switchboard-hq/switchboard/internal/media"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/store/memory"
	"github.com/switchboard-hq/switchboard/store/sqlite"
)

const (
	waitFor = 15 * time.Second
	// testKey is the thread key of the golden mails' tokens
	// (connectors/email/mail's tests made them with it).
	testKey = "test-key-0123456789abcdef"
)

// testHub stands in for the bus: envelopes go through core's real ingest
// (dedup and threading) into the store, delivery reports through core's
// real outbound service; every publish that succeeded is recorded.
type testHub struct {
	ingest *ingest.Service
	out    *outbound.Service

	mu         sync.Mutex
	inbound    []conv.Inbound
	deliveries []conv.Delivery
	outbounds  []conv.Outbound
	failIn     int   // fail this many PublishInbound calls
	failErr    error // with this error
}

func (h *testHub) PublishInbound(ctx context.Context, in conv.Inbound) error {
	h.mu.Lock()
	if h.failIn > 0 {
		h.failIn--
		h.mu.Unlock()
		return h.failErr
	}
	h.mu.Unlock()
	if _, err := h.ingest.Accept(ctx, in); err != nil {
		return err
	}
	// Recorded once stored: a test that sees it can read it.
	h.mu.Lock()
	h.inbound = append(h.inbound, in)
	h.mu.Unlock()
	return nil
}

func (h *testHub) PublishDelivery(ctx context.Context, d conv.Delivery) error {
	h.mu.Lock()
	h.deliveries = append(h.deliveries, d)
	h.mu.Unlock()
	return h.out.ApplyDelivery(ctx, d)
}

func (h *testHub) PublishOutbound(_ context.Context, out conv.Outbound) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.outbounds = append(h.outbounds, out)
	return nil
}

func (h *testHub) PublishEvents(context.Context, []conv.Event) error { return nil }

func (h *testHub) failInbound(n int, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failIn, h.failErr = n, err
}

func (h *testHub) published() []conv.Inbound {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]conv.Inbound(nil), h.inbound...)
}

func (h *testHub) reports() []conv.Delivery {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]conv.Delivery(nil), h.deliveries...)
}

func (h *testHub) lastOutbound(t *testing.T) conv.Outbound {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.outbounds) == 0 {
		t.Fatal("nothing was published to outbound")
	}
	return h.outbounds[len(h.outbounds)-1]
}

// publishedWith returns the envelopes whose email subject contains s.
func (h *testHub) publishedWith(s string) []conv.Inbound {
	var out []conv.Inbound
	for _, in := range h.published() {
		if len(in.Parts) > 0 && in.Parts[0].Email != nil && strings.Contains(in.Parts[0].Email.Subject, s) {
			out = append(out, in)
		}
	}
	return out
}

// env is a store, core's ingest and outbound services, a media store and
// leases: what a node gives the connector.
type env struct {
	store  *sqlite.Store
	ids    *conv.IDGen
	media  *media.Store
	leases *memory.Leases
	hub    *testHub
	tenant conv.TenantID
	reg    *hub.Registry
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
	st, ids := testenv.SQLiteStore(t)
	ms, err := media.Open(t.TempDir(), bytes.Repeat([]byte{7}, 32), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	h := &testHub{}
	if h.ingest, err = ingest.New(ingest.Config{Store: st, Events: h, IDs: ids}); err != nil {
		t.Fatal(err)
	}
	if h.out, err = outbound.New(outbound.Config{Store: st, Bus: h, IDs: ids}); err != nil {
		t.Fatal(err)
	}
	ictx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		h.ingest.Run(ictx)
		close(done)
	}()
	t.Cleanup(func() {
		stop()
		<-done
	})
	tenant := conv.NewID[conv.TenantID](ids)
	if err := st.CreateTenant(ctx, conv.Tenant{ID: tenant, Name: "acme", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return &env{store: st, ids: ids, media: ms, leases: memory.NewLeases(memory.Config{}), hub: h, tenant: tenant,
		reg: hub.NewRegistry(email.Kind())}
}

// channel creates an email channel from config (secrets included, as the
// admin CLI takes it), through the hub's registry like the CLI does.
func (e *env) channel(t testing.TB, config map[string]any) conv.Channel {
	t.Helper()
	raw, _ := json.Marshal(config)
	cfg, secrets, err := e.reg.Split(conv.KindEmail, raw)
	if err != nil {
		t.Fatalf("Split: %v", err)
	}
	ch := conv.Channel{ID: conv.NewID[conv.ChannelID](e.ids), TenantID: e.tenant, Kind: conv.KindEmail, Name: "support",
		Config: cfg, Secrets: secrets, CreatedAt: time.Now()}
	e.tx(t, func(tx storage.Tx) error { return tx.CreateChannel(context.Background(), ch) })
	return ch
}

// update rewrites a channel (config and secrets, disabled).
func (e *env) update(t *testing.T, ch conv.Channel) {
	t.Helper()
	e.tx(t, func(tx storage.Tx) error { return tx.UpdateChannel(context.Background(), ch) })
}

func (e *env) tx(t testing.TB, fn func(storage.Tx) error) {
	t.Helper()
	if err := e.store.Tx(context.Background(), e.tenant, fn); err != nil {
		t.Fatal(err)
	}
}

// status reads the channel's status; the zero Status when there is none.
func (e *env) status(t *testing.T, ch conv.ChannelID) email.Status {
	t.Helper()
	var st email.Status
	err := e.store.Read(context.Background(), e.tenant, func(tx storage.Tx) error {
		var err error
		st, err = email.ReadStatus(context.Background(), tx, ch)
		return err
	})
	if err != nil && !errors.Is(err, conv.ErrNotFound) {
		t.Fatal(err)
	}
	return st
}

// waitStatus waits until the channel's status satisfies ok.
func (e *env) waitStatus(t *testing.T, ch conv.ChannelID, what string, ok func(email.Status) bool) email.Status {
	t.Helper()
	var st email.Status
	testenv.WaitFor(t, waitFor, what, func() bool {
		st = e.status(t, ch)
		return ok(st)
	})
	return st
}

// savePosition makes the channel start after p.
func (e *env) savePosition(t *testing.T, ch conv.ChannelID, p imapwatch.Position) {
	t.Helper()
	e.tx(t, func(tx storage.Tx) error {
		return email.SavePosition(context.Background(), tx, ch, p, time.Now())
	})
}

// message reads a stored message by the envelope's external id.
func (e *env) message(t *testing.T, ch conv.ChannelID, externalID string) conv.Message {
	t.Helper()
	var m conv.Message
	e.tx(t, func(tx storage.Tx) error {
		var err error
		m, err = tx.MessageByExternalID(context.Background(), ch, externalID)
		return err
	})
	return m
}

func (e *env) conversation(t *testing.T, id conv.ConversationID) conv.Conversation {
	t.Helper()
	var c conv.Conversation
	e.tx(t, func(tx storage.Tx) error {
		var err error
		c, err = tx.Conversation(context.Background(), id)
		return err
	})
	return c
}

func (e *env) resolve(t *testing.T, id conv.ConversationID) {
	t.Helper()
	e.tx(t, func(tx storage.Tx) error {
		c, err := tx.Conversation(context.Background(), id)
		if err != nil {
			return err
		}
		at := time.Now().UTC()
		c.Status, c.ResolvedAt = conv.StatusResolved, &at
		return tx.UpdateConversation(context.Background(), c)
	})
}

// connector makes a Connector on env with test timings.
func (e *env) connector(t testing.TB, holder string, opts ...func(*email.Config)) *email.Connector {
	t.Helper()
	cfg := email.Config{
		Store: e.store, Bus: e.hub, Media: e.media, Lease: e.leases, Holder: holder,
		Logger: testLog(t).With("holder", holder), LeaseTTL: 600 * time.Millisecond, RescanEvery: 50 * time.Millisecond,
		BackoffMin: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
	}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := email.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// run runs c until the returned stop is called (or the test ends); stop
// waits for Run to return.
func run(t *testing.T, c *email.Connector) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run = %v", err)
				}
			case <-time.After(waitFor):
				t.Errorf("Run did not return within %s of cancel", waitFor)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// readMedia reads a media URL the connector stored.
func (e *env) readMedia(t *testing.T, rawURL string) []byte {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil || !strings.HasPrefix(u.Path, media.URLPrefix) {
		t.Fatalf("%q is not a media URL", rawURL)
	}
	f, err := e.media.Open(strings.TrimPrefix(u.Path, media.URLPrefix), u.Query())
	if err != nil {
		t.Fatalf("open %s: %v", rawURL, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

var logMu sync.Mutex

func (w tWriter) Write(b []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// smtpServer is a minimal SMTP server for the outbound tests: it takes
// every mail unless told to refuse, and keeps what it received.
type smtpServer struct {
	ln net.Listener

	mu        sync.Mutex
	mails     []smtpMail
	rcptReply string // "" is 250
	dataReply string // "" is 250 with a queue id
}

type smtpMail struct {
	from  string
	rcpts []string
	data  []byte
}

func startSMTP(t *testing.T) *smtpServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpServer{ln: ln}
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { s.serve(c) })
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return s
}

func (s *smtpServer) addr() string { return s.ln.Addr().String() }

func (s *smtpServer) refuse(rcpt, data string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rcptReply, s.dataReply = rcpt, data
}

func (s *smtpServer) received() []smtpMail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]smtpMail(nil), s.mails...)
}

func (s *smtpServer) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitFor))
	r := bufio.NewReader(c)
	say := func(line string) { fmt.Fprintf(c, "%s\r\n", line) }
	say("220 smtp.test ESMTP")
	var cur smtpMail
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		s.mu.Lock()
		rcptReply, dataReply := s.rcptReply, s.dataReply
		s.mu.Unlock()
		switch {
		case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
			say("250-smtp.test\r\n250 8BITMIME")
		case strings.HasPrefix(cmd, "MAIL FROM:"):
			cur = smtpMail{from: between(line, "<", ">")}
			say("250 2.1.0 Ok")
		case strings.HasPrefix(cmd, "RCPT TO:"):
			if rcptReply != "" {
				say(rcptReply)
				continue
			}
			cur.rcpts = append(cur.rcpts, between(line, "<", ">"))
			say("250 2.1.5 Ok")
		case cmd == "DATA":
			say("354 End data with <CR><LF>.<CR><LF>")
			var data bytes.Buffer
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(strings.TrimPrefix(l, "."))
			}
			if dataReply != "" {
				say(dataReply)
				continue
			}
			cur.data = data.Bytes()
			s.mu.Lock()
			s.mails = append(s.mails, cur)
			s.mu.Unlock()
			say("250 2.0.0 Ok: queued as TEST1")
		case cmd == "RSET", cmd == "NOOP":
			say("250 2.0.0 Ok")
		case cmd == "QUIT":
			say("221 2.0.0 Bye")
			return
		default:
			say("502 5.5.2 Error: command not recognized")
		}
	}
}

func between(s, open, close string) string {
	_, s, _ = strings.Cut(s, open)
	s, _, _ = strings.Cut(s, close)
	return s
}
