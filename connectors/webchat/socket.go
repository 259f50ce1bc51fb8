package webchat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/inbox"
	"github.com/switchboard-hq/switchboard/core/live"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/internal/wsframe"
	"github.com/switchboard-hq/switchboard/internal/wspoll"
)

// Visitor frame flood limits: sustained frames a second, and burst.
const (
	visitorRate  = 10
	visitorBurst = 20
	// ackCheck is how long a send waits for its fan-out note before the
	// socket looks in the store (the note may have been lost).
	ackCheck = 2 * time.Second
)

// socket is GET /v1/widget/ws?token=VISITOR_TOKEN.
//
// No goroutine per socket: after the handshake the connection belongs to
// the connector's epoll poller (internal/wspoll), which calls OnMessage
// when a frame arrives. Frames for the visitor are queued, and a writer
// goroutine exists only while the queue is not empty; frames from the
// visitor likewise get a handler goroutine only while some are waiting.
// An idle visitor costs its session struct and the kernel's socket.
func (c *Connector) socket(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	v, ch, cfg, err := c.visitor(ctx, bearerOrQuery(r))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if err := checkOrigin(cfg, r); err != nil {
		c.fail(w, r, err)
		return
	}
	online := c.agentsOnline(ctx, ch)
	// The channel's allowlist was checked above.
	ws, err := wspoll.Upgrade(w, r, wspoll.Options{MaxMessage: wsframe.MaxFrame})
	if err != nil {
		return // Upgrade answered
	}
	// The session outlives this handler: its context must not end with
	// the request's.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	vs := &visitorSession{c: c, v: v, ch: ch, conn: ws, ctx: sctx, cancel: cancel, online: online,
		lim: wsframe.Limiter{Rate: visitorRate, Burst: visitorBurst}}
	if err := c.router.add(sctx, vs); err != nil {
		cancel()
		ws.Close(wspoll.StatusInternalError, "server error")
		return
	}
	vs.push(map[string]any{"type": "presence", "agents_online": online})
	if err := c.poller.Serve(ws, vs); err != nil {
		c.router.remove(vs)
		cancel()
		ws.CloseNow()
	}
}

type pendingSend struct {
	clientID string
	since    time.Time
}

// maxQueue bounds frames waiting for a slow visitor; past it the socket is
// closed (the widget reconnects and resumes by seq).
const maxQueue = 256

// maxInbox bounds a visitor's frames waiting to be handled; the flood
// limit keeps it far below in practice.
const maxInbox = 32

var errSlow = errors.New("visitor too slow to read")

type visitorSession struct {
	c      *Connector
	v      conv.Visitor
	ch     conv.Channel
	conn   *wspoll.Conn
	ctx    context.Context
	cancel context.CancelFunc
	lim    wsframe.Limiter // OnMessage only (never concurrent)

	mu       sync.Mutex
	pending  map[string]pendingSend // sends by external id, until acked
	timer    *time.Timer            // checks pending sends in the store
	out      []any                  // frames waiting for the writer: values to encode, or encoded ([]byte)
	writing  bool
	in       []wsframe.Frame // frames waiting for the handler
	handling bool
	online   bool
	err      error // why the session ended
}

// OnMessage takes one frame from the visitor (on a poller worker: it only
// checks and queues; the store and the bus are the handler's business).
func (vs *visitorSession) OnMessage(_ *wspoll.Conn, text bool, payload []byte) {
	if !vs.lim.Allow(time.Now()) {
		vs.push(errorFrame("rate_limited", "you are sending too fast; slow down"))
		return
	}
	if !text {
		vs.push(errorFrame("invalid", "frames are JSON text"))
		return
	}
	f, err := wsframe.Decode(payload)
	if err != nil {
		vs.push(errorFrame("invalid", err.Error()))
		return
	}
	vs.mu.Lock()
	if vs.err != nil {
		vs.mu.Unlock()
		return
	}
	if len(vs.in) >= maxInbox {
		vs.mu.Unlock()
		vs.push(errorFrame("rate_limited", "you are sending too fast; slow down"))
		return
	}
	vs.in = append(vs.in, f)
	start := !vs.handling
	vs.handling = true
	vs.mu.Unlock()
	if start {
		go vs.handle()
	}
}

// handle acts on queued frames in order, then exits.
func (vs *visitorSession) handle() {
	for {
		vs.mu.Lock()
		if len(vs.in) == 0 || vs.err != nil {
			vs.handling = false
			vs.in = nil
			vs.mu.Unlock()
			return
		}
		f := vs.in[0]
		vs.in = vs.in[1:]
		vs.mu.Unlock()
		vs.frame(f)
	}
}

// OnClose ends the session, whoever closed the socket.
func (vs *visitorSession) OnClose(_ *wspoll.Conn, err error) {
	vs.cancel()
	vs.c.router.remove(vs)
	vs.stopTimer()
	vs.mu.Lock()
	if vs.err == nil {
		vs.err = err
	}
	vs.out = nil
	vs.mu.Unlock()
	level := slog.LevelWarn
	if endedNormally(err) {
		level = slog.LevelDebug
	}
	vs.c.cfg.Logger.Log(vs.ctx, level, "visitor socket ended", "visitor", vs.v.ID, "err", err)
}

// endedNormally tells a socket's usual ends from a fault worth a warning:
// a close frame, our own close, the poller stopping, a visitor too slow to
// read, or the visitor's side simply going away (EOF, or a reset or broken
// pipe from a tab closed or a phone losing its network).
func endedNormally(err error) bool {
	return wspoll.CloseStatus(err) != -1 || errors.Is(err, wspoll.ErrClosed) || errors.Is(err, wspoll.ErrPollerClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, errSlow) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func errorFrame(code, msg string) map[string]string {
	return map[string]string{"type": "error", "code": code, "message": msg}
}

// push queues a frame for the visitor and makes sure a writer runs. A
// visitor who lets maxQueue frames pile up is disconnected (policy
// violation); the widget reconnects and resumes by seq.
func (vs *visitorSession) push(frames ...any) {
	vs.mu.Lock()
	if vs.err != nil {
		vs.mu.Unlock()
		return
	}
	if len(vs.out)+len(frames) > maxQueue {
		vs.err = errSlow
		vs.out = nil
		vs.mu.Unlock()
		vs.cancel()
		go vs.conn.Close(wspoll.StatusPolicyViolation, "too slow to read")
		return
	}
	vs.out = append(vs.out, frames...)
	start := !vs.writing
	vs.writing = true
	vs.mu.Unlock()
	if start {
		go vs.write()
	}
}

// write sends queued frames in order, then exits. A failed write closes
// the socket (wspoll), which ends the session through OnClose.
func (vs *visitorSession) write() {
	for {
		vs.mu.Lock()
		if len(vs.out) == 0 || vs.err != nil {
			vs.writing = false
			vs.out = nil
			vs.mu.Unlock()
			return
		}
		f := vs.out[0]
		vs.out = vs.out[1:]
		vs.mu.Unlock()
		b, ok := f.([]byte)
		var err error
		if !ok {
			b, err = jsonMarshal(f)
		}
		if err == nil {
			ctx, cancel := context.WithTimeout(vs.ctx, 10*time.Second)
			err = vs.conn.WriteText(ctx, b)
			cancel()
		}
		if err != nil {
			vs.mu.Lock()
			if vs.err == nil {
				vs.err = err
			}
			vs.mu.Unlock()
			vs.cancel()
		}
	}
}

func (vs *visitorSession) frame(f wsframe.Frame) {
	switch f.Type {
	case "send":
		var (
			ext string
			err error
		)
		ext, err = vs.c.send(vs.ctx, vs.v, f.ClientID, f.Text, f.Parts)
		if errors.Is(err, conv.ErrInvalid) {
			vs.push(errorFrame("invalid", userMessage(err)))
			return
		}
		if err != nil {
			vs.c.cfg.Logger.WarnContext(vs.ctx, "visitor send failed", "visitor", vs.v.ID, "err", err)
			vs.push(errorFrame("unavailable", "your message could not be sent; retry"))
			return
		}
		vs.mu.Lock()
		if vs.pending == nil {
			vs.pending = map[string]pendingSend{}
		}
		if _, dup := vs.pending[ext]; !dup {
			vs.pending[ext] = pendingSend{clientID: f.ClientID, since: vs.c.cfg.Now()}
		}
		if vs.timer == nil {
			vs.timer = time.AfterFunc(ackCheck, vs.checkPending)
		}
		vs.mu.Unlock()
	case "resume":
		vs.resume(f.AfterSeq)
	case "typing":
		vs.typing(f.Typing)
	case "ping":
		vs.push(map[string]string{"type": "pong"})
	default:
		vs.push(errorFrame("invalid", fmt.Sprintf("unknown frame type %q", f.Type)))
	}
}

// note handles a fan-out note for this visitor's contact (router).
func (vs *visitorSession) note(n inbox.ContactNote) {
	if n.ChannelID != vs.v.ChannelID {
		return
	}
	switch n.Type {
	case "message":
		if n.Message != nil {
			vs.deliver(*n.Message)
		}
	case "typing":
		vs.push(map[string]any{"type": "typing", "typing": n.Typing, "sender": publicSender(n.Sender)})
	}
}

func (vs *visitorSession) setOnline(on bool) {
	vs.mu.Lock()
	changed := vs.online != on
	vs.online = on
	vs.mu.Unlock()
	if changed {
		vs.push(map[string]any{"type": "presence", "agents_online": on})
	}
}

func publicSender(s *conv.Sender) conv.Sender {
	if s == nil {
		return conv.Sender{Type: conv.SenderAgent}
	}
	return conv.Sender{Type: s.Type, Name: s.Name}
}

// deliver sends a stored message, acked first when it is one of this
// socket's sends.
func (vs *visitorSession) deliver(m conv.Message) {
	view, err := jsonMarshal(View(m))
	if err != nil {
		vs.push(errorFrame("internal", "a message could not be encoded"))
		return
	}
	vs.mu.Lock()
	p, mine := vs.pending[m.ExternalID]
	delete(vs.pending, m.ExternalID)
	vs.mu.Unlock()
	// The message is encoded once for both frames, which are assembled
	// around it.
	msg := frameAround(`{"message":`, view, `,"type":"message"}`)
	if mine {
		id, _ := jsonMarshal(p.clientID)
		vs.push(frameAround(`{"client_id":`+string(id)+`,"message":`, view, `,"type":"ack"}`), msg)
		return
	}
	vs.push(msg)
}

// frameAround is head, then body, then tail.
func frameAround(head string, body []byte, tail string) []byte {
	b := make([]byte, 0, len(head)+len(body)+len(tail))
	return append(append(append(b, head...), body...), tail...)
}

func (vs *visitorSession) stopTimer() {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	if vs.timer != nil {
		vs.timer.Stop()
		vs.timer = nil
	}
}

// checkPending acks sends whose fan-out note was lost by looking in the
// store, and gives up on those not stored within AckTimeout. It re-arms
// itself while sends are pending.
func (vs *visitorSession) checkPending() {
	now := vs.c.cfg.Now()
	vs.mu.Lock()
	var due []string
	for ext, p := range vs.pending {
		if now.Sub(p.since) >= ackCheck {
			due = append(due, ext)
		}
	}
	vs.mu.Unlock()
	for _, ext := range due {
		var m conv.Message
		err := vs.c.cfg.Store.Read(vs.ctx, vs.v.TenantID, func(tx storage.Tx) error {
			var err error
			m, err = tx.MessageByExternalID(vs.ctx, vs.v.ChannelID, ext)
			return err
		})
		if err == nil {
			vs.deliver(m)
			continue
		}
		vs.mu.Lock()
		p, ok := vs.pending[ext]
		expired := ok && now.Sub(p.since) > vs.c.cfg.AckTimeout
		if expired {
			delete(vs.pending, ext)
		}
		vs.mu.Unlock()
		if expired {
			vs.push(map[string]any{"type": "error", "code": "unavailable", "client_id": p.clientID,
				"message": "your message was not confirmed in time; send it again (it will not be duplicated)"})
		}
	}
	vs.mu.Lock()
	defer vs.mu.Unlock()
	vs.timer = nil
	if len(vs.pending) > 0 && vs.ctx.Err() == nil {
		vs.timer = time.AfterFunc(ackCheck/2, vs.checkPending)
	}
}

// resumeMax bounds the messages one resume sends, well inside maxQueue:
// a longer gap is sent in several rounds ("resumed" says more: true and the
// widget asks again from its new last seq).
const resumeMax = maxQueue / 2

// resume sends the current conversation's messages after seq (at most
// resumeMax), then resumed.
func (vs *visitorSession) resume(after int64) {
	ctx := vs.ctx
	cv, err := vs.c.current(ctx, vs.v)
	var frames []any
	more := false
	if err == nil {
		for {
			var msgs []conv.Message
			err = vs.c.cfg.Store.Read(ctx, vs.v.TenantID, func(tx storage.Tx) error {
				var err error
				msgs, err = tx.Messages(ctx, cv.ID, after, 200)
				return err
			})
			if err != nil {
				break
			}
			for _, m := range msgs {
				if len(frames) == resumeMax {
					more = true
					break
				}
				frames = append(frames, map[string]any{"type": "message", "message": View(m)})
				after = m.Seq
			}
			if more || len(msgs) < 200 {
				break
			}
		}
	}
	if err != nil && !errors.Is(err, conv.ErrNotFound) {
		vs.push(errorFrame("unavailable", "history is not available right now; retry"))
		return
	}
	vs.push(append(frames, map[string]any{"type": "resumed", "more": more})...)
}

// typing tells the agent handling the conversation.
func (vs *visitorSession) typing(typing bool) {
	cv, err := vs.c.current(vs.ctx, vs.v)
	if err != nil || cv.AssigneeID.IsZero() {
		return
	}
	ev, _ := jsonMarshal(map[string]any{"type": "typing", "conversation_id": cv.ID, "typing": typing,
		"sender": conv.Sender{Type: conv.SenderContact, ID: vs.v.ContactID.String()}})
	b, _ := jsonMarshal(inbox.AgentNote{Event: ev})
	if err := vs.c.cfg.Fanout.Publish(vs.ctx, live.AgentTopic(vs.v.TenantID, cv.AssigneeID), b); err != nil {
		vs.c.cfg.Logger.WarnContext(vs.ctx, "typing note lost", "err", err)
	}
}

// userMessage drops the operation prefixes ("webchat: ") from err.
func userMessage(err error) string {
	msg := err.Error()
	for {
		i := strings.Index(msg, ": ")
		if i < 0 || strings.ContainsAny(msg[:i], " ") {
			return msg
		}
		msg = msg[i+2:]
	}
}
