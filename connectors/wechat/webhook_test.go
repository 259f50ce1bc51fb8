package wechat_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/connectors/wechat"
	"github.com/switchboard-hq/switchboard/connectors/wechat/wechattest"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/hub"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/store/sqlite"
)

const (
	appID   = "wx5823bf96d3bd56c7"
	token   = "QDG6eK"
	aesKey  = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
	prevKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	openid  = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
)

// bus records what the connector publishes; fail makes the next publish
// fail with that error.
type bus struct {
	mu   sync.Mutex
	in   []conv.Inbound
	fail error
}

func (b *bus) PublishInbound(_ context.Context, in conv.Inbound) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		err := b.fail
		b.fail = nil
		return err
	}
	b.in = append(b.in, in)
	return nil
}
func (b *bus) PublishDelivery(context.Context, conv.Delivery) error { return nil }

func (b *bus) published() []conv.Inbound {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]conv.Inbound(nil), b.in...)
}

type hookEnv struct {
	bus     *bus
	url     string
	channel conv.Channel
	other   conv.ChannelID // a webchat channel
	store   *sqlite.Store
	ids     *conv.IDGen
	conn    *wechat.Connector
}

func newHookEnv(t *testing.T, kind conv.ChannelKind, config string, secrets map[string]string, opts ...func(*wechat.Config)) *hookEnv {
	t.Helper()
	ctx := context.Background()
	st, ids := testenv.SQLiteStore(t)
	tenant := conv.NewID[conv.TenantID](ids)
	if err := st.CreateTenant(ctx, conv.Tenant{ID: tenant, Name: "acme", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	ch := conv.Channel{ID: conv.NewID[conv.ChannelID](ids), TenantID: tenant, Kind: kind, Name: "wx",
		Config: json.RawMessage(config), Secrets: secrets, CreatedAt: time.Now()}
	web := conv.Channel{ID: conv.NewID[conv.ChannelID](ids), TenantID: tenant, Kind: conv.KindWebchat, Name: "web", CreatedAt: time.Now()}
	if err := st.Tx(ctx, tenant, func(tx storage.Tx) error {
		if err := tx.CreateChannel(ctx, ch); err != nil {
			return err
		}
		return tx.CreateChannel(ctx, web)
	}); err != nil {
		t.Fatal(err)
	}
	b := &bus{}
	cfg := wechat.Config{Store: st, Bus: b}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := wechat.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	c.Routes(func(p string, h http.Handler) { mux.Handle(p, h) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &hookEnv{bus: b, url: srv.URL, channel: ch, other: web.ID, store: st, ids: ids, conn: c}
}

func (e *hookEnv) pusher(mode wechattest.Mode, key string) *wechattest.Pusher {
	return &wechattest.Pusher{URL: e.url + wechat.WebhookPath(e.channel.ID), Token: token, EncodingAESKey: key,
		AppID: appID, Mode: mode}
}

func safeSecrets() map[string]string {
	return map[string]string{"app_secret": "s3cret", "token": token, "encoding_aes_key": aesKey, "previous_encoding_aes_key": prevKey}
}

func TestWebhookAcceptsEveryMode(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode wechattest.Mode
		key  string
	}{
		{"plaintext", wechattest.ModePlain, ""},
		{"compatible", wechattest.ModeCompat, aesKey},
		{"safe", wechattest.ModeSafe, aesKey},
		{"safe, previous key", wechattest.ModeSafe, prevKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			secrets := safeSecrets()
			if tc.mode == wechattest.ModePlain {
				delete(secrets, "encoding_aes_key")
				delete(secrets, "previous_encoding_aes_key")
			}
			e := newHookEnv(t, conv.KindWeChatOA, `{"app_id":"`+appID+`"}`, secrets)
			now := time.Now().Unix()
			msg := wechattest.Text("gh_123", openid, "你好，我的订单还没到", 6999999999999999999, now)
			status, body, err := e.pusher(tc.mode, tc.key).PushMessage(t.Context(), msg)
			if err != nil {
				t.Fatal(err)
			}
			if status != http.StatusOK || string(body) != "success" {
				t.Fatalf("push answered %d %q, want 200 \"success\"", status, body)
			}
			got := e.bus.published()
			if len(got) != 1 {
				t.Fatalf("published %d envelopes, want 1", len(got))
			}
			in := got[0]
			want := conv.Identity{Kind: wechat.IdentityOpenID, ExternalID: appID + ":" + openid}
			if in.TenantID != e.channel.TenantID || in.ChannelID != e.channel.ID || in.From != want ||
				in.ExternalID != "msg:"+openid+":6999999999999999999" || in.Parts[0].Text != "你好，我的订单还没到" ||
				in.ReplyWindow != 48*time.Hour || in.SentAt.Unix() != now {
				t.Errorf("envelope = %+v", in)
			}
		})
	}
}

func TestWebhookVerification(t *testing.T) {
	e := newHookEnv(t, conv.KindWeChatOA, `{"app_id":"`+appID+`"}`, safeSecrets())
	status, body, err := e.pusher(wechattest.ModeSafe, aesKey).Verify(t.Context(), "1234567890123456789")
	if err != nil || status != http.StatusOK || string(body) != "1234567890123456789" {
		t.Fatalf("verify = %d %q %v, want the echostr back", status, body, err)
	}
	status, _, _ = e.pusher(wechattest.ModeSafe, aesKey).Verify(t.Context(), "123", wechattest.WithBadSignature())
	if status != http.StatusForbidden {
		t.Fatalf("verify with a bad signature = %d, want 403", status)
	}
}

func TestWebhookRejects(t *testing.T) {
	e := newHookEnv(t, conv.KindWeChatOA, `{"app_id":"`+appID+`"}`, safeSecrets())
	msg := func() wechattest.Message {
		return wechattest.Text("gh_123", openid, "hi", 1, time.Now().Unix())
	}
	huge := wechattest.Text("gh_123", openid, strings.Repeat("长", 30000), 2, time.Now().Unix())
	cases := []struct {
		name   string
		mode   wechattest.Mode
		key    string
		msg    wechattest.Message
		opts   []wechattest.PushOption
		status int
	}{
		{"bad signature", wechattest.ModeSafe, aesKey, msg(), []wechattest.PushOption{wechattest.WithBadSignature()}, http.StatusForbidden},
		{"bad msg_signature", wechattest.ModeSafe, aesKey, msg(), []wechattest.PushOption{wechattest.WithBadMsgSignature()}, http.StatusForbidden},
		{"stale timestamp", wechattest.ModeSafe, aesKey, msg(), []wechattest.PushOption{wechattest.WithTimestamp(time.Now().Add(-6 * time.Minute))}, http.StatusForbidden},
		{"future timestamp", wechattest.ModeSafe, aesKey, msg(), []wechattest.PushOption{wechattest.WithTimestamp(time.Now().Add(6 * time.Minute))}, http.StatusForbidden},
		{"wrong app id in ciphertext", wechattest.ModeSafe, aesKey, msg(), []wechattest.PushOption{wechattest.WithCipherAppID("wx0000000000000000")}, http.StatusBadRequest},
		{"unknown key", wechattest.ModeSafe, "zyxwvutsrqponmlkjihgfedcba9876543210ZYXWVUT", msg(), nil, http.StatusBadRequest},
		{"garbage ciphertext", wechattest.ModeSafe, aesKey, msg(), []wechattest.PushOption{wechattest.WithEncrypt("AAAA")}, http.StatusBadRequest},
		{"plaintext on a safe channel", wechattest.ModeCompat, aesKey, msg(), []wechattest.PushOption{wechattest.WithQuery("encrypt_type", "")}, http.StatusBadRequest},
		{"forged plain body on a safe channel", wechattest.ModePlain, "", msg(), nil, http.StatusBadRequest},
		{"oversized body", wechattest.ModePlain, "", huge, nil, http.StatusRequestEntityTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body, err := e.pusher(tc.mode, tc.key).PushMessage(t.Context(), tc.msg, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if status != tc.status {
				t.Errorf("status %d (%q), want %d", status, body, tc.status)
			}
		})
	}
	if n := len(e.bus.published()); n != 0 {
		t.Errorf("%d envelopes published from rejected pushes, want 0", n)
	}
}

// sealRaw encrypts plain (already padded) the way WeChat does, so a test
// can hand the webhook ciphertexts whose padding is wrong.
func sealRaw(t *testing.T, plain []byte) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(aesKey + "=")
	if err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, key[:16]).CryptBlocks(out, plain)
	return base64.StdEncoding.EncodeToString(out)
}

func TestWebhookBadPaddingRejected(t *testing.T) {
	e := newHookEnv(t, conv.KindWeChatOA, `{"app_id":"`+appID+`"}`, safeSecrets())
	for pad := 1; pad <= 32; pad++ {
		// 16 random bytes, length, message, app id, then pad bytes of
		// value pad, one of them wrong: a padding error at every length.
		// The message grows until exactly pad bytes complete the block.
		var msg []byte
		for n := 1; ; n++ {
			msg = wechattest.Text("gh_1", openid, strings.Repeat("x", n), 5, time.Now().Unix()).XML()
			if (20+len(msg)+len(appID)+pad)%32 == 0 {
				break
			}
		}
		body := append(make([]byte, 16), byte(len(msg)>>24), byte(len(msg)>>16), byte(len(msg)>>8), byte(len(msg)))
		body = append(append(body, msg...), appID...)
		for range pad {
			body = append(body, byte(pad))
		}
		if pad == 1 {
			body[len(body)-1] = 0 // a lone pad byte can only be wrong by value
		} else {
			body[len(body)-pad] ^= 0x40
		}
		status, resp, err := e.pusher(wechattest.ModeSafe, aesKey).PushMessage(t.Context(),
			wechattest.Text("gh_1", openid, "x", int64(pad), time.Now().Unix()), wechattest.WithEncrypt(sealRaw(t, body)))
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusBadRequest {
			t.Fatalf("pad %d: status %d %q, want 400", pad, status, resp)
		}
	}
	if n := len(e.bus.published()); n != 0 {
		t.Errorf("%d envelopes published from badly padded pushes", n)
	}
}

func TestWebhookUnknownChannel(t *testing.T) {
	e := newHookEnv(t, conv.KindWeChatOA, `{"app_id":"`+appID+`"}`, safeSecrets())
	for _, path := range []string{"/v1/hooks/wechat/123456789", "/v1/hooks/wechat/abc", wechat.WebhookPath(e.other)} {
		p := e.pusher(wechattest.ModeSafe, aesKey)
		p.URL = e.url + path
		status, _, err := p.PushMessage(t.Context(), wechattest.Text("gh_1", openid, "x", 9, time.Now().Unix()))
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", path, status)
		}
	}
}

func TestWebhookBusDownIsNotSuccess(t *testing.T) {
	e := newHookEnv(t, conv.KindWeChatOA, `{"app_id":"`+appID+`"}`, safeSecrets())
	e.bus.fail = fmt.Errorf("nats: %w", conv.ErrUnavailable)
	msg := wechattest.Text("gh_1", openid, "are you there?", 77, time.Now().Unix())
	status, body, err := e.pusher(wechattest.ModeSafe, aesKey).PushMessage(t.Context(), msg)
	if err != nil {
		t.Fatal(err)
	}
	if status == http.StatusOK || string(body) == "success" {
		t.Fatalf("bus down answered %d %q: WeChat would not retry", status, body)
	}
	// WeChat's retry then lands, with the same dedup key.
	status, body, _ = e.pusher(wechattest.ModeSafe, aesKey).PushMessage(t.Context(), msg)
	if status != http.StatusOK || string(body) != "success" {
		t.Fatalf("retry answered %d %q", status, body)
	}
	if got := e.bus.published(); len(got) != 1 || got[0].ExternalID != "msg:"+openid+":77" {
		t.Fatalf("published %+v", got)
	}
}

func TestWebhookMiniProgramJSON(t *testing.T) {
	e := newHookEnv(t, conv.KindWeChatMP, `{"app_id":"`+appID+`","data_format":"json"}`, safeSecrets())
	p := e.pusher(wechattest.ModeSafe, aesKey)
	p.Format = wechattest.FormatJSON
	status, body, err := p.PushMessage(t.Context(), wechattest.UserEnterTempSession("gh_1", openid, "order-42", time.Now().Unix()))
	if err != nil || status != http.StatusOK || string(body) != "success" {
		t.Fatalf("push = %d %q %v", status, body, err)
	}
	got := e.bus.published()
	if len(got) != 1 || !got[0].System || got[0].Scene != "order-42" {
		t.Fatalf("published %+v, want one system event with scene order-42", got)
	}
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name, kind, raw string
		ok              bool
	}{
		{"defaults", "wechat_oa", `{"app_id":"wx1"}`, true},
		{"proxy", "wechat_oa", `{"app_id":"wx1","api_base":"http://egress.internal:8080/wx/"}`, true},
		{"no app id", "wechat_oa", `{}`, false},
		{"api base not a URL", "wechat_oa", `{"app_id":"wx1","api_base":"ftp://x"}`, false},
		{"json on an official account", "wechat_oa", `{"app_id":"wx1","data_format":"json"}`, false},
		{"json on a mini program", "wechat_mp", `{"app_id":"wx1","data_format":"json"}`, true},
		{"unknown format", "wechat_mp", `{"app_id":"wx1","data_format":"yaml"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := wechat.ParseConfig(conv.ChannelKind(tc.kind), json.RawMessage(tc.raw))
			if (err == nil) != tc.ok {
				t.Fatalf("ParseConfig = %+v, %v; want ok=%v", c, err, tc.ok)
			}
			if err != nil && !errors.Is(err, conv.ErrInvalid) {
				t.Errorf("error %v is not ErrInvalid", err)
			}
			if tc.name == "proxy" && c.APIBase != "http://egress.internal:8080/wx" {
				t.Errorf("api_base = %q, want the trailing slash trimmed", c.APIBase)
			}
		})
	}
}

func TestKindsRefuseBadConfig(t *testing.T) {
	reg := hub.NewRegistry(wechat.Kinds()...)
	for _, tc := range []struct {
		name, raw, want string
	}{
		{"misspelled secret", `{"app_id":"wx1","app_secret":"s","token":"tok","encodingAESKey":"` + aesKey + `"}`, `unknown field "encodingAESKey"`},
		{"short key", `{"app_id":"wx1","app_secret":"s","token":"tok","encoding_aes_key":"tooShortKey"}`, "encoding_aes_key is not an EncodingAESKey"},
		{"token length", `{"app_id":"wx1","app_secret":"s","token":"t"}`, "token must be 3 to 32 characters"},
		{"previous without current", `{"app_id":"wx1","app_secret":"s","token":"tok","previous_encoding_aes_key":"` + prevKey + `"}`, "needs encoding_aes_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := reg.Split(conv.KindWeChatOA, []byte(tc.raw))
			if !errors.Is(err, conv.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Split = %v, want ErrInvalid saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "tooShortKey") || strings.Contains(err.Error(), aesKey) {
				t.Fatalf("error echoes a secret: %v", err)
			}
		})
	}
	config, secrets, err := reg.Split(conv.KindWeChatOA, []byte(`{"app_id":"wx1","app_secret":"s","token":"tok","encoding_aes_key":"`+aesKey+`"}`))
	if err != nil || strings.Contains(string(config), aesKey) || secrets["encoding_aes_key"] != aesKey {
		t.Fatalf("good config: %s %v %v", config, secrets, err)
	}
}

func TestWebhookDisabledChannel(t *testing.T) {
	e := newHookEnv(t, conv.KindWeChatOA, `{"app_id":"`+appID+`"}`, safeSecrets(),
		func(c *wechat.Config) { c.ChannelTTL = time.Nanosecond }) // no caching: see each change at once
	push := func(id int64) int {
		t.Helper()
		status, _, err := e.pusher(wechattest.ModeSafe, aesKey).PushMessage(t.Context(), wechattest.Text("gh_1", openid, "hi", id, time.Now().Unix()))
		if err != nil {
			t.Fatal(err)
		}
		return status
	}
	setDisabled := func(off bool) {
		t.Helper()
		ch := e.channel
		ch.Disabled = off
		if err := e.store.Tx(t.Context(), ch.TenantID, func(tx storage.Tx) error { return tx.UpdateChannel(t.Context(), ch) }); err != nil {
			t.Fatal(err)
		}
	}
	if s := push(1); s != http.StatusOK {
		t.Fatalf("enabled channel: %d", s)
	}
	setDisabled(true)
	if s := push(2); s != http.StatusNotFound {
		t.Fatalf("disabled channel: %d, want 404", s)
	}
	status, _, _ := e.pusher(wechattest.ModeSafe, aesKey).Verify(t.Context(), "123")
	if status != http.StatusNotFound {
		t.Fatalf("verification on a disabled channel: %d, want 404", status)
	}
	setDisabled(false)
	if s := push(3); s != http.StatusOK {
		t.Fatalf("re-enabled channel: %d", s)
	}
	if n := len(e.bus.published()); n != 2 {
		t.Fatalf("%d envelopes published, want 2 (nothing from the disabled time)", n)
	}
}
