package wechat_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/connectors/wechat"
	"github.com/switchboard-hq/switchboard/connectors/wechat/wechattest"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/internal/media"
)

func TestInboundMediaStored(t *testing.T) {
	fake := wechattest.Start(t, wechattest.Config{})
	fake.AddApp(appID, "s3cret")
	ms, err := media.Open(t.TempDir(), bytes.Repeat([]byte{7}, 32), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e := newHookEnv(t, conv.KindWeChatOA, `{"app_id":"`+appID+`","api_base":"`+fake.URL()+`","media_max_bytes":4096}`,
		safeSecrets(), func(c *wechat.Config) { c.Media = ms })
	photo := append([]byte("\xff\xd8\xff\xe0"), bytes.Repeat([]byte("p"), 1000)...)
	small := fake.PutMedia(appID, "image/jpeg", "photo.jpg", photo)
	big := fake.PutMedia(appID, "image/jpeg", "huge.jpg", bytes.Repeat([]byte("h"), 5000))
	for i, id := range []string{small, big, "no-such-media-id"} {
		msg := wechattest.Image("gh_1", openid, "http://mmbiz.qpic.cn/x.jpg", id, int64(100+i), time.Now().Unix())
		if status, body, err := e.pusher(wechattest.ModeSafe, aesKey).PushMessage(t.Context(), msg); err != nil || status != http.StatusOK {
			t.Fatalf("push %d = %d %q %v", i, status, body, err)
		}
	}
	got := e.bus.published()
	if len(got) != 3 {
		t.Fatalf("published %d envelopes, want 3", len(got))
	}
	stored := got[0].Parts[0]
	if !strings.HasPrefix(stored.URL, media.URLPrefix) || stored.MIME != "image/jpeg" || stored.Size != int64(len(photo)) || stored.MediaID != small {
		t.Fatalf("stored image part = %+v", stored)
	}
	tooBig := got[1].Parts[0]
	if tooBig.URL != "" || tooBig.MediaID != big || !strings.Contains(tooBig.Text, "larger than this channel's limit of 4 KiB") {
		t.Fatalf("oversized image part = %+v, want its media id and the reason", tooBig)
	}
	missing := got[2].Parts[0]
	if missing.URL != "" || !strings.Contains(missing.Text, "not fetched from WeChat") {
		t.Fatalf("unknown media part = %+v", missing)
	}
}
