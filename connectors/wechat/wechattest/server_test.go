package wechattest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestTokenLifecycle(t *testing.T) {
	s, clk := startClocked(t, Config{})

	tok1 := token(t, s, "wxoa", "oasecret")
	wantCode(t, "fresh token", userInfo(t, s, tok1, "o1"), 0)

	clk.Advance(time.Minute)
	tok2 := token(t, s, "wxoa", "oasecret")
	if tok2 == tok1 {
		t.Fatal("a second /cgi-bin/token call returned the same token")
	}
	wantCode(t, "old token within the overlap", userInfo(t, s, tok1, "o1"), 0)
	clk.Advance(4*time.Minute + 59*time.Second)
	wantCode(t, "old token just before the overlap ends", userInfo(t, s, tok1, "o1"), 0)
	clk.Advance(time.Second)
	wantCode(t, "old token after the overlap", userInfo(t, s, tok1, "o1"), 40001)
	wantCode(t, "new token", userInfo(t, s, tok2, "o1"), 0)

	clk.Advance(7200 * time.Second)
	wantCode(t, "expired token", userInfo(t, s, tok2, "o1"), 42001)
	if got := s.TokenIssued(); got != 2 {
		t.Fatalf("TokenIssued = %d, want 2", got)
	}
}

func TestTokenErrors(t *testing.T) {
	s, _ := startClocked(t, Config{})
	s.AddUser("wxoa", "o2", "")
	tests := []struct {
		name string
		q    url.Values
		code int
	}{
		{"wrong secret", url.Values{"grant_type": {"client_credential"}, "appid": {"wxoa"}, "secret": {"nope"}}, 40125},
		{"unknown appid", url.Values{"grant_type": {"client_credential"}, "appid": {"wxnone"}, "secret": {"oasecret"}}, 40013},
		{"missing grant_type", url.Values{"appid": {"wxoa"}, "secret": {"oasecret"}}, 40002},
		{"wrong grant_type", url.Values{"grant_type": {"password"}, "appid": {"wxoa"}, "secret": {"oasecret"}}, 40002},
		{"missing appid", url.Values{"grant_type": {"client_credential"}, "secret": {"oasecret"}}, 41002},
		{"missing secret", url.Values{"grant_type": {"client_credential"}, "appid": {"wxoa"}}, 41004},
		{"app known only through AddUser", url.Values{"grant_type": {"client_credential"}, "appid": {"wxlazy"}, "secret": {""}}, 40013},
	}
	s.AddUser("wxlazy", "o9", "")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := getJSON(t, s, PathToken, tc.q)
			wantCode(t, tc.name, a, tc.code)
			if !strings.Contains(a.str("errmsg"), "rid:") {
				t.Errorf("errmsg %q has no rid, unlike WeChat's", a.str("errmsg"))
			}
		})
	}
	t.Run("unknown token", func(t *testing.T) { wantCode(t, "unknown token", userInfo(t, s, "forged", "o1"), 40001) })
	t.Run("missing token", func(t *testing.T) {
		wantCode(t, "missing token", getJSON(t, s, PathUserInfo, url.Values{"openid": {"o1"}}), 41001)
	})
	if s.TokenIssued() != 0 {
		t.Fatalf("refused requests minted %d tokens", s.TokenIssued())
	}
}

func stable(t *testing.T, s *Server, secret string, force bool) answer {
	t.Helper()
	body := fmt.Sprintf(`{"grant_type":"client_credential","appid":"wxoa","secret":%q,"force_refresh":%t}`, secret, force)
	return postJSON(t, s, PathStableToken, nil, body)
}

func TestStableToken(t *testing.T) {
	s, clk := startClocked(t, Config{ForceRefreshPerDay: 2})

	a := stable(t, s, "oasecret", false)
	st1 := a.str("access_token")
	if a.code() != 0 || st1 == "" || a["expires_in"] != float64(7200) {
		t.Fatalf("stable_token: %v", a)
	}
	if got := stable(t, s, "oasecret", false).str("access_token"); got != st1 {
		t.Fatal("a normal stable_token call changed the token")
	}
	regular := token(t, s, "wxoa", "oasecret")
	if got := stable(t, s, "oasecret", false).str("access_token"); got != st1 {
		t.Fatal("/cgi-bin/token changed the stable token")
	}
	clk.Advance(10 * time.Minute)
	wantCode(t, "stable token after a /cgi-bin/token call", userInfo(t, s, st1, "o1"), 0)

	// In the last five minutes the platform rolls the token over; the old
	// one lives out its lifetime.
	clk.Set(t0.Add(7200*time.Second - 299*time.Second))
	a = stable(t, s, "oasecret", false)
	st2 := a.str("access_token")
	if st2 == st1 || a["expires_in"] != float64(7200) {
		t.Fatalf("no rollover in the last five minutes: %v", a)
	}
	wantCode(t, "rolled-over stable token", userInfo(t, s, st1, "o1"), 0)
	wantCode(t, "regular token untouched by stable_token", userInfo(t, s, regular, "o1"), 0)

	st3 := stable(t, s, "oasecret", true).str("access_token")
	if st3 == st2 || st3 == "" {
		t.Fatal("force_refresh did not mint a new token")
	}
	wantCode(t, "token invalidated by force_refresh", userInfo(t, s, st2, "o1"), 40001)
	if got := stable(t, s, "oasecret", true).str("access_token"); got != st3 {
		t.Fatal("force_refresh within 30 s refreshed again")
	}
	clk.Advance(31 * time.Second)
	st4 := stable(t, s, "oasecret", true).str("access_token")
	if st4 == st3 {
		t.Fatal("second force_refresh after 30 s did not refresh")
	}
	clk.Advance(31 * time.Second)
	wantCode(t, "third force_refresh of the day", stable(t, s, "oasecret", true), 45009)

	wantCode(t, "wrong secret", stable(t, s, "nope", false), 40125)
	wantCode(t, "not JSON", postJSON(t, s, PathStableToken, nil, "grant_type=client_credential"), 47001)
	wantCode(t, "force_refresh not a boolean", postJSON(t, s, PathStableToken, nil, `{"grant_type":"client_credential","appid":"wxoa","secret":"oasecret","force_refresh":"yes"}`), 47001)
	wantCode(t, "GET", getJSON(t, s, PathStableToken, nil), 43002)
}

func TestReplyWindow(t *testing.T) {
	s, clk := startClocked(t, Config{})
	tok := token(t, s, "wxoa", "oasecret")

	wantCode(t, "no interaction yet", sendText(t, s, tok, "o1", "hi"), 45015)

	s.Interact("wxoa", "o1", clk.Now())
	for i := range 5 {
		wantCode(t, fmt.Sprintf("reply %d", i+1), sendText(t, s, tok, "o1", "hi"), 0)
	}
	wantCode(t, "sixth reply", sendText(t, s, tok, "o1", "hi"), 45047)

	clk.Advance(time.Hour)
	s.Interact("wxoa", "o1", clk.Now())
	wantCode(t, "reply after the user wrote again", sendText(t, s, tok, "o1", "hi"), 0)

	clk.Advance(48 * time.Hour)
	tok = token(t, s, "wxoa", "oasecret")
	wantCode(t, "reply after 48 h", sendText(t, s, tok, "o1", "hi"), 45015)

	s.InteractEvent("wxoa", "o1", "CLICK", clk.Now())
	for i := range 3 {
		wantCode(t, fmt.Sprintf("reply %d after a menu click", i+1), sendText(t, s, tok, "o1", "hi"), 0)
	}
	wantCode(t, "fourth reply after a menu click", sendText(t, s, tok, "o1", "hi"), 45047)
	s.InteractEvent("wxoa", "o1", "VIEW", clk.Now())
	wantCode(t, "VIEW grants nothing", sendText(t, s, tok, "o1", "hi"), 45047)
	clk.Advance(time.Minute)
	wantCode(t, "a minute after the click", sendText(t, s, tok, "o1", "hi"), 45015)

	s.Interact("wxoa", "o1", clk.Now())
	s.InteractEvent("wxoa", "o1", "unsubscribe", clk.Now())
	wantCode(t, "unsubscribed user", sendText(t, s, tok, "o1", "hi"), 43004)
	s.InteractEvent("wxoa", "o1", "subscribe", clk.Now())
	wantCode(t, "resubscribed user", sendText(t, s, tok, "o1", "hi"), 0)

	sent := s.Sent()
	if len(sent) != 5+1+3+1 {
		t.Fatalf("Sent() has %d messages, want only the 10 accepted", len(sent))
	}
	if got := sent[0]; got.AppID != "wxoa" || got.ToUser != "o1" || got.MsgType != "text" || got.Path != PathSend || got.Token == "" {
		t.Fatalf("Sent[0] = %+v", got)
	}
	if !json.Valid(sent[0].Body) || !strings.Contains(string(sent[0].Body), `"content":"hi"`) {
		t.Fatalf("Sent[0].Body = %s", sent[0].Body)
	}
}

func TestReplyWindowMiniProgram(t *testing.T) {
	s, clk := startClocked(t, Config{RepliesPerMessage: 2, ReplyWindow: time.Hour})
	s.AddMiniProgram("wxmp", "mpsecret")
	s.AddUser("wxmp", "m1", "u1")
	tok := token(t, s, "wxmp", "mpsecret")
	send := func() answer {
		return postJSON(t, s, PathBusinessSend, tq(tok), `{"touser":"m1","msgtype":"text","text":{"content":"hi"}}`)
	}
	s.InteractEvent("wxmp", "m1", "user_enter_tempsession", clk.Now())
	wantCode(t, "first reply after entering the session", send(), 0)
	wantCode(t, "second reply after entering the session", send(), 45047)
	s.Interact("wxmp", "m1", clk.Now())
	wantCode(t, "configured count, first", send(), 0)
	wantCode(t, "configured count, second", send(), 0)
	wantCode(t, "configured count, third", send(), 45047)
	clk.Advance(time.Hour)
	wantCode(t, "configured window", send(), 45015)
}

func TestSendValidation(t *testing.T) {
	s, clk := startClocked(t, Config{RepliesPerMessage: 1000, MaxTextBytes: 10})
	s.AddMiniProgram("wxmp", "mpsecret")
	s.AddUser("wxmp", "m1", "")
	s.AddUser("wxoa", "gone", "")
	oa := token(t, s, "wxoa", "oasecret")
	mp := token(t, s, "wxmp", "mpsecret")
	for _, u := range []struct{ app, id string }{{"wxoa", "o1"}, {"wxmp", "m1"}, {"wxoa", "gone"}} {
		s.Interact(u.app, u.id, clk.Now())
	}
	s.InteractEvent("wxoa", "gone", "unsubscribe", clk.Now())
	img := upload(t, s, oa, MediaImage, "media", "a.jpg", "image/jpeg", []byte("jpegdata")).str("media_id")
	mpImg := upload(t, s, mp, MediaImage, "media", "a.png", "image/png", []byte("pngdata")).str("media_id")
	if img == "" || mpImg == "" {
		t.Fatal("upload failed")
	}

	tests := []struct {
		name string
		tok  string
		body string
		code int
	}{
		{"text", oa, `{"touser":"o1","msgtype":"text","text":{"content":"hello"}}`, 0},
		{"text with kf account", oa, `{"touser":"o1","msgtype":"text","text":{"content":"hello"},"customservice":{"kf_account":"a@b"}}`, 0},
		{"not JSON", oa, `touser=o1`, 47001},
		{"JSON array", oa, `[1,2]`, 47001},
		{"empty body", oa, ``, 44002},
		{"missing touser", oa, `{"msgtype":"text","text":{"content":"hello"}}`, 40003},
		{"unknown openid", oa, `{"touser":"ox","msgtype":"text","text":{"content":"hello"}}`, 40003},
		{"openid of another app", oa, `{"touser":"m1","msgtype":"text","text":{"content":"hello"}}`, 40003},
		{"unknown msgtype", oa, `{"touser":"o1","msgtype":"sticker","sticker":{}}`, 40008},
		{"missing msgtype", oa, `{"touser":"o1","text":{"content":"hello"}}`, 40008},
		{"link is mini program only", oa, `{"touser":"o1","msgtype":"link","link":{"title":"t","url":"https://x"}}`, 40008},
		{"news is official account only", mp, `{"touser":"m1","msgtype":"news","news":{"articles":[{"title":"t","url":"https://x"}]}}`, 40008},
		{"text object missing", oa, `{"touser":"o1","msgtype":"text"}`, 47001},
		{"text object is a string", oa, `{"touser":"o1","msgtype":"text","text":"hello"}`, 47001},
		{"empty content", oa, `{"touser":"o1","msgtype":"text","text":{"content":""}}`, 44004},
		{"content over MaxTextBytes", oa, `{"touser":"o1","msgtype":"text","text":{"content":"hello world"}}`, 45002},
		{"image", oa, `{"touser":"o1","msgtype":"image","image":{"media_id":"` + img + `"}}`, 0},
		{"image of unknown media", oa, `{"touser":"o1","msgtype":"image","image":{"media_id":"nope"}}`, 40007},
		{"image of another app's media", oa, `{"touser":"o1","msgtype":"image","image":{"media_id":"` + mpImg + `"}}`, 40007},
		{"image without media_id", oa, `{"touser":"o1","msgtype":"image","image":{}}`, 41006},
		{"news", oa, `{"touser":"o1","msgtype":"news","news":{"articles":[{"title":"t","description":"d","url":"https://x","picurl":"https://p"}]}}`, 0},
		{"news with two articles", oa, `{"touser":"o1","msgtype":"news","news":{"articles":[{"title":"t","url":"https://x"},{"title":"u","url":"https://y"}]}}`, 45008},
		{"news without articles", oa, `{"touser":"o1","msgtype":"news","news":{"articles":[]}}`, 44003},
		{"news article without url", oa, `{"touser":"o1","msgtype":"news","news":{"articles":[{"title":"t"}]}}`, 47001},
		{"official account miniprogrampage", oa, `{"touser":"o1","msgtype":"miniprogrampage","miniprogrampage":{"title":"t","appid":"wxmp","pagepath":"pages/i","thumb_media_id":"` + img + `"}}`, 0},
		{"official account miniprogrampage without appid", oa, `{"touser":"o1","msgtype":"miniprogrampage","miniprogrampage":{"title":"t","pagepath":"pages/i","thumb_media_id":"` + img + `"}}`, 47001},
		{"mini program miniprogrampage", mp, `{"touser":"m1","msgtype":"miniprogrampage","miniprogrampage":{"title":"t","pagepath":"pages/i","thumb_media_id":"` + mpImg + `"}}`, 0},
		{"miniprogrampage with unknown thumb", mp, `{"touser":"m1","msgtype":"miniprogrampage","miniprogrampage":{"title":"t","pagepath":"pages/i","thumb_media_id":"nope"}}`, 40007},
		{"link", mp, `{"touser":"m1","msgtype":"link","link":{"title":"t","description":"d","url":"https://x","thumb_url":"https://p"}}`, 0},
		{"link without url", mp, `{"touser":"m1","msgtype":"link","link":{"title":"t"}}`, 47001},
		{"unsubscribed user", oa, `{"touser":"gone","msgtype":"text","text":{"content":"hello"}}`, 43004},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(s.Sent())
			a := postJSON(t, s, PathSend, tq(tc.tok), tc.body)
			wantCode(t, tc.name, a, tc.code)
			if tc.code == 0 && a.str("errmsg") != "ok" {
				t.Fatalf("success answer %v, want errmsg ok", a)
			}
			after := len(s.Sent())
			if recorded := after - before; (tc.code == 0) != (recorded == 1) {
				t.Fatalf("recorded %d messages for errcode %d", recorded, tc.code)
			}
		})
	}
	t.Run("GET", func(t *testing.T) { wantCode(t, "GET send", getJSON(t, s, PathSend, tq(oa)), 43002) })
}

func TestTyping(t *testing.T) {
	s, clk := startClocked(t, Config{})
	tok := token(t, s, "wxoa", "oasecret")
	typing := func(cmd string) answer {
		return postJSON(t, s, PathTyping, tq(tok), `{"touser":"o1","command":"`+cmd+`"}`)
	}
	wantCode(t, "typing before any interaction", typing("Typing"), 45015)
	s.Interact("wxoa", "o1", clk.Now())
	wantCode(t, "Typing", typing("Typing"), 0)
	wantCode(t, "Typing again within 15 s", typing("Typing"), 45081)
	wantCode(t, "bad command", typing("typing"), 45072)
	wantCode(t, "CancelTyping", typing("CancelTyping"), 0)
	wantCode(t, "Typing after cancel", typing("Typing"), 0)
	wantCode(t, "a message ends the typing state", sendText(t, s, tok, "o1", "hi"), 0)
	wantCode(t, "Typing after a message", typing("Typing"), 0)
	clk.Advance(31 * time.Second)
	wantCode(t, "Typing 31 s after the last message", typing("Typing"), 45080)
	wantCode(t, "unknown user", postJSON(t, s, PathTyping, tq(tok), `{"touser":"ox","command":"Typing"}`), 40003)

	got := s.Typing()
	want := []string{"Typing", "CancelTyping", "Typing", "Typing"}
	if len(got) != len(want) {
		t.Fatalf("Typing() = %+v, want commands %v", got, want)
	}
	for i, g := range got {
		if g.Command != want[i] || g.ToUser != "o1" || g.AppID != "wxoa" {
			t.Fatalf("Typing()[%d] = %+v, want %s", i, g, want[i])
		}
	}
}

func TestUserInfo(t *testing.T) {
	s, clk := startClocked(t, Config{})
	s.AddUser("wxoa", "o2", "union2")
	s.AddMiniProgram("wxmp", "mpsecret")
	tok := token(t, s, "wxoa", "oasecret")

	a := userInfo(t, s, tok, "o1")
	if a["subscribe"] != float64(1) || a.str("openid") != "o1" || a["subscribe_time"] != float64(t0.Unix()) {
		t.Fatalf("user/info: %v", a)
	}
	if _, ok := a["language"]; !ok {
		t.Fatalf("user/info without language: %v", a)
	}
	for _, gone := range []string{"unionid", "nickname", "headimgurl", "errcode"} {
		if _, ok := a[gone]; ok {
			t.Fatalf("user/info has %q: %v", gone, a)
		}
	}
	if got := userInfo(t, s, tok, "o2").str("unionid"); got != "union2" {
		t.Fatalf("unionid = %q, want union2", got)
	}
	s.InteractEvent("wxoa", "o2", "unsubscribe", clk.Now())
	a = userInfo(t, s, tok, "o2")
	if a["subscribe"] != float64(0) || a.str("unionid") != "union2" {
		t.Fatalf("unsubscribed user/info: %v", a)
	}
	if _, ok := a["subscribe_time"]; ok {
		t.Fatalf("unsubscribed user/info has subscribe_time: %v", a)
	}
	wantCode(t, "unknown openid", userInfo(t, s, tok, "ox"), 40003)
	wantCode(t, "missing openid", getJSON(t, s, PathUserInfo, tq(tok)), 41009)
	wantCode(t, "mini program", userInfo(t, s, token(t, s, "wxmp", "mpsecret"), "o1"), 48001)
}

func TestMedia(t *testing.T) {
	s, clk := startClocked(t, Config{MediaMaxBytes: map[string]int64{MediaImage: 16}})
	s.AddMiniProgram("wxmp", "mpsecret")
	tok := token(t, s, "wxoa", "oasecret")
	jpeg := []byte("\xff\xd8\xff\xe0jpeg")

	a := upload(t, s, tok, MediaImage, "media", "photo.JPG", "image/jpeg", jpeg)
	id := a.str("media_id")
	if a.code() != 0 || id == "" || a.str("type") != "image" || a["created_at"] != float64(t0.Unix()) {
		t.Fatalf("upload: %v", a)
	}

	resp, body := do(t, s, http.MethodGet, PathMediaGet, url.Values{"access_token": {tok}, "media_id": {id}}, "", nil)
	if string(body) != string(jpeg) {
		t.Fatalf("media/get body %q, want the uploaded bytes", body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "image/jpeg" {
		t.Fatalf("media/get Content-Type %q", ct)
	}
	if cd := resp.Header.Get("Content-Disposition"); cd != `attachment; filename="`+id+`.jpg"` {
		t.Fatalf("media/get Content-Disposition %q", cd)
	}

	resp, body = do(t, s, http.MethodGet, PathMediaGet, url.Values{"access_token": {tok}, "media_id": {"nope"}}, "", nil)
	wantCode(t, "unknown media", decode(t, resp, body), 40007)

	tests := []struct {
		name, typ, field, file, ct string
		data                       []byte
		code                       int
		tok                        string
	}{
		{"over the image cap", MediaImage, "media", "big.jpg", "image/jpeg", make([]byte, 17), 40009, tok},
		{"at the image cap", MediaImage, "media", "ok.png", "", make([]byte, 16), 0, tok},
		{"unknown type", "sticker", "media", "a.jpg", "image/jpeg", jpeg, 40004, tok},
		{"wrong extension", MediaImage, "media", "a.txt", "text/plain", jpeg, 40005, tok},
		{"voice", MediaVoice, "media", "a.amr", "audio/amr", []byte("#!AMR\n..."), 0, tok},
		{"wrong field name", MediaImage, "file", "a.jpg", "image/jpeg", jpeg, 41005, tok},
		{"empty file", MediaImage, "media", "a.jpg", "image/jpeg", nil, 44001, tok},
		{"mini program voice", MediaVoice, "media", "a.amr", "audio/amr", []byte("#!AMR\n..."), 40004, token(t, s, "wxmp", "mpsecret")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, tc.name, upload(t, s, tc.tok, tc.typ, tc.field, tc.file, tc.ct, tc.data), tc.code)
		})
	}

	t.Run("PutMedia", func(t *testing.T) {
		pid := s.PutMedia("wxoa", "audio/amr", "voice.amr", []byte("#!AMR\nvoice"))
		resp, body := do(t, s, http.MethodGet, PathMediaGet, url.Values{"access_token": {tok}, "media_id": {pid}}, "", nil)
		if string(body) != "#!AMR\nvoice" || resp.Header.Get("Content-Type") != "audio/amr" ||
			resp.Header.Get("Content-Disposition") != `attachment; filename="voice.amr"` {
			t.Fatalf("PutMedia round trip: %q %v", body, resp.Header)
		}
		if m, ok := s.Media(pid); !ok || m.Type != MediaVoice || m.AppID != "wxoa" {
			t.Fatalf("Media(%s) = %+v, %v", pid, m, ok)
		}
	})
	t.Run("video answers a video_url", func(t *testing.T) {
		vid := s.PutMedia("wxoa", "video/mp4", "clip.mp4", []byte("mp4 bytes"))
		a := getJSON(t, s, PathMediaGet, url.Values{"access_token": {tok}, "media_id": {vid}})
		u := a.str("video_url")
		if u == "" {
			t.Fatalf("video media/get: %v", a)
		}
		resp, err := s.Client().Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "video/mp4" {
			t.Fatalf("video download: %d %v", resp.StatusCode, resp.Header)
		}
	})
	t.Run("expiry", func(t *testing.T) {
		clk.Advance(72 * time.Hour)
		tok := token(t, s, "wxoa", "oasecret")
		a := getJSON(t, s, PathMediaGet, url.Values{"access_token": {tok}, "media_id": {id}})
		wantCode(t, "media after three days", a, 40007)
	})
}

func TestFaults(t *testing.T) {
	s, clk := startClocked(t, Config{})
	tok := token(t, s, "wxoa", "oasecret")
	s.Interact("wxoa", "o1", clk.Now())

	s.FailNext(PathSend, -1, "system error", 2)
	wantCode(t, "first failed send", sendText(t, s, tok, "o1", "a"), -1)
	wantCode(t, "second failed send", sendText(t, s, tok, "o1", "a"), -1)
	wantCode(t, "send after the faults", sendText(t, s, tok, "o1", "a"), 0)
	if got := s.Calls(PathSend); got != 3 {
		t.Fatalf("Calls(send) = %d, want 3", got)
	}
	if got := len(s.Sent()); got != 1 {
		t.Fatalf("Sent() = %d, want 1", got)
	}

	s.FailNext("", 40001, "", 1)
	wantCode(t, "any-path fault on user/info", userInfo(t, s, tok, "o1"), 40001)
	wantCode(t, "user/info after the fault", userInfo(t, s, tok, "o1"), 0)

	s.FailHTTP(PathToken, http.StatusBadGateway, 1)
	resp, _ := do(t, s, http.MethodGet, PathToken, url.Values{"grant_type": {"client_credential"}, "appid": {"wxoa"}, "secret": {"oasecret"}}, "", nil)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("FailHTTP: status %d", resp.StatusCode)
	}
	token(t, s, "wxoa", "oasecret")

	s.FailNext(PathSend, 45009, "reach max api daily quota limit", -1)
	wantCode(t, "sticky fault", sendText(t, s, tok, "o1", "a"), 45009)
	wantCode(t, "sticky fault again", sendText(t, s, tok, "o1", "a"), 45009)
	s.ClearFaults()
	wantCode(t, "after ClearFaults", sendText(t, s, tok, "o1", "a"), 0)

	t.Run("hang until the client gives up", func(t *testing.T) {
		s.Hang(PathSend, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+PathSend+"?access_token="+tok, strings.NewReader(`{}`))
		_, err := s.Client().Do(req)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("hanging call: err %v, want deadline exceeded", err)
		}
		wantCode(t, "after the hang", sendText(t, s, tok, "o1", "a"), 0)
	})
}

func TestHangReleasedByClose(t *testing.T) {
	s, _ := startClocked(t, Config{})
	s.Hang("", -1)
	done := make(chan error, 1)
	go func() {
		resp, err := s.Client().Get(s.URL() + PathUserInfo)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	s.WaitCalls(t, PathUserInfo, 1, 5*time.Second)
	s.Close() // must not wait for the hanging request forever
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("hanging request still open after Close")
	}
}

func TestQuotas(t *testing.T) {
	t.Run("per minute", func(t *testing.T) {
		s, clk := startClocked(t, Config{PerMinuteLimit: 2})
		tok := token(t, s, "wxoa", "oasecret")
		clk.Set(t0.Truncate(time.Minute))
		wantCode(t, "call 1", userInfo(t, s, tok, "o1"), 0)
		wantCode(t, "call 2", userInfo(t, s, tok, "o1"), 0)
		wantCode(t, "call 3", userInfo(t, s, tok, "o1"), 45011)
		clk.Advance(time.Minute)
		wantCode(t, "next minute", userInfo(t, s, tok, "o1"), 0)
	})
	t.Run("daily", func(t *testing.T) {
		s, clk := startClocked(t, Config{DailyQuota: 2})
		s.AddApp("wxother", "othersecret")
		s.AddUser("wxother", "p1", "")
		tok := token(t, s, "wxoa", "oasecret")
		wantCode(t, "call 1", userInfo(t, s, tok, "o1"), 0)
		wantCode(t, "call 2", userInfo(t, s, tok, "o1"), 0)
		wantCode(t, "call 3", userInfo(t, s, tok, "o1"), 45009)
		other := token(t, s, "wxother", "othersecret")
		wantCode(t, "another app's quota", userInfo(t, s, other, "p1"), 0)
		clk.Set(time.Date(2025, 3, 4, 16, 0, 0, 0, time.UTC)) // 00:00 next day in Beijing
		tok = token(t, s, "wxoa", "oasecret")
		wantCode(t, "next WeChat day", userInfo(t, s, tok, "o1"), 0)
	})
	t.Run("token daily", func(t *testing.T) {
		s, _ := startClocked(t, Config{TokenDailyQuota: 1})
		token(t, s, "wxoa", "oasecret")
		a := getJSON(t, s, PathToken, url.Values{"grant_type": {"client_credential"}, "appid": {"wxoa"}, "secret": {"oasecret"}})
		wantCode(t, "second token of the day", a, 45009)
	})
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"negative quota", Config{PerMinuteLimit: -1}},
		{"negative reply count", Config{RepliesPerMessage: -1}},
		{"zero media cap", Config{MediaMaxBytes: map[string]int64{MediaImage: -5}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
	if _, err := New(Config{}); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
}

// fakeTB records a Fatalf instead of ending the test.
type fakeTB struct {
	testing.TB
	failed bool
}

func (f *fakeTB) Helper()               {}
func (f *fakeTB) Fatalf(string, ...any) { f.failed = true }

func TestWaitSent(t *testing.T) {
	s, clk := startClocked(t, Config{})
	tok := token(t, s, "wxoa", "oasecret")
	s.Interact("wxoa", "o1", clk.Now())

	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			body := `{"touser":"o1","msgtype":"text","text":{"content":"x"}}`
			resp, err := s.Client().Post(s.URL()+PathSend+"?access_token="+tok, "application/json", strings.NewReader(body))
			if err == nil {
				resp.Body.Close()
			}
		})
	}
	if got := s.WaitSent(t, 3, 5*time.Second); len(got) != 3 {
		t.Fatalf("WaitSent returned %d", len(got))
	}
	wg.Wait()

	ftb := &fakeTB{}
	s.WaitSent(ftb, 4, 20*time.Millisecond)
	if !ftb.failed {
		t.Fatal("WaitSent did not fail when the messages never came")
	}
}

func TestConcurrentUse(t *testing.T) {
	s, clk := startClocked(t, Config{RepliesPerMessage: 1000})
	tok := token(t, s, "wxoa", "oasecret")
	s.Interact("wxoa", "o1", clk.Now())
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			switch i % 4 {
			case 0:
				s.Interact("wxoa", "o1", clk.Now())
			case 1:
				_ = s.PutMedia("wxoa", "image/png", "", []byte("png"))
			case 2:
				_ = s.Calls(PathSend)
			}
			body := `{"touser":"o1","msgtype":"text","text":{"content":"x"}}`
			resp, err := s.Client().Post(s.URL()+PathSend+"?access_token="+tok, "application/json", strings.NewReader(body))
			if err == nil {
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	if got := len(s.Sent()); got != 20 {
		t.Fatalf("Sent() = %d after 20 concurrent sends", got)
	}
}
