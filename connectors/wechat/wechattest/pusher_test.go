package wechattest

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/silenceper/wechat/v2/util"

	"github.com/switchboard-hq/switchboard/core/conv"
)

const (
	hookToken = "hooktoken123"
	hookAppID = "wxoa"
)

// hookKey is a fixed EncodingAESKey: 43 characters, 32 bytes of key.
var hookKey = strings.TrimSuffix(base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789ABCDEF")), "=")

// captured is one request the webhook received.
type captured struct {
	method      string
	query       url.Values
	contentType string
	body        []byte
}

// hook is a webhook recording what the pusher sends. GET answers echostr
// only when the signature checks out under a reference implementation.
type hook struct {
	mu   sync.Mutex
	reqs []captured
	srv  *httptest.Server
}

func startHook(t *testing.T) *hook {
	t.Helper()
	h := &hook{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.reqs = append(h.reqs, captured{r.Method, r.URL.Query(), r.Header.Get("Content-Type"), body})
		h.mu.Unlock()
		q := r.URL.Query()
		if r.Method == http.MethodGet {
			if util.Signature(hookToken, q.Get("timestamp"), q.Get("nonce")) != q.Get("signature") {
				http.Error(w, "bad signature", http.StatusForbidden)
				return
			}
			_, _ = io.WriteString(w, q.Get("echostr"))
			return
		}
		_, _ = io.WriteString(w, "success")
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) last(t *testing.T) captured {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.reqs) == 0 {
		t.Fatal("the webhook received nothing")
	}
	return h.reqs[len(h.reqs)-1]
}

// refSign is a second, deliberately plain signature implementation.
func refSign(parts ...string) string {
	s := append([]string(nil), parts...)
	sort.Strings(s)
	sum := sha1.Sum([]byte(strings.Join(s, "")))
	return hex.EncodeToString(sum[:])
}

// elementNames lists the child elements of an XML document's root.
func elementNames(t *testing.T, doc []byte) []string {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(doc))
	var names []string
	depth := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("XML %q: %v", doc, err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 2 {
				names = append(names, el.Name.Local)
			}
		case xml.EndElement:
			depth--
		}
	}
}

func TestSign(t *testing.T) {
	for _, parts := range [][]string{
		{hookToken, "1409304348", "1372623149"},
		{"b", "a", "c", "enc+/="},
		{"", "", ""},
	} {
		if got, want := Sign(parts...), util.Signature(append([]string(nil), parts...)...); got != want {
			t.Fatalf("Sign(%q) = %s, silenceper says %s", parts, got, want)
		}
		if got, want := Sign(parts...), refSign(parts...); got != want {
			t.Fatalf("Sign(%q) = %s, reference says %s", parts, got, want)
		}
	}
}

func TestPushModes(t *testing.T) {
	h := startHook(t)
	now := time.Unix(1_700_000_000, 0)
	msg := Text("gh_abc", "o1", "hello <world> & ]]> you", 24_000_000_000_000_001, now.Unix())

	tests := []struct {
		name   string
		mode   Mode
		format Format
		// fields the body must have, in order
		wantFields []string
	}{
		{"plain XML", ModePlain, FormatXML, []string{"ToUserName", "FromUserName", "CreateTime", "MsgType", "Content", "MsgId"}},
		{"compat XML", ModeCompat, FormatXML, []string{"ToUserName", "FromUserName", "CreateTime", "MsgType", "Content", "MsgId", "Encrypt"}},
		{"safe XML", ModeSafe, FormatXML, []string{"ToUserName", "Encrypt"}},
		{"plain JSON", ModePlain, FormatJSON, []string{"ToUserName", "FromUserName", "CreateTime", "MsgType", "Content", "MsgId"}},
		{"compat JSON", ModeCompat, FormatJSON, []string{"ToUserName", "FromUserName", "CreateTime", "MsgType", "Content", "MsgId", "Encrypt"}},
		{"safe JSON", ModeSafe, FormatJSON, []string{"ToUserName", "Encrypt"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &Pusher{URL: h.srv.URL + "/v1/hooks/wechat/42?x=1", Token: hookToken, EncodingAESKey: hookKey, AppID: hookAppID,
				Mode: tc.mode, Format: tc.format, Now: func() time.Time { return now }}
			status, body, err := p.PushMessage(context.Background(), msg)
			if err != nil || status != http.StatusOK || string(body) != "success" {
				t.Fatalf("push: %d %q %v", status, body, err)
			}
			req := h.last(t)
			q := req.query
			if req.method != http.MethodPost || q.Get("x") != "1" {
				t.Fatalf("request %s %v: method or the URL's own query lost", req.method, q)
			}
			if q.Get("timestamp") != "1700000000" || len(q.Get("nonce")) != 10 || q.Get("openid") != "o1" {
				t.Fatalf("query %v", q)
			}
			if want := refSign(hookToken, q.Get("timestamp"), q.Get("nonce")); q.Get("signature") != want {
				t.Fatalf("signature %s, want %s", q.Get("signature"), want)
			}
			plainBody := msg.Render(tc.format)
			var names []string
			var enc string
			if tc.format == FormatJSON {
				if req.contentType != "application/json" {
					t.Fatalf("Content-Type %q", req.contentType)
				}
				dec := json.NewDecoder(bytes.NewReader(req.body))
				dec.UseNumber()
				if _, err := dec.Token(); err != nil {
					t.Fatal(err)
				}
				for dec.More() {
					k, _ := dec.Token()
					var v any
					if err := dec.Decode(&v); err != nil {
						t.Fatalf("JSON body %s: %v", req.body, err)
					}
					names = append(names, k.(string))
					if k == "Encrypt" {
						enc = v.(string)
					}
				}
			} else {
				if req.contentType != "text/xml" {
					t.Fatalf("Content-Type %q", req.contentType)
				}
				names = elementNames(t, req.body)
				var env struct{ Encrypt string }
				_ = xml.Unmarshal(req.body, &env)
				enc = env.Encrypt
			}
			if strings.Join(names, ",") != strings.Join(tc.wantFields, ",") {
				t.Fatalf("body fields %v, want %v\n%s", names, tc.wantFields, req.body)
			}
			if tc.mode == ModePlain {
				if q.Has("encrypt_type") || q.Has("msg_signature") || !bytes.Equal(req.body, plainBody) {
					t.Fatalf("plain push: query %v body %s", q, req.body)
				}
				return
			}
			if q.Get("encrypt_type") != "aes" {
				t.Fatalf("encrypt_type %q", q.Get("encrypt_type"))
			}
			if want := util.Signature(hookToken, q.Get("timestamp"), q.Get("nonce"), enc); q.Get("msg_signature") != want {
				t.Fatalf("msg_signature %s, want %s", q.Get("msg_signature"), want)
			}
			_, plain, err := util.DecryptMsg(hookAppID, enc, hookKey)
			if err != nil {
				t.Fatalf("silenceper cannot decrypt the push: %v", err)
			}
			if !bytes.Equal(plain, plainBody) {
				t.Fatalf("decrypted %s\nwant %s", plain, plainBody)
			}
			if tc.mode == ModeCompat && !bytes.HasPrefix(req.body, bytes.TrimSuffix(plainBody, []byte("</xml>"))) && tc.format == FormatXML {
				t.Fatalf("compat body does not keep the plaintext: %s", req.body)
			}
		})
	}
}

func TestPushTampering(t *testing.T) {
	h := startHook(t)
	now := time.Unix(1_700_000_000, 0)
	p := &Pusher{URL: h.srv.URL, Token: hookToken, EncodingAESKey: hookKey, AppID: hookAppID, Mode: ModeSafe, Now: func() time.Time { return now }}
	msg := Text("gh_abc", "o1", "hi", 1, now.Unix()).XML()
	push := func(t *testing.T, opts ...PushOption) (url.Values, string) {
		t.Helper()
		if _, _, err := p.Push(context.Background(), msg, opts...); err != nil {
			t.Fatal(err)
		}
		req := h.last(t)
		var env struct{ Encrypt string }
		if err := xml.Unmarshal(req.body, &env); err != nil {
			t.Fatal(err)
		}
		return req.query, env.Encrypt
	}

	t.Run("bad signature", func(t *testing.T) {
		q, _ := push(t, WithBadSignature())
		if q.Get("signature") == refSign(hookToken, q.Get("timestamp"), q.Get("nonce")) {
			t.Fatal("signature still valid")
		}
	})
	t.Run("bad msg_signature", func(t *testing.T) {
		q, enc := push(t, WithBadMsgSignature())
		if q.Get("msg_signature") == refSign(hookToken, q.Get("timestamp"), q.Get("nonce"), enc) {
			t.Fatal("msg_signature still valid")
		}
		if q.Get("signature") != refSign(hookToken, q.Get("timestamp"), q.Get("nonce")) {
			t.Fatal("signature broken too")
		}
	})
	t.Run("stale timestamp", func(t *testing.T) {
		q, enc := push(t, WithTimestamp(now.Add(-time.Hour)), WithNonce("1234567890"))
		if q.Get("timestamp") != "1699996400" || q.Get("nonce") != "1234567890" {
			t.Fatalf("query %v", q)
		}
		if q.Get("msg_signature") != refSign(hookToken, "1699996400", "1234567890", enc) {
			t.Fatal("signatures must stay valid for the stale timestamp")
		}
	})
	t.Run("other AppID in ciphertext", func(t *testing.T) {
		_, enc := push(t, WithCipherAppID("wxsomeoneelse"))
		if _, _, err := util.DecryptMsg(hookAppID, enc, hookKey); err == nil {
			t.Fatal("ciphertext still decrypts for our AppID")
		}
		if _, plain, err := util.DecryptMsg("wxsomeoneelse", enc, hookKey); err != nil || !bytes.Equal(plain, msg) {
			t.Fatalf("ciphertext for the other AppID: %q %v", plain, err)
		}
	})
	t.Run("raw ciphertext", func(t *testing.T) {
		q, enc := push(t, WithEncrypt("bm90IGNpcGhlcnRleHQ="))
		if enc != "bm90IGNpcGhlcnRleHQ=" || q.Get("msg_signature") != refSign(hookToken, q.Get("timestamp"), q.Get("nonce"), enc) {
			t.Fatalf("Encrypt %q query %v", enc, q)
		}
	})
	t.Run("query override", func(t *testing.T) {
		q, _ := push(t, WithQuery("openid", ""), WithQuery("encrypt_type", "des"))
		if q.Has("openid") || q.Get("encrypt_type") != "des" {
			t.Fatalf("query %v", q)
		}
	})
	t.Run("bad key", func(t *testing.T) {
		bad := *p
		bad.EncodingAESKey = "short"
		if _, _, err := bad.Push(context.Background(), msg); !errors.Is(err, conv.ErrInvalid) {
			t.Fatalf("err %v, want ErrInvalid", err)
		}
	})
}

func TestVerify(t *testing.T) {
	h := startHook(t)
	p := &Pusher{URL: h.srv.URL, Token: hookToken}
	status, body, err := p.Verify(context.Background(), "echo-8231")
	if err != nil || status != http.StatusOK || string(body) != "echo-8231" {
		t.Fatalf("verify: %d %q %v", status, body, err)
	}
	if req := h.last(t); req.method != http.MethodGet || req.query.Get("echostr") != "echo-8231" {
		t.Fatalf("verify request %+v", req)
	}
	status, _, err = p.Verify(context.Background(), "echo-8231", WithBadSignature())
	if err != nil || status != http.StatusForbidden {
		t.Fatalf("verify with a bad signature: %d %v", status, err)
	}
}

func TestPushRecordsInteractions(t *testing.T) {
	h := startHook(t)
	s, clk := startClocked(t, Config{})
	tok := token(t, s, "wxoa", "oasecret")
	p := &Pusher{URL: h.srv.URL, Token: hookToken, AppID: "wxoa", Server: s}
	ctx := context.Background()

	wantCode(t, "before any push", sendText(t, s, tok, "o7", "hi"), 40003)
	if _, _, err := p.PushMessage(ctx, Text("gh_abc", "o7", "hello", 1, clk.Now().Unix())); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "after the user's message", sendText(t, s, tok, "o7", "hi"), 0)

	if _, _, err := p.PushMessage(ctx, Event("gh_abc", "o7", "unsubscribe", "", clk.Now().Unix())); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "after unsubscribe", sendText(t, s, tok, "o7", "hi"), 43004)
	if _, _, err := p.PushMessage(ctx, Event("gh_abc", "o7", "subscribe", "qrscene_7", clk.Now().Unix())); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		wantCode(t, "after subscribe", sendText(t, s, tok, "o7", "hi"), 0)
	}
	wantCode(t, "fourth reply after subscribe", sendText(t, s, tok, "o7", "hi"), 45047)

	mp := &Pusher{URL: h.srv.URL, Token: hookToken, AppID: "wxmp", Format: FormatJSON, Server: s}
	s.AddMiniProgram("wxmp", "mpsecret")
	mtok := token(t, s, "wxmp", "mpsecret")
	if _, _, err := mp.PushMessage(ctx, UserEnterTempSession("gh_mp", "m7", "from-card", clk.Now().Unix())); err != nil {
		t.Fatal(err)
	}
	a := postJSON(t, s, PathBusinessSend, tq(mtok), `{"touser":"m7","msgtype":"text","text":{"content":"welcome"}}`)
	wantCode(t, "reply after user_enter_tempsession", a, 0)
}

func TestDecryptReply(t *testing.T) {
	p := &Pusher{Token: hookToken, EncodingAESKey: hookKey, AppID: hookAppID}
	reply := Text("o1", "gh_abc", "passive reply", 0, 1_700_000_000).XML()
	enc, err := util.EncryptMsg([]byte("0123456789abcdef"), reply, hookAppID, hookKey)
	if err != nil {
		t.Fatal(err)
	}
	build := func(sig string) []byte {
		return []byte("<xml><Encrypt>" + cdata(string(enc)) + "</Encrypt><MsgSignature>" + cdata(sig) +
			"</MsgSignature><TimeStamp>1700000000</TimeStamp><Nonce>" + cdata("nonce1") + "</Nonce></xml>")
	}
	good := util.Signature(hookToken, "1700000000", "nonce1", string(enc))
	got, err := p.DecryptReply(build(good))
	if err != nil || !bytes.Equal(got, reply) {
		t.Fatalf("DecryptReply = %q, %v", got, err)
	}
	if _, err := p.DecryptReply(build(corrupt(good))); !errors.Is(err, conv.ErrUnauthorized) {
		t.Fatalf("bad MsgSignature: err %v", err)
	}
	if _, err := p.DecryptReply([]byte("success")); !errors.Is(err, conv.ErrInvalid) {
		t.Fatalf("plain reply: err %v", err)
	}
	other := *p
	other.AppID = "wxother"
	if _, err := other.DecryptReply(build(good)); !errors.Is(err, conv.ErrInvalid) {
		t.Fatalf("reply for another AppID: err %v", err)
	}
}
