package main

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/switchboard-hq/switchboard/connectors/webchat"
)

// post sends a JSON body with an Origin header and returns status, body and
// the CORS header.
func (s *server) postOrigin(path, origin string, body any) (int, map[string]any, string) {
	s.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", "http://"+s.addr+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, resp.Header.Get("Access-Control-Allow-Origin")
}

func (s *server) upload(token, name string, content []byte) (int, map[string]any) {
	s.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", name)
	fw.Write(content)
	mw.Close()
	req, _ := http.NewRequest("POST", "http://"+s.addr+"/v1/widget/uploads", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func errCode(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// A 1×1 PNG.
var tinyPNG = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")

// TestWidgetIdentityOriginsUploads: the origin allowlist, identifying a
// visitor (valid hash merges the anonymous history, a wrong one is
// refused), uploads within and over the limits, signed media URLs, and a
// flooding visitor throttled without hurting another.
func TestWidgetIdentityOriginsUploads(t *testing.T) {
	s := startServer(t)
	ch := mustCLI(t, s.data, "channel", "create", "--tenant", "demo", "--kind", "webchat", "--name", "Shop",
		"--config", `{"allowed_origins":["https://shop.example.com"],"identity_secret":"s3cret-identity","upload_max_bytes":1024}`)
	chID := ch["id"].(string)

	// Origins.
	if code, out, _ := s.postOrigin("/v1/widget/sessions", "https://evil.example", map[string]any{"channel_id": chID}); code != 403 || errCode(out) != "forbidden" {
		t.Fatalf("session from a foreign origin = %d %v, want 403 forbidden", code, out)
	}
	code, anon, acao := s.postOrigin("/v1/widget/sessions", "https://shop.example.com", map[string]any{"channel_id": chID})
	if code != 200 || acao != "https://shop.example.com" {
		t.Fatalf("session from the allowed origin = %d (CORS %q) %v", code, acao, anon)
	}
	if code, out, _ := s.postOrigin("/v1/widget/sessions", "", map[string]any{"channel_id": "1"}); code != 404 {
		t.Fatalf("session on an unknown channel = %d %v, want 404", code, out)
	}

	// The anonymous visitor writes, then the site identifies them.
	tok := anon["visitor_token"].(string)
	v := s.dial("/v1/widget/ws?token=" + tok)
	v.next()
	v.send(map[string]any{"type": "send", "client_id": "a-1", "text": "<img src=x onerror=alert(1)> before login"})
	v.until("ack", typ("ack"))
	user := map[string]any{"id": "u-42", "name": "Ada Lovelace", "hash": "00" + webchat.UserHash("s3cret-identity", "u-42")[2:]}
	if code, out, _ := s.postOrigin("/v1/widget/sessions", "", map[string]any{"channel_id": chID, "visitor_token": tok, "user": user}); code != 403 ||
		!strings.Contains(out["error"].(map[string]any)["message"].(string), "identity hash does not match") {
		t.Fatalf("wrong identity hash = %d %v, want 403 with a clear message", code, out)
	}
	user["hash"] = webchat.UserHash("s3cret-identity", "u-42")
	_, known, _ := s.postOrigin("/v1/widget/sessions", "", map[string]any{"channel_id": chID, "visitor_token": tok, "user": user})
	if known["visitor_token"] != tok || known["contact_id"] == anon["contact_id"] || known["conversation_id"] == nil {
		t.Fatalf("identified session = %v (anonymous was %v)", known, anon)
	}
	hist := s.mustCall("GET", "/v1/widget/messages?token="+tok, "", nil, 200)
	msgs := hist["messages"].([]any)
	if len(msgs) != 1 || msgText(msgs[0].(map[string]any)) != "<img src=x onerror=alert(1)> before login" {
		t.Fatalf("identified visitor's history = %v, want the anonymous message, text kept verbatim", hist)
	}
	// A new browser of the same user lands in the same contact.
	_, other, _ := s.postOrigin("/v1/widget/sessions", "", map[string]any{"channel_id": chID, "user": user})
	if other["contact_id"] != known["contact_id"] || other["visitor_token"] == tok {
		t.Fatalf("same user, new browser = %v, want contact %v with a new token", other, known["contact_id"])
	}

	// Uploads: an image within the limit, then too large, then a type
	// outside the allowlist.
	code, up := s.upload(tok, "dot.png", tinyPNG)
	part, _ := up["part"].(map[string]any)
	if code != 201 || part["type"] != "image" || part["mime"] != "image/png" {
		t.Fatalf("upload png = %d %v", code, up)
	}
	resp, err := http.Get("http://" + s.addr + part["url"].(string))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, tinyPNG) {
		t.Fatalf("GET signed media = %d (%d bytes)", resp.StatusCode, len(got))
	}
	resp, _ = http.Get("http://" + s.addr + strings.Replace(part["url"].(string), "sig=", "sig=0", 1))
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("tampered media URL = %d, want 403", resp.StatusCode)
	}
	if code, out := s.upload(tok, "big.png", append(append([]byte{}, tinyPNG...), make([]byte, 2048)...)); code != 413 || errCode(out) != "too_large" {
		t.Fatalf("upload over the limit = %d %v, want 413", code, out)
	}
	if code, out := s.upload(tok, "page.html", []byte("<html><script>alert(1)</script></html>")); code != 415 || errCode(out) != "unsupported_type" {
		t.Fatalf("upload of html = %d %v, want 415", code, out)
	}
	v.send(map[string]any{"type": "send", "client_id": "a-2", "parts": []any{part}})
	ack, _ := v.until("ack of the image", typ("ack"))
	if parts := ack["message"].(map[string]any)["parts"].([]any); len(parts) != 1 || parts[0].(map[string]any)["type"] != "image" {
		t.Fatalf("image message = %v", ack)
	}
	v.send(map[string]any{"type": "send", "client_id": "a-3", "parts": []any{map[string]any{"type": "image", "url": "https://evil.example/x.png"}}})
	if e, _ := v.until("error", typ("error")); e["code"] != "invalid" {
		t.Fatalf("foreign media URL = %v, want invalid", e)
	}

	// A flood from one visitor is throttled; another visitor is unaffected.
	calm := s.dial("/v1/widget/ws?token=" + other["visitor_token"].(string))
	calm.next()
	for range 60 {
		v.send(map[string]string{"type": "ping"})
	}
	v.until("rate_limited", func(f map[string]any) bool { return f["type"] == "error" && f["code"] == "rate_limited" })
	calm.send(map[string]string{"type": "ping"})
	if f := calm.next(); f["type"] != "pong" {
		t.Fatalf("the calm visitor got %v, want pong", f)
	}
}

// TestConsoleActions: assign to another agent, resolve, recall, and the
// list filters.
func TestConsoleActions(t *testing.T) {
	s := startServer(t)
	tokA := s.login("demo", "agent@demo.local", s.password)
	bob := mustCLI(t, s.data, "agent", "create", "--tenant", "demo", "--email", "bob@example.com", "--name", "Bob", "--password", "correct horse battery")
	tokB := s.login("demo", "bob@example.com", "correct horse battery")

	sess := s.mustCall("POST", "/v1/widget/sessions", "", map[string]any{"channel_id": s.channel}, 200)
	v := s.dial("/v1/widget/ws?token=" + sess["visitor_token"].(string))
	v.next()
	v.send(map[string]any{"type": "send", "client_id": "q", "text": "question"})
	ack, _ := v.until("ack", typ("ack"))
	convID := ack["message"].(map[string]any)["conversation_id"].(string)

	// Nobody is online: it waits in the queue.
	un := s.mustCall("GET", "/v1/conversations?assignee=unassigned", tokA, nil, 200)["conversations"].([]any)
	if len(un) != 1 || un[0].(map[string]any)["id"] != convID {
		t.Fatalf("unassigned = %v", un)
	}
	as := s.mustCall("POST", "/v1/conversations/"+convID+"/assign", tokA, map[string]string{"agent_id": bob["id"].(string)}, 200)
	if as["assignee_id"] != bob["id"] {
		t.Fatalf("assign = %v", as)
	}
	if mine := s.mustCall("GET", "/v1/conversations?assignee=me", tokB, nil, 200)["conversations"].([]any); len(mine) != 1 {
		t.Fatalf("Bob's conversations = %v", mine)
	}
	if code, out := s.call("POST", "/v1/conversations/"+convID+"/assign", tokA, map[string]string{"agent_id": "12345"}); code != 400 {
		t.Fatalf("assign to an unknown agent = %d %v", code, out)
	}

	// Bob replies and recalls; Ann cannot recall Bob's message.
	r := s.mustCall("POST", "/v1/conversations/"+convID+"/messages", tokB, map[string]string{"text": "oops, wrong customer"}, 201)
	if code, _ := s.call("POST", "/v1/messages/"+r["id"].(string)+"/recall", tokA, nil); code != 409 {
		t.Fatalf("recall of another agent's message = %d, want 409", code)
	}
	rec := s.mustCall("POST", "/v1/messages/"+r["id"].(string)+"/recall", tokB, nil, 200)
	if rec["recalled_at"] == nil || len(rec["parts"].([]any)) != 0 {
		t.Fatalf("recalled = %v", rec)
	}
	seen, _ := v.until("recall shown to the visitor", func(f map[string]any) bool {
		m, _ := f["message"].(map[string]any)
		return f["type"] == "message" && m["id"] == r["id"] && m["recalled_at"] != nil
	})
	if len(seen["message"].(map[string]any)["parts"].([]any)) != 0 {
		t.Fatalf("the visitor still sees a recalled message's content: %v", seen)
	}

	// Resolve: it leaves the open lists and shows under resolved.
	res := s.mustCall("POST", "/v1/conversations/"+convID+"/resolve", tokB, nil, 200)
	if res["status"] != "resolved" {
		t.Fatalf("resolve = %v", res)
	}
	if open := s.mustCall("GET", "/v1/conversations?assignee=me", tokB, nil, 200)["conversations"].([]any); len(open) != 0 {
		t.Fatalf("open after resolve = %v", open)
	}
	if done := s.mustCall("GET", "/v1/conversations?status=resolved", tokB, nil, 200)["conversations"].([]any); len(done) != 1 {
		t.Fatalf("resolved = %v", done)
	}
	if code, out := s.call("POST", "/v1/conversations/"+convID+"/messages", tokB, map[string]string{"text": "late"}); code != 409 {
		t.Fatalf("reply to a resolved conversation = %d %v, want 409", code, out)
	}
}
