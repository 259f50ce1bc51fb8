package wechat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/switchboard-hq/switchboard/connectors/wechat/wire"
	"github.com/switchboard-hq/switchboard/connectors/wechat/wxapi"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/internal/media"
)

// WebhookPath is the URL path a business pastes into WeChat's console.
func WebhookPath(id conv.ChannelID) string { return "/v1/hooks/wechat/" + id.String() }

// Routes registers the webhook.
func (c *Connector) Routes(handle func(pattern string, h http.Handler)) {
	handle("GET /v1/hooks/wechat/{channel}", http.HandlerFunc(c.verify))
	handle("POST /v1/hooks/wechat/{channel}", http.HandlerFunc(c.push))
}

// maxEchoStr bounds the echostr we repeat (WeChat's is a short number).
const maxEchoStr = 128

// hookChannel resolves the channel of a webhook request, answering 404
// for an unknown id or a channel of another kind, before anything else
// of the request is read.
func (c *Connector) hookChannel(w http.ResponseWriter, r *http.Request) (*channel, bool) {
	id, err := strconv.ParseUint(r.PathValue("channel"), 10, 63)
	if err != nil {
		http.Error(w, "unknown channel", http.StatusNotFound)
		return nil, false
	}
	ch, err := c.channel(r.Context(), conv.ChannelID(id))
	switch {
	case errors.Is(err, conv.ErrNotFound):
		http.Error(w, "unknown channel", http.StatusNotFound)
		return nil, false
	case err != nil:
		c.cfg.Logger.Error("wechat webhook: channel lookup", "channel", id, "err", err)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return nil, false
	}
	return ch, true
}

// verify answers WeChat's server verification: the signature over token,
// timestamp and nonce, then echostr byte for byte.
func (c *Connector) verify(w http.ResponseWriter, r *http.Request) {
	ch, ok := c.hookChannel(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	if !wire.Verify(q.Get("signature"), ch.token, q.Get("timestamp"), q.Get("nonce")) {
		c.reject(w, ch, http.StatusForbidden, "bad signature", nil)
		return
	}
	echo := q.Get("echostr")
	if echo == "" || len(echo) > maxEchoStr {
		c.reject(w, ch, http.StatusBadRequest, "bad echostr", nil)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, echo)
}

// push takes one message or event from WeChat. Order matters: the cheap
// signature over the query first, then the bounded body, msg_signature
// over the ciphertext before decrypting it, the timestamp, and only then
// parsing. Every failure after the signature gets the same answer, so the
// cipher cannot be probed through the error kind.
func (c *Connector) push(w http.ResponseWriter, r *http.Request) {
	ch, ok := c.hookChannel(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	ts, nonce := q.Get("timestamp"), q.Get("nonce")
	if !wire.Verify(q.Get("signature"), ch.token, ts, nonce) {
		c.reject(w, ch, http.StatusForbidden, "bad signature", nil)
		return
	}
	if err := wire.CheckTimestamp(ts, c.cfg.Now(), c.cfg.Skew); err != nil {
		c.reject(w, ch, http.StatusForbidden, "stale or bad timestamp", err)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, wire.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			c.reject(w, ch, http.StatusRequestEntityTooLarge, "body larger than 64 KiB", nil)
			return
		}
		c.reject(w, ch, http.StatusBadRequest, "unreadable body", err)
		return
	}
	plain := body
	if q.Get("encrypt_type") == "aes" {
		if ch.cipher == nil {
			c.reject(w, ch, http.StatusBadRequest, "encrypted push but no encoding_aes_key configured", nil)
			return
		}
		env, err := wire.ParseEnvelope(body, ch.format)
		if err != nil {
			c.reject(w, ch, http.StatusBadRequest, "invalid message", err)
			return
		}
		if !wire.Verify(q.Get("msg_signature"), ch.token, ts, nonce, env.Encrypt) {
			c.reject(w, ch, http.StatusForbidden, "bad signature", nil)
			return
		}
		var key int
		if plain, key, err = ch.cipher.Decrypt(env.Encrypt); err != nil {
			c.reject(w, ch, http.StatusBadRequest, "invalid message", err)
			return
		}
		if key > 0 {
			c.cfg.Logger.Warn("wechat push encrypted under the previous EncodingAESKey", "channel", ch.ID)
		}
	} else if ch.cipher != nil {
		// An EncodingAESKey is configured: only encrypted pushes count. In
		// plaintext the signature covers token, timestamp and nonce but
		// not the body, so anyone who saw one push's query could post any
		// body within the timestamp window.
		c.reject(w, ch, http.StatusBadRequest, "this channel takes encrypted pushes only (encrypt_type=aes)", nil)
		return
	}
	p, err := wire.Parse(plain, ch.format)
	if err != nil {
		c.reject(w, ch, http.StatusBadRequest, "invalid message", err)
		return
	}
	if ch.cfg.OriginalID != "" && p.ToUserName != ch.cfg.OriginalID {
		c.reject(w, ch, http.StatusBadRequest, "push for another account", nil)
		return
	}
	n, err := wire.Normalize(p)
	if err != nil {
		c.reject(w, ch, http.StatusBadRequest, "invalid message", err)
		return
	}
	if len(n.Media) > 0 {
		c.fetchMedia(r.Context(), ch, &n)
	}
	if err := c.cfg.Bus.PublishInbound(r.Context(), envelope(ch, n)); err != nil {
		if conv.Permanent(err) {
			c.reject(w, ch, http.StatusBadRequest, "invalid message", err)
			return
		}
		// No "success": WeChat retries, and the retry is deduplicated.
		c.cfg.Logger.Error("wechat push not accepted by the bus", "channel", ch.ID, "err", err)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "success")
}

// fetchMedia downloads a push's media (image, voice, video) from WeChat
// into our media store within MediaBudget, so the console can show it
// after WeChat's temporary media expires (3 days). A part whose media is
// over the channel's limit, or could not be fetched in time, keeps
// WeChat's media id and says why in its text; nothing is dropped.
func (c *Connector) fetchMedia(ctx context.Context, ch *channel, n *wire.Normalized) {
	if c.cfg.Media == nil {
		return
	}
	api, err := c.client(ch)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.MediaBudget)
	defer cancel()
	for i := range n.Parts {
		p := &n.Parts[i]
		if p.MediaID == "" || !slices.Contains(n.Media, p.MediaID) {
			continue
		}
		data, mime, _, err := api.DownloadMedia(ctx, p.MediaID, ch.cfg.MediaMaxBytes)
		if err == nil {
			var key string
			var size int64
			if key, size, err = c.cfg.Media.Put(ch.TenantID, mime, bytes.NewReader(data), ch.cfg.MediaMaxBytes); err == nil {
				p.URL, p.MIME, p.Size = c.cfg.Media.URL(key), mime, size
				continue
			}
		}
		var note string
		var tooBig *wxapi.TooLargeError
		switch {
		case errors.As(err, &tooBig) || errors.Is(err, media.ErrTooLarge):
			note = fmt.Sprintf("[%s not stored: larger than this channel's limit of %s]", p.Type, sizeText(ch.cfg.MediaMaxBytes))
		default:
			note = fmt.Sprintf("[%s not fetched from WeChat: %v]", p.Type, err)
			c.cfg.Logger.WarnContext(ctx, "wechat media not fetched", "channel", ch.ID, "media_id", p.MediaID, "err", err)
		}
		p.Text = strings.TrimSpace(p.Text + " " + note)
	}
}

func sizeText(n int64) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

func (c *Connector) reject(w http.ResponseWriter, ch *channel, status int, msg string, cause error) {
	c.cfg.Logger.Warn("wechat push rejected", "channel", ch.ID, "status", status, "reason", msg, "err", cause)
	http.Error(w, msg, status)
}
