package wspoll

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Handler receives a served connection's messages and its end.
type Handler interface {
	// OnMessage gets one complete text or binary message (fragments
	// reassembled, text valid UTF-8). Calls for one connection come in
	// order and never overlap, but they run on one of the poller's few
	// workers: return quickly, and hand anything slow (storage, network)
	// to a goroutine of your own. payload is valid only during the call.
	OnMessage(c *Conn, text bool, payload []byte)
	// OnClose is called exactly once, after the last OnMessage, when the
	// connection has ended; err says why (see CloseStatus, ErrClosed,
	// ErrPollerClosed).
	OnClose(c *Conn, err error)
}

// Connection states; st changes only under Conn.mu, and only forward.
const (
	stOpen    = iota
	stClosing // our close frame is sent or on its way; waiting for the peer's
	stClosed  // the socket is closed; OnClose is due
)

// controlTimeout bounds writing a control frame (pong, close).
const controlTimeout = time.Second

// Conn is a server-side websocket connection made by Upgrade. Its write
// and close methods are safe for concurrent use.
type Conn struct {
	nc   net.Conn
	raw  syscall.RawConn // nil when nc has no descriptor of its own (TLS)
	opts Options

	// Set by Serve before the conn is published to the poller's
	// goroutines, then only read.
	p       *Poller
	h       Handler
	id      uint64
	evented bool // served by the epoll loop, not by a goroutine

	st    atomic.Int32
	sched atomic.Int32 // worker hand-off, see poller_linux.go
	pool  atomic.Pointer[bufPool]

	// Read side: touched only by whoever serves the conn's reads (one
	// worker at a time, or its goroutine).
	parser   parser
	leftover []byte // bytes that arrived with the handshake request
	notified bool   // OnClose has been called

	wmu       sync.Mutex // one frame on the wire at a time
	closeSent bool       // guarded by wmu
	pongBusy  atomic.Bool

	mu     sync.Mutex // guards the state transitions and the fields below
	cause  error
	linger *time.Timer
}

func newConn(nc net.Conn, opts Options, leftover []byte) *Conn {
	c := &Conn{nc: nc, opts: opts, leftover: leftover}
	c.parser.max = opts.MaxMessage
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
	return c
}

// RemoteAddr is the peer's address as the socket sees it (a proxy's, behind
// one).
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// WriteText sends payload as one text message. Concurrent calls are
// serialized. It gives up at ctx's deadline or cancellation, or after
// Options.WriteTimeout when ctx has no deadline; a failed write closes the
// connection (the peer may have got part of a frame).
func (c *Conn) WriteText(ctx context.Context, payload []byte) error {
	return c.write(ctx, opText, payload)
}

// WriteBinary is WriteText for a binary message.
func (c *Conn) WriteBinary(ctx context.Context, payload []byte) error {
	return c.write(ctx, opBinary, payload)
}

func (c *Conn) write(ctx context.Context, op byte, payload []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("wspoll: write: %w", err)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent || c.st.Load() != stOpen {
		return fmt.Errorf("wspoll: write: %w", ErrClosed)
	}
	deadline, ok := ctx.Deadline()
	if !ok && c.opts.WriteTimeout > 0 {
		deadline = time.Now().Add(c.opts.WriteTimeout)
	}
	if err := c.nc.SetWriteDeadline(deadline); err != nil {
		c.teardown(fmt.Errorf("wspoll: write: %w", err))
		return fmt.Errorf("wspoll: write: %w", ErrClosed)
	}
	var (
		stop     func() bool
		canceled chan struct{}
	)
	if ctx.Done() != nil {
		canceled = make(chan struct{})
		stop = context.AfterFunc(ctx, func() {
			defer close(canceled)
			_ = c.nc.SetWriteDeadline(time.Unix(1, 0))
		})
	}
	err := c.writeFrameLocked(op, payload)
	if stop != nil && !stop() {
		<-canceled // its deadline must not outlive this write
	}
	_ = c.nc.SetWriteDeadline(time.Time{})
	if err != nil {
		switch {
		case ctx.Err() != nil:
			err = ctx.Err()
		case ok && errors.Is(err, os.ErrDeadlineExceeded):
			err = context.DeadlineExceeded // ctx's timer may not have fired yet
		}
		err = fmt.Errorf("wspoll: write: %w", err)
		c.teardown(fmt.Errorf("%w: %w", ErrClosed, err))
		return err
	}
	return nil
}

// writeFrameLocked writes one final frame as one write; wmu is held.
func (c *Conn) writeFrameLocked(op byte, payload []byte) error {
	n := maxHeader + len(payload)
	pool := c.pool.Load()
	var bp *[]byte
	if pool != nil {
		bp = pool.get(n)
	} else {
		b := make([]byte, 0, n)
		bp = &b
	}
	b := appendHeader((*bp)[:0], op, len(payload))
	b = append(b, payload...)
	_, err := c.nc.Write(b)
	if pool != nil {
		*bp = b
		pool.put(bp)
	}
	return err
}

// writeControlLocked writes a control frame before deadline; wmu is held.
// Nothing is written after the close frame.
func (c *Conn) writeControlLocked(op byte, payload []byte, deadline time.Time) error {
	if c.closeSent || c.st.Load() == stClosed {
		return ErrClosed
	}
	if op == opClose {
		c.closeSent = true
	}
	_ = c.nc.SetWriteDeadline(deadline)
	err := c.writeFrameLocked(op, payload)
	_ = c.nc.SetWriteDeadline(time.Time{})
	if err != nil {
		err = fmt.Errorf("wspoll: write control frame %#x: %w", op, err)
		c.teardown(fmt.Errorf("%w: %w", ErrClosed, err))
	}
	return err
}

// control writes a control frame without making the caller (a worker,
// usually) wait for another writer: when the write lock is taken, a
// goroutine waits for it instead. then, if not nil, runs after the write.
func (c *Conn) control(op byte, payload []byte, then func(error)) {
	if c.wmu.TryLock() {
		err := c.writeControlLocked(op, payload, time.Now().Add(controlTimeout))
		c.wmu.Unlock()
		if then != nil {
			then(err)
		}
		return
	}
	// One pong waiting is enough (RFC 6455 5.5.3 lets us answer only the
	// latest ping); at most one close frame is ever sent.
	if op == opPong && !c.pongBusy.CompareAndSwap(false, true) {
		return
	}
	payload = bytes.Clone(payload)
	go func() {
		c.wmu.Lock()
		err := c.writeControlLocked(op, payload, time.Now().Add(controlTimeout))
		c.wmu.Unlock()
		if op == opPong {
			c.pongBusy.Store(false)
		}
		if then != nil {
			then(err)
		}
	}()
}

// Close starts the closing handshake: it sends a close frame with code
// and reason (cut to 123 bytes) within a short deadline, without waiting
// for other writers, and returns. A served connection then waits up to
// Options.CloseTimeout for the peer's close frame before its socket is
// closed and OnClose runs; an unserved one is closed at once. Codes that
// may not be sent (1005, 1006, 1015, below 1000, …) are refused.
func (c *Conn) Close(code int, reason string) error {
	if !validCloseCode(code) {
		return fmt.Errorf("wspoll.Close: status %d cannot be sent: %w", code, conv.ErrInvalid)
	}
	if !c.closeWith(code, reason, fmt.Errorf("%w: %w", ErrClosed, CloseError{Code: code, Reason: reason})) {
		return fmt.Errorf("wspoll.Close: %w", ErrClosed)
	}
	return nil
}

// CloseNow closes the socket without a close frame. OnClose follows,
// after any OnMessage in progress returns.
func (c *Conn) CloseNow() error {
	if !c.teardown(fmt.Errorf("%w by CloseNow", ErrClosed)) {
		return fmt.Errorf("wspoll.CloseNow: %w", ErrClosed)
	}
	return nil
}

// begin moves an open conn to closing with cause; false if it was not open.
func (c *Conn) begin(cause error) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st.Load() != stOpen {
		return false
	}
	c.st.Store(stClosing)
	c.cause = cause
	return true
}

// closeWith begins the closing handshake with code; false if the conn was
// not open.
func (c *Conn) closeWith(code int, reason string, cause error) bool {
	if !c.begin(cause) {
		return false
	}
	c.control(opClose, closePayload(code, reason), func(err error) {
		if err != nil || !c.startLinger() {
			c.teardown(nil)
		}
	})
	return true
}

// startLinger arms the close timeout of a served, closing conn; false when
// nobody reads the conn, so nobody would see the peer's close frame.
func (c *Conn) startLinger() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p == nil {
		return false
	}
	if c.st.Load() == stClosing && c.linger == nil {
		c.linger = time.AfterFunc(c.opts.CloseTimeout, func() { c.teardown(nil) })
	}
	return true
}

// teardown closes the socket, keeping the first cause, and hands the conn
// to its reader for OnClose. It reports whether this call closed it.
func (c *Conn) teardown(cause error) bool {
	c.mu.Lock()
	if c.st.Load() == stClosed {
		c.mu.Unlock()
		return false
	}
	c.st.Store(stClosed)
	if c.cause == nil {
		c.cause = cause
	}
	if c.linger != nil {
		c.linger.Stop()
		c.linger = nil
	}
	p := c.p
	c.mu.Unlock()
	if p != nil {
		p.detach(c)
	}
	_ = c.nc.Close()
	if p != nil {
		p.wake(c)
	}
	return true
}

// shutdown is Poller.Close's end for c: a best-effort 1001 close frame
// written before deadline, then the socket closed.
func (c *Conn) shutdown(cause error, deadline time.Time) {
	if c.begin(cause) && c.wmu.TryLock() {
		_ = c.writeControlLocked(opClose, closePayload(StatusGoingAway, "server shutting down"), deadline)
		c.wmu.Unlock()
	}
	c.teardown(cause)
}

// finish calls OnClose once; the conn's reader calls it after teardown.
func (c *Conn) finish() {
	if c.notified {
		return
	}
	c.notified = true
	c.parser.release()
	c.leftover = nil
	c.mu.Lock()
	cause := c.cause
	c.mu.Unlock()
	defer c.p.live.Done()
	defer func() {
		if r := recover(); r != nil {
			c.p.log.Error("wspoll: OnClose panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	c.h.OnClose(c, cause)
}

// consume feeds bytes read from the socket to the parser; false once the
// conn is closed.
func (c *Conn) consume(b []byte) bool {
	c.parser.feed(b, c)
	return c.st.Load() != stClosed
}

// readLoop serves c from a goroutine of its own: the fallback where there
// is no epoll, or no descriptor to give it.
func (c *Conn) readLoop() {
	buf := make([]byte, blockingReadBuffer)
	if in := c.leftover; in != nil {
		c.leftover = nil
		c.consume(in)
	}
	for c.st.Load() != stClosed {
		n, err := c.nc.Read(buf)
		if n > 0 && !c.consume(buf[:n]) {
			break
		}
		if err != nil {
			c.teardown(fmt.Errorf("wspoll: read: %w", err))
		}
	}
	c.finish()
}

// blockingReadBuffer is the read buffer of a conn served by a goroutine.
const blockingReadBuffer = 4 << 10

// The sink methods run on the conn's reader, in stream order.

func (c *Conn) discarding() bool { return c.st.Load() != stOpen }

func (c *Conn) message(text bool, payload []byte) {
	if c.st.Load() != stOpen {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			c.p.log.Error("wspoll: OnMessage panicked", "panic", r, "stack", string(debug.Stack()))
			c.closeWith(StatusInternalError, "internal error", fmt.Errorf("wspoll: OnMessage panicked: %v", r))
		}
	}()
	c.h.OnMessage(c, text, payload)
}

func (c *Conn) ping(payload []byte) {
	if c.st.Load() == stOpen {
		c.control(opPong, payload, nil)
	}
}

func (c *Conn) closeFrame(code int, reason string) {
	if !c.begin(CloseError{Code: code, Reason: reason}) {
		c.teardown(nil) // the answer to our close frame: the handshake is done
		return
	}
	// Echo the code (section 5.5.1); the server closes TCP first (7.1.1).
	c.control(opClose, closePayload(code, ""), func(error) { c.teardown(nil) })
}

func (c *Conn) fail(e CloseError) {
	if !c.closeWith(e.Code, e.Reason, fmt.Errorf("wspoll: read: %w: %w", conv.ErrInvalid, e)) {
		c.teardown(nil)
	}
}

// bufPool recycles frame buffers for writes.
type bufPool struct{ p sync.Pool }

// maxPooled is the largest buffer kept for reuse.
const maxPooled = 128 << 10

func (bp *bufPool) get(n int) *[]byte {
	if b, ok := bp.p.Get().(*[]byte); ok && cap(*b) >= n {
		return b
	}
	b := make([]byte, 0, max(n, 1024))
	return &b
}

func (bp *bufPool) put(b *[]byte) {
	if cap(*b) <= maxPooled {
		bp.p.Put(b)
	}
}
