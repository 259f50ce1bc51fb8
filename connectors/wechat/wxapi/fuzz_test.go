package wxapi

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzDecodeAnswer: any JSON answer body decodes to a value or an error,
// and an APIError's message stays short, one line and free of the token.
func FuzzDecodeAnswer(f *testing.F) {
	f.Add([]byte(`{"errcode":0,"errmsg":"ok"}`))
	f.Add([]byte(`{"errcode":45015,"errmsg":"response out of time limit rid: 1"}`))
	f.Add([]byte(`{"subscribe":1,"openid":"o","unionid":"u","subscribe_time":1700000000}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var u userInfoAnswer
		err := decodeAnswer(PathUserInfo, body, &u, "TOKEN")
		var ae *APIError
		if errors.As(err, &ae) {
			if ae.Code == 0 {
				t.Fatal("APIError with errcode 0")
			}
			if len(ae.Msg) > maxMsgBytes+len("…") || !utf8.ValidString(ae.Msg) || strings.Contains(ae.Msg, "TOKEN") {
				t.Fatalf("message %q", ae.Msg)
			}
			for _, r := range ae.Msg {
				if unicode.IsControl(r) {
					t.Fatalf("control character in %q", ae.Msg)
				}
			}
			_ = ae.Reason()
		}
	})
}

// FuzzReadMedia: whatever media/get answers, the client keeps to max and
// returns a clean file name.
func FuzzReadMedia(f *testing.F) {
	f.Add("image/jpeg", `attachment; filename="a.jpg"`, []byte("jpeg"), int64(10), int64(4))
	f.Add("application/json; encoding=utf-8", "", []byte(`{"video_url":"http://x/v"}`), int64(10), int64(-1))
	f.Add("text/plain", "", []byte(`{"errcode":40007,"errmsg":"invalid media_id"}`), int64(100), int64(-1))
	f.Fuzz(func(t *testing.T, ct, cd string, body []byte, max, declared int64) {
		if max <= 0 || max > 1<<20 {
			return
		}
		resp := &http.Response{
			StatusCode:    200,
			Header:        http.Header{"Content-Type": {ct}, "Content-Disposition": {cd}},
			Body:          io.NopCloser(bytes.NewReader(body)),
			ContentLength: declared,
		}
		m, err := readMedia(PathMediaGet, resp, max)
		if err != nil {
			return
		}
		if int64(len(m.data)) > max {
			t.Fatalf("%d bytes over max %d", len(m.data), max)
		}
		if strings.ContainsAny(m.filename, "/\\\"\x00") || len(m.filename) > maxFilenameBytes || !utf8.ValidString(m.filename) {
			t.Fatalf("file name %q", m.filename)
		}
	})
}
