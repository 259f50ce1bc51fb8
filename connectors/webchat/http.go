package webchat

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/switchboard-hq/switchboard/api"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/internal/media"
)

// Routes registers the channel's HTTP surface on mux.
func (c *Connector) Routes(handle func(pattern string, h http.Handler)) {
	handle("GET /widget.js", http.HandlerFunc(c.widgetJS))
	handle("GET /v1/widget/config", c.cors(c.config))
	handle("POST /v1/widget/sessions", c.cors(c.sessions))
	handle("GET /v1/widget/messages", c.cors(c.messages))
	handle("POST /v1/widget/uploads", c.cors(c.upload))
	handle("OPTIONS /v1/widget/", c.cors(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	handle("GET /v1/widget/ws", http.HandlerFunc(c.socket))
	handle("GET /v1/media/{key...}", http.HandlerFunc(c.serveMedia))
}

func (c *Connector) fail(w http.ResponseWriter, r *http.Request, err error) {
	api.WriteError(w, r, c.cfg.Logger, err)
}

// cors lets the widget call the API from the sites that embed it. Which
// origins may is decided per channel in each handler; the headers only
// echo the caller's origin so the browser lets the answer through.
func (c *Connector) cors(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); o != "" {
			hd := w.Header()
			hd.Set("Access-Control-Allow-Origin", o)
			hd.Set("Vary", "Origin")
			hd.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			hd.Set("Access-Control-Allow-Headers", "Content-Type, Authorization")
			hd.Set("Access-Control-Max-Age", "600")
		}
		h(w, r)
	})
}

func (c *Connector) widgetJS(w http.ResponseWriter, r *http.Request) {
	if c.cfg.Web == nil {
		http.NotFound(w, r)
		return
	}
	b, err := fs.ReadFile(c.cfg.Web, "widget.js")
	if err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("Cross-Origin-Resource-Policy", "cross-origin")
	w.Write(b)
}

func checkOrigin(cfg ChannelConfig, r *http.Request) error {
	if !cfg.originAllowed(r.Header.Get("Origin")) {
		return fmt.Errorf("%w: this site (%s) is not allowed to use the chat widget of this channel", api.ErrDenied, r.Header.Get("Origin"))
	}
	return nil
}

func (c *Connector) config(w http.ResponseWriter, r *http.Request) {
	id, err := conv.ParseID[conv.ChannelID](r.URL.Query().Get("channel_id"))
	if err != nil {
		c.fail(w, r, fmt.Errorf("%w: channel_id is required", conv.ErrInvalid))
		return
	}
	ch, cfg, err := c.channel(r.Context(), id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if err := checkOrigin(cfg, r); err != nil {
		c.fail(w, r, err)
		return
	}
	title := cfg.Title
	if title == "" {
		title = ch.Name
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{
		"channel_id": ch.ID, "title": title, "greeting": cfg.Greeting, "color": cfg.Color,
		"agents_online": c.agentsOnline(r.Context(), ch),
		"upload":        map[string]any{"max_bytes": cfg.UploadMaxBytes, "types": cfg.UploadTypes},
	})
}

type sessionRequest struct {
	ChannelID    conv.ChannelID `json:"channel_id"`
	VisitorToken string         `json:"visitor_token"`
	User         *struct {
		ID   string `json:"id"`
		Name string `json:"name"`
		Hash string `json:"hash"`
	} `json:"user"`
}

func (c *Connector) sessions(w http.ResponseWriter, r *http.Request) {
	var req sessionRequest
	if err := api.ReadJSON(w, r, &req); err != nil {
		c.fail(w, r, err)
		return
	}
	ctx := r.Context()
	ch, cfg, err := c.channel(ctx, req.ChannelID)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if err := checkOrigin(cfg, r); err != nil {
		c.fail(w, r, err)
		return
	}
	if u := req.User; u != nil {
		switch {
		case u.ID == "" || len(u.ID) > 256 || !utf8.ValidString(u.ID):
			c.fail(w, r, fmt.Errorf("%w: user.id must be 1..256 bytes of UTF-8", conv.ErrInvalid))
			return
		case len(u.Name) > 256 || !utf8.ValidString(u.Name):
			c.fail(w, r, fmt.Errorf("%w: user.name longer than 256 bytes", conv.ErrInvalid))
			return
		}
		secret := ch.Secrets["identity_secret"]
		if secret == "" {
			c.fail(w, r, fmt.Errorf("%w: this channel does not identify users (no identity_secret is set)", api.ErrDenied))
			return
		}
		if !hmacEqualHex(u.Hash, UserHash(secret, u.ID)) {
			c.fail(w, r, fmt.Errorf("%w: identity hash does not match: data-user-hash must be hex HMAC-SHA256(user id, the channel's identity secret)", api.ErrDenied))
			return
		}
	}

	token := req.VisitorToken
	var v conv.Visitor
	err = c.cfg.Store.Tx(ctx, ch.TenantID, func(tx storage.Tx) error {
		v = conv.Visitor{}
		if token != "" {
			if t, ok := tokenTenant(token); ok && t == ch.TenantID {
				got, err := tx.VisitorByHash(ctx, hashToken(token))
				if err == nil && got.ChannelID == ch.ID {
					v = got
				} else if err != nil && !errors.Is(err, conv.ErrNotFound) {
					return err
				}
			}
		}
		if v.ID.IsZero() {
			// Unknown or foreign token: a new anonymous visitor.
			var hash []byte
			token, hash = newToken(ch.TenantID)
			v = conv.Visitor{ID: conv.NewID[conv.VisitorID](c.cfg.IDs), TenantID: ch.TenantID, ChannelID: ch.ID,
				Hash: hash, CreatedAt: c.cfg.Now().UTC()}
			contact, _, err := tx.EnsureContact(ctx, conv.Identity{Kind: IdentityVisitor, ExternalID: v.ID.String()}, "Visitor "+v.ID.String()[len(v.ID.String())-4:])
			if err != nil {
				return err
			}
			v.ContactID = contact.ID
			if err := tx.CreateVisitor(ctx, v); err != nil {
				return err
			}
		}
		if u := req.User; u != nil {
			user, _, err := tx.EnsureContact(ctx, conv.Identity{Kind: IdentityUser, ExternalID: ch.ID.String() + ":" + u.ID}, u.Name)
			if err != nil {
				return err
			}
			if user.ID != v.ContactID {
				if err := tx.MergeContacts(ctx, v.ContactID, user.ID); err != nil {
					return err
				}
				v.ContactID = user.ID
				if err := tx.UpdateVisitorContact(ctx, v.ID, user.ID); err != nil {
					return err
				}
			}
			if u.Name != "" && u.Name != user.Name {
				if err := tx.RenameContact(ctx, user.ID, u.Name); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	resp := map[string]any{"visitor_token": token, "contact_id": v.ContactID}
	if cv, err := c.current(ctx, v); err == nil {
		resp["conversation_id"] = cv.ID
	}
	api.WriteJSON(w, http.StatusOK, resp)
}

func hmacEqualHex(got, want string) bool {
	return len(got) == len(want) && hmac.Equal([]byte(strings.ToLower(got)), []byte(want))
}

// current is the visitor's conversation on the channel: the open one, or
// the latest. ErrNotFound before the first message.
func (c *Connector) current(ctx context.Context, v conv.Visitor) (conv.Conversation, error) {
	var cv conv.Conversation
	err := c.cfg.Store.Read(ctx, v.TenantID, func(tx storage.Tx) error {
		var err error
		cv, err = tx.LatestConversation(ctx, v.ChannelID, v.ContactID)
		return err
	})
	return cv, err
}

func bearerOrQuery(r *http.Request) string {
	if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(b)
	}
	return r.URL.Query().Get("token")
}

func (c *Connector) messages(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	v, _, cfg, err := c.visitor(ctx, bearerOrQuery(r))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if err := checkOrigin(cfg, r); err != nil {
		c.fail(w, r, err)
		return
	}
	cv, err := c.current(ctx, v)
	if errors.Is(err, conv.ErrNotFound) {
		api.WriteJSON(w, http.StatusOK, map[string]any{"messages": []Message{}})
		return
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	msgs, err := api.PageMessages(r, c.cfg.Store, v.TenantID, cv.ID)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	out := make([]Message, len(msgs))
	for i, m := range msgs {
		out[i] = View(m)
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"conversation_id": cv.ID, "messages": out})
}

// upload stores one file from a visitor. The type is sniffed from the
// bytes, never taken from the client, and must be in the allowlist.
func (c *Connector) upload(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	v, _, cfg, err := c.visitor(ctx, bearerOrQuery(r))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if err := checkOrigin(cfg, r); err != nil {
		c.fail(w, r, err)
		return
	}
	part, err := c.cfg.Media.Receive(w, r, v.TenantID, media.Upload{MaxBytes: cfg.UploadMaxBytes, Types: cfg.UploadTypes})
	if err != nil {
		c.fail(w, r, mediaError(err))
		return
	}
	api.WriteJSON(w, http.StatusCreated, map[string]any{"part": part})
}

// mediaError gives an upload error its HTTP meaning.
func mediaError(err error) error {
	switch {
	case errors.Is(err, media.ErrTooLarge):
		return fmt.Errorf("%w: %v", api.ErrTooLarge, err)
	case errors.Is(err, media.ErrType):
		return fmt.Errorf("%w: %v", api.ErrUnsupportedType, err)
	}
	return err
}

func (c *Connector) serveMedia(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	f, err := c.cfg.Media.Open(key, r.URL.Query())
	if errors.Is(err, media.ErrDenied) {
		c.fail(w, r, fmt.Errorf("%w: %v", api.ErrDenied, err))
		return
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		c.fail(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "private, max-age=3600")
	if isHTML(key) {
		// A mail's sanitized HTML body, shown in the console's sandboxed
		// frame (mediahtml.go).
		c.serveHTML(w, r, key, f, st)
		return
	}
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox; frame-ancestors 'none'")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	if !isImage(key) {
		// Everything else downloads: a PDF, a text file or an .eml
		// never renders on our origin.
		h.Set("Content-Disposition", "attachment")
	}
	http.ServeContent(w, r, key, st.ModTime(), f)
}

// isImage reports whether media shows inline: raster images only (never
// SVG, which can carry script). media.Put names files by the first
// extension the machine's MIME table lists (image/jpeg may be ".jfif"),
// so the table is asked too.
func isImage(key string) bool {
	switch mediaType(key) {
	case "image/png", "image/jpeg", "image/gif", "image/webp":
		return true
	}
	return false
}

// mediaType is the MIME type the extension of key stands for, without
// parameters ("" when unknown).
func mediaType(key string) string {
	ext := path.Ext(key)
	switch ext {
	case ".png":
		return "image/png"
	case ".jpg", ".jpeg", ".jfif", ".jpe":
		return "image/jpeg"
	case ".gif":
		return "image/gif"
	case ".webp":
		return "image/webp"
	case ".html", ".htm", ".ehtml", ".shtml":
		return "text/html"
	}
	mt, _, _ := mime.ParseMediaType(mime.TypeByExtension(ext))
	return mt
}

// Send publishes a visitor's message to the bus. parts may only carry
// media this server issued.
func (c *Connector) send(ctx context.Context, v conv.Visitor, clientID, text string, parts []conv.Part) (string, error) {
	if clientID == "" {
		return "", fmt.Errorf("%w: client_id is required", conv.ErrInvalid)
	}
	if len(text) > api.MaxText {
		return "", fmt.Errorf("%w: message longer than %d bytes", conv.ErrInvalid, api.MaxText)
	}
	var all []conv.Part
	if strings.TrimSpace(text) != "" {
		all = append(all, conv.Part{Type: conv.PartText, Text: text})
	}
	for _, p := range parts {
		if (p.Type != conv.PartImage && p.Type != conv.PartFile) || !strings.HasPrefix(p.URL, media.URLPrefix+v.TenantID.String()+"/") {
			return "", fmt.Errorf("%w: only files uploaded to this chat can be attached", conv.ErrInvalid)
		}
		all = append(all, conv.Part{Type: p.Type, URL: p.URL, Name: p.Name, MIME: p.MIME, Size: p.Size})
	}
	if len(all) == 0 {
		return "", fmt.Errorf("%w: empty message", conv.ErrInvalid)
	}
	ext := externalID(v, clientID)
	err := c.cfg.Bus.PublishInbound(ctx, conv.Inbound{
		TenantID: v.TenantID, ChannelID: v.ChannelID, ExternalID: ext,
		From:  conv.Identity{Kind: IdentityVisitor, ExternalID: v.ID.String()},
		Parts: all, SentAt: c.cfg.Now().UTC(),
	})
	return ext, err
}
