package wechat

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-hq/switchboard/connectors/wechat/wxapi"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/internal/media"
)

// apiClient is one set of credentials' client and token refresher, and
// the channels using it.
type apiClient struct {
	api    *wxapi.Client
	tokens *wxapi.SharedTokens
	stop   context.CancelFunc // the refresher's, once Run started it
	users  map[conv.ChannelID]bool
}

// client returns the API client of ch's app. Clients (with their token
// provider and circuit breaker) are kept per kind, app, API base and
// secret, so they outlive the channel cache's reloads; when a channel's
// credentials change, it moves to a new client and an old one no channel
// uses any more is dropped and its refresher stopped.
func (c *Connector) client(ch *channel) (*wxapi.Client, error) {
	secret := ch.Secrets[SecretAppSecret]
	sum := sha256.Sum256([]byte(secret))
	key := strings.Join([]string{string(ch.Kind), ch.cfg.AppID, ch.cfg.APIBase, hex.EncodeToString(sum[:8])}, "|")
	c.clientsMu.Lock()
	defer c.clientsMu.Unlock()
	if c.clients == nil {
		c.clients = make(map[string]*apiClient)
		c.clientOf = make(map[conv.ChannelID]string)
	}
	if old, ok := c.clientOf[ch.ID]; ok && old != key {
		if oc := c.clients[old]; oc != nil {
			delete(oc.users, ch.ID)
			if len(oc.users) == 0 {
				if oc.stop != nil {
					oc.stop()
				}
				delete(c.clients, old)
			}
		}
	}
	c.clientOf[ch.ID] = key
	if ac, ok := c.clients[key]; ok {
		ac.users[ch.ID] = true
		return ac.api, nil
	}
	kind := wxapi.KindOA
	if ch.Kind == conv.KindWeChatMP {
		kind = wxapi.KindMP
	}
	tokens, err := wxapi.NewSharedTokens(wxapi.TokensConfig{
		AppID: ch.cfg.AppID, Secret: secret, APIBase: ch.cfg.APIBase, HTTPClient: c.cfg.HTTPClient,
		Cache: c.cfg.TokenCache, Lease: c.cfg.Lease, Logger: c.cfg.Logger,
		// One holder name per refresher: two refreshers of this node must
		// not both count as holding each other's lease.
		Holder: c.cfg.Holder + "/" + hex.EncodeToString(sum[:4]) + "/" + ch.cfg.AppID,
	})
	if err != nil {
		return nil, err
	}
	api, err := wxapi.New(wxapi.Config{
		AppID: ch.cfg.AppID, Secret: secret, Kind: kind, APIBase: ch.cfg.APIBase, HTTPClient: c.cfg.HTTPClient,
		Tokens: tokens, Logger: c.cfg.Logger.With("app", ch.cfg.AppID),
	})
	if err != nil {
		return nil, err
	}
	ac := &apiClient{api: api, tokens: tokens, users: map[conv.ChannelID]bool{ch.ID: true}}
	c.clients[key] = ac
	if c.runCtx != nil {
		c.startRefresher(ac)
	}
	return api, nil
}

// startRefresher runs ac's token refresher until Run's context ends or the
// client is dropped. clientsMu is held.
func (c *Connector) startRefresher(ac *apiClient) {
	ctx, stop := context.WithCancel(c.runCtx)
	ac.stop = stop
	go ac.tokens.Run(ctx)
}

// Run keeps every app's access token fresh ahead of its expiry (the lease
// holder among the nodes fetches; the others read the shared cache) until
// ctx ends: sends then rarely wait for a token. Apps first used later are
// refreshed from then on.
func (c *Connector) Run(ctx context.Context) error {
	c.clientsMu.Lock()
	c.runCtx = ctx
	for _, ac := range c.clients {
		if ac.stop == nil {
			c.startRefresher(ac)
		}
	}
	c.clientsMu.Unlock()
	<-ctx.Done()
	return nil
}

// maxImageBytes is WeChat's limit for an uploaded image.
const maxImageBytes = 10 << 20

// sentCache remembers outbound messages WeChat accepted, so a redelivered
// Outbound is reported again instead of sent twice (WeChat's API has no
// idempotency key). It is per node: a redelivery to another node after a
// crash between send and ack can still duplicate.
type sentCache struct {
	mu   sync.Mutex
	at   map[string]time.Time // message id, or message id#part index
	last time.Time
}

const sentTTL = time.Hour

func (s *sentCache) seen(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.at[id]
	return ok
}

func (s *sentCache) add(id string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.at == nil {
		s.at = make(map[string]time.Time)
	}
	s.at[id] = now
	if now.Sub(s.last) > time.Minute {
		s.last = now
		for k, t := range s.at {
			if now.Sub(t) > sentTTL {
				delete(s.at, k)
			}
		}
	}
}

// Outbound sends an agent's reply through WeChat's customer-service API and
// reports the delivery. A refusal WeChat gives for this message (outside
// the window, over the quota, unfollowed) is reported failed with a human
// reason; an outage or a busy WeChat returns an error, so the bus retries
// with backoff while the message stays pending.
func (c *Connector) Outbound(ctx context.Context, out conv.Outbound) error {
	d := conv.Delivery{TenantID: out.TenantID, MessageID: out.Message.ID, Status: conv.MsgSent}
	if err := c.send(ctx, out); err != nil {
		if ctx.Err() != nil {
			// Our own deadline (the bus's ack wait) or shutdown, not
			// WeChat's answer: the message is redelivered and tried again.
			return fmt.Errorf("wechat send %s: %w", out.Message.ID, err)
		}
		reason, retry := explain(err)
		if retry {
			c.cfg.Logger.WarnContext(ctx, "wechat send will be retried", "message", out.Message.ID, "reason", reason)
			// The agent sees the reply is still on its way, and why.
			still := conv.Delivery{TenantID: out.TenantID, MessageID: out.Message.ID, Status: conv.MsgPending,
				Reason: truncateReason("retrying: " + reason), At: c.cfg.Now().UTC()}
			if perr := c.cfg.Bus.PublishDelivery(ctx, still); perr != nil {
				c.cfg.Logger.WarnContext(ctx, "wechat retry report lost", "message", out.Message.ID, "err", perr)
			}
			return fmt.Errorf("wechat send %s: %w", out.Message.ID, err)
		}
		d.Status, d.Reason = conv.MsgFailed, reason
	}
	d.At = c.cfg.Now().UTC()
	return c.cfg.Bus.PublishDelivery(ctx, d)
}

func truncateReason(s string) string {
	if len(s) <= 512 {
		return s
	}
	return strings.ToValidUTF8(s[:512], "")
}

// explain turns a send error into the reason an agent reads and whether
// trying again later can help.
func explain(err error) (reason string, retry bool) {
	var api *wxapi.APIError
	switch {
	case errors.As(err, &api):
		return api.Reason(), wxapi.Retryable(err)
	case wxapi.Retryable(err):
		return err.Error(), true
	default:
		return err.Error(), false
	}
}

func (c *Connector) send(ctx context.Context, out conv.Outbound) error {
	ch, err := c.channel(ctx, out.ChannelID)
	if err != nil {
		if errors.Is(err, conv.ErrNotFound) {
			return fmt.Errorf("%w: the WeChat channel is disabled or was removed", conv.ErrNotFound)
		}
		return err
	}
	openid, ok := openIDOf(out.To, ch.cfg.AppID)
	if !ok {
		return fmt.Errorf("%w: this customer has no openid on app %s", conv.ErrInvalid, ch.cfg.AppID)
	}
	id := out.Message.ID.String()
	if c.sent.seen(id) {
		return nil
	}
	api, err := c.client(ch)
	if err != nil {
		return err
	}
	// Each part is its own WeChat message: remember the parts that went
	// out, so a retry after a failure sends only the rest.
	for i, p := range out.Message.Parts {
		part := id + "#" + strconv.Itoa(i)
		if c.sent.seen(part) {
			continue
		}
		if err := c.sendPart(ctx, api, ch, out.TenantID, openid, p); err != nil {
			if i > 0 {
				return fmt.Errorf("%d of %d parts sent, then: %w", i, len(out.Message.Parts), err)
			}
			return err
		}
		c.sent.add(part, c.cfg.Now())
	}
	c.sent.add(id, c.cfg.Now())
	return nil
}

func (c *Connector) sendPart(ctx context.Context, api *wxapi.Client, ch *channel, tenant conv.TenantID, openid string, p conv.Part) error {
	switch p.Type {
	case conv.PartText:
		return api.SendText(ctx, openid, p.Text)
	case conv.PartImage:
		data, name, err := c.mediaBytes(tenant, p)
		if err != nil {
			return err
		}
		id, err := api.UploadMedia(ctx, wxapi.MediaImage, name, bytes.NewReader(data))
		if err != nil {
			return err
		}
		return api.SendImage(ctx, openid, id)
	case conv.PartCard:
		if p.Page != "" {
			return api.SendMiniProgramPage(ctx, openid, wxapi.MiniProgramPage{Title: p.Title, AppID: p.AppID, PagePath: p.Page, ThumbMediaID: p.MediaID})
		}
		return api.SendLink(ctx, openid, wxapi.Link{Title: p.Title, Description: p.Description, URL: p.URL, ThumbURL: p.Thumb})
	}
	return fmt.Errorf("%w: WeChat customer service cannot carry a %s part from the console", conv.ErrInvalid, p.Type)
}

// mediaBytes reads an image part's bytes from our media store (its URL is
// one of our signed media URLs).
func (c *Connector) mediaBytes(tenant conv.TenantID, p conv.Part) ([]byte, string, error) {
	if c.cfg.Media == nil {
		return nil, "", fmt.Errorf("%w: no media store configured", conv.ErrInvalid)
	}
	u, err := url.Parse(p.URL)
	if err != nil {
		return nil, "", fmt.Errorf("%w: image %q is not one of ours", conv.ErrInvalid, p.URL)
	}
	key, ok := strings.CutPrefix(u.Path, media.URLPrefix)
	if !ok {
		return nil, "", fmt.Errorf("%w: image %q is not one of ours", conv.ErrInvalid, p.URL)
	}
	if owner, ok := media.Tenant(key); !ok || owner != tenant {
		return nil, "", fmt.Errorf("%w: image of another tenant", conv.ErrInvalid)
	}
	f, err := c.cfg.Media.Open(key, u.Query())
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxImageBytes+1))
	if err != nil {
		return nil, "", err
	}
	if len(data) > maxImageBytes {
		return nil, "", fmt.Errorf("%w: image larger than WeChat's %d MB", conv.ErrInvalid, maxImageBytes>>20)
	}
	name := p.Name
	if name == "" {
		name = "image" + extFor(p.MIME)
	}
	return data, name, nil
}

func extFor(mime string) string {
	switch mime {
	case "image/png":
		return ".png"
	case "image/gif":
		return ".gif"
	}
	return ".jpg"
}

// openIDOf finds the customer's openid on app among their identities.
func openIDOf(ids []conv.Identity, appID string) (string, bool) {
	for _, id := range ids {
		if id.Kind != IdentityOpenID {
			continue
		}
		if openid, ok := strings.CutPrefix(id.ExternalID, appID+":"); ok && openid != "" {
			return openid, true
		}
	}
	return "", false
}
