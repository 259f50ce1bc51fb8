package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/switchboard-hq/switchboard/connectors/email"
	"github.com/switchboard-hq/switchboard/connectors/webchat"
	"github.com/switchboard-hq/switchboard/connectors/wechat"
	"github.com/switchboard-hq/switchboard/connectors/wechat/wxapi"
	"github.com/switchboard-hq/switchboard/core/auth"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/dispatch"
	"github.com/switchboard-hq/switchboard/core/live"
	"github.com/switchboard-hq/switchboard/core/secret"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/hub"
	"github.com/switchboard-hq/switchboard/internal/media"
	sbredis "github.com/switchboard-hq/switchboard/store/redis"
	"github.com/switchboard-hq/switchboard/web"
)

// liveState is the shared live state of the console and the widget.
type liveState struct {
	timelines live.Timelines
	fanout    live.Fanout
	presence  live.Presence
}

// mediaKey returns the key that signs media URLs: SWITCHBOARD_MEDIA_KEY
// (hex, 32 bytes; every node of a cluster must have the same), else
// <data>/media.key, created on first start.
func mediaKey(dataDir string) ([]byte, error) {
	if v := os.Getenv("SWITCHBOARD_MEDIA_KEY"); v != "" {
		b, err := hex.DecodeString(strings.TrimSpace(v))
		if err != nil || len(b) < 32 {
			return nil, fmt.Errorf("%w: SWITCHBOARD_MEDIA_KEY must be at least 32 bytes in hex", conv.ErrInvalid)
		}
		return b, nil
	}
	path := filepath.Join(dataDir, "media.key")
	if b, err := os.ReadFile(path); err == nil {
		k, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(k) < 32 {
			return nil, fmt.Errorf("%w: %s is not a hex key of 32 bytes", conv.ErrInvalid, path)
		}
		return k, nil
	}
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return k, nil
}

// outboundHandler decodes outbound.<kind> messages for a connector.
func outboundHandler(send func(context.Context, conv.Outbound) error) message.NoPublishHandlerFunc {
	return func(m *message.Message) error {
		var out conv.Outbound
		if err := hub.Decode(m, &out); err != nil {
			return err
		}
		return send(hub.Context(m), out)
	}
}

// eventsHandler decodes an events message for a consumer. With types, a
// message whose metadata lists none of them is acknowledged undecoded.
func eventsHandler(handle func(context.Context, []conv.Event) error, types ...conv.EventType) message.NoPublishHandlerFunc {
	return func(m *message.Message) error {
		if len(types) > 0 && !hub.EventsOf(m, types...) {
			return nil
		}
		evs, err := hub.DecodeEvents(m)
		if err != nil {
			return err
		}
		return handle(hub.Context(m), evs)
	}
}

// drainHandler drains the dispatch queue of the tenant of every events
// message holding one of dispatch.Triggers. That is all dispatch needs of
// an event (dispatch.Handle), so the message is not decoded: decoding
// every event batch once per consumer group is the bus's largest CPU cost.
func drainHandler(d *dispatch.Dispatcher) message.NoPublishHandlerFunc {
	return func(m *message.Message) error {
		if !hub.EventsOf(m, dispatch.Triggers...) {
			return nil
		}
		t, err := hub.TenantOf(m)
		if err != nil {
			return err
		}
		_, err = d.Drain(hub.Context(m), t)
		return err
	}
}

// consoleCSP lets the console and the demo page load their own scripts and
// styles, talk to this origin (HTTP and websocket), show uploaded images,
// and frame this origin's pages: the console shows a mail's HTML body in a
// sandboxed frame from /v1/media/ (which only that media allows).
const consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"connect-src 'self' ws: wss:; media-src 'self' data:; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// routeWeb serves the console, the demo page and a redirect from /.
func (n *node) routeWeb() {
	console, _ := fs.Sub(web.FS, "console")
	files := http.StripPrefix("/console/", http.FileServerFS(console))
	n.api.Handle("GET /console/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", consoleCSP)
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}))
	n.api.Handle("GET /{$}", http.RedirectHandler("/console/", http.StatusFound))
	n.api.Handle("GET /demo.css", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := fs.ReadFile(web.FS, "demo.css")
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Write(b)
	}))
	n.api.Handle("GET /demo", http.HandlerFunc(n.demoPage))
}

// demoPage serves web/demo.html with the demo tenant's web chat channel.
func (n *node) demoPage(w http.ResponseWriter, r *http.Request) {
	ch, err := demoChannel(r.Context(), n.store)
	if err != nil {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintln(w, "No demo here: the demo tenant is created on the first start of the embedded default (a fresh --data directory).")
		return
	}
	b, err := fs.ReadFile(web.FS, "demo.html")
	if err != nil {
		http.NotFound(w, r)
		return
	}
	b = bytes.ReplaceAll(b, []byte("{{CHANNEL_ID}}"), []byte(ch.ID.String()))
	w.Header().Set("Content-Security-Policy", consoleCSP)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(b)
}

// Demo fixture names.
const (
	demoTenant = "demo"
	demoEmail  = "agent@demo.local"
)

func demoChannel(ctx context.Context, st storage.Store) (conv.Channel, error) {
	t, err := st.TenantByName(ctx, demoTenant)
	if err != nil {
		return conv.Channel{}, err
	}
	var ch conv.Channel
	err = st.Tx(ctx, t.ID, func(tx storage.Tx) error {
		chs, err := tx.Channels(ctx)
		if err != nil {
			return err
		}
		for _, c := range chs {
			if c.Kind == conv.KindWebchat {
				ch = c
				return nil
			}
		}
		return fmt.Errorf("%w: demo web chat channel", conv.ErrNotFound)
	})
	return ch, err
}

// demo is what the first start created.
type demo struct {
	Password string
	Channel  conv.Channel
}

// createDemo makes the demo tenant, one agent and a web chat channel.
func createDemo(ctx context.Context, st storage.Store, ids *conv.IDGen, authSvc *auth.Service) (demo, error) {
	if _, err := st.TenantByName(ctx, demoTenant); err == nil {
		return demo{}, fmt.Errorf("%w: tenant %q exists", conv.ErrConflict, demoTenant)
	} else if !errors.Is(err, conv.ErrNotFound) {
		return demo{}, err
	}
	now := time.Now().UTC()
	t := conv.Tenant{ID: conv.NewID[conv.TenantID](ids), Name: demoTenant, CreatedAt: now}
	if err := st.CreateTenant(ctx, t); err != nil {
		return demo{}, err
	}
	pw := make([]byte, 12)
	_, _ = rand.Read(pw)
	d := demo{Password: base64.RawURLEncoding.EncodeToString(pw)}
	secret := make([]byte, 24)
	_, _ = rand.Read(secret)
	d.Channel = conv.Channel{ID: conv.NewID[conv.ChannelID](ids), TenantID: t.ID, Kind: conv.KindWebchat, Name: "Acme Store website",
		Config:  []byte(`{"title":"Acme Store","greeting":"Hi! Ask us anything about your order."}`),
		Secrets: map[string]string{"identity_secret": hex.EncodeToString(secret)}, CreatedAt: now}
	if err := st.Tx(ctx, t.ID, func(tx storage.Tx) error { return tx.CreateChannel(ctx, d.Channel) }); err != nil {
		return demo{}, err
	}
	if _, err := authSvc.CreateAgent(ctx, t.ID, auth.NewAgent{Email: demoEmail, Name: "Demo Agent", Password: d.Password, Role: conv.RoleAdmin}); err != nil {
		return demo{}, err
	}
	return d, nil
}

// openChannels creates the web chat and WeChat connectors (before the API,
// which hands agents' typing to them); routeChannels mounts them.
func (n *node) openChannels(ids *conv.IDGen) error {
	key, err := mediaKey(n.cfg.Data)
	if err != nil {
		return err
	}
	ms, err := media.Open(filepath.Join(n.cfg.Data, "media"), key, 365*24*time.Hour)
	if err != nil {
		return err
	}
	n.media = ms
	if n.webchat, err = webchat.New(webchat.Config{Store: n.store, Bus: n.pub, Fanout: n.live.fanout, Presence: n.live.presence,
		Timelines: n.live.timelines, Media: ms, IDs: ids, Web: web.FS, Logger: n.log.With("connector", "webchat")}); err != nil {
		return err
	}
	holder := "node-" + strconv.Itoa(n.cfg.NodeID) + "-" + strconv.Itoa(os.Getpid())
	if n.wechat, err = wechat.New(wechat.Config{Store: n.store, Bus: n.pub, Logger: n.log.With("connector", "wechat"),
		TokenCache: n.tokens, Lease: n.state, Holder: holder, Media: ms}); err != nil {
		return err
	}
	n.email, err = email.New(email.Config{Store: n.store, Bus: n.pub, Media: ms, Lease: n.state, Holder: holder,
		Logger: n.log, RescanEvery: n.cfg.ChannelRescan})
	return err
}

// routeChannels mounts the channels' HTTP endpoints.
func (n *node) routeChannels() {
	n.webchat.Routes(n.api.Handle)
	n.wechat.Routes(n.api.Handle)
}

// sealedTokens keeps WeChat access tokens in Redis sealed under the master
// key, so a Redis dump does not hand out API access.
type sealedTokens struct {
	values *sbredis.Values
	keys   *secret.Keyring
}

func (s sealedTokens) Get(ctx context.Context, key string) (wxapi.Token, bool, error) {
	sealed, exp, ok, err := s.values.Get(ctx, key)
	if err != nil || !ok {
		return wxapi.Token{}, false, err
	}
	v, err := s.keys.Open(sealed, key)
	if err != nil {
		// Sealed under a key this node lacks: as good as absent; the
		// refresher writes a fresh one.
		return wxapi.Token{}, false, nil
	}
	return wxapi.Token{Value: string(v), Expires: exp}, true, nil
}

func (s sealedTokens) Set(ctx context.Context, key string, t wxapi.Token) error {
	sealed, err := s.keys.Seal([]byte(t.Value), key)
	if err != nil {
		return err
	}
	return s.values.Set(ctx, key, sealed, t.Expires)
}

// redisLive is the live state shared through Redis.
func redisLive(rc *sbredis.Client) (liveState, error) {
	tl, err := rc.Timelines(sbredis.TimelinesConfig{})
	if err != nil {
		return liveState{}, err
	}
	return liveState{timelines: tl, fanout: rc.Fanout(), presence: rc.Presence()}, nil
}
