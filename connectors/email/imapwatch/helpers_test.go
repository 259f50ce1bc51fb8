package imapwatch

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

const (
	testUser = "support@test.local"
	testPass = "s3cret"
	waitFor  = 10 * time.Second
)

// memServer is an in-process IMAP server (imapmemserver) on a random
// loopback port. Its mail store outlives restarts, like a real server's.
type memServer struct {
	backend *imapmemserver.Server
	user    *imapmemserver.User
	opts    imapserver.Options
	tlsLn   bool // listen with implicit TLS
	noIdle  bool // hide IDLE from the client
	addID   bool // advertise ID to the client

	mu   sync.Mutex
	srv  *imapserver.Server
	addr string

	wire lockedBuffer // what the server read and wrote
}

type serverOpt func(*memServer)

// withCaps sets the advertised capabilities (default IMAP4rev1 + IMAP4rev2,
// which includes IDLE).
func withCaps(caps imap.CapSet) serverOpt {
	return func(s *memServer) { s.opts.Caps = caps }
}

// withoutIdle hides the IDLE capability, which imapserver always offers
// to IMAP4rev1 clients, by rewriting it on the client's side of the wire.
func withoutIdle() serverOpt {
	return func(s *memServer) {
		s.opts.Caps = imap.CapSet{imap.CapIMAP4rev1: {}}
		s.noIdle = true
	}
}

// withID advertises the ID capability (RFC 2971); the server answers the
// command itself with BAD, as a server that does not implement it would.
func withID() serverOpt {
	return func(s *memServer) { s.addID = true }
}

// withTLS serves implicit TLS (implicit) or offers STARTTLS.
func withTLS(cfg *tls.Config, implicit bool) serverOpt {
	return func(s *memServer) {
		s.opts.TLSConfig = cfg
		s.opts.InsecureAuth = false
		s.tlsLn = implicit
	}
}

func startMemServer(t *testing.T, opts ...serverOpt) *memServer {
	t.Helper()
	s := &memServer{backend: imapmemserver.New()}
	s.user = imapmemserver.NewUser(testUser, testPass)
	if err := s.user.Create("INBOX", nil); err != nil {
		t.Fatalf("create INBOX: %v", err)
	}
	s.backend.AddUser(s.user)
	s.opts = imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return s.backend.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		InsecureAuth: true,
		// Not t.Logf: connection goroutines may log after the test ends.
		Logger:      log.New(io.Discard, "", 0),
		DebugWriter: &s.wire,
	}
	for _, o := range opts {
		o(s)
	}
	s.start(t)
	t.Cleanup(s.stop)
	return s
}

// start serves on a new random port.
func (s *memServer) start(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	if s.tlsLn {
		ln, err = tls.Listen("tcp", "127.0.0.1:0", s.opts.TLSConfig)
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := imapserver.New(&s.opts)
	go srv.Serve(ln)
	s.mu.Lock()
	s.srv, s.addr = srv, ln.Addr().String()
	s.mu.Unlock()
}

// stop closes the listener and every connection, as a crashed server would.
func (s *memServer) stop() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

func (s *memServer) currentAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// dial follows the server across restarts.
func (s *memServer) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, s.currentAddr())
	if err != nil || (!s.noIdle && !s.addID) {
		return c, err
	}
	return &capsRewriter{Conn: c, r: bufio.NewReader(c), hideIdle: s.noIdle, addID: s.addID}, nil
}

// capsRewriter edits the capabilities in every line the server sends:
// renames IDLE (to the same length, so literal sizes stay right), or adds
// ID, which imapserver does not implement and so never advertises.
type capsRewriter struct {
	net.Conn
	r               *bufio.Reader
	hideIdle, addID bool
	pending         []byte
}

func (h *capsRewriter) Read(p []byte) (int, error) {
	if len(h.pending) == 0 {
		line, err := h.r.ReadBytes('\n')
		if len(line) == 0 {
			return 0, err
		}
		if bytes.Contains(line, []byte("CAPABILITY")) {
			if h.hideIdle {
				line = bytes.ReplaceAll(line, []byte(" IDLE"), []byte(" XDLE"))
			}
			if h.addID {
				line = bytes.Replace(line, []byte("CAPABILITY "), []byte("CAPABILITY ID "), 1)
			}
		}
		h.pending = line
	}
	n := copy(p, h.pending)
	h.pending = h.pending[n:]
	return n, nil
}

// deliver appends a message to the mailbox and returns its UID.
func (s *memServer) deliver(t *testing.T, raw string) uint32 {
	t.Helper()
	data, err := s.user.Append("INBOX", literal{strings.NewReader(raw), int64(len(raw))}, &imap.AppendOptions{})
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return uint32(data.UID)
}

func (s *memServer) uidValidity(t *testing.T) uint32 {
	t.Helper()
	st, err := s.user.Status("INBOX", &imap.StatusOptions{UIDValidity: true})
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return st.UIDValidity
}

// recreateInbox deletes and re-creates INBOX: a new UIDVALIDITY, UIDs from 1.
func (s *memServer) recreateInbox(t *testing.T) {
	t.Helper()
	if err := s.user.Delete("INBOX"); err != nil {
		t.Fatalf("delete INBOX: %v", err)
	}
	if err := s.user.Create("INBOX", nil); err != nil {
		t.Fatalf("create INBOX: %v", err)
	}
}

type literal struct {
	io.Reader
	n int64
}

func (l literal) Size() int64 { return l.n }

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func message(subject, body string) string {
	return "From: customer@example.org\r\nTo: support@test.local\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + subject + "@example.org>\r\n\r\n" + body + "\r\n"
}

// watchRun is one Watch in a goroutine, with what it delivered and reported.
type watchRun struct {
	mails    chan Mail
	statuses chan Status
	done     chan error // Watch's result, once
	returned bool       // the test consumed done
	cancel   context.CancelFunc
	idles    atomic.Int64
	idled    chan struct{} // one token per accepted IDLE
}

// baseConfig talks plaintext to s with quick reconnects; IDLE is re-issued
// and the mailbox polled so rarely that neither happens during a test
// unless the test asks for it.
func baseConfig(t *testing.T, s *memServer) Config {
	t.Helper()
	return Config{
		Addr:           s.currentAddr(),
		Security:       SecurityNone,
		Username:       testUser,
		Password:       testPass,
		IdleRestart:    28 * time.Minute,
		PollEvery:      time.Hour,
		CommandTimeout: waitFor,
		BackoffMin:     5 * time.Millisecond,
		BackoffMax:     50 * time.Millisecond,
		Dial:           s.dial,
		Logger:         testLog(t),
	}
}

// startWatch runs Watch until the test ends; handle (nil: accept all)
// decides what each mail's handling returns.
func startWatch(t *testing.T, cfg Config, from Position, handle func(Mail) error) *watchRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &watchRun{
		mails:    make(chan Mail, 100),
		statuses: make(chan Status, 10000),
		done:     make(chan error, 1),
		cancel:   cancel,
		idled:    make(chan struct{}, 1000),
	}
	cfg.idleHook = func() {
		r.idles.Add(1)
		select {
		case r.idled <- struct{}{}:
		default:
		}
	}
	go func() {
		r.done <- Watch(ctx, cfg, from, func(_ context.Context, m Mail) error {
			if handle != nil {
				if err := handle(m); err != nil {
					return err
				}
			}
			r.mails <- m
			return nil
		}, func(s Status) {
			select {
			case r.statuses <- s:
			default:
				t.Error("status buffer full")
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if r.returned {
			return
		}
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Watch returned %v after cancel, want nil", err)
			}
		case <-time.After(waitFor):
			t.Errorf("Watch did not return within %s of cancel", waitFor)
		}
	})
	return r
}

func (r *watchRun) next(t *testing.T) Mail {
	t.Helper()
	select {
	case m := <-r.mails:
		return m
	case err := <-r.done:
		r.returned = true
		t.Fatalf("Watch returned %v while a mail was expected", err)
	case <-time.After(waitFor):
		t.Fatalf("no mail within %s", waitFor)
	}
	return Mail{}
}

// noMail asserts nothing is delivered until the watcher has gone back to
// IDLE once more, which it does only after a full catch-up.
func (r *watchRun) noMailBeforeIdle(t *testing.T) {
	t.Helper()
	select {
	case m := <-r.mails:
		t.Fatalf("unexpected mail uid %d", m.UID)
	case <-r.idled:
	case <-time.After(waitFor):
		t.Fatalf("watcher did not go idle within %s", waitFor)
	}
	select {
	case m := <-r.mails:
		t.Fatalf("unexpected mail uid %d", m.UID)
	default:
	}
}

// deliverDuringIdle waits until the watcher idles, appends raw and returns
// the first mail delivered after it. imapmemserver has a race: an append
// between its "+ idling" and the moment its IDLE handler listens is queued
// but not sent until the next change. So while nothing arrives, a nudge
// mail is appended now and then (Dovecot has no such race); nudges come
// after raw, so the first mail is still raw's.
func (r *watchRun) deliverDuringIdle(t *testing.T, s *memServer, raw string) (uint32, Mail) {
	t.Helper()
	r.waitIdle(t)
	uid := s.deliver(t, raw)
	deadline := time.After(waitFor)
	nudge := time.NewTicker(200 * time.Millisecond)
	defer nudge.Stop()
	for {
		select {
		case m := <-r.mails:
			return uid, m
		case <-nudge.C:
			s.deliver(t, message("nudge", "wake the idle handler"))
		case <-deadline:
			t.Fatalf("no mail within %s", waitFor)
		}
	}
}

func (r *watchRun) waitIdle(t *testing.T) {
	t.Helper()
	select {
	case <-r.idled:
	case <-time.After(waitFor):
		t.Fatalf("watcher did not go idle within %s", waitFor)
	}
}

// result waits for Watch to return by itself and returns its error.
func (r *watchRun) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.returned = true
		return err
	case <-time.After(waitFor):
		t.Fatalf("Watch did not return within %s", waitFor)
		return nil
	}
}

// waitStatus returns the first status in state, failing after waitFor.
func (r *watchRun) waitStatus(t *testing.T, state State) Status {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case s := <-r.statuses:
			if s.State == state {
				return s
			}
		case <-deadline:
			t.Fatalf("no %s status within %s", state, waitFor)
			return Status{}
		}
	}
}

// testLog sends Watch's log to the test's output.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// selfSigned returns a server certificate for 127.0.0.1 and a client
// config that trusts only it.
func selfSigned(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	return testenv.SelfSignedTLS(t)
}

var errBoom = errors.New("boom")

func subjects(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("msg-%d", i+1)
	}
	return out
}
