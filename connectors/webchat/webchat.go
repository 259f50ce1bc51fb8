// Package webchat is the H5 web chat channel: the widget script sites
// embed, the visitor HTTP API and websocket (docs/api.md), uploads, and
// the outbound side (a reply reaches the visitor through the fan-out, so
// sending is only reporting it sent).
//
// A visitor is a browser holding a visitor token ("sbv_<tenant>_<secret>",
// stored as SHA-256) that names a contact on one channel. Anonymous
// visitors are contacts with the identity webchat_visitor/<visitor id>; a
// site that identifies its user (data-user-id + data-user-hash, an HMAC of
// the id under the channel's identity_secret) turns the visitor into the
// contact with identity webchat_user/<channel>:<user id>, merging the
// anonymous history into it.
//
// Inbound: a visitor's "send" frame becomes a conv.Inbound on the bus with
// external id "visitor:<visitor id>:<client id>", so a client id sent twice
// is stored once by core ingest. The ack goes out when the stored message
// comes back through the fan-out (or, if that note was lost, from the
// store).
package webchat

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/switchboard-hq/switchboard/internal/jsonenc"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/live"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/internal/media"
	"github.com/switchboard-hq/switchboard/internal/wspoll"
)

// Identity kinds the channel creates.
const (
	IdentityVisitor = "webchat_visitor"
	IdentityUser    = "webchat_user"
)

// Publisher is the part of hub.Publisher the connector uses.
type Publisher interface {
	PublishInbound(ctx context.Context, in conv.Inbound) error
	PublishDelivery(ctx context.Context, d conv.Delivery) error
}

// Config configures a Connector.
type Config struct {
	Store     storage.Store
	Bus       Publisher
	Fanout    live.Fanout
	Presence  live.Presence
	Timelines live.Timelines
	Media     *media.Store
	IDs       *conv.IDGen
	// Web holds widget.js (package web's FS).
	Web    fs.FS
	Logger *slog.Logger
	Now    func() time.Time
	// AckTimeout bounds how long a send waits to be stored before the
	// visitor gets an error frame (default 15s).
	AckTimeout time.Duration
}

// Connector serves the web chat channel.
type Connector struct {
	cfg    Config
	router *router
	// poller owns the visitors' sockets between frames (epoll).
	poller *wspoll.Poller
}

// New returns a Connector.
func New(cfg Config) (*Connector, error) {
	if cfg.Store == nil || cfg.Bus == nil || cfg.Fanout == nil || cfg.Presence == nil || cfg.Media == nil || cfg.IDs == nil {
		return nil, errors.New("webchat: Config.Store, Bus, Fanout, Presence, Media and IDs are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 15 * time.Second
	}
	poller, err := wspoll.NewPoller(wspoll.PollerConfig{Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("webchat: %w", err)
	}
	c := &Connector{cfg: cfg, poller: poller}
	c.router = newRouter(c)
	return c, nil
}

// Close disconnects every visitor socket (going away, 1001); the widgets
// reconnect to another node or after a restart.
func (c *Connector) Close() error { return c.poller.Close() }

// ChannelConfig is a webchat channel's non-secret configuration.
type ChannelConfig struct {
	Title    string `json:"title"`
	Greeting string `json:"greeting"`
	Color    string `json:"color"`
	// AllowedOrigins lists the sites that may embed the widget
	// ("https://shop.example.com"); empty allows any.
	AllowedOrigins []string `json:"allowed_origins"`
	// UploadMaxBytes limits one upload (default 10 MiB).
	UploadMaxBytes int64 `json:"upload_max_bytes"`
	// UploadTypes is the MIME allowlist (default: common images, PDF, text).
	UploadTypes []string `json:"upload_types"`
}

// Default upload settings.
var (
	DefaultUploadMaxBytes = media.DefaultUpload.MaxBytes
	DefaultUploadTypes    = media.DefaultUpload.Types
)

// ParseConfig decodes and checks a channel's config.
func ParseConfig(raw json.RawMessage) (ChannelConfig, error) {
	var c ChannelConfig
	if len(raw) > 0 {
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		if err := dec.Decode(&c); err != nil {
			return c, fmt.Errorf("webchat config: %w: %v", conv.ErrInvalid, err)
		}
	}
	for _, o := range c.AllowedOrigins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return c, fmt.Errorf("webchat config: %w: allowed origin %q must look like https://host[:port]", conv.ErrInvalid, o)
		}
	}
	if c.UploadMaxBytes <= 0 {
		c.UploadMaxBytes = DefaultUploadMaxBytes
	}
	if len(c.UploadTypes) == 0 {
		c.UploadTypes = DefaultUploadTypes
	}
	if c.Color == "" {
		c.Color = "#2563eb"
	}
	return c, nil
}

// originAllowed reports whether a browser request's Origin may use the
// channel. Requests without Origin (not from a browser page) pass: the
// allowlist protects visitors' browsers, not the API.
func (c ChannelConfig) originAllowed(origin string) bool {
	if origin == "" || len(c.AllowedOrigins) == 0 {
		return true
	}
	return slices.ContainsFunc(c.AllowedOrigins, func(o string) bool {
		return strings.EqualFold(strings.TrimSuffix(o, "/"), origin)
	})
}

// UserHash is what a site computes for data-user-hash: hex HMAC-SHA256 of
// the user id under the channel's identity secret.
func UserHash(secret, userID string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(userID))
	return hex.EncodeToString(m.Sum(nil))
}

// token makes a visitor token for tenant and its stored hash.
func newToken(tenant conv.TenantID) (string, []byte) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	tok := "sbv_" + tenant.String() + "_" + base64.RawURLEncoding.EncodeToString(b[:])
	return tok, hashToken(tok)
}

func hashToken(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

// tokenTenant reads the tenant out of a visitor token.
func tokenTenant(tok string) (conv.TenantID, bool) {
	rest, ok := strings.CutPrefix(tok, "sbv_")
	if !ok || len(tok) > 128 {
		return 0, false
	}
	t, _, ok := strings.Cut(rest, "_")
	if !ok {
		return 0, false
	}
	id, err := conv.ParseID[conv.TenantID](t)
	return id, err == nil && !id.IsZero()
}

// visitor resolves a visitor token; anything unknown is ErrUnauthorized.
func (c *Connector) visitor(ctx context.Context, tok string) (conv.Visitor, conv.Channel, ChannelConfig, error) {
	tenant, ok := tokenTenant(tok)
	if !ok {
		return conv.Visitor{}, conv.Channel{}, ChannelConfig{}, fmt.Errorf("%w: unknown visitor token", conv.ErrUnauthorized)
	}
	var (
		v  conv.Visitor
		ch conv.Channel
	)
	err := c.cfg.Store.Read(ctx, tenant, func(tx storage.Tx) error {
		var err error
		if v, err = tx.VisitorByHash(ctx, hashToken(tok)); err != nil {
			return err
		}
		ch, err = tx.Channel(ctx, v.ChannelID)
		return err
	})
	if errors.Is(err, conv.ErrNotFound) {
		return v, ch, ChannelConfig{}, fmt.Errorf("%w: unknown visitor token", conv.ErrUnauthorized)
	}
	if err != nil {
		return v, ch, ChannelConfig{}, err
	}
	if ch.Disabled {
		return v, ch, ChannelConfig{}, fmt.Errorf("%w: this chat is closed", conv.ErrNotFound)
	}
	cfg, err := ParseConfig(ch.Config)
	return v, ch, cfg, err
}

// channel finds a webchat channel by id alone (what the widget knows).
func (c *Connector) channel(ctx context.Context, id conv.ChannelID) (conv.Channel, ChannelConfig, error) {
	notFound := fmt.Errorf("%w: web chat channel %s not found", conv.ErrNotFound, id)
	tenant, err := c.cfg.Store.ChannelTenant(ctx, id)
	if errors.Is(err, conv.ErrNotFound) {
		return conv.Channel{}, ChannelConfig{}, notFound
	}
	if err != nil {
		return conv.Channel{}, ChannelConfig{}, err
	}
	var ch conv.Channel
	if err := c.cfg.Store.Read(ctx, tenant, func(tx storage.Tx) error {
		var err error
		ch, err = tx.Channel(ctx, id)
		return err
	}); err != nil {
		return ch, ChannelConfig{}, err
	}
	if ch.Kind != conv.KindWebchat || ch.Disabled {
		return conv.Channel{}, ChannelConfig{}, notFound
	}
	cfg, err := ParseConfig(ch.Config)
	return ch, cfg, err
}

// agentsOnline reports whether an agent who could answer is online.
func (c *Connector) agentsOnline(ctx context.Context, ch conv.Channel) bool {
	present, err := c.cfg.Presence.Agents(ctx, ch.TenantID)
	if err != nil || len(present) == 0 {
		return false
	}
	if ch.GroupID.IsZero() {
		return slices.Contains(valuesOf(present), live.Online)
	}
	var agents []conv.Agent
	_ = c.cfg.Store.Read(ctx, ch.TenantID, func(tx storage.Tx) error {
		var err error
		agents, err = tx.Agents(ctx)
		return err
	})
	for _, a := range agents {
		if present[a.ID] == live.Online && slices.Contains(a.GroupIDs, ch.GroupID) {
			return true
		}
	}
	return false
}

func valuesOf(m map[conv.AgentID]live.Status) []live.Status {
	out := make([]live.Status, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// Message is a message as the visitor sees it (docs/api.md MESSAGE).
type Message struct {
	ID             conv.MessageID      `json:"id"`
	ConversationID conv.ConversationID `json:"conversation_id"`
	Seq            int64               `json:"seq"`
	Direction      conv.Direction      `json:"direction"`
	Sender         conv.Sender         `json:"sender"`
	Parts          []conv.Part         `json:"parts"`
	ClientID       string              `json:"client_id,omitempty"`
	Status         conv.MessageStatus  `json:"status"`
	CreatedAt      time.Time           `json:"created_at"`
	RecalledAt     *time.Time          `json:"recalled_at,omitempty"`
}

// View shapes a stored message for the visitor: no internal fields, the
// visitor's own client id recovered from the external id, content of a
// recalled message removed.
func View(m conv.Message) Message {
	m = m.Redacted()
	out := Message{ID: m.ID, ConversationID: m.ConversationID, Seq: m.Seq, Direction: m.Direction, Sender: m.Sender,
		Parts: m.Parts, ClientID: m.ClientID, Status: m.Status, CreatedAt: m.CreatedAt, RecalledAt: m.RecalledAt}
	if m.Direction == conv.In {
		out.ClientID = clientIDOf(m.ExternalID)
	}
	if out.Parts == nil {
		out.Parts = []conv.Part{}
	}
	return out
}

func jsonMarshal(v any) ([]byte, error) { return jsonenc.Marshal(v) }

func externalID(v conv.Visitor, clientID string) string {
	return "visitor:" + v.ID.String() + ":" + clientID
}

func clientIDOf(ext string) string {
	rest, ok := strings.CutPrefix(ext, "visitor:")
	if !ok {
		return ""
	}
	_, cid, _ := strings.Cut(rest, ":")
	return cid
}

// Outbound returns the handler for outbound.webchat: the visitor already
// sees the reply through the fan-out, so the connector only reports it
// sent.
func (c *Connector) Outbound(ctx context.Context, out conv.Outbound) error {
	return c.cfg.Bus.PublishDelivery(ctx, conv.Delivery{TenantID: out.TenantID, MessageID: out.Message.ID, Status: conv.MsgSent})
}
