package wspoll

import (
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// PollerConfig shapes a Poller.
type PollerConfig struct {
	// Workers run OnMessage and all per-connection read work. Default
	// 4 × GOMAXPROCS (OnMessage may block briefly), at most 1024.
	Workers int
	// ReadBuffer is each worker's read buffer. Default 16 KiB, 512 B to 1 MiB.
	ReadBuffer int
	// Logger gets what has no caller to return to (a handler's panic, an
	// epoll failure). Default: discard.
	Logger *slog.Logger

	// blocking serves every conn from a goroutine, as on systems without
	// epoll; tests use it to run the same suite against the fallback.
	blocking bool
	// idleHook, if set, runs on the worker at the end of each read turn
	// that leaves c open, with the bytes of buffer c still holds.
	idleHook func(c *Conn, retained int)
}

func (c *PollerConfig) setDefaults() {
	if c.Workers == 0 {
		c.Workers = 4 * runtime.GOMAXPROCS(0)
	}
	if c.ReadBuffer == 0 {
		c.ReadBuffer = 16 << 10
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports a configuration that cannot work.
func (c PollerConfig) Validate() error {
	switch {
	case c.Workers < 0 || c.Workers > 1024:
		return fmt.Errorf("wspoll: Workers %d not in 0..1024: %w", c.Workers, conv.ErrInvalid)
	case c.ReadBuffer != 0 && (c.ReadBuffer < 512 || c.ReadBuffer > 1<<20):
		return fmt.Errorf("wspoll: ReadBuffer %d not in 512..1048576: %w", c.ReadBuffer, conv.ErrInvalid)
	}
	return nil
}

// Poller serves upgraded connections: it reads them when the kernel says
// they are readable and calls their Handler. See the package doc.
type Poller struct {
	cfg   PollerConfig
	log   *slog.Logger
	wbufs bufPool
	eng   engine // the platform's event loop; idle on the fallback

	mu     sync.RWMutex // after Conn.mu in the lock order
	conns  map[uint64]*Conn
	nextID uint64
	closed bool

	live sync.WaitGroup // served conns whose OnClose has not returned
}

// NewPoller starts a poller: on Linux an epoll loop goroutine and
// cfg.Workers worker goroutines.
func NewPoller(cfg PollerConfig) (*Poller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("wspoll.NewPoller: %w", err)
	}
	cfg.setDefaults()
	p := &Poller{cfg: cfg, log: cfg.Logger, conns: map[uint64]*Conn{}}
	if err := p.start(); err != nil {
		return nil, fmt.Errorf("wspoll.NewPoller: %w", err)
	}
	return p, nil
}

// Serve hands c to the poller; h gets its messages and its end. Serve
// returns at once. It fails only when c is not taken (already served or
// closed, poller closed, no handler); then OnClose is never called and
// the caller still owns c. Otherwise OnClose reports every later failure.
func (p *Poller) Serve(c *Conn, h Handler) error {
	if h == nil {
		return fmt.Errorf("wspoll.Serve: nil handler: %w", conv.ErrInvalid)
	}
	c.mu.Lock()
	switch {
	case c.p != nil:
		c.mu.Unlock()
		return fmt.Errorf("wspoll.Serve: already served: %w", conv.ErrConflict)
	case c.st.Load() != stOpen:
		c.mu.Unlock()
		return fmt.Errorf("wspoll.Serve: %w", ErrClosed)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.mu.Unlock()
		return fmt.Errorf("wspoll.Serve: %w", ErrPollerClosed)
	}
	p.nextID++
	c.id, c.p, c.h = p.nextID, p, h
	pipelined := c.leftover != nil // read now: a worker may take it once c is armed
	c.evented = p.evented(c)
	c.pool.Store(&p.wbufs)
	p.conns[c.id] = c
	p.live.Add(1)
	p.mu.Unlock()
	c.mu.Unlock()
	if !c.evented {
		go c.readLoop()
		return nil
	}
	if err := p.arm(c, true); err != nil {
		c.teardown(fmt.Errorf("wspoll: epoll add: %w", err))
		return nil
	}
	if pipelined {
		p.schedule(c, false)
	}
	return nil
}

// detach forgets c; teardown calls it before closing the socket.
func (p *Poller) detach(c *Conn) {
	if c.evented {
		p.disarm(c)
	}
	p.mu.Lock()
	delete(p.conns, c.id)
	p.mu.Unlock()
}

// wake makes c's reader notice that c is closed.
func (p *Poller) wake(c *Conn) {
	if c.evented {
		p.schedule(c, false)
	}
	// A goroutine-served conn's Read fails once the socket is closed.
}

// Len is the number of connections served and not yet closed.
func (p *Poller) Len() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.conns)
}

// Close ends every connection (a best-effort 1001 close frame, then the
// socket; OnClose for each with ErrPollerClosed), waits for their OnClose
// calls to return, and stops the poller's goroutines. It waits for
// OnMessage calls in progress: a handler that never returns blocks it.
func (p *Poller) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	conns := make([]*Conn, 0, len(p.conns))
	for _, c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()

	p.stopLoop()
	cause := fmt.Errorf("%w: %w", ErrPollerClosed,
		CloseError{Code: StatusGoingAway, Reason: "server shutting down"})
	deadline := time.Now().Add(controlTimeout)
	for _, c := range conns {
		c.shutdown(cause, deadline)
	}
	p.live.Wait()
	return p.stopWorkers()
}
