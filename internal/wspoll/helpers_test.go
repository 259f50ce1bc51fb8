package wspoll

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// wait is how long a test waits for something that should happen at once.
const wait = 10 * time.Second

// testHandler records OnClose calls and runs onMessage, if set.
type testHandler struct {
	onMessage func(c *Conn, text bool, p []byte)
	onClose   func(c *Conn, err error)

	mu      sync.Mutex
	closes  map[*Conn]int
	reasons map[*Conn]error
	closed  chan closeEvent
}

type closeEvent struct {
	c   *Conn
	err error
}

func newHandler(onMessage func(c *Conn, text bool, p []byte)) *testHandler {
	return &testHandler{onMessage: onMessage, closes: map[*Conn]int{}, reasons: map[*Conn]error{},
		closed: make(chan closeEvent, 10000)}
}

func echo(c *Conn, text bool, p []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if text {
		_ = c.WriteText(ctx, p)
	} else {
		_ = c.WriteBinary(ctx, p)
	}
}

func (h *testHandler) OnMessage(c *Conn, text bool, p []byte) {
	if h.onMessage != nil {
		h.onMessage(c, text, p)
	}
}

func (h *testHandler) OnClose(c *Conn, err error) {
	if h.onClose != nil {
		h.onClose(c, err)
	}
	h.mu.Lock()
	h.closes[c]++
	h.reasons[c] = err
	h.mu.Unlock()
	h.closed <- closeEvent{c, err}
}

// nextClose waits for an OnClose.
func (h *testHandler) nextClose(t *testing.T) closeEvent {
	t.Helper()
	select {
	case ev := <-h.closed:
		return ev
	case <-time.After(wait):
		t.Fatal("no OnClose")
		return closeEvent{}
	}
}

// server is a Poller behind an httptest server that upgrades every request.
type server struct {
	p     *Poller
	h     *testHandler
	addr  string
	url   string
	conns chan *Conn
	errs  chan error // Upgrade errors
}

type mode struct {
	name     string
	blocking bool
}

var modes = []mode{{"epoll", false}, {"goroutine", true}}

// eachMode runs fn against the epoll poller and the goroutine fallback.
func eachMode(t *testing.T, fn func(t *testing.T, m mode)) {
	t.Helper()
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) { fn(t, m) })
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func startServer(t *testing.T, m mode, opts Options, h *testHandler) *server {
	t.Helper()
	return startServerConfig(t, PollerConfig{blocking: m.blocking}, opts, h)
}

func startServerConfig(t *testing.T, cfg PollerConfig, opts Options, h *testHandler) *server {
	t.Helper()
	cfg.Logger = testLogger(t)
	p, err := NewPoller(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{p: p, h: h, conns: make(chan *Conn, 10000), errs: make(chan error, 100)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(w, r, opts)
		if err != nil {
			s.errs <- err
			return
		}
		if err := p.Serve(c, h); err != nil {
			t.Errorf("Serve: %v", err)
			_ = c.CloseNow()
			return
		}
		s.conns <- c
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Poller.Close: %v", err)
		}
	})
	s.addr = srv.Listener.Addr().String()
	s.url = "ws://" + s.addr + "/"
	return s
}

// nextConn is the server side of the connection upgraded next.
func (s *server) nextConn(t *testing.T) *Conn {
	t.Helper()
	select {
	case c := <-s.conns:
		return c
	case <-time.After(wait):
		t.Fatal("no connection upgraded")
		return nil
	}
}

// rawClient speaks websocket by hand, to send what a correct client
// library never would.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

const handshake = "GET / HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// dialRaw connects and upgrades, sending extra in the same write as the
// request.
func dialRaw(t *testing.T, addr string, extra []byte) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(wait))
	if _, err := nc.Write(append([]byte(handshake), extra...)); err != nil {
		t.Fatal(err)
	}
	c := &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
	status, err := c.br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 101 ") {
		t.Fatalf("handshake answer %q, %v", status, err)
	}
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			return c
		}
	}
}

func (c *rawClient) write(b []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// readFrame reads one server frame, checking it is unmasked.
func (c *rawClient) readFrame() (fin bool, op byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return false, 0, nil, err
	}
	if h[1]&0x80 != 0 {
		c.t.Errorf("server frame is masked")
	}
	if h[0]&0x70 != 0 {
		c.t.Errorf("server frame has reserved bits")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return false, 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return false, 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, payload); err != nil {
		return false, 0, nil, err
	}
	return h[0]&0x80 != 0, h[0] & 0x0f, payload, nil
}

// expect reads the next frame and checks its opcode and payload.
func (c *rawClient) expect(op byte, payload string) {
	c.t.Helper()
	_, gotOp, got, err := c.readFrame()
	if err != nil {
		c.t.Fatalf("reading frame %#x %q: %v", op, payload, err)
	}
	if gotOp != op || string(got) != payload {
		c.t.Fatalf("got frame %#x %q, want %#x %q", gotOp, got, op, payload)
	}
}

// expectClose reads frames up to a close frame and returns its code (1005
// for none).
func (c *rawClient) expectClose() int {
	c.t.Helper()
	for {
		_, op, p, err := c.readFrame()
		if err != nil {
			c.t.Fatalf("no close frame: %v", err)
		}
		if op != opClose {
			continue
		}
		if len(p) < 2 {
			return StatusNoStatusRcvd
		}
		return int(binary.BigEndian.Uint16(p))
	}
}

// expectEOF checks the server closed the TCP connection.
func (c *rawClient) expectEOF() {
	c.t.Helper()
	b, err := c.br.ReadByte()
	if err == nil {
		c.t.Fatalf("read %#x, want the connection closed", b)
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		c.t.Fatalf("read error %v, want the connection closed", err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, wait, what, cond)
}

func ctxWait(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

func msg(conn, i int) string { return fmt.Sprintf("conn %d message %d", conn, i) }
