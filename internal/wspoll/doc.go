// Package wspoll is a server-side RFC 6455 websocket transport for many
// mostly idle connections: an idle connection has no goroutine and no
// read or write buffer, only its socket and a few hundred bytes of state.
//
// # What it owns
//
// Upgrade answers the handshake, hijacks the connection from net/http and
// keeps only the net.Conn: net/http's bufio reader and writer (4+4 KiB)
// are dropped, after the bytes the reader had already taken past the
// request (a pipelined first frame) are copied out. It checks no Origin
// and negotiates no subprotocol or compression; TLS, if any, should end in
// front of the process (a TLS conn works, but on the goroutine fallback).
//
// A Poller owns an epoll instance, the served connections (by id) and a
// small pool of workers. Serve registers a Conn; from then on the Poller
// reads it, parses frames, answers pings and close frames, and calls the
// Handler. The Conn's write methods are used by anyone, concurrently.
//
// # Goroutines
//
//   - one epoll loop: epoll_wait, look the ids up, queue the conns;
//   - Workers workers (default 4 × GOMAXPROCS): take a conn, read what its
//     socket holds into the worker's own buffer, parse, call OnMessage /
//     OnClose, re-arm the socket;
//   - briefly, a goroutine to write a pong or close frame when another
//     writer holds the conn's write lock (a worker never waits for one),
//     and the timer of a conn waiting for the peer's close frame.
//
// Nothing else: WriteText runs on its caller's goroutine (a full socket
// buffer parks it in the runtime's own poller, bounded by its deadline).
//
// Sockets are registered level-triggered with EPOLLONESHOT. An event
// disarms the socket; the worker reads (at most a few buffers' worth, for
// fairness) and re-arms it with EPOLL_CTL_MOD, which re-checks readiness,
// so bytes that arrived meanwhile raise a new event: no lost wakeup, and
// never two workers on one conn. Conn.sched (idle → queued → again →
// dead) covers the other ways a conn gets queued (Serve with pipelined
// bytes, Close/CloseNow from any goroutine), so per-connection work stays
// serial: OnMessage calls of one conn come in order and never overlap, and
// OnClose comes once, after the last of them.
//
// Without epoll (not Linux, or a conn with no descriptor such as TLS) a
// conn is served by a goroutine of its own blocked in Read; the
// behaviour is the same, the memory is not.
//
// # Memory design
//
// An idle conn holds: its net.Conn (the runtime's netFD and pollDesc),
// the Conn struct (~300 B), a map entry, and no buffer. Read buffers are
// the workers' (Workers × ReadBuffer in all). The parser keeps bytes only
// while a frame is incomplete (grown as its bytes arrive, so a header
// announcing a large frame costs nothing until the bytes are sent; its
// size is checked against MaxMessage first) or a fragmented message is open;
// both are dropped when complete. Payloads of whole frames are delivered
// straight from the worker's buffer, unmasked in place. Writes build the
// frame in a buffer from a sync.Pool owned by the Poller and write it in
// one call; deadlines are cleared afterwards so an idle conn has no timer.
// After a close frame is sent, data frames are skipped, never buffered.
// BenchmarkIdleConns measures it (about 630 B of heap and 1.5 KiB of RSS
// per idle conn on linux/amd64, against about 13 KiB and 22 KiB for
// github.com/coder/websocket with a goroutine per conn).
//
// # Lock order
//
// Conn.wmu (one frame on the wire) → Conn.mu (state, cause, linger timer)
// → Poller.mu (the id → conn map). teardown takes Conn.mu, releases it,
// then Poller.mu; it never takes wmu, so a writer that fails may call it.
// No lock is held while a Handler runs or while the loop queues a conn.
//
// # Closing
//
// Close sends a close frame (short deadline, never waiting on another
// writer) and, for a served conn, waits up to CloseTimeout for the peer's
// close frame, reading and discarding meanwhile; then the socket is
// closed. A peer's close frame is answered with its code and the socket
// closed at once (the server closes TCP first). Protocol violations close
// with 1002 or 1007, an oversized message with 1009, a panicking
// OnMessage with 1011. CloseNow closes the socket without a frame.
//
// Poller.Close stops the loop, sends every conn a best-effort 1001 (one
// shared deadline), closes it, waits for every OnClose to return, then
// stops the workers. Do not call it from a Handler. Serve afterwards
// returns ErrPollerClosed.
//
// There are no server pings and no read deadlines (a timer per conn
// would cost memory): dead peers are found by the client's own pings,
// by TCP keepalive (on by default for conns a net.Listener accepts) and
// by write errors.
package wspoll
