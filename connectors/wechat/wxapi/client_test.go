package wxapi

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/connectors/wechat/wechattest"
	"github.com/switchboard-hq/switchboard/core/conv"
)

func TestSendBodies(t *testing.T) {
	e := newEnv(t, wechattest.Config{})
	oa := e.client(t, oaApp, KindOA, nil)
	mp := e.client(t, mpApp, KindMP, nil)
	oaThumb := e.fake.PutMedia(oaApp, "image/jpeg", "t.jpg", []byte("jpeg"))
	mpThumb := e.fake.PutMedia(mpApp, "image/jpeg", "t.jpg", []byte("jpeg"))

	cases := []struct {
		name string
		app  string
		send func(ctx context.Context) error
		want string
	}{
		{"oa text keeps markup unescaped", oaApp, func(ctx context.Context) error {
			return oa.SendText(ctx, user1, `hi <b>&"you"</b>`)
		}, `{"touser":"o1","msgtype":"text","text":{"content":"hi <b>&\"you\"</b>"}}`},
		{"oa image", oaApp, func(ctx context.Context) error {
			return oa.SendImage(ctx, user1, oaThumb)
		}, `{"touser":"o1","msgtype":"image","image":{"media_id":"` + oaThumb + `"}}`},
		{"oa link is one news article", oaApp, func(ctx context.Context) error {
			return oa.SendLink(ctx, user1, Link{Title: "T", Description: "D", URL: "https://x.example/a?b=1", ThumbURL: "https://x.example/p.jpg"})
		}, `{"touser":"o1","msgtype":"news","news":{"articles":[{"title":"T","description":"D","url":"https://x.example/a?b=1","picurl":"https://x.example/p.jpg"}]}}`},
		{"oa link without optional fields", oaApp, func(ctx context.Context) error {
			return oa.SendLink(ctx, user1, Link{Title: "T", URL: "https://x.example/"})
		}, `{"touser":"o1","msgtype":"news","news":{"articles":[{"title":"T","url":"https://x.example/"}]}}`},
		{"oa miniprogrampage names the mini program", oaApp, func(ctx context.Context) error {
			return oa.SendMiniProgramPage(ctx, user1, MiniProgramPage{Title: "P", AppID: "wxmp", PagePath: "pages/i?x=1", ThumbMediaID: oaThumb})
		}, `{"touser":"o1","msgtype":"miniprogrampage","miniprogrampage":{"title":"P","appid":"wxmp","pagepath":"pages/i?x=1","thumb_media_id":"` + oaThumb + `"}}`},
		{"mp text", mpApp, func(ctx context.Context) error {
			return mp.SendText(ctx, user1, "你好")
		}, `{"touser":"o1","msgtype":"text","text":{"content":"你好"}}`},
		{"mp image", mpApp, func(ctx context.Context) error {
			return mp.SendImage(ctx, user1, mpThumb)
		}, `{"touser":"o1","msgtype":"image","image":{"media_id":"` + mpThumb + `"}}`},
		{"mp link", mpApp, func(ctx context.Context) error {
			return mp.SendLink(ctx, user1, Link{Title: "T", Description: "D", URL: "https://x.example/", ThumbURL: "https://x.example/t.png"})
		}, `{"touser":"o1","msgtype":"link","link":{"title":"T","description":"D","url":"https://x.example/","thumb_url":"https://x.example/t.png"}}`},
		{"mp miniprogrampage sends no appid", mpApp, func(ctx context.Context) error {
			return mp.SendMiniProgramPage(ctx, user1, MiniProgramPage{Title: "P", AppID: "ignored", PagePath: "pages/i", ThumbMediaID: mpThumb})
		}, `{"touser":"o1","msgtype":"miniprogrampage","miniprogrampage":{"title":"P","pagepath":"pages/i","thumb_media_id":"` + mpThumb + `"}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.open(tc.app)
			before := len(e.fake.Sent())
			if err := tc.send(ctxT(t)); err != nil {
				t.Fatalf("send: %v", err)
			}
			sent := e.fake.Sent()
			if len(sent) != before+1 {
				t.Fatalf("fake recorded %d new messages, want 1", len(sent)-before)
			}
			got := sent[len(sent)-1]
			if got.AppID != tc.app || got.Path != PathSend || got.ToUser != user1 {
				t.Errorf("sent app %q path %q to %q", got.AppID, got.Path, got.ToUser)
			}
			if string(got.Body) != tc.want {
				t.Errorf("body\n got %s\nwant %s", got.Body, tc.want)
			}
		})
	}
	e.assertNoSecrets(t)
}

func TestSendRejectsBadInputWithoutCalling(t *testing.T) {
	e := newEnv(t, wechattest.Config{})
	oa := e.client(t, oaApp, KindOA, nil)
	mp := e.client(t, mpApp, KindMP, nil)
	cases := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"text without openid", func(ctx context.Context) error { return oa.SendText(ctx, "", "x") }},
		{"empty text", func(ctx context.Context) error { return oa.SendText(ctx, user1, "") }},
		{"image without media", func(ctx context.Context) error { return oa.SendImage(ctx, user1, "") }},
		{"link without url", func(ctx context.Context) error { return mp.SendLink(ctx, user1, Link{Title: "t"}) }},
		{"oa page without appid", func(ctx context.Context) error {
			return oa.SendMiniProgramPage(ctx, user1, MiniProgramPage{Title: "t", PagePath: "p", ThumbMediaID: "m"})
		}},
		{"page without thumb", func(ctx context.Context) error {
			return mp.SendMiniProgramPage(ctx, user1, MiniProgramPage{Title: "t", PagePath: "p"})
		}},
		{"typing without openid", func(ctx context.Context) error { return oa.Typing(ctx, "", true) }},
		{"upload of an unknown kind", func(ctx context.Context) error {
			_, err := oa.UploadMedia(ctx, "file", "a.png", strings.NewReader("x"))
			return err
		}},
		{"upload without extension", func(ctx context.Context) error {
			_, err := oa.UploadMedia(ctx, MediaImage, "photo", strings.NewReader("x"))
			return err
		}},
		{"empty upload", func(ctx context.Context) error {
			_, err := oa.UploadMedia(ctx, MediaImage, "a.png", strings.NewReader(""))
			return err
		}},
		{"download without max", func(ctx context.Context) error {
			_, _, _, err := oa.DownloadMedia(ctx, "m", 0)
			return err
		}},
		{"user info of a mini program", func(ctx context.Context) error {
			_, err := mp.UserInfo(ctx, user1)
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(ctxT(t))
			if !errors.Is(err, conv.ErrInvalid) {
				t.Fatalf("err = %v, want conv.ErrInvalid", err)
			}
		})
	}
	for _, p := range []string{PathSend, PathTyping, PathMediaUpload, PathMediaGet, PathUserInfo, PathStableToken} {
		if n := e.fake.Calls(p); n != 0 {
			t.Errorf("%d calls of %s, want none", n, p)
		}
	}
}

func TestTyping(t *testing.T) {
	e := newEnv(t, wechattest.Config{})
	oa := e.client(t, oaApp, KindOA, nil)
	ctx := ctxT(t)
	e.open(oaApp)
	if err := oa.Typing(ctx, user1, true); err != nil {
		t.Fatalf("Typing on: %v", err)
	}
	err := oa.Typing(ctx, user1, true)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != 45081 || !errors.Is(err, conv.ErrConflict) {
		t.Fatalf("second Typing: %v, want errcode 45081 (conv.ErrConflict)", err)
	}
	if err := oa.Typing(ctx, user1, false); err != nil {
		t.Fatalf("Typing off: %v", err)
	}
	got := e.fake.Typing()
	if len(got) != 2 || got[0].Command != "Typing" || got[1].Command != "CancelTyping" || got[0].ToUser != user1 || got[0].AppID != oaApp {
		t.Fatalf("fake recorded %+v, want Typing then CancelTyping for o1", got)
	}
}

func TestUploadDownloadRoundTrip(t *testing.T) {
	e := newEnv(t, wechattest.Config{})
	oa := e.client(t, oaApp, KindOA, nil)
	mp := e.client(t, mpApp, KindMP, nil)
	png := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{7}, 5000)...)
	cases := []struct {
		name     string
		c        *Client
		kind     string
		filename string
		data     []byte
		wantCT   string
		wantExt  string
	}{
		{"oa image with a path and upper-case extension", oa, MediaImage, `C:\Users\x\Photo.PNG`, png, "image/png", ".png"},
		{"oa voice", oa, MediaVoice, "note.mp3", []byte("ID3 voice"), "audio/mpeg", ".mp3"},
		{"mp image", mp, MediaImage, "a.jpg", []byte("jpeg bytes"), "image/jpeg", ".jpg"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxT(t)
			id, err := tc.c.UploadMedia(ctx, tc.kind, tc.filename, bytes.NewReader(tc.data))
			if err != nil {
				t.Fatalf("UploadMedia: %v", err)
			}
			m, ok := e.fake.Media(id)
			if !ok || m.Type != tc.kind || !bytes.Equal(m.Data, tc.data) {
				t.Fatalf("fake holds %+v, want the %s uploaded", m.Type, tc.kind)
			}
			data, ct, name, err := tc.c.DownloadMedia(ctx, id, int64(len(tc.data)))
			if err != nil {
				t.Fatalf("DownloadMedia: %v", err)
			}
			if !bytes.Equal(data, tc.data) || ct != tc.wantCT || name != id+tc.wantExt {
				t.Fatalf("downloaded %d bytes %q %q, want %d bytes %q %q", len(data), ct, name, len(tc.data), tc.wantCT, id+tc.wantExt)
			}
		})
	}
	t.Run("mp voice is refused by WeChat", func(t *testing.T) {
		_, err := mp.UploadMedia(ctxT(t), MediaVoice, "a.mp3", strings.NewReader("x"))
		var ae *APIError
		if !errors.As(err, &ae) || ae.Code != 40004 || !errors.Is(err, conv.ErrInvalid) {
			t.Fatalf("err = %v, want errcode 40004", err)
		}
	})
	t.Run("upload over MaxUploadBytes is not sent", func(t *testing.T) {
		small := e.client(t, oaApp, KindOA, func(c *Config) { c.MaxUploadBytes = 10 })
		before := e.fake.Calls(PathMediaUpload)
		_, err := small.UploadMedia(ctxT(t), MediaImage, "a.png", bytes.NewReader(png))
		if !errors.Is(err, ErrTooLarge) || !errors.Is(err, conv.ErrInvalid) {
			t.Fatalf("err = %v, want ErrTooLarge", err)
		}
		if e.fake.Calls(PathMediaUpload) != before {
			t.Fatal("an oversized upload was sent")
		}
	})
	e.assertNoSecrets(t)
}

func TestDownloadMedia(t *testing.T) {
	e := newEnv(t, wechattest.Config{})
	oa := e.client(t, oaApp, KindOA, nil)
	voice := bytes.Repeat([]byte("amr"), 100)
	video := bytes.Repeat([]byte("mp4"), 1000)
	voiceID := e.fake.PutMedia(oaApp, "audio/amr", "v.amr", voice)
	videoID := e.fake.PutMedia(oaApp, "video/mp4", "clip.mp4", video)

	t.Run("voice", func(t *testing.T) {
		data, ct, name, err := oa.DownloadMedia(ctxT(t), voiceID, 1<<20)
		if err != nil || !bytes.Equal(data, voice) || ct != "audio/amr" || name != "v.amr" {
			t.Fatalf("got %d bytes %q %q %v", len(data), ct, name, err)
		}
	})
	t.Run("video through video_url", func(t *testing.T) {
		data, ct, name, err := oa.DownloadMedia(ctxT(t), videoID, 1<<20)
		if err != nil || !bytes.Equal(data, video) || ct != "video/mp4" || name != "clip.mp4" {
			t.Fatalf("got %d bytes %q %q %v", len(data), ct, name, err)
		}
	})
	t.Run("JSON error body", func(t *testing.T) {
		_, _, _, err := oa.DownloadMedia(ctxT(t), "no-such-media", 1<<20)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Code != 40007 || ae.Path != PathMediaGet || !errors.Is(err, conv.ErrInvalid) || Retryable(err) {
			t.Fatalf("err = %v, want errcode 40007, permanent", err)
		}
	})
	t.Run("expired media", func(t *testing.T) {
		id := e.fake.PutMedia(oaApp, "image/png", "old.png", []byte("png"))
		e.clk.Advance(73 * time.Hour)
		defer e.clk.Set(t0)
		_, _, _, err := oa.DownloadMedia(ctxT(t), id, 1<<20)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Code != 40007 {
			t.Fatalf("err = %v, want errcode 40007", err)
		}
	})
	tooLarge := []struct {
		name string
		id   string
		size int64
	}{
		{"voice over max", voiceID, int64(len(voice))},
		{"video over max", videoID, int64(len(video))},
	}
	for _, tc := range tooLarge {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, err := oa.DownloadMedia(ctxT(t), tc.id, tc.size-1)
			var tl *TooLargeError
			if !errors.Is(err, ErrTooLarge) || !errors.As(err, &tl) || tl.Size != tc.size || tl.AtLeast || tl.Max != tc.size-1 || !errors.Is(err, conv.ErrInvalid) {
				t.Fatalf("err = %v (%+v), want ErrTooLarge with size %d", err, tl, tc.size)
			}
			if !strings.Contains(err.Error(), "too large") {
				t.Fatalf("error text %q does not say too large", err)
			}
			data, _, _, err := oa.DownloadMedia(ctxT(t), tc.id, tc.size)
			if err != nil || int64(len(data)) != tc.size {
				t.Fatalf("at exactly max: %d bytes, %v", len(data), err)
			}
		})
	}
	e.assertNoSecrets(t)
}

// staticTokens hands out one token and counts invalidations.
type staticTokens struct{ tok string }

func (s *staticTokens) Token(context.Context) (string, error)    { return s.tok, nil }
func (s *staticTokens) Invalidate(context.Context, string) error { return nil }

// TestDownloadMediaAnswers covers answers the fake does not give: a
// text/plain JSON error, bytes without a Content-Length, JSON that is
// neither error nor video, and a video_url that is not http(s).
func TestDownloadMediaAnswers(t *testing.T) {
	cases := []struct {
		name  string
		ct    string
		body  string
		check func(t *testing.T, data []byte, ct, name string, err error)
	}{
		{"text/plain error", "text/plain", `{"errcode":40007,"errmsg":"invalid media_id rid: 1"}`, func(t *testing.T, _ []byte, _, _ string, err error) {
			var ae *APIError
			if !errors.As(err, &ae) || ae.Code != 40007 {
				t.Fatalf("err = %v, want errcode 40007", err)
			}
		}},
		{"unknown length over max", "image/jpeg", strings.Repeat("x", 200), func(t *testing.T, _ []byte, _, _ string, err error) {
			var tl *TooLargeError
			if !errors.As(err, &tl) || !tl.AtLeast || tl.Max != 100 {
				t.Fatalf("err = %v, want TooLargeError at least 101", err)
			}
		}},
		{"bytes with a hostile filename", "image/jpeg; charset=binary", "jpeg", func(t *testing.T, data []byte, ct, name string, err error) {
			if err != nil || string(data) != "jpeg" || ct != "image/jpeg" || name != "passwd" {
				t.Fatalf("got %q %q %q %v", data, ct, name, err)
			}
		}},
		{"json neither error nor video", "application/json", `{"errcode":0}`, func(t *testing.T, _ []byte, _, _ string, err error) {
			if err == nil || !errors.Is(err, conv.ErrUnavailable) {
				t.Fatalf("err = %v, want conv.ErrUnavailable", err)
			}
		}},
		{"video_url not http", "application/json", `{"video_url":"file:///etc/passwd"}`, func(t *testing.T, _ []byte, _, _ string, err error) {
			if err == nil || !errors.Is(err, conv.ErrUnavailable) {
				t.Fatalf("err = %v, want conv.ErrUnavailable", err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.ct)
				w.Header().Set("Content-Disposition", `attachment; filename="../../etc/passwd"`)
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write([]byte(tc.body))
				w.(http.Flusher).Flush() // no Content-Length
			}))
			defer srv.Close()
			c, err := New(Config{AppID: "a", Kind: KindOA, APIBase: srv.URL, Tokens: &staticTokens{"tok"}})
			if err != nil {
				t.Fatal(err)
			}
			data, ct, name, err := c.DownloadMedia(ctxT(t), "m", 100)
			tc.check(t, data, ct, name, err)
		})
	}
}

func TestUserInfo(t *testing.T) {
	e := newEnv(t, wechattest.Config{})
	oa := e.client(t, oaApp, KindOA, nil)
	e.fake.AddUser(oaApp, "o2", "")
	e.fake.AddUser(oaApp, "o3", "union-3")
	e.fake.InteractEvent(oaApp, "o3", "unsubscribe", t0)
	cases := []struct {
		name   string
		openid string
		want   UserInfo
	}{
		{"with unionid", user1, UserInfo{OpenID: user1, UnionID: "union-1", Subscribed: true, SubscribeTime: t0}},
		{"without unionid", "o2", UserInfo{OpenID: "o2", Subscribed: true, SubscribeTime: t0}},
		{"unsubscribed", "o3", UserInfo{OpenID: "o3", UnionID: "union-3"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := oa.UserInfo(ctxT(t), tc.openid)
			if err != nil {
				t.Fatal(err)
			}
			if got.OpenID != tc.want.OpenID || got.UnionID != tc.want.UnionID || got.Subscribed != tc.want.Subscribed || !got.SubscribeTime.Equal(tc.want.SubscribeTime) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	t.Run("unknown openid", func(t *testing.T) {
		_, err := oa.UserInfo(ctxT(t), "nobody")
		var ae *APIError
		if !errors.As(err, &ae) || ae.Code != CodeInvalidOpenID || !errors.Is(err, conv.ErrInvalid) {
			t.Fatalf("err = %v, want 40003", err)
		}
	})
}

// TestErrorCodes drives each errcode through a real send and checks what
// a caller sees: the reason, retryability and conv kind.
func TestErrorCodes(t *testing.T) {
	cases := []struct {
		code      int
		n         int // how many calls fail: token errors must survive the retry
		reason    string
		retryable bool
		kind      error
	}{
		{45015, 1, "45015: outside the 48-hour reply window", false, conv.ErrForbidden},
		{45047, 1, "45047: over the reply limit for this customer message", false, conv.ErrForbidden},
		{40001, 2, "40001: access token rejected", false, conv.ErrUnauthorized},
		{40014, 2, "40014: access token invalid", false, conv.ErrUnauthorized},
		{42001, 2, "42001: access token expired", false, conv.ErrUnauthorized},
		{45009, 1, "45009: daily API quota reached", false, conv.ErrRateLimited},
		{45011, 1, "45011: API per-minute limit reached", true, conv.ErrUnavailable},
		{40164, 1, "40164: this server's IP is not on the app's allow list (set api_base to your egress proxy)", false, conv.ErrForbidden},
		{43004, 1, "43004: the customer unfollowed", false, conv.ErrForbidden},
		{40003, 1, "40003: invalid openid", false, conv.ErrInvalid},
		{48001, 1, "48001: API not authorized for this account", false, conv.ErrForbidden},
		{-1, 1, "-1: WeChat is busy", true, conv.ErrUnavailable},
		{47001, 1, "errcode 47001: data format error", false, conv.ErrInvalid},
		{99999, 1, "errcode 99999: data format error", false, nil},
	}
	e := newEnv(t, wechattest.Config{})
	for _, tc := range cases {
		t.Run(strings.SplitN(tc.reason, ":", 2)[0], func(t *testing.T) {
			c := e.client(t, oaApp, KindOA, nil)
			e.open(oaApp)
			before := e.fake.Calls(PathSend)
			e.fake.FailNext(PathSend, tc.code, "data format error", tc.n)
			err := c.SendText(ctxT(t), user1, "hello")
			var ae *APIError
			if !errors.As(err, &ae) || ae.Code != tc.code || ae.Path != PathSend {
				t.Fatalf("err = %v, want APIError %d", err, tc.code)
			}
			if got := ae.Reason(); got != tc.reason {
				t.Errorf("Reason() = %q, want %q", got, tc.reason)
			}
			if got := Retryable(err); got != tc.retryable {
				t.Errorf("Retryable = %v, want %v", got, tc.retryable)
			}
			if tc.kind != nil && !errors.Is(err, tc.kind) {
				t.Errorf("errors.Is(err, %v) = false", tc.kind)
			}
			if tc.kind == nil && (conv.Permanent(err) || errors.Is(err, conv.ErrUnavailable)) {
				t.Errorf("unknown code got a kind: %v", err)
			}
			if !strings.HasPrefix(err.Error(), "wxapi.SendText: wechat "+PathSend+": errcode ") {
				t.Errorf("error text %q lacks the operation and path", err)
			}
			if got := e.fake.Calls(PathSend) - before; got != tc.n {
				t.Errorf("%d send calls, want %d", got, tc.n)
			}
		})
	}
	e.assertNoSecrets(t)
}

func TestAPIBaseWithPathPrefix(t *testing.T) {
	e := newEnv(t, wechattest.Config{})
	mux := http.NewServeMux()
	mux.Handle("/proxy/wx/", http.StripPrefix("/proxy/wx", e.fake))
	mux.Handle("/wechattest/video/", e.fake) // video_url points at the host it was asked on
	proxy := httptest.NewServer(mux)
	defer proxy.Close()
	base := proxy.URL + "/proxy/wx/" // the trailing slash is dropped
	c := e.client(t, oaApp, KindOA, func(c *Config) {
		c.APIBase = base
		c.Tokens = e.tokens(t, oaApp, "proxy-node", func(tc *TokensConfig) { tc.APIBase = base })
	})
	ctx := ctxT(t)
	e.open(oaApp)
	if err := c.SendText(ctx, user1, "via proxy"); err != nil {
		t.Fatalf("SendText: %v", err)
	}
	id, err := c.UploadMedia(ctx, MediaVideo, "clip.mp4", strings.NewReader("mp4 bytes"))
	if err != nil {
		t.Fatalf("UploadMedia: %v", err)
	}
	data, _, _, err := c.DownloadMedia(ctx, id, 100)
	if err != nil || string(data) != "mp4 bytes" {
		t.Fatalf("DownloadMedia: %q %v", data, err)
	}
	if e.fake.Calls(PathSend) != 1 || e.fake.Calls(PathStableToken) != 1 {
		t.Fatalf("fake saw %d sends, %d token calls through the prefix", e.fake.Calls(PathSend), e.fake.Calls(PathStableToken))
	}
}

func TestHTTPFailures(t *testing.T) {
	e := newEnv(t, wechattest.Config{})
	c := e.client(t, oaApp, KindOA, nil)
	e.open(oaApp)

	t.Run("5xx is retryable", func(t *testing.T) {
		e.fake.FailHTTP(PathSend, http.StatusBadGateway, 1)
		err := c.SendText(ctxT(t), user1, "x")
		var he *HTTPError
		if !errors.As(err, &he) || he.Status != 502 || !Retryable(err) || !errors.Is(err, conv.ErrUnavailable) {
			t.Fatalf("err = %v, want retryable HTTP 502", err)
		}
		if err := c.SendText(ctxT(t), user1, "x"); err != nil {
			t.Fatalf("next send: %v", err)
		}
	})
	t.Run("4xx from a proxy is not retried soon", func(t *testing.T) {
		e.fake.FailHTTP(PathSend, http.StatusNotFound, 1)
		err := c.SendText(ctxT(t), user1, "x")
		var he *HTTPError
		if !errors.As(err, &he) || he.Status != 404 || Retryable(err) {
			t.Fatalf("err = %v, want non-retryable HTTP 404", err)
		}
	})
	t.Run("hang ends with the context, retryable", func(t *testing.T) {
		e.fake.Hang(PathSend, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		err := c.SendText(ctx, user1, "x")
		if !errors.Is(err, context.DeadlineExceeded) || !Retryable(err) || !errors.Is(err, conv.ErrUnavailable) {
			t.Fatalf("err = %v, want a retryable deadline", err)
		}
		if !strings.Contains(err.Error(), PathSend) {
			t.Errorf("error %q does not name the path", err)
		}
		e.assertNoSecrets(t, err.Error())
	})
	t.Run("cancellation is not retryable", func(t *testing.T) {
		e.fake.Hang(PathSend, 1)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		target := e.fake.Calls(PathSend) + 1
		errc := make(chan error, 1)
		go func() { errc <- c.SendText(ctx, user1, "x") }()
		// Cancel once the request hangs at the server.
		e.fake.WaitCalls(t, PathSend, target, 5*time.Second)
		cancel()
		err := <-errc
		if !errors.Is(err, context.Canceled) || Retryable(err) {
			t.Fatalf("err = %v, want canceled, not retryable", err)
		}
	})
	t.Run("connection refused is retryable and redacted", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		dead.Close()
		d, err := New(Config{AppID: "a", Kind: KindOA, APIBase: dead.URL, Tokens: &staticTokens{"SECRET-TOKEN-VALUE"}})
		if err != nil {
			t.Fatal(err)
		}
		err = d.SendText(ctxT(t), user1, "x")
		if !Retryable(err) || !errors.Is(err, conv.ErrUnavailable) {
			t.Fatalf("err = %v, want retryable", err)
		}
		if strings.Contains(err.Error(), "SECRET-TOKEN-VALUE") || strings.Contains(err.Error(), "access_token") {
			t.Fatalf("error leaks the query: %v", err)
		}
	})
}

func TestNewValidation(t *testing.T) {
	good := Config{AppID: "a", Kind: KindOA, Secret: "s"}
	cases := []struct {
		name string
		mod  func(*Config)
	}{
		{"no appid", func(c *Config) { c.AppID = "" }},
		{"no kind", func(c *Config) { c.Kind = "" }},
		{"unknown kind", func(c *Config) { c.Kind = "wechat_oa" }},
		{"neither tokens nor secret", func(c *Config) { c.Secret = "" }},
		{"api_base not a URL", func(c *Config) { c.APIBase = "api.weixin.qq.com" }},
		{"api_base ftp", func(c *Config) { c.APIBase = "ftp://api.weixin.qq.com" }},
		{"api_base without host", func(c *Config) { c.APIBase = "http://" }},
		{"api_base with query", func(c *Config) { c.APIBase = "https://proxy/wx?x=1" }},
		{"api_base with user info", func(c *Config) { c.APIBase = "https://u:p@proxy/wx" }},
		{"negative cooldown", func(c *Config) { c.BreakerCooldown = -time.Second }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mod(&cfg)
			if _, err := New(cfg); !errors.Is(err, conv.ErrInvalid) {
				t.Fatalf("New = %v, want conv.ErrInvalid", err)
			}
		})
	}
	t.Run("good config", func(t *testing.T) {
		c, err := New(good)
		if err != nil || c.AppID() != "a" || c.Kind() != KindOA || c.base != DefaultAPIBase {
			t.Fatalf("New(good) = %v, %v", c, err)
		}
	})
	t.Run("bad tokens config", func(t *testing.T) {
		if _, err := NewSharedTokens(TokensConfig{AppID: "a"}); !errors.Is(err, conv.ErrInvalid) {
			t.Fatalf("NewSharedTokens without secret = %v", err)
		}
		if _, err := NewSharedTokens(TokensConfig{AppID: "a", Secret: "s", APIBase: "gopher://x"}); !errors.Is(err, conv.ErrInvalid) {
			t.Fatalf("NewSharedTokens with a bad base = %v", err)
		}
	})
}

// TestDefaultTokens: a Client given only a secret keeps its own token.
func TestDefaultTokens(t *testing.T) {
	e := newEnv(t, wechattest.Config{})
	c, err := New(Config{AppID: oaApp, Secret: oaSecret, Kind: KindOA, APIBase: e.fake.URL(), Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.open(oaApp)
	for i := range 3 {
		if err := c.SendText(ctxT(t), user1, "x"); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if n := e.fake.Calls(PathStableToken); n != 1 {
		t.Fatalf("%d token calls for 3 sends, want 1", n)
	}
}
