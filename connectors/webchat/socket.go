package webchat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/inbox"
	"github.com/switchboard-hq/switchboard/core/live"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/internal/wsframe"
)

// Visitor frame flood limits: sustained frames a second, and burst.
const (
	visitorRate  = 10
	visitorBurst = 20
)

// socket is GET /v1/widget/ws?token=VISITOR_TOKEN.
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
	// The channel's allowlist was checked above; the library's own
	// same-host check would refuse every embedding site.
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	vs := &visitorSession{c: c, v: v, ch: ch, conn: wsframe.New(ws), pending: map[string]pendingSend{}}
	err = vs.run(ctx)
	if websocket.CloseStatus(err) != -1 || errors.Is(err, context.Canceled) {
		ws.CloseNow()
		return
	}
	c.cfg.Logger.WarnContext(ctx, "visitor socket ended", "visitor", v.ID, "err", err)
	ws.Close(websocket.StatusInternalError, "server error")
}

type pendingSend struct {
	clientID string
	since    time.Time
}

type visitorSession struct {
	c    *Connector
	v    conv.Visitor
	ch   conv.Channel
	conn *wsframe.Conn
	// pending sends by external id, acked when the stored message shows.
	pending map[string]pendingSend
}

func (vs *visitorSession) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c, v := vs.c, vs.v
	sub, err := c.cfg.Fanout.Subscribe(ctx, live.ContactTopic(v.TenantID, v.ContactID))
	if err != nil {
		return err
	}
	defer sub.Close()
	online := c.agentsOnline(ctx, vs.ch)
	if err := vs.conn.Send(ctx, map[string]any{"type": "presence", "agents_online": online}); err != nil {
		return err
	}
	frames := make(chan wsframe.Frame)
	readErr := make(chan error, 1)
	go func() { readErr <- vs.read(ctx, frames) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	presenceEvery := 0
	for {
		select {
		case err := <-readErr:
			return err
		case f := <-frames:
			if err := vs.frame(ctx, f); err != nil {
				return err
			}
		case b, ok := <-sub.C():
			if !ok {
				return fmt.Errorf("visitor socket: fan-out ended: %w", conv.ErrUnavailable)
			}
			if err := vs.note(ctx, b); err != nil {
				return err
			}
		case <-tick.C:
			if err := vs.checkPending(ctx); err != nil {
				return err
			}
			if presenceEvery++; presenceEvery%15 == 0 {
				if now := c.agentsOnline(ctx, vs.ch); now != online {
					online = now
					if err := vs.conn.Send(ctx, map[string]any{"type": "presence", "agents_online": online}); err != nil {
						return err
					}
				}
			}
		}
	}
}

func (vs *visitorSession) frame(ctx context.Context, f wsframe.Frame) error {
	switch f.Type {
	case "send":
		ext, err := vs.c.send(ctx, vs.v, f.ClientID, f.Text, f.Parts)
		if errors.Is(err, conv.ErrInvalid) {
			return vs.conn.Error(ctx, "invalid", userMessage(err))
		}
		if err != nil {
			vs.c.cfg.Logger.WarnContext(ctx, "visitor send failed", "visitor", vs.v.ID, "err", err)
			return vs.conn.Error(ctx, "unavailable", "your message could not be sent; retry")
		}
		vs.pending[ext] = pendingSend{clientID: f.ClientID, since: vs.c.cfg.Now()}
		return nil
	case "resume":
		return vs.resume(ctx, f.AfterSeq)
	case "typing":
		return vs.typing(ctx, f.Typing)
	case "ping":
		return vs.conn.Send(ctx, map[string]string{"type": "pong"})
	}
	return vs.conn.Error(ctx, "invalid", fmt.Sprintf("unknown frame type %q", f.Type))
}

// note handles a fan-out note on the visitor's contact topic.
func (vs *visitorSession) note(ctx context.Context, b []byte) error {
	var n inbox.ContactNote
	if json.Unmarshal(b, &n) != nil || n.ChannelID != vs.v.ChannelID {
		return nil
	}
	switch n.Type {
	case "message":
		if n.Message == nil {
			return nil
		}
		return vs.deliver(ctx, *n.Message)
	case "typing":
		return vs.conn.Send(ctx, map[string]any{"type": "typing", "typing": n.Typing, "sender": publicSender(n.Sender)})
	}
	return nil
}

func publicSender(s *conv.Sender) conv.Sender {
	if s == nil {
		return conv.Sender{Type: conv.SenderAgent}
	}
	return conv.Sender{Type: s.Type, Name: s.Name}
}

// deliver sends a stored message, acking it first when it is one of this
// socket's sends.
func (vs *visitorSession) deliver(ctx context.Context, m conv.Message) error {
	view := View(m)
	if p, ok := vs.pending[m.ExternalID]; ok {
		delete(vs.pending, m.ExternalID)
		if err := vs.conn.Send(ctx, map[string]any{"type": "ack", "client_id": p.clientID, "message": view}); err != nil {
			return err
		}
	}
	return vs.conn.Send(ctx, map[string]any{"type": "message", "message": view})
}

// checkPending acks sends whose fan-out note was lost by looking in the
// store, and gives up on those not stored within AckTimeout.
func (vs *visitorSession) checkPending(ctx context.Context) error {
	now := vs.c.cfg.Now()
	for ext, p := range vs.pending {
		if now.Sub(p.since) < 2*time.Second {
			continue
		}
		var m conv.Message
		err := vs.c.cfg.Store.Read(ctx, vs.v.TenantID, func(tx storage.Tx) error {
			var err error
			m, err = tx.MessageByExternalID(ctx, vs.v.ChannelID, ext)
			return err
		})
		switch {
		case err == nil:
			if err := vs.deliver(ctx, m); err != nil {
				return err
			}
		case now.Sub(p.since) > vs.c.cfg.AckTimeout:
			delete(vs.pending, ext)
			if err := vs.conn.Send(ctx, map[string]any{"type": "error", "code": "unavailable", "client_id": p.clientID,
				"message": "your message was not confirmed in time; send it again (it will not be duplicated)"}); err != nil {
				return err
			}
		}
	}
	return nil
}

// resume sends the current conversation's messages after seq, then
// resumed.
func (vs *visitorSession) resume(ctx context.Context, after int64) error {
	cv, err := vs.c.current(ctx, vs.v)
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
				if err := vs.conn.Send(ctx, map[string]any{"type": "message", "message": View(m)}); err != nil {
					return err
				}
				after = m.Seq
			}
			if len(msgs) < 200 {
				break
			}
		}
	}
	if err != nil && !errors.Is(err, conv.ErrNotFound) {
		return vs.conn.Error(ctx, "unavailable", "history is not available right now; retry")
	}
	return vs.conn.Send(ctx, map[string]string{"type": "resumed"})
}

// typing tells the agent handling the conversation.
func (vs *visitorSession) typing(ctx context.Context, typing bool) error {
	cv, err := vs.c.current(ctx, vs.v)
	if err != nil || cv.AssigneeID.IsZero() {
		return nil
	}
	ev, _ := json.Marshal(map[string]any{"type": "typing", "conversation_id": cv.ID, "typing": typing,
		"sender": conv.Sender{Type: conv.SenderContact, ID: vs.v.ContactID.String()}})
	b, _ := json.Marshal(inbox.AgentNote{Event: ev})
	if err := vs.c.cfg.Fanout.Publish(ctx, live.AgentTopic(vs.v.TenantID, cv.AssigneeID), b); err != nil {
		vs.c.cfg.Logger.WarnContext(ctx, "typing note lost", "err", err)
	}
	return nil
}

func (vs *visitorSession) read(ctx context.Context, out chan<- wsframe.Frame) error {
	lim := wsframe.Limiter{Rate: visitorRate, Burst: visitorBurst}
	for {
		typ, b, err := vs.conn.WS().Read(ctx)
		if err != nil {
			return err
		}
		if !lim.Allow(time.Now()) {
			vs.conn.Error(ctx, "rate_limited", "you are sending too fast; slow down")
			continue
		}
		if typ != websocket.MessageText {
			vs.conn.Error(ctx, "invalid", "frames are JSON text")
			continue
		}
		f, err := wsframe.Decode(b)
		if err != nil {
			vs.conn.Error(ctx, "invalid", err.Error())
			continue
		}
		select {
		case out <- f:
		case <-ctx.Done():
			return ctx.Err()
		}
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
