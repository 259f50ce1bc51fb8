package wechattest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/silenceper/wechat/v2/util"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Mode is the message encryption mode configured in WeChat's console.
type Mode int

const (
	// ModePlain sends plaintext bodies signed with signature only.
	ModePlain Mode = iota
	// ModeCompat sends the plaintext fields plus an Encrypt field.
	ModeCompat
	// ModeSafe sends only ToUserName and Encrypt.
	ModeSafe
)

// Format is the push data format (mini programs may choose JSON).
type Format int

const (
	// FormatXML is the default push format (Official Accounts always).
	FormatXML Format = iota
	// FormatJSON is the JSON format a mini program may be configured for.
	FormatJSON
)

// maxResponse caps how much of a webhook's answer the pusher reads.
const maxResponse = 1 << 20

// Pusher plays WeChat's side of a webhook: the URL verification GET and
// signed, optionally encrypted message pushes. Its signatures are computed
// here with crypto/sha1 and its encryption is silenceper's util.EncryptMsg,
// deliberately independent of the connector's own wire code.
type Pusher struct {
	URL            string // the webhook URL as configured in WeChat's console
	Token          string
	EncodingAESKey string // 43 characters; needed in ModeCompat and ModeSafe
	AppID          string // ends the ciphertext; also the app interactions are recorded for
	Mode           Mode
	Format         Format
	Client         *http.Client     // default http.DefaultClient
	Now            func() time.Time // timestamps (default time.Now)
	// Server, when set, records each pushed message or event as the user's
	// interaction with AppID (reply window, subscription), at Server's clock.
	Server *Server
}

// PushOption tampers with one Verify or Push for negative tests.
type PushOption func(*pushOpts)

type pushOpts struct {
	badSig, badMsgSig bool
	ts                *time.Time
	nonce             string
	cipherAppID       *string
	encrypt           *string
	query             map[string]string
}

// WithBadSignature sends a wrong signature parameter.
func WithBadSignature() PushOption { return func(o *pushOpts) { o.badSig = true } }

// WithBadMsgSignature sends a wrong msg_signature (encrypted modes).
func WithBadMsgSignature() PushOption { return func(o *pushOpts) { o.badMsgSig = true } }

// WithTimestamp signs with timestamp t instead of Now (a stale or future
// timestamp; the signatures stay valid for it).
func WithTimestamp(t time.Time) PushOption { return func(o *pushOpts) { o.ts = &t } }

// WithNonce uses nonce instead of a random one (for replay tests).
func WithNonce(nonce string) PushOption { return func(o *pushOpts) { o.nonce = nonce } }

// WithCipherAppID encrypts with appID at the end of the plaintext instead
// of Pusher.AppID (a push meant for another account).
func WithCipherAppID(appID string) PushOption { return func(o *pushOpts) { o.cipherAppID = &appID } }

// WithEncrypt sends encrypt as the Encrypt field verbatim (garbage,
// truncated or foreign ciphertext); msg_signature is computed over it.
func WithEncrypt(encrypt string) PushOption { return func(o *pushOpts) { o.encrypt = &encrypt } }

// WithQuery sets a query parameter after all others are computed; value ""
// removes it (e.g. WithQuery("openid", "")).
func WithQuery(key, value string) PushOption {
	return func(o *pushOpts) {
		if o.query == nil {
			o.query = make(map[string]string)
		}
		o.query[key] = value
	}
}

// Sign is WeChat's signature: the hex SHA-1 of the parts sorted and
// concatenated (token, timestamp, nonce, and Encrypt for msg_signature).
func Sign(parts ...string) string {
	sorted := slices.Clone(parts)
	slices.Sort(sorted)
	h := sha1.New()
	for _, p := range sorted {
		_, _ = io.WriteString(h, p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Verify sends the URL verification GET WeChat sends when a business saves
// its server configuration; a correct webhook answers echostr verbatim.
func (p *Pusher) Verify(ctx context.Context, echostr string, opts ...PushOption) (int, []byte, error) {
	o := collect(opts)
	ts, nonce := p.stamp(o)
	sig := Sign(p.Token, ts, nonce)
	if o.badSig {
		sig = corrupt(sig)
	}
	q := url.Values{"signature": {sig}, "timestamp": {ts}, "nonce": {nonce}, "echostr": {echostr}}
	return p.do(ctx, http.MethodGet, q, o, nil)
}

// Push posts body (a rendered Message, or any bytes) as WeChat would in
// p.Mode: signature, timestamp, nonce and openid in the query; in the
// encrypted modes also encrypt_type=aes and msg_signature, and a body of
// the plaintext fields plus Encrypt (compat) or ToUserName and Encrypt
// only (safe). It returns the webhook's status and (capped) body.
func (p *Pusher) Push(ctx context.Context, body []byte, opts ...PushOption) (int, []byte, error) {
	o := collect(opts)
	info := sniff(body, p.Format)
	if p.Server != nil {
		s := p.Server
		s.mu.Lock()
		s.interactLocked(p.AppID, info.FromUserName, info.MsgType, info.Event, s.now())
		s.mu.Unlock()
	}
	ts, nonce := p.stamp(o)
	sig := Sign(p.Token, ts, nonce)
	if o.badSig {
		sig = corrupt(sig)
	}
	q := url.Values{"signature": {sig}, "timestamp": {ts}, "nonce": {nonce}, "openid": {info.FromUserName}}
	payload := body
	if p.Mode != ModePlain {
		var enc string
		if o.encrypt != nil {
			enc = *o.encrypt
		} else {
			appID := p.AppID
			if o.cipherAppID != nil {
				appID = *o.cipherAppID
			}
			random := make([]byte, 16)
			_, _ = rand.Read(random)
			b, err := util.EncryptMsg(random, body, appID, p.EncodingAESKey)
			if err != nil {
				return 0, nil, fmt.Errorf("wechattest.Push: encrypt: %v: %w", err, conv.ErrInvalid)
			}
			enc = string(b)
		}
		msgSig := Sign(p.Token, ts, nonce, enc)
		if o.badMsgSig {
			msgSig = corrupt(msgSig)
		}
		q.Set("encrypt_type", "aes")
		q.Set("msg_signature", msgSig)
		payload = envelope(p.Mode, p.Format, body, info.ToUserName, enc)
	}
	return p.do(ctx, http.MethodPost, q, o, payload)
}

// PushMessage renders m in p.Format and pushes it.
func (p *Pusher) PushMessage(ctx context.Context, m Message, opts ...PushOption) (int, []byte, error) {
	return p.Push(ctx, m.Render(p.Format), opts...)
}

// DecryptReply checks and opens an encrypted passive reply
// (<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>, or the same
// keys in JSON): msg_signature against p.Token, then decryption with
// p.EncodingAESKey, which also checks the AppID at the end.
func (p *Pusher) DecryptReply(body []byte) ([]byte, error) {
	if len(body) > maxResponse {
		return nil, fmt.Errorf("wechattest.DecryptReply: %d bytes: %w", len(body), conv.ErrInvalid)
	}
	var r struct {
		Encrypt      string `xml:"Encrypt" json:"Encrypt"`
		MsgSignature string `xml:"MsgSignature" json:"MsgSignature"`
		TimeStamp    string `xml:"TimeStamp" json:"TimeStamp"`
		Nonce        string `xml:"Nonce" json:"Nonce"`
	}
	trimmed := bytes.TrimSpace(body)
	var err error
	if len(trimmed) > 0 && trimmed[0] == '{' {
		err = json.Unmarshal(trimmed, &r)
	} else {
		err = xml.Unmarshal(trimmed, &r)
	}
	if err != nil || r.Encrypt == "" {
		return nil, fmt.Errorf("wechattest.DecryptReply: not an encrypted reply: %w", conv.ErrInvalid)
	}
	want := Sign(p.Token, r.TimeStamp, r.Nonce, r.Encrypt)
	if subtle.ConstantTimeCompare([]byte(want), []byte(r.MsgSignature)) != 1 {
		return nil, fmt.Errorf("wechattest.DecryptReply: MsgSignature mismatch: %w", conv.ErrUnauthorized)
	}
	_, plain, err := util.DecryptMsg(p.AppID, r.Encrypt, p.EncodingAESKey)
	if err != nil {
		return nil, fmt.Errorf("wechattest.DecryptReply: %v: %w", err, conv.ErrInvalid)
	}
	return plain, nil
}

func collect(opts []PushOption) *pushOpts {
	o := &pushOpts{}
	for _, f := range opts {
		f(o)
	}
	return o
}

func (p *Pusher) stamp(o *pushOpts) (ts, nonce string) {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	t := now()
	if o.ts != nil {
		t = *o.ts
	}
	nonce = o.nonce
	if nonce == "" {
		n, _ := rand.Int(rand.Reader, big.NewInt(1_000_000_000))
		nonce = strconv.FormatInt(n.Int64()+1_000_000_000, 10) // ten digits, like WeChat's
	}
	return strconv.FormatInt(t.Unix(), 10), nonce
}

func (p *Pusher) do(ctx context.Context, method string, q url.Values, o *pushOpts, body []byte) (int, []byte, error) {
	u, err := url.Parse(p.URL)
	if err != nil {
		return 0, nil, fmt.Errorf("wechattest.Pusher: URL %q: %v: %w", p.URL, err, conv.ErrInvalid)
	}
	all := u.Query()
	for k, v := range q {
		all[k] = v
	}
	for k, v := range o.query {
		if v == "" {
			all.Del(k)
		} else {
			all.Set(k, v)
		}
	}
	u.RawQuery = all.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return 0, nil, fmt.Errorf("wechattest.Pusher: %w", err)
	}
	req.Header.Set("User-Agent", "Mozilla/4.0")
	if body != nil {
		if p.Format == FormatJSON {
			req.Header.Set("Content-Type", "application/json")
		} else {
			req.Header.Set("Content-Type", "text/xml")
		}
	}
	client := p.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("wechattest.Pusher %s: %w", method, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return resp.StatusCode, b, fmt.Errorf("wechattest.Pusher: read answer: %w", err)
	}
	return resp.StatusCode, b, nil
}

// pushInfo is what the pusher needs to know about a body it sends.
type pushInfo struct {
	ToUserName   string `xml:"ToUserName" json:"ToUserName"`
	FromUserName string `xml:"FromUserName" json:"FromUserName"`
	MsgType      string `xml:"MsgType" json:"MsgType"`
	Event        string `xml:"Event" json:"Event"`
}

// sniff reads the routing fields of a body; garbage yields zero values
// (tests push garbage on purpose).
func sniff(body []byte, f Format) pushInfo {
	var info pushInfo
	if f == FormatJSON {
		_ = json.Unmarshal(body, &info)
	} else {
		_ = xml.Unmarshal(body, &info)
	}
	return info
}

// envelope builds the encrypted-mode body. Compat mode keeps body and adds
// Encrypt before its end; a body that is not an XML document or JSON
// object gets the safe-mode shape.
func envelope(m Mode, f Format, body []byte, to, enc string) []byte {
	if f == FormatJSON {
		trimmed := bytes.TrimSpace(body)
		if m == ModeCompat && len(trimmed) > 2 && trimmed[0] == '{' && trimmed[len(trimmed)-1] == '}' && json.Valid(trimmed) {
			out := append([]byte(nil), trimmed[:len(trimmed)-1]...)
			out = append(out, `,"Encrypt":`...)
			out = append(out, jsonString(enc)...)
			return append(out, '}')
		}
		return jsonObject([]field{fs("ToUserName", to), fs("Encrypt", enc)})
	}
	end := bytes.LastIndex(body, []byte("</xml>"))
	if m == ModeCompat && end >= 0 {
		out := append([]byte(nil), body[:end]...)
		if end > 0 && body[end-1] != '\n' {
			out = append(out, '\n')
		}
		out = append(out, "<Encrypt>"+cdata(enc)+"</Encrypt>\n"...)
		return append(out, body[end:]...)
	}
	return []byte("<xml>\n    <ToUserName>" + cdata(to) + "</ToUserName>\n    <Encrypt>" + cdata(enc) + "</Encrypt>\n</xml>")
}

// corrupt changes the last hex digit of a signature.
func corrupt(sig string) string {
	if sig == "" {
		return "0"
	}
	last := sig[len(sig)-1]
	repl := byte('0')
	if last == '0' {
		repl = '1'
	}
	return sig[:len(sig)-1] + string(repl)
}
