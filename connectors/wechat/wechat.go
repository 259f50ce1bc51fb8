// Package wechat is the WeChat customer-service connector: Official Account
// (kind wechat_oa) and Mini Program (kind wechat_mp) channels.
//
// Inbound, WeChat pushes to /v1/hooks/wechat/{channel}. The handler checks
// the signature before it parses anything, rejects timestamps more than
// five minutes off, decrypts compatible/safe-mode pushes (current or
// previous EncodingAESKey), normalizes the push (package wire), publishes
// it on the bus and only then answers "success" — never a passive reply,
// never an encrypted empty body. WeChat retries a push it got no answer
// to; the envelope's external id (wire.Normalized.ExternalID) makes every
// retry, and any replay inside the timestamp window, one stored message.
//
// A person is a contact per openid: identity kind IdentityOpenID with
// external id "<app id>:<openid>" (openids are unique per app only).
//
// The byte-level protocol lives in wire; the server API client in wxapi;
// the fake WeChat used by tests in wechattest.
package wechat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-hq/switchboard/connectors/wechat/wire"
	"github.com/switchboard-hq/switchboard/connectors/wechat/wxapi"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/hub"
	"github.com/switchboard-hq/switchboard/internal/media"
)

// Identity kinds the connector creates.
const (
	// IdentityOpenID: external id "<app id>:<openid>".
	IdentityOpenID = "wechat_openid"
	// IdentityUnionID: external id is the unionid, shared by the apps of
	// one Open Platform account.
	IdentityUnionID = "wechat_unionid"
)

// DefaultAPIBase is WeChat's API host; channels behind an egress proxy set
// api_base instead.
const DefaultAPIBase = "https://api.weixin.qq.com"

// Secret config fields.
const (
	SecretAppSecret   = "app_secret"
	SecretToken       = "token"
	SecretAESKey      = "encoding_aes_key"
	SecretPrevAESKey  = "previous_encoding_aes_key"
	defaultMediaLimit = 10 << 20
)

// RepliesPerMessage is how many customer-service messages WeChat accepts
// after one message of the customer (errcode 45047 past it).
const RepliesPerMessage = 5

// ReplyQuota is the per-kind reply quota for core/outbound.
func ReplyQuota() map[conv.ChannelKind]int {
	return map[conv.ChannelKind]int{conv.KindWeChatOA: RepliesPerMessage, conv.KindWeChatMP: RepliesPerMessage}
}

// Kinds registers wechat_oa and wechat_mp with the hub.
func Kinds() []hub.Kind {
	secrets := []string{SecretAppSecret, SecretToken, SecretAESKey, SecretPrevAESKey}
	required := []string{"app_id", SecretAppSecret, SecretToken}
	return []hub.Kind{
		{Name: conv.KindWeChatOA, Secrets: secrets, Required: required, Check: checkConfig(conv.KindWeChatOA), CheckSecrets: checkSecrets},
		{Name: conv.KindWeChatMP, Secrets: secrets, Required: required, Check: checkConfig(conv.KindWeChatMP), CheckSecrets: checkSecrets},
	}
}

// configFields are the non-secret config fields; anything else is refused
// at creation, so that a misspelled secret ("encodingAESKey") is not
// stored in the clear.
var configFields = []string{"app_id", "api_base", "data_format", "original_id", "media_max_bytes"}

func checkConfig(kind conv.ChannelKind) func(map[string]any) error {
	return func(fields map[string]any) error {
		for name := range fields {
			if !slices.Contains(configFields, name) {
				return fmt.Errorf("unknown field %q (config fields: %s; secret fields: %s, %s, %s, %s)", name,
					strings.Join(configFields, ", "), SecretAppSecret, SecretToken, SecretAESKey, SecretPrevAESKey)
			}
		}
		raw, err := json.Marshal(fields)
		if err != nil {
			return err
		}
		_, err = ParseConfig(kind, raw)
		return err
	}
}

// checkSecrets checks the secrets' shapes as WeChat's console defines them.
func checkSecrets(secrets map[string]string) error {
	if t := secrets[SecretToken]; len(t) < 3 || len(t) > 32 {
		return fmt.Errorf("%s must be 3 to 32 characters, as in WeChat's server configuration", SecretToken)
	}
	for _, name := range []string{SecretAESKey, SecretPrevAESKey} {
		if k, ok := secrets[name]; ok && k != "" {
			if _, err := wire.DecodeAESKey(k); err != nil {
				return fmt.Errorf("%s is not an EncodingAESKey (43 characters from WeChat's console)", name)
			}
		}
	}
	if secrets[SecretPrevAESKey] != "" && secrets[SecretAESKey] == "" {
		return fmt.Errorf("%s needs %s", SecretPrevAESKey, SecretAESKey)
	}
	return nil
}

// ChannelConfig is a WeChat channel's non-secret configuration.
type ChannelConfig struct {
	AppID string `json:"app_id"`
	// APIBase is where API calls go (default DefaultAPIBase): an egress
	// proxy whose IP is on the app's allow list, in most deployments.
	APIBase string `json:"api_base,omitempty"`
	// DataFormat of pushes: "xml" (default) or, for mini programs, "json".
	DataFormat string `json:"data_format,omitempty"`
	// OriginalID (gh_…) is checked against a push's ToUserName when set.
	OriginalID string `json:"original_id,omitempty"`
	// MediaMaxBytes caps one downloaded media file (default 10 MiB).
	MediaMaxBytes int64 `json:"media_max_bytes,omitempty"`
}

// ParseConfig decodes and checks a channel's config, filling defaults.
func ParseConfig(kind conv.ChannelKind, raw json.RawMessage) (ChannelConfig, error) {
	var c ChannelConfig
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &c); err != nil {
			return c, fmt.Errorf("wechat config: %w: %v", conv.ErrInvalid, err)
		}
	}
	if c.AppID == "" || len(c.AppID) > 64 || strings.ContainsAny(c.AppID, ": \t\r\n") {
		return c, fmt.Errorf("wechat config: %w: app_id %q is not a WeChat app id", conv.ErrInvalid, c.AppID)
	}
	if c.APIBase == "" {
		c.APIBase = DefaultAPIBase
	}
	u, err := url.Parse(c.APIBase)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" {
		return c, fmt.Errorf("wechat config: %w: api_base %q must be an http(s) URL without a query", conv.ErrInvalid, c.APIBase)
	}
	c.APIBase = strings.TrimRight(c.APIBase, "/")
	switch c.DataFormat {
	case "":
		c.DataFormat = "xml"
	case "xml":
	case "json":
		if kind != conv.KindWeChatMP {
			return c, fmt.Errorf("wechat config: %w: data_format json is for mini programs (wechat_mp)", conv.ErrInvalid)
		}
	default:
		return c, fmt.Errorf("wechat config: %w: data_format must be xml or json", conv.ErrInvalid)
	}
	if c.MediaMaxBytes <= 0 {
		c.MediaMaxBytes = defaultMediaLimit
	}
	return c, nil
}

// channel is a WeChat channel ready to verify pushes.
type channel struct {
	conv.Channel
	cfg    ChannelConfig
	token  string
	cipher *wire.Cipher // nil in plaintext mode
	format wire.Format
	loaded time.Time
}

func newChannel(ch conv.Channel, now time.Time) (*channel, error) {
	cfg, err := ParseConfig(ch.Kind, ch.Config)
	if err != nil {
		return nil, err
	}
	c := &channel{Channel: ch, cfg: cfg, token: ch.Secrets[SecretToken], loaded: now}
	if c.token == "" {
		return nil, fmt.Errorf("wechat channel %s: %w: no token configured", ch.ID, conv.ErrInvalid)
	}
	if key := ch.Secrets[SecretAESKey]; key != "" {
		keys := []string{key}
		if prev := ch.Secrets[SecretPrevAESKey]; prev != "" {
			keys = append(keys, prev)
		}
		if c.cipher, err = wire.NewCipher(cfg.AppID, keys...); err != nil {
			return nil, fmt.Errorf("wechat channel %s: %w", ch.ID, err)
		}
	}
	if c.format, err = wire.ParseFormat(cfg.DataFormat); err != nil {
		return nil, err
	}
	return c, nil
}

// Publisher is the part of hub.Publisher the connector uses.
type Publisher interface {
	PublishInbound(ctx context.Context, in conv.Inbound) error
	PublishDelivery(ctx context.Context, d conv.Delivery) error
}

// Config configures a Connector.
type Config struct {
	Store  storage.Store
	Bus    Publisher
	Logger *slog.Logger
	Now    func() time.Time
	// Skew is how far a push's timestamp may be from now (default 5 min).
	Skew time.Duration
	// ChannelTTL is how long a channel's config and keys are cached
	// (default 30 s): a push must not cost a store read.
	ChannelTTL time.Duration
	// TokenCache and Lease share each app's access token among the nodes
	// (one token per app, one refresher at a time). The defaults, an
	// in-process cache and lease, are right for a single node only.
	TokenCache wxapi.TokenCache
	Lease      wxapi.Lease
	// Holder names this node in the lease.
	Holder string
	// HTTPClient makes WeChat API calls (default: wxapi's).
	HTTPClient *http.Client
	// Media stores downloaded WeChat media and holds the images agents
	// send; without it, inbound media keeps only WeChat's media id.
	Media *media.Store
	// MediaBudget bounds the media downloads of one push, so the answer
	// still beats WeChat's 5-second deadline (default 3 s).
	MediaBudget time.Duration
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Skew <= 0 {
		c.Skew = wire.DefaultSkew
	}
	if c.ChannelTTL <= 0 {
		c.ChannelTTL = 30 * time.Second
	}
	if c.TokenCache == nil {
		c.TokenCache = wxapi.NewMemoryCache()
	}
	if c.MediaBudget <= 0 {
		c.MediaBudget = 3 * time.Second
	}
}

// Connector serves WeChat channels.
type Connector struct {
	cfg      Config
	mu       sync.Mutex
	channels map[conv.ChannelID]*channel
	misses   map[conv.ChannelID]time.Time // ids that were not WeChat channels, when
	sent     sentCache
	checked  checkedContacts
	typing   typingState

	clientsMu sync.Mutex
	clients   map[string]*apiClient     // by credentials (see client)
	clientOf  map[conv.ChannelID]string // a channel's current credentials key
	runCtx    context.Context           // set by Run: refreshers of new clients start in it
}

// New returns a Connector.
func New(cfg Config) (*Connector, error) {
	if cfg.Store == nil || cfg.Bus == nil {
		return nil, errors.New("wechat: Config.Store and Bus are required")
	}
	cfg.setDefaults()
	return &Connector{cfg: cfg, channels: make(map[conv.ChannelID]*channel)}, nil
}

// channel returns the WeChat channel id, from the cache when fresh. Any
// channel that is not a WeChat one is ErrNotFound, like a missing one.
func (c *Connector) channel(ctx context.Context, id conv.ChannelID) (*channel, error) {
	now := c.cfg.Now()
	c.mu.Lock()
	ch, ok := c.channels[id]
	missed, miss := c.misses[id]
	c.mu.Unlock()
	if ok && now.Sub(ch.loaded) < c.cfg.ChannelTTL {
		return ch, nil
	}
	if miss && now.Sub(missed) < c.cfg.ChannelTTL {
		// Unknown, not WeChat, or disabled a moment ago: no store read
		// for every push to a random id or typing on a web chat.
		return nil, fmt.Errorf("wechat: channel %s: %w", id, conv.ErrNotFound)
	}
	ch, err := c.load(ctx, id, now)
	if errors.Is(err, conv.ErrNotFound) {
		c.mu.Lock()
		if c.misses == nil || len(c.misses) > 10_000 {
			c.misses = make(map[conv.ChannelID]time.Time)
		}
		c.misses[id] = now
		c.mu.Unlock()
	}
	return ch, err
}

// notWeChat reports whether id is known, from the cache, not to be an
// enabled WeChat Official Account channel.
func (c *Connector) notWeChat(id conv.ChannelID, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch, ok := c.channels[id]; ok && now.Sub(ch.loaded) < c.cfg.ChannelTTL {
		return ch.Kind != conv.KindWeChatOA
	}
	missed, ok := c.misses[id]
	return ok && now.Sub(missed) < c.cfg.ChannelTTL
}

// load reads channel id from the store and caches it.
func (c *Connector) load(ctx context.Context, id conv.ChannelID, now time.Time) (*channel, error) {
	tenant, err := c.cfg.Store.ChannelTenant(ctx, id)
	if err != nil {
		return nil, err
	}
	var stored conv.Channel
	err = c.cfg.Store.Read(ctx, tenant, func(tx storage.Tx) error {
		var err error
		stored, err = tx.Channel(ctx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	if stored.Kind != conv.KindWeChatOA && stored.Kind != conv.KindWeChatMP {
		return nil, fmt.Errorf("wechat: channel %s: %w", id, conv.ErrNotFound)
	}
	if stored.Disabled {
		// Cached like any channel: a disable takes effect within ChannelTTL.
		return nil, fmt.Errorf("wechat: channel %s is disabled: %w", id, conv.ErrNotFound)
	}
	ch, err := newChannel(stored, now)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.channels[id] = ch
	delete(c.misses, id)
	c.mu.Unlock()
	return ch, nil
}

// OpenIDIdentity is the identity of openid on the app.
func OpenIDIdentity(appID, openid string) conv.Identity {
	return conv.Identity{Kind: IdentityOpenID, ExternalID: appID + ":" + openid}
}

// envelope turns a normalized push into the bus envelope.
func envelope(ch *channel, n wire.Normalized) conv.Inbound {
	in := conv.Inbound{
		TenantID:   ch.TenantID,
		ChannelID:  ch.ID,
		ExternalID: n.ExternalID,
		From:       OpenIDIdentity(ch.cfg.AppID, n.OpenID),
		Parts:      n.Parts,
		System:     n.System,
		Scene:      n.Scene,
		SentAt:     n.SentAt,
	}
	if n.OpensWindow {
		in.ReplyWindow = wire.ReplyWindow
	}
	return in
}
