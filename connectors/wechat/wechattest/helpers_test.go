package wechattest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC) // 18:00 in Beijing

// startClocked starts a fake on a manual clock with one Official Account
// "wxoa" (secret "oasecret") and one subscribed user "o1".
func startClocked(t *testing.T, cfg Config) (*Server, *Clock) {
	t.Helper()
	clk := NewClock(t0)
	cfg.Now = clk.Now
	s := Start(t, cfg)
	s.AddApp("wxoa", "oasecret")
	s.AddUser("wxoa", "o1", "")
	return s, clk
}

// answer is a decoded JSON answer.
type answer map[string]any

func (a answer) code() int {
	c, _ := a["errcode"].(float64)
	return int(c)
}

func (a answer) str(k string) string { v, _ := a[k].(string); return v }

func do(t *testing.T, s *Server, method, path string, q url.Values, contentType string, body []byte) (*http.Response, []byte) {
	t.Helper()
	u := s.URL() + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func decode(t *testing.T, resp *http.Response, b []byte) answer {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q, want application/json (body %q)", ct, b)
	}
	var a answer
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("answer %q: %v", b, err)
	}
	return a
}

func getJSON(t *testing.T, s *Server, path string, q url.Values) answer {
	t.Helper()
	resp, b := do(t, s, http.MethodGet, path, q, "", nil)
	return decode(t, resp, b)
}

func postJSON(t *testing.T, s *Server, path string, q url.Values, body string) answer {
	t.Helper()
	resp, b := do(t, s, http.MethodPost, path, q, "application/json", []byte(body))
	return decode(t, resp, b)
}

// token gets a /cgi-bin/token token, failing the test on an error answer.
func token(t *testing.T, s *Server, appID, secret string) string {
	t.Helper()
	a := getJSON(t, s, PathToken, url.Values{"grant_type": {"client_credential"}, "appid": {appID}, "secret": {secret}})
	if a.code() != 0 || a.str("access_token") == "" {
		t.Fatalf("token: %v", a)
	}
	return a.str("access_token")
}

func tq(tok string) url.Values { return url.Values{"access_token": {tok}} }

func sendText(t *testing.T, s *Server, tok, to, content string) answer {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"touser": to, "msgtype": "text", "text": map[string]string{"content": content}})
	return postJSON(t, s, PathSend, tq(tok), string(body))
}

func userInfo(t *testing.T, s *Server, tok, openid string) answer {
	t.Helper()
	return getJSON(t, s, PathUserInfo, url.Values{"access_token": {tok}, "openid": {openid}, "lang": {"zh_CN"}})
}

// upload posts data as the multipart field "media" (fieldName to test
// other names).
func upload(t *testing.T, s *Server, tok, typ, fieldName, filename, contentType string, data []byte) answer {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="`+fieldName+`"; filename="`+filename+`"`)
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	pw, err := mw.CreatePart(h)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = pw.Write(data)
	_ = mw.Close()
	q := tq(tok)
	q.Set("type", typ)
	resp, b := do(t, s, http.MethodPost, PathMediaUpload, q, mw.FormDataContentType(), buf.Bytes())
	return decode(t, resp, b)
}

func wantCode(t *testing.T, what string, a answer, code int) {
	t.Helper()
	if a.code() != code {
		t.Fatalf("%s: errcode %d (%v), want %d", what, a.code(), a, code)
	}
	if code != 0 && a.str("errmsg") == "" {
		t.Fatalf("%s: error answer without errmsg: %v", what, a)
	}
}
