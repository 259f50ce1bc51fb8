package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Test keys: base64 of SHA-256 of a label, cut to 43 characters (so they
// use '+' and '/' as well as letters and digits).
const (
	testAppID       = "wx5f2c8e1a9b3d7f60"
	testToken       = "Sw1tchb0ardT0ken"
	testKeyCurrent  = "DVtHiI+RaeRE5uZMp9uF/WysFWY1OMvmD6ILf2OjFWo"
	testKeyPrevious = "4/jhmSMqQaZztZhJVYVAfB8mmXBxdzDXz+YDMZvlHlY"
	testKeyOther    = "B9mF6F9PpPzqqtK0QUwB0RpiEUR3w2qfE97844HsLc4"
)

// The worked example of WeChat's documentation, "消息推送" for mini
// programs (developers.weixin.qq.com/miniprogram/dev/framework/
// server-ability/message-push.html), safe mode with JSON bodies.
const (
	docToken          = "AAAAA"
	docEncodingAESKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	docAppID          = "wxba5fad812f8e6fb9"
	docTimestamp      = "1714112445"
	docNonce          = "415670741"
	docSignature      = "6c5c811b55cc85e0e1b54100749188c20beb3f5d"
	docMsgSignature   = "046e02f8204d34f8ba5fa3b1db94908f3df2e9b3"
	docEncrypt        = "+qdx1OKCy+5JPCBFWw70tm0fJGb2Jmeia4FCB7kao+/Q5c/ohsOzQHi8khUOb05JCpj0JB4RvQMkUyus8TPxLKJGQqcvZqzDpVzazhZv6JsXUnnR8XGT740XgXZUXQ7vJVnAG+tE8NUd4yFyjPy7GgiaviNrlCTj+l5kdfMuFUPpRSrfMZuMcp3Fn2Pede2IuQrKEYwKSqFIZoNqJ4M8EajAsjLY2km32IIjdf8YL/P50F7mStwntrA2cPDrM1kb6mOcfBgRtWygb3VIYnSeOBrebufAlr7F9mFUPAJGj04="
	docRandom         = "a8eedb185eb2fecf"
	docMsg            = `{"ToUserName":"gh_97417a04a28d","FromUserName":"o9AgO5Kd5ggOC-bXrbNODIiE3bGY","CreateTime":1714112445,"MsgType":"event","Event":"debug_demo","debug_str":"hello world"}`

	docReplyRandom       = "707722b803182950"
	docReplyMsg          = `{"demo_resp":"good luck"}`
	docReplyTimestamp    = "1713424427"
	docReplyEncrypt      = "ELGduP2YcVatjqIS+eZbp80MNLoAUWvzzyJxgGzxZO/5sAvd070Bs6qrLARC9nVHm48Y4hyRbtzve1L32tmxSQ=="
	docReplyMsgSignature = "1b9339964ed2e271e7c7b6ff2b0ef902fc94dea1"
)

func newTestCipher(t testing.TB, keys ...string) *Cipher {
	t.Helper()
	if len(keys) == 0 {
		keys = []string{testKeyCurrent, testKeyPrevious}
	}
	c, err := NewCipher(testAppID, keys...)
	if err != nil {
		t.Fatalf("NewCipher: %v", err)
	}
	return c
}

// request is what the webhook handler has in hand for one POST.
type request struct {
	body                           []byte
	format                         Format
	timestamp, nonce, msgSignature string
}

// handle runs the whole inbound path the way the connector's handler is
// meant to: envelope, msg_signature, freshness, decryption, parse,
// normalize.
func handle(c *Cipher, token string, r request, now time.Time) (Normalized, []byte, error) {
	env, err := ParseEnvelope(r.body, r.format)
	if err != nil {
		return Normalized{}, nil, err
	}
	if !Verify(r.msgSignature, token, r.timestamp, r.nonce, env.Encrypt) {
		return Normalized{}, nil, fmt.Errorf("msg_signature: %w", conv.ErrUnauthorized)
	}
	if err := CheckTimestamp(r.timestamp, now, DefaultSkew); err != nil {
		return Normalized{}, nil, err
	}
	plain, _, err := c.Decrypt(env.Encrypt)
	if err != nil {
		return Normalized{}, nil, err
	}
	p, err := Parse(plain, r.format)
	if err != nil {
		return Normalized{}, plain, err
	}
	n, err := Normalize(p)
	return n, plain, err
}

// envelopeBody wraps a ciphertext the way WeChat sends it in safe mode.
func envelopeBody(f Format, toUser, encrypt string) []byte {
	if f == FormatJSON {
		b, _ := json.Marshal(map[string]string{"ToUserName": toUser, "Encrypt": encrypt})
		return b
	}
	return []byte("<xml><ToUserName><![CDATA[" + toUser + "]]></ToUserName><Encrypt><![CDATA[" + encrypt + "]]></Encrypt></xml>")
}

// sealRequest builds a signed safe-mode request around plain.
func sealRequest(t testing.TB, c *Cipher, f Format, plain []byte, ts string) request {
	t.Helper()
	enc, err := c.Encrypt(plain, nil)
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	nonce := "1514711492"
	return request{
		body: envelopeBody(f, "gh_3f2a1b9c8d7e", enc), format: f,
		timestamp: ts, nonce: nonce, msgSignature: Sign(testToken, ts, nonce, enc),
	}
}

// checkNormalized asserts what every successful Normalize must give:
// something core ingest accepts once the connector adds its ids.
func checkNormalized(t *testing.T, n Normalized) {
	t.Helper()
	in := conv.Inbound{
		TenantID: 1, ChannelID: 1, ExternalID: n.ExternalID,
		From:  conv.Identity{Kind: "wechat_openid", ExternalID: n.OpenID},
		Parts: n.Parts, System: n.System, Scene: n.Scene, SentAt: n.SentAt,
	}
	if err := in.Validate(); err != nil {
		t.Fatalf("Normalized does not make a valid conv.Inbound: %v\n%+v", err, n)
	}
	if len(n.Parts) != 1 {
		t.Fatalf("want exactly one part, got %d", len(n.Parts))
	}
	for _, s := range []string{n.ExternalID, n.OpenID, n.Scene, n.Parts[0].Text, n.Parts[0].Title, n.Parts[0].Label} {
		if !utf8.ValidString(s) {
			t.Fatalf("invalid UTF-8 in %q", s)
		}
	}
	if n.System != strings.HasPrefix(n.ExternalID, "evt:") {
		t.Fatalf("System %v but ExternalID %q", n.System, n.ExternalID)
	}
	if n.System != (n.Parts[0].Event != "") {
		t.Fatalf("System %v but Part.Event %q", n.System, n.Parts[0].Event)
	}
	if _, err := json.Marshal(n); err != nil {
		t.Fatalf("Normalized does not marshal: %v", err)
	}
}

// kindOK reports whether err is one of the kinds this package promises.
func kindOK(err error) bool {
	return errors.Is(err, conv.ErrInvalid) || errors.Is(err, conv.ErrForbidden) || errors.Is(err, conv.ErrUnauthorized)
}

func unix(sec int64) time.Time { return time.Unix(sec, 0) }
