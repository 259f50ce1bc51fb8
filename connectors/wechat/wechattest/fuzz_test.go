package wechattest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/silenceper/wechat/v2/util"
)

// FuzzSendBody feeds arbitrary bodies to custom/send: every answer must be
// a JSON errcode, never a panic, and only errcode 0 may record a message.
func FuzzSendBody(f *testing.F) {
	for _, seed := range []string{
		`{"touser":"o1","msgtype":"text","text":{"content":"hi"}}`,
		`{"touser":"o1","msgtype":"news","news":{"articles":[{"title":"t","url":"u"}]}}`,
		`{"touser":"o1","msgtype":"miniprogrampage","miniprogrampage":{"title":"t","appid":"a","pagepath":"p","thumb_media_id":"m"}}`,
		`{"touser":["o1"]}`, `null`, `{}`, `[`, "",
	} {
		f.Add([]byte(seed))
	}
	clk := NewClock(t0)
	s, err := New(Config{Now: clk.Now, RepliesPerMessage: 1 << 30})
	if err != nil {
		f.Fatal(err)
	}
	s.AddApp("wxoa", "oasecret")
	s.Interact("wxoa", "o1", t0)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, PathToken+"?grant_type=client_credential&appid=wxoa&secret=oasecret", nil))
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &tok); err != nil || tok.AccessToken == "" {
		f.Fatalf("token: %s", rec.Body)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		before := len(s.Sent())
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, PathSend+"?access_token="+tok.AccessToken, strings.NewReader(string(body))))
		var a struct {
			Errcode *int   `json:"errcode"`
			Errmsg  string `json:"errmsg"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil || a.Errcode == nil {
			t.Fatalf("answer %q is not a WeChat JSON answer", rec.Body)
		}
		if recorded := len(s.Sent()) - before; (*a.Errcode == 0) != (recorded == 1) {
			t.Fatalf("errcode %d recorded %d messages", *a.Errcode, recorded)
		}
	})
}

// FuzzDecryptReply feeds arbitrary replies to DecryptReply: errors are
// fine, panics are not, and nothing decrypts without a valid signature.
func FuzzDecryptReply(f *testing.F) {
	p := &Pusher{Token: hookToken, EncodingAESKey: hookKey, AppID: hookAppID}
	enc, _ := util.EncryptMsg([]byte("0123456789abcdef"), []byte("<xml/>"), hookAppID, hookKey)
	sig := Sign(hookToken, "1", "n", string(enc))
	f.Add([]byte("<xml><Encrypt>" + string(enc) + "</Encrypt><MsgSignature>" + sig + "</MsgSignature><TimeStamp>1</TimeStamp><Nonce>n</Nonce></xml>"))
	f.Add([]byte(`{"Encrypt":"` + string(enc) + `","MsgSignature":"` + sig + `","TimeStamp":"1","Nonce":"n"}`))
	f.Add([]byte("success"))
	f.Fuzz(func(t *testing.T, body []byte) {
		plain, err := p.DecryptReply(body)
		if err == nil && plain == nil {
			t.Fatal("no error and no plaintext")
		}
	})
}
