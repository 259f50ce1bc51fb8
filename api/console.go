package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/inbox"
	"github.com/switchboard-hq/switchboard/core/live"
	"github.com/switchboard-hq/switchboard/core/outbound"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/internal/media"
)

// RecallWindow is how long after sending an agent may recall a message.
const RecallWindow = 2 * time.Minute

// Replier stores and sends agent replies (core/outbound).
type Replier interface {
	Reply(ctx context.Context, tenant conv.TenantID, r outbound.Reply) (conv.Message, error)
}

// EventPublisher publishes domain events (hub.Publisher).
type EventPublisher interface {
	PublishEvents(ctx context.Context, events []conv.Event) error
}

// Drainer assigns queued conversations (core/dispatch).
type Drainer interface {
	Drain(ctx context.Context, tenant conv.TenantID) (int, error)
}

// Console is what the agent API and the agent websocket need.
type Console struct {
	Store     storage.Store
	Replies   Replier
	Events    EventPublisher
	Timelines live.Timelines
	Fanout    live.Fanout
	Presence  live.Presence
	Dispatch  Drainer
	// PresenceTTL is how long a console session counts as present without
	// a refresh (default 60s; sockets refresh every third of it).
	PresenceTTL time.Duration
	Now         func() time.Time
	// Media stores files agents attach (POST /v1/uploads); without it
	// uploads answer 503.
	Media *media.Store
	// Typing, if set, also hears agents' typing, for channels that show it
	// through their own API (WeChat's customer-service typing).
	Typing TypingSink
}

// TypingSink is told when an agent starts or stops typing in a
// conversation. It is called on the agent socket's goroutine, in the
// order the agent typed: it must return at once (queue any remote call)
// and keep its errors to itself.
type TypingSink interface {
	AgentTyping(ctx context.Context, c conv.Conversation, on bool)
}

func (c *Console) validate() error {
	if c.Store == nil || c.Replies == nil || c.Events == nil || c.Timelines == nil || c.Fanout == nil || c.Presence == nil || c.Dispatch == nil {
		return errors.New("api: Console needs Store, Replies, Events, Timelines, Fanout, Presence and Dispatch")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.PresenceTTL <= 0 {
		c.PresenceTTL = 60 * time.Second
	}
	return nil
}

func (s *Server) routeConsole() {
	s.mux.HandleFunc("GET /v1/agents", s.authed(s.listAgents))
	s.mux.HandleFunc("POST /v1/agent/status", s.authed(s.setStatus))
	s.mux.HandleFunc("GET /v1/conversations", s.authed(s.listConversations))
	s.mux.HandleFunc("GET /v1/conversations/{id}", s.authed(s.getConversation))
	s.mux.HandleFunc("GET /v1/conversations/{id}/messages", s.authed(s.listMessages))
	s.mux.HandleFunc("POST /v1/conversations/{id}/messages", s.authed(s.postMessage))
	s.mux.HandleFunc("POST /v1/uploads", s.authed(s.upload))
	s.mux.HandleFunc("POST /v1/conversations/{id}/read", s.authed(s.markRead))
	s.mux.HandleFunc("POST /v1/conversations/{id}/assign", s.authed(s.assign))
	s.mux.HandleFunc("POST /v1/conversations/{id}/resolve", s.authed(s.resolve))
	s.mux.HandleFunc("POST /v1/conversations/{id}/typing", s.authed(s.typing))
	s.mux.HandleFunc("POST /v1/messages/{id}/recall", s.authed(s.recall))
	s.mux.HandleFunc("GET /v1/agent/ws", s.agentSocket)
}

// conversationRequest reads a conversation's {id} and the JSON body into
// req, writing the error and reporting false when either is bad.
func conversationRequest(s *Server, w http.ResponseWriter, r *http.Request, req any) (conv.ConversationID, bool) {
	id, err := pathID[conv.ConversationID](r, "conversation")
	if err == nil {
		err = readJSON(w, r, req)
	}
	if err != nil {
		s.writeError(w, r, err)
		return 0, false
	}
	return id, true
}

// pathID parses the {id} path value; a malformed id is simply not found.
func pathID[T ~int64](r *http.Request, what string) (T, error) {
	raw := r.PathValue("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%w: %s %q not found", conv.ErrNotFound, what, raw)
	}
	return T(id), nil
}

func queryInt(r *http.Request, name string, def, lo, hi int64) (int64, error) {
	raw := r.URL.Query().Get(name)
	if raw == "" {
		return def, nil
	}
	v, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || v < lo {
		return 0, fmt.Errorf("%w: %s must be an integer ≥ %d", conv.ErrInvalid, name, lo)
	}
	return min(v, hi), nil
}

type agentView struct {
	ID       conv.AgentID `json:"id"`
	Name     string       `json:"name"`
	Email    string       `json:"email"`
	Status   live.Status  `json:"status"`
	Open     int          `json:"open"`
	Capacity int          `json:"capacity"`
}

func (s *Server) listAgents(w http.ResponseWriter, r *http.Request, sess session) {
	c := s.cfg.Console
	ctx := r.Context()
	present, err := c.Presence.Agents(ctx, sess.agent.TenantID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var out []agentView
	err = c.Store.Read(ctx, sess.agent.TenantID, func(tx storage.Tx) error {
		agents, err := tx.Agents(ctx)
		if err != nil {
			return err
		}
		load, err := tx.OpenLoad(ctx)
		if err != nil {
			return err
		}
		out = out[:0]
		for _, a := range agents {
			if a.Disabled {
				continue
			}
			st := present[a.ID]
			if st == "" {
				st = live.Offline
			}
			capacity := a.Capacity
			if capacity <= 0 {
				capacity = 5
			}
			out = append(out, agentView{ID: a.ID, Name: a.Name, Email: a.Email, Status: st, Open: load[a.ID], Capacity: capacity})
		}
		return nil
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"agents": out})
}

type statusRequest struct {
	Status live.Status `json:"status"`
}

func (s *Server) setStatus(w http.ResponseWriter, r *http.Request, sess session) {
	var req statusRequest
	if err := readJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Status != live.Online && req.Status != live.Away {
		s.writeError(w, r, fmt.Errorf("%w: status must be online or away", conv.ErrInvalid))
		return
	}
	// Every console socket of the agent applies it to its own session.
	s.agentNote(r.Context(), sess.agent, inbox.AgentNote{Status: req.Status})
	if req.Status == live.Online {
		s.drainSoon(sess.agent.TenantID)
	}
	writeJSON(w, http.StatusOK, req)
}

func (s *Server) listConversations(w http.ResponseWriter, r *http.Request, sess session) {
	q := storage.ConversationQuery{Reader: sess.agent.ID}
	switch st := r.URL.Query().Get("status"); st {
	case "", "open":
		q.Status = conv.StatusOpen
	case "resolved":
		q.Status = conv.StatusResolved
	case "all":
	default:
		s.writeError(w, r, fmt.Errorf("%w: status must be open, resolved or all", conv.ErrInvalid))
		return
	}
	switch as := r.URL.Query().Get("assignee"); as {
	case "":
	case "me":
		q.Assignee, q.Agent = storage.AssignedTo, sess.agent.ID
	case "unassigned":
		q.Assignee = storage.Unassigned
	default:
		id, err := strconv.ParseInt(as, 10, 64)
		if err != nil || id <= 0 {
			s.writeError(w, r, fmt.Errorf("%w: assignee must be me, unassigned or an agent id", conv.ErrInvalid))
			return
		}
		q.Assignee, q.Agent = storage.AssignedTo, conv.AgentID(id)
	}
	limit, err := queryInt(r, "limit", 50, 1, 200)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q.Limit = int(limit)
	ctx := r.Context()
	var out []storage.ConversationSummary
	err = s.cfg.Console.Store.Read(ctx, sess.agent.TenantID, func(tx storage.Tx) error {
		if before := r.URL.Query().Get("before"); before != "" {
			id, err := strconv.ParseInt(before, 10, 64)
			if err != nil || id <= 0 {
				return fmt.Errorf("%w: before must be a conversation id", conv.ErrInvalid)
			}
			c, err := tx.Conversation(ctx, conv.ConversationID(id))
			if err != nil {
				return err
			}
			q.BeforeUpdated, q.BeforeID = c.UpdatedAt, c.ID
		}
		var err error
		out, err = tx.ListConversations(ctx, q)
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	for i := range out {
		if out[i].Last != nil {
			m := out[i].Last.Redacted()
			out[i].Last = &m
		}
	}
	if out == nil {
		out = []storage.ConversationSummary{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"conversations": out})
}

func (s *Server) summary(ctx context.Context, sess session, id conv.ConversationID) (storage.ConversationSummary, error) {
	var sum storage.ConversationSummary
	err := s.cfg.Console.Store.Read(ctx, sess.agent.TenantID, func(tx storage.Tx) error {
		var err error
		sum, err = tx.ConversationSummary(ctx, sess.agent.ID, id)
		return err
	})
	if sum.Last != nil {
		m := sum.Last.Redacted()
		sum.Last = &m
	}
	return sum, err
}

func (s *Server) getConversation(w http.ResponseWriter, r *http.Request, sess session) {
	id, err := pathID[conv.ConversationID](r, "conversation")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	sum, err := s.summary(r.Context(), sess, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sum)
}

func (s *Server) listMessages(w http.ResponseWriter, r *http.Request, sess session) {
	id, err := pathID[conv.ConversationID](r, "conversation")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	msgs, err := PageMessages(r, s.cfg.Console.Store, sess.agent.TenantID, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": msgs})
}

// PageMessages answers ?after_seq=N / ?before_seq=N &limit=M for one
// conversation (the agent API and the widget share it): ascending seq,
// recalled messages redacted. An unknown conversation is ErrNotFound.
func PageMessages(r *http.Request, store storage.Store, tenant conv.TenantID, id conv.ConversationID) ([]conv.Message, error) {
	limit, err := queryInt(r, "limit", 50, 1, 200)
	if err != nil {
		return nil, err
	}
	after, err := queryInt(r, "after_seq", 0, 0, 1<<62)
	if err != nil {
		return nil, err
	}
	before, err := queryInt(r, "before_seq", 0, 0, 1<<62)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	var msgs []conv.Message
	err = store.Read(ctx, tenant, func(tx storage.Tx) error {
		if _, err := tx.Conversation(ctx, id); err != nil {
			return err
		}
		var err error
		if before > 0 {
			msgs, err = tx.MessagesBefore(ctx, id, before, int(limit))
		} else {
			msgs, err = tx.Messages(ctx, id, after, int(limit))
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]conv.Message, len(msgs))
	for i, m := range msgs {
		out[i] = m.Redacted()
	}
	return out, nil
}

type postMessageRequest struct {
	Text string `json:"text"`
	// Parts are files the agent uploaded (POST /v1/uploads), cards and
	// text, sent after Text. On an email conversation the first part may
	// be an email part carrying the reply's subject, to and cc.
	Parts    []conv.Part `json:"parts"`
	ClientID string      `json:"client_id"`
}

// MaxText bounds one text message.
const MaxText = 8000

// MaxSubject bounds a reply's subject (RFC 5322's line length).
const MaxSubject = 998

// emailKinds are the channel kinds whose replies may carry an email part:
// email, and the loopback test channel, which records whatever it is sent
// and stands in for any channel in tests.
var emailKinds = []conv.ChannelKind{conv.KindEmail, conv.KindTest}

func (s *Server) postMessage(w http.ResponseWriter, r *http.Request, sess session) {
	var req postMessageRequest
	id, ok := conversationRequest(s, w, r, &req)
	if !ok {
		return
	}
	parts, err := replyParts(req, sess.agent.TenantID)
	if err == nil && parts[0].Type == conv.PartEmail {
		err = s.checkEmailChannel(r.Context(), sess.agent.TenantID, id)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	m, err := s.cfg.Console.Replies.Reply(r.Context(), sess.agent.TenantID, outbound.Reply{
		ConversationID: id,
		Sender:         conv.Sender{Type: conv.SenderAgent, ID: sess.agent.ID.String(), Name: sess.agent.Name},
		Parts:          parts,
		ClientID:       req.ClientID,
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, m.Redacted())
}

// replyParts turns an agent's request into the parts of the reply: the
// email part (if any) first, then the text, then the other parts. Only
// what an agent may send is copied.
func replyParts(req postMessageRequest, tenant conv.TenantID) ([]conv.Part, error) {
	if req.Text == "" && len(req.Parts) == 0 {
		return nil, fmt.Errorf("%w: text or parts is required", conv.ErrInvalid)
	}
	if len(req.Text) > MaxText {
		return nil, fmt.Errorf("%w: text longer than %d bytes", errTooLarge, MaxText)
	}
	var parts []conv.Part
	rest := req.Parts
	if len(rest) > 0 && rest[0].Type == conv.PartEmail {
		p, err := replyEmail(rest[0])
		if err != nil {
			return nil, err
		}
		parts, rest = append(parts, p), rest[1:]
	}
	if req.Text != "" {
		parts = append(parts, conv.Part{Type: conv.PartText, Text: req.Text})
	}
	for _, p := range rest {
		switch {
		case p.Type == conv.PartEmail:
			return nil, fmt.Errorf("%w: an email part can only be the first part", conv.ErrInvalid)
		case p.Type == conv.PartText:
			if strings.TrimSpace(p.Text) == "" {
				return nil, fmt.Errorf("%w: empty text part", conv.ErrInvalid)
			}
			if len(p.Text) > MaxText {
				return nil, fmt.Errorf("%w: text longer than %d bytes", errTooLarge, MaxText)
			}
			parts = append(parts, conv.Part{Type: conv.PartText, Text: p.Text})
		case p.Type == conv.PartCard:
			// A link or mini-program page card (WeChat shows it as one):
			// the channel never fetches its URL, the customer opens it.
			if p.Title == "" || (p.Page == "" && !strings.HasPrefix(p.URL, "https://") && !strings.HasPrefix(p.URL, "http://")) {
				return nil, fmt.Errorf("%w: a card needs a title and an http(s) url or a mini program page", conv.ErrInvalid)
			}
			parts = append(parts, conv.Part{Type: conv.PartCard, Title: p.Title, Description: p.Description, URL: p.URL,
				Thumb: p.Thumb, AppID: p.AppID, Page: p.Page, MediaID: p.MediaID})
		case (p.Type == conv.PartImage || p.Type == conv.PartFile) && media.Owned(p.URL, tenant):
			// Only files uploaded to this tenant's media: an agent cannot
			// make a channel fetch an arbitrary URL.
			parts = append(parts, conv.Part{Type: p.Type, URL: p.URL, Name: p.Name, MIME: p.MIME, Size: p.Size})
		default:
			return nil, fmt.Errorf("%w: parts must be text, files uploaded with POST /v1/uploads, or cards", conv.ErrInvalid)
		}
	}
	if len(parts) == 1 && parts[0].Type == conv.PartEmail {
		return nil, fmt.Errorf("%w: an email reply needs text or attachments besides its subject and recipients", conv.ErrInvalid)
	}
	return parts, nil
}

// replyEmail checks the email part of an agent's reply. The agent chooses
// the subject and the recipients; the connector writes every other header
// (From, Message-ID, threading) and the body, so a reply that sets them is
// refused rather than silently changed. Values go into mail headers: one
// line each, and every recipient must parse as an address.
func replyEmail(p conv.Part) (conv.Part, error) {
	e := p.Email
	if e == nil {
		return conv.Part{}, fmt.Errorf("%w: an email part needs email {subject, to, cc}", conv.ErrInvalid)
	}
	if e.From != "" || e.MessageID != "" || e.InReplyTo != "" || len(e.References) > 0 || e.HTML != "" ||
		e.Raw != "" || e.Quoted != "" || e.Auto != "" || e.Error != "" {
		return conv.Part{}, fmt.Errorf("%w: the email part of a reply carries only subject, to and cc (the channel writes the other headers)", conv.ErrInvalid)
	}
	subject := strings.TrimSpace(e.Subject)
	switch {
	case strings.ContainsAny(subject, "\r\n"):
		return conv.Part{}, fmt.Errorf("%w: the subject must be a single line", conv.ErrInvalid)
	case len(subject) > MaxSubject || !utf8.ValidString(subject):
		return conv.Part{}, fmt.Errorf("%w: the subject must be UTF-8 of at most %d bytes", conv.ErrInvalid, MaxSubject)
	case len(e.To)+len(e.Cc) > conv.MaxRecipients:
		return conv.Part{}, fmt.Errorf("%w: at most %d recipients in to and cc together", conv.ErrInvalid, conv.MaxRecipients)
	}
	to, err := recipients("to", e.To)
	if err != nil {
		return conv.Part{}, err
	}
	cc, err := recipients("cc", e.Cc)
	if err != nil {
		return conv.Part{}, err
	}
	return conv.Part{Type: conv.PartEmail, Email: &conv.Email{Subject: subject, To: to, Cc: cc}}, nil
}

// maxAddress bounds one recipient ("Name <addr>").
const maxAddress = 512

func recipients(field string, list []string) ([]string, error) {
	var out []string
	for _, a := range list {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if len(a) > maxAddress || strings.ContainsAny(a, "\r\n") {
			return nil, fmt.Errorf("%w: a %s recipient must be a single line of at most %d bytes", conv.ErrInvalid, field, maxAddress)
		}
		if _, err := mail.ParseAddress(a); err != nil {
			return nil, fmt.Errorf("%w: %s recipient %q is not an email address (write addr@example.com or Name <addr@example.com>)", conv.ErrInvalid, field, a)
		}
		out = append(out, a)
	}
	return out, nil
}

// checkEmailChannel refuses email headers on a conversation whose channel
// does not send mail.
func (s *Server) checkEmailChannel(ctx context.Context, tenant conv.TenantID, id conv.ConversationID) error {
	return s.cfg.Console.Store.Read(ctx, tenant, func(tx storage.Tx) error {
		c, err := tx.Conversation(ctx, id)
		if err != nil {
			return err
		}
		ch, err := tx.Channel(ctx, c.ChannelID)
		if err != nil {
			return err
		}
		if !slices.Contains(emailKinds, ch.Kind) {
			return fmt.Errorf("%w: email headers (subject, to, cc) can only be sent in an email conversation; this one is on a %s channel", conv.ErrInvalid, ch.Kind)
		}
		return nil
	})
}

// upload is POST /v1/uploads: a file an agent attaches to a reply, stored
// in the tenant's media; the answer's part goes into the reply's parts.
func (s *Server) upload(w http.ResponseWriter, r *http.Request, sess session) {
	if s.cfg.Console.Media == nil {
		s.writeError(w, r, fmt.Errorf("%w: uploads are not configured", conv.ErrUnavailable))
		return
	}
	part, err := s.cfg.Console.Media.Receive(w, r, sess.agent.TenantID, media.DefaultUpload)
	switch {
	case errors.Is(err, media.ErrTooLarge):
		err = fmt.Errorf("%w: %v", ErrTooLarge, err)
	case errors.Is(err, media.ErrType):
		err = fmt.Errorf("%w: %v", ErrUnsupportedType, err)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"part": part})
}

type readRequest struct {
	Seq int64 `json:"seq"`
}

func (s *Server) markRead(w http.ResponseWriter, r *http.Request, sess session) {
	var req readRequest
	id, ok := conversationRequest(s, w, r, &req)
	if !ok {
		return
	}
	if req.Seq < 0 {
		s.writeError(w, r, fmt.Errorf("%w: seq must be ≥ 0", conv.ErrInvalid))
		return
	}
	ctx := r.Context()
	var sum storage.ConversationSummary
	err := s.cfg.Console.Store.Tx(ctx, sess.agent.TenantID, func(tx storage.Tx) error {
		c, err := tx.Conversation(ctx, id)
		if err != nil {
			return err
		}
		if _, err := tx.SetRead(ctx, sess.agent.ID, id, min(req.Seq, c.LastSeq)); err != nil {
			return err
		}
		sum, err = tx.ConversationSummary(ctx, sess.agent.ID, id)
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// Every device of the agent learns it through the timeline.
	if err := s.cfg.Console.Events.PublishEvents(ctx, []conv.Event{{
		Type: conv.EventConversationRead, TenantID: sess.agent.TenantID, Conversation: &sum.Conversation,
		Agent: sess.agent.ID, ReadSeq: sum.ReadSeq, At: s.cfg.Console.Now(),
	}}); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"read_seq": sum.ReadSeq, "unread": sum.Unread})
}

type assignRequest struct {
	AgentID string `json:"agent_id"`
}

func (s *Server) assign(w http.ResponseWriter, r *http.Request, sess session) {
	var req assignRequest
	id, ok := conversationRequest(s, w, r, &req)
	if !ok {
		return
	}
	var to conv.AgentID
	if req.AgentID != "" {
		v, err := strconv.ParseInt(req.AgentID, 10, 64)
		if err != nil || v <= 0 {
			s.writeError(w, r, fmt.Errorf("%w: agent_id must be an agent id or empty", conv.ErrInvalid))
			return
		}
		to = conv.AgentID(v)
	}
	ctx := r.Context()
	var (
		got  conv.Conversation
		from conv.AgentID
	)
	err := s.cfg.Console.Store.Tx(ctx, sess.agent.TenantID, func(tx storage.Tx) error {
		c, err := tx.Conversation(ctx, id)
		if err != nil {
			return err
		}
		if !to.IsZero() {
			a, err := tx.Agent(ctx, to)
			if err != nil {
				return fmt.Errorf("%w: agent %s", conv.ErrInvalid, to)
			}
			if a.Disabled {
				return fmt.Errorf("%w: agent %s is disabled", conv.ErrInvalid, to)
			}
		}
		from = c.AssigneeID
		got, err = tx.AssignConversation(ctx, id, from, to)
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.cfg.Console.Events.PublishEvents(ctx, []conv.Event{{
		Type: conv.EventConversationAssigned, TenantID: sess.agent.TenantID, Conversation: &got, Previous: from, At: s.cfg.Console.Now(),
	}}); err != nil {
		s.writeError(w, r, err)
		return
	}
	sum, err := s.summary(ctx, sess, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sum)
}

func (s *Server) resolve(w http.ResponseWriter, r *http.Request, sess session) {
	id, err := pathID[conv.ConversationID](r, "conversation")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx := r.Context()
	var (
		c       conv.Conversation
		changed bool
	)
	now := s.cfg.Console.Now().UTC()
	err = s.cfg.Console.Store.Tx(ctx, sess.agent.TenantID, func(tx storage.Tx) error {
		var err error
		if c, err = tx.Conversation(ctx, id); err != nil {
			return err
		}
		if c.Status == conv.StatusResolved {
			changed = false
			return nil
		}
		changed = true
		c.Status, c.ResolvedAt, c.UpdatedAt = conv.StatusResolved, &now, now
		return tx.UpdateConversation(ctx, c)
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if changed {
		if err := s.cfg.Console.Events.PublishEvents(ctx, []conv.Event{{
			Type: conv.EventConversationUpdated, TenantID: sess.agent.TenantID, Conversation: &c, At: now,
		}}); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	sum, err := s.summary(ctx, sess, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sum)
}

type typingRequest struct {
	Typing bool `json:"typing"`
}

func (s *Server) typing(w http.ResponseWriter, r *http.Request, sess session) {
	var req typingRequest
	id, ok := conversationRequest(s, w, r, &req)
	if !ok {
		return
	}
	if err := s.agentTyping(r.Context(), sess.agent, id, req.Typing); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// agentTyping tells the conversation's customer (and nobody else) that the
// agent is typing. Not kept anywhere: it is only worth something now.
func (s *Server) agentTyping(ctx context.Context, agent conv.Agent, id conv.ConversationID, typing bool) error {
	var c conv.Conversation
	err := s.cfg.Console.Store.Read(ctx, agent.TenantID, func(tx storage.Tx) error {
		var err error
		c, err = tx.Conversation(ctx, id)
		return err
	})
	if err != nil {
		return err
	}
	if t := s.cfg.Console.Typing; t != nil {
		t.AgentTyping(ctx, c, typing)
	}
	note := inbox.ContactNote{Type: "typing", ContactID: c.ContactID, ChannelID: c.ChannelID, Typing: typing,
		Sender: &conv.Sender{Type: conv.SenderAgent, ID: agent.ID.String(), Name: agent.Name}}
	return publishJSON(ctx, s.cfg.Console.Fanout, live.VisitorsTopic(agent.TenantID), note)
}

func (s *Server) recall(w http.ResponseWriter, r *http.Request, sess session) {
	id, err := pathID[conv.MessageID](r, "message")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx := r.Context()
	now := s.cfg.Console.Now().UTC()
	var (
		m       conv.Message
		changed bool
	)
	err = s.cfg.Console.Store.Tx(ctx, sess.agent.TenantID, func(tx storage.Tx) error {
		var err error
		if m, err = tx.Message(ctx, id); err != nil {
			return err
		}
		if m.Direction != conv.Out || m.Sender.Type != conv.SenderAgent || m.Sender.ID != sess.agent.ID.String() {
			return fmt.Errorf("%w: only your own replies can be recalled", conv.ErrConflict)
		}
		if m.RecalledAt == nil && len(m.Parts) > 0 && m.Parts[0].Type == conv.PartEmail {
			return fmt.Errorf("%w: a sent email cannot be recalled", conv.ErrConflict)
		}
		if m.RecalledAt == nil && now.Sub(m.CreatedAt) > RecallWindow {
			return fmt.Errorf("%w: messages can be recalled within %s of sending", conv.ErrConflict, RecallWindow)
		}
		m, changed, err = tx.RecallMessage(ctx, id, now)
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if changed {
		if err := s.cfg.Console.Events.PublishEvents(ctx, []conv.Event{{
			Type: conv.EventMessageUpdated, TenantID: sess.agent.TenantID, Message: &m, At: now,
		}}); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, m.Redacted())
}

// drainSoon asks dispatch to assign queued work, off the request path.
func (s *Server) drainSoon(tenant conv.TenantID) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := s.cfg.Console.Dispatch.Drain(ctx, tenant); err != nil {
			s.cfg.Logger.Warn("dispatch drain", "tenant", tenant, "err", err)
		}
	}()
}
