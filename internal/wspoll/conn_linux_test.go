package wspoll

// The tests here hold only where connections wait on epoll (Linux);
// elsewhere a connection keeps a goroutine and its buffers.

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestIdleConnHasNoGoroutine(t *testing.T) {
	const conns = 200
	s := startServer(t, modes[0], Options{}, newHandler(echo))
	base := runtime.NumGoroutine()
	for i := range conns {
		c := dialRaw(t, s.addr, nil)
		c.write(text(msg(i, 0)))
		c.expect(opText, msg(i, 0))
	}
	// net/http's per-connection goroutines end once the handlers return.
	waitFor(t, "goroutines to settle", func() bool { return runtime.NumGoroutine() < base+conns/10 })
	if s.p.Len() != conns {
		t.Fatalf("serving %d, want %d", s.p.Len(), conns)
	}
}

func TestIdleConnHoldsNoBuffer(t *testing.T) {
	held := make(chan int, 100)
	cfg := PollerConfig{idleHook: func(_ *Conn, retained int) { held <- retained }}
	s := startServerConfig(t, cfg, Options{}, newHandler(echo))
	next := func() int {
		t.Helper()
		select {
		case n := <-held:
			return n
		case <-time.After(wait):
			t.Fatal("no read turn ended")
			return 0
		}
	}
	c := dialRaw(t, s.addr, nil)
	f := text(strings.Repeat("h", 3000))
	c.write(f[:1000])
	if n := next(); n < 1000 || n > 2000 {
		t.Fatalf("1000 bytes of a %d-byte frame: %d bytes held, want 1000..2000", len(f), n)
	}
	c.write(f[1000:])
	c.expect(opText, strings.Repeat("h", 3000))
	for n := next(); n != 0; n = next() {
		t.Fatalf("idle after a whole frame with %d bytes held", n)
	}
	c.write(frameSpec{op: opText, payload: []byte("frag")}.build())
	if n := next(); n == 0 {
		t.Fatal("open fragmented message not held")
	}
	c.write(frameSpec{fin: true, op: opContinuation, payload: []byte("ment")}.build())
	c.expect(opText, "fragment")
	if n := next(); n != 0 {
		t.Fatalf("idle after a whole message with %d bytes held", n)
	}
}
