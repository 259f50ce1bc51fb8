package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/switchboard-hq/switchboard/internal/jsonenc"

	"github.com/coder/websocket"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/inbox"
	"github.com/switchboard-hq/switchboard/core/live"
	"github.com/switchboard-hq/switchboard/internal/wsframe"
)

// timelinePage is how many timeline entries one read sends.
const timelinePage = 200

// catchUpEvery is how often a console socket reads its timeline without
// being nudged.
const catchUpEvery = 2 * time.Second

func publishJSON(ctx context.Context, f live.Fanout, topic string, v any) error {
	b, err := jsonenc.Marshal(v)
	if err != nil {
		return err
	}
	return f.Publish(ctx, topic, b)
}

func (s *Server) agentNote(ctx context.Context, a conv.Agent, note inbox.AgentNote) {
	if err := publishJSON(ctx, s.cfg.Console.Fanout, live.AgentTopic(a.TenantID, a.ID), note); err != nil {
		s.cfg.Logger.WarnContext(ctx, "agent note lost", "agent", a.ID, "err", err)
	}
}

// agentSocket is GET /v1/agent/ws: the console's live connection. See
// docs/api.md for the frames. The socket sends nothing from the timeline
// until the client resumes from its cursor; from then on it sends every
// entry after what it sent, in order, whenever the fan-out says the
// timeline grew.
func (s *Server) agentSocket(w http.ResponseWriter, r *http.Request) {
	bearer := r.URL.Query().Get("token")
	if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		bearer = strings.TrimSpace(b)
	}
	if bearer == "" {
		s.writeError(w, r, fmt.Errorf("%w: missing token", conv.ErrUnauthorized))
		return
	}
	agent, tok, err := s.cfg.Auth.Authenticate(r.Context(), bearer)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// The console is served from this origin; other origins may not
	// open an agent's socket with a stolen-but-valid token in a page.
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept wrote the HTTP error
	}
	clearDeadlines(w)
	conn := wsframe.New(ws)
	as := &agentSession{s: s, c: s.cfg.Console, agent: agent, token: tok, bearer: bearer, conn: conn,
		session: "ws-" + tok.ID.String() + "-" + fmt.Sprint(time.Now().UnixNano()), status: live.Online}
	err = as.run(r.Context())
	switch {
	case errors.Is(err, errRevoked):
		ws.Close(wsframe.CloseUnauthorized, "token revoked or expired")
	case websocket.CloseStatus(err) != -1, errors.Is(err, context.Canceled):
		ws.CloseNow()
	default:
		ws.Close(websocket.StatusInternalError, "server error")
	}
}

// clearDeadlines lifts the http.Server's read and write timeouts from a
// hijacked websocket connection; sockets live for hours.
func clearDeadlines(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
}

var errRevoked = errors.New("token revoked")

type agentSession struct {
	s       *Server
	c       *Console
	agent   conv.Agent
	token   conv.Token
	bearer  string
	conn    *wsframe.Conn
	session string
	status  live.Status
}

func (as *agentSession) run(ctx context.Context) error {
	// The reader keeps the request's context: cancelling a websocket
	// Read closes the connection, and the caller still has a close frame
	// (4401) to send once run returns.
	readCtx := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t, a := as.agent.TenantID, as.agent.ID
	sub, err := as.c.Fanout.Subscribe(ctx, live.AgentTopic(t, a))
	if err != nil {
		return err
	}
	defer sub.Close()
	if err := as.c.Presence.Set(ctx, t, a, as.session, as.status, as.c.PresenceTTL); err != nil {
		return err
	}
	as.presenceChanged(ctx)
	defer func() {
		ctx := context.WithoutCancel(ctx)
		as.c.Presence.Remove(ctx, t, a, as.session)
		as.presenceChanged(ctx)
	}()
	as.s.drainSoon(t)
	head, err := as.c.Timelines.Head(ctx, t, a)
	if err != nil {
		return err
	}
	if err := as.conn.Send(ctx, map[string]any{"type": "hello", "agent": as.agent, "cursor": head}); err != nil {
		return err
	}

	frames := make(chan wsframe.Frame)
	readErr := make(chan error, 1)
	go func() { readErr <- as.read(readCtx, frames) }()

	refresh := time.NewTicker(as.c.PresenceTTL / 3)
	defer refresh.Stop()
	catchUp := time.NewTicker(catchUpEvery)
	defer catchUp.Stop()
	var (
		resumed bool
		sent    int64
	)
	for {
		select {
		case err := <-readErr:
			return err
		case f := <-frames:
			switch f.Type {
			case "resume":
				resumed, sent = true, f.Cursor
				if err := as.catchUp(ctx, &sent); err != nil {
					return err
				}
				if err := as.conn.Send(ctx, map[string]any{"type": "resumed", "cursor": sent}); err != nil {
					return err
				}
			case "status":
				st := live.Status(f.Status)
				if st != live.Online && st != live.Away {
					as.conn.Error(ctx, "invalid", "status must be online or away")
					continue
				}
				as.status = st
				if err := as.c.Presence.Set(ctx, t, a, as.session, st, as.c.PresenceTTL); err != nil {
					return err
				}
				if st == live.Online {
					as.s.drainSoon(t)
				}
				as.presenceChanged(ctx)
				// The agent's other devices follow.
				as.s.agentNote(ctx, as.agent, inbox.AgentNote{Status: st})
			case "typing":
				if err := as.s.agentTyping(ctx, as.agent, f.ConversationID, f.Typing); err != nil {
					as.conn.Error(ctx, "not_found", "conversation not found")
				}
			case "ping":
				if err := as.conn.Send(ctx, map[string]string{"type": "pong"}); err != nil {
					return err
				}
			default:
				as.conn.Error(ctx, "invalid", fmt.Sprintf("unknown frame type %q", f.Type))
			}
		case b, ok := <-sub.C():
			if !ok {
				return fmt.Errorf("agent socket: fan-out subscription ended: %w", conv.ErrUnavailable)
			}
			var note inbox.AgentNote
			if json.Unmarshal(b, &note) != nil {
				continue
			}
			switch {
			case note.Status != "" && note.Status != as.status:
				as.status = note.Status
				if err := as.c.Presence.Set(ctx, t, a, as.session, as.status, as.c.PresenceTTL); err != nil {
					return err
				}
				if err := as.conn.Send(ctx, map[string]any{"type": "status", "status": as.status}); err != nil {
					return err
				}
			case len(note.Event) > 0:
				if err := as.conn.SendRaw(ctx, wsframe.EventFrame(0, note.Event)); err != nil {
					return err
				}
			case note.Cursor > sent && resumed:
				if err := as.catchUp(ctx, &sent); err != nil {
					return err
				}
			}
		case <-refresh.C:
			// The token may have been revoked or expired meanwhile.
			if _, _, err := as.s.cfg.Auth.Authenticate(ctx, as.bearer); err != nil {
				if errors.Is(err, conv.ErrUnauthorized) {
					return errRevoked
				}
				continue
			}
			if err := as.c.Presence.Set(ctx, t, a, as.session, as.status, as.c.PresenceTTL); err != nil {
				as.s.cfg.Logger.WarnContext(ctx, "presence refresh", "agent", a, "err", err)
			}
		case <-catchUp.C:
			// Fan-out nudges can be lost (a full buffer, a Redis
			// reconnect); the timeline cannot. A socket that missed the
			// last nudge still delivers within a tick.
			if resumed {
				if err := as.catchUp(ctx, &sent); err != nil {
					return err
				}
			}
		}
	}
}

// presenceChanged tells the tenant's visitor sockets to re-check whether
// an agent is online ("agents are offline — leave a message").
func (as *agentSession) presenceChanged(ctx context.Context) {
	if err := publishJSON(ctx, as.c.Fanout, live.VisitorsTopic(as.agent.TenantID), inbox.ContactNote{Type: "presence"}); err != nil {
		as.s.cfg.Logger.WarnContext(ctx, "presence note lost", "err", err)
	}
}

// catchUp sends every timeline entry after *sent, advancing it. A cursor
// older than the timeline keeps gets a reset frame instead.
func (as *agentSession) catchUp(ctx context.Context, sent *int64) error {
	for {
		entries, err := as.c.Timelines.Since(ctx, as.agent.TenantID, as.agent.ID, *sent, timelinePage)
		if errors.Is(err, live.ErrCursorExpired) {
			head, err := as.c.Timelines.Head(ctx, as.agent.TenantID, as.agent.ID)
			if err != nil {
				return err
			}
			*sent = head
			return as.conn.Send(ctx, map[string]any{"type": "reset", "cursor": head})
		}
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := as.conn.SendRaw(ctx, wsframe.EventFrame(e.Cursor, e.Event)); err != nil {
				return err
			}
			*sent = e.Cursor
		}
		if len(entries) < timelinePage {
			return nil
		}
	}
}

// read decodes client frames and hands them over, answering bad frames and
// floods with an error frame.
func (as *agentSession) read(ctx context.Context, out chan<- wsframe.Frame) error {
	lim := wsframe.Limiter{Rate: 20, Burst: 40}
	for {
		typ, b, err := as.conn.WS().Read(ctx)
		if err != nil {
			return err
		}
		if !lim.Allow(time.Now()) {
			as.conn.Error(ctx, "rate_limited", "too many frames; slow down")
			continue
		}
		if typ != websocket.MessageText {
			as.conn.Error(ctx, "invalid", "frames are JSON text")
			continue
		}
		f, err := wsframe.Decode(b)
		if err != nil {
			as.conn.Error(ctx, "invalid", err.Error())
			continue
		}
		select {
		case out <- f:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
