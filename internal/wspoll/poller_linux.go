//go:build linux

package wspoll

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// engine is the epoll side of a Poller.
//
// Every served socket is registered level-triggered with EPOLLONESHOT: one
// readiness event disarms it until a worker has read and re-armed it with
// EPOLL_CTL_MOD. epoll re-checks readiness on MOD, so bytes that arrived
// after the worker's last read raise a new event: no wakeup is lost, and
// no socket is ever in two workers' hands at once (Conn.sched guards the
// other ways a conn gets scheduled). The event carries the conn's id,
// never reused, so an event that outlives its conn finds nothing.
type engine struct {
	on       bool
	epfd     int
	wakefd   int // eventfd, id 0: wakes the loop for Close
	tasks    chan *Conn
	workers  sync.WaitGroup
	loopDone chan struct{}
	stopping atomic.Bool
}

// Conn.sched values.
const (
	schedIdle   = iota // waiting for epoll (or not yet armed)
	schedQueued        // in the task queue, or being run by a worker
	schedAgain         // being run, and woken meanwhile: run once more
	schedDead          // OnClose has run
)

const (
	// taskQueue is the hand-off queue between the loop and the workers.
	taskQueue = 1024
	// maxEvents is how many events one epoll_wait returns at most.
	maxEvents = 256
	// maxReadsPerPass bounds the reads of one conn per turn, so one busy
	// conn does not hold a worker; level-triggered re-arming brings it back.
	maxReadsPerPass = 4
)

func (p *Poller) start() error {
	if p.cfg.blocking {
		return nil
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN} // id 0
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(wakefd)
		return fmt.Errorf("epoll_ctl wake: %w", err)
	}
	e := &p.eng
	e.on, e.epfd, e.wakefd = true, epfd, wakefd
	e.tasks = make(chan *Conn, taskQueue)
	e.loopDone = make(chan struct{})
	e.workers.Add(p.cfg.Workers)
	for range p.cfg.Workers {
		go p.worker()
	}
	go p.loop()
	return nil
}

// evented reports whether c can be served by epoll: it needs a descriptor
// whose bytes are the websocket stream (not TLS).
func (p *Poller) evented(c *Conn) bool { return p.eng.on && c.raw != nil }

func setID(ev *unix.EpollEvent, id uint64) {
	ev.Fd, ev.Pad = int32(uint32(id)), int32(uint32(id>>32))
}

func eventID(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// arm registers (add) or re-arms c for one readiness event. Going through
// RawConn.Control pins the descriptor: it cannot be closed and its number
// reused by another conn during the call.
func (p *Poller) arm(c *Conn, add bool) error {
	op := unix.EPOLL_CTL_MOD
	if add {
		op = unix.EPOLL_CTL_ADD
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT}
	setID(&ev, c.id)
	var cerr error
	if err := c.raw.Control(func(fd uintptr) {
		cerr = unix.EpollCtl(p.eng.epfd, op, int(fd), &ev)
	}); err != nil {
		return err
	}
	return cerr
}

// disarm removes c from the epoll set; closing the socket would too, but
// only once no goroutine holds its descriptor.
func (p *Poller) disarm(c *Conn) {
	_ = c.raw.Control(func(fd uintptr) {
		_ = unix.EpollCtl(p.eng.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	})
}

// schedule gets c run by a worker, or run once more if one is running it.
// The loop blocks on a full queue (back-pressure); other callers, which
// may be workers themselves, never do.
func (p *Poller) schedule(c *Conn, fromLoop bool) {
	for {
		switch c.sched.Load() {
		case schedIdle:
			if !c.sched.CompareAndSwap(schedIdle, schedQueued) {
				continue
			}
			if fromLoop {
				p.eng.tasks <- c
				return
			}
			select {
			case p.eng.tasks <- c:
			default:
				go func() { p.eng.tasks <- c }()
			}
			return
		case schedQueued:
			if c.sched.CompareAndSwap(schedQueued, schedAgain) {
				return
			}
		default:
			return
		}
	}
}

func (p *Poller) loop() {
	defer close(p.eng.loopDone)
	events := make([]unix.EpollEvent, maxEvents)
	batch := make([]*Conn, 0, maxEvents)
	for {
		n, err := unix.EpollWait(p.eng.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			p.log.Error("wspoll: epoll_wait failed; no connection is read any more", "err", err)
			return
		}
		if p.eng.stopping.Load() {
			return
		}
		p.mu.RLock()
		for i := range events[:n] {
			if c := p.conns[eventID(&events[i])]; c != nil {
				batch = append(batch, c)
			}
		}
		p.mu.RUnlock()
		for _, c := range batch {
			p.schedule(c, true)
		}
		clear(batch)
		batch = batch[:0]
	}
}

// reader is a worker's read buffer with its read function made once, so
// a read allocates nothing.
type reader struct {
	buf []byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

func newReader(size int) *reader {
	r := &reader{buf: make([]byte, size)}
	r.fn = func(fd uintptr) bool {
		for {
			r.n, r.err = unix.Read(int(fd), r.buf)
			if r.err != unix.EINTR {
				return true // never wait in the runtime's poller
			}
		}
	}
	return r
}

var errWouldBlock = errors.New("would block")

// read reads what the socket holds without blocking.
func (r *reader) read(c *Conn) (int, error) {
	if err := c.raw.Read(r.fn); err != nil {
		return 0, err
	}
	switch {
	case r.err == unix.EAGAIN:
		return 0, errWouldBlock
	case r.err != nil:
		return 0, r.err
	case r.n <= 0:
		return 0, io.EOF
	}
	return r.n, nil
}

func (p *Poller) worker() {
	defer p.eng.workers.Done()
	r := newReader(p.cfg.ReadBuffer)
	for c := range p.eng.tasks {
		for {
			if c.pass(r) {
				c.sched.Store(schedDead)
				break
			}
			if c.sched.CompareAndSwap(schedQueued, schedIdle) {
				// From here another worker may own c; only re-arm it.
				if err := p.arm(c, false); err != nil && c.st.Load() != stClosed {
					c.teardown(fmt.Errorf("wspoll: epoll re-arm: %w", err))
				}
				break
			}
			c.sched.Store(schedQueued) // it was schedAgain
		}
	}
}

// pass is one worker turn on c: read what is there, parse, deliver. It
// reports true once c is closed and OnClose has run.
func (c *Conn) pass(r *reader) bool {
	if in := c.leftover; in != nil && c.st.Load() != stClosed {
		c.leftover = nil
		c.consume(in)
	}
	for i := 0; i < maxReadsPerPass && c.st.Load() != stClosed; i++ {
		n, err := r.read(c)
		if n > 0 && !c.consume(r.buf[:n]) {
			break
		}
		if err == errWouldBlock {
			break
		}
		if err != nil {
			c.teardown(fmt.Errorf("wspoll: read: %w", err))
			break
		}
		if n < len(r.buf) {
			break // likely drained; if not, the re-arm fires at once
		}
	}
	if c.st.Load() == stClosed {
		c.finish()
		return true
	}
	if hook := c.p.cfg.idleHook; hook != nil {
		hook(c, c.parser.retained()+cap(c.leftover))
	}
	return false
}

func (p *Poller) stopLoop() {
	if !p.eng.on {
		return
	}
	p.eng.stopping.Store(true)
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	if _, err := unix.Write(p.eng.wakefd, one[:]); err != nil {
		p.log.Error("wspoll: cannot wake the epoll loop", "err", err)
	}
	<-p.eng.loopDone
}

func (p *Poller) stopWorkers() error {
	if !p.eng.on {
		return nil
	}
	close(p.eng.tasks)
	p.eng.workers.Wait()
	if err := errors.Join(unix.Close(p.eng.epfd), unix.Close(p.eng.wakefd)); err != nil {
		return fmt.Errorf("wspoll.Poller.Close: %w", err)
	}
	return nil
}
