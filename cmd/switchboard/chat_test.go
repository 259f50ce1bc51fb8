package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-hq/switchboard/core/secret"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// server is a real switchboard serve on a random port (embedded default).
type server struct {
	t        testing.TB
	addr     string
	data     string
	password string // the demo agent's
	channel  string // the demo web chat channel
}

// startServer runs serve on a fresh data dir with the embedded defaults,
// plus extra flags.
func startServer(t testing.TB, extra ...string) *server {
	t.Helper()
	t.Setenv(secret.EnvVar, "")
	s := &server{t: t, data: t.TempDir(), addr: freeAddr(t)}
	ctx, stop := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"serve", "--data", s.data, "--addr", s.addr}, extra...), &bytes.Buffer{}, &stderr)
	}()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", stderr.String())
		}
	})
	waitReady(t, s.addr, &stderr)
	m := regexp.MustCompile(`password (\S+)`).FindStringSubmatch(stderr.String())
	c := regexp.MustCompile(`web chat channel (\d+)`).FindStringSubmatch(stderr.String())
	if m == nil || c == nil {
		t.Fatalf("first start printed no demo login:\n%s", stderr.String())
	}
	s.password, s.channel = m[1], c[1]
	return s
}

// waitReady waits for a node on addr to answer /readyz with 200.
func waitReady(t testing.TB, addr string, log *syncBuffer) {
	t.Helper()
	ready := func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	if !ready() {
		testenv.WaitFor(t, 60*time.Second, "/readyz on "+addr+"; log:\n"+log.String(), ready)
	}
}

// call does an HTTP request with a JSON body and decodes the JSON answer.
func (s *server) call(method, path, bearer string, body any) (int, map[string]any) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+s.addr+path, rd)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if len(b) > 0 && json.Unmarshal(b, &out) != nil {
		s.t.Fatalf("%s %s: answer is not JSON: %s", method, path, b)
	}
	return resp.StatusCode, out
}

func (s *server) mustCall(method, path, bearer string, body any, want int) map[string]any {
	s.t.Helper()
	code, out := s.call(method, path, bearer, body)
	if code != want {
		s.t.Fatalf("%s %s = %d %v, want %d", method, path, code, out, want)
	}
	return out
}

func (s *server) login(tenant, email, password string) string {
	s.t.Helper()
	out := s.mustCall("POST", "/v1/auth/login", "", map[string]string{"tenant": tenant, "email": email, "password": password}, 200)
	return out["token"].(string)
}

// ws is a websocket client reading JSON frames.
type ws struct {
	t testing.TB
	c *websocket.Conn
}

func (s *server) dial(path string) *ws {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+s.addr+path, nil)
	if err != nil {
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		s.t.Fatalf("dial %s: %v (HTTP %d)", path, err, code)
	}
	c.SetReadLimit(1 << 20)
	w := &ws{t: s.t, c: c}
	s.t.Cleanup(func() { c.CloseNow() })
	return w
}

func (w *ws) send(v any) {
	w.t.Helper()
	b, _ := json.Marshal(v)
	w.sendRaw(b)
}

func (w *ws) sendRaw(b []byte) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.c.Write(ctx, websocket.MessageText, b); err != nil {
		w.t.Fatalf("write: %v", err)
	}
}

// next reads one frame (20 s at most).
func (w *ws) next() map[string]any {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, b, err := w.c.Read(ctx)
	if err != nil {
		w.t.Fatalf("read: %v", err)
	}
	var f map[string]any
	if err := json.Unmarshal(b, &f); err != nil {
		w.t.Fatalf("frame is not JSON: %s", b)
	}
	return f
}

// until reads frames until pred holds, returning that frame and the ones
// skipped before it.
func (w *ws) until(what string, pred func(map[string]any) bool) (map[string]any, []map[string]any) {
	w.t.Helper()
	var skipped []map[string]any
	for range 500 {
		f := w.next()
		if pred(f) {
			return f, skipped
		}
		skipped = append(skipped, f)
	}
	w.t.Fatalf("no %s among %d frames: %v", what, len(skipped), skipped)
	return nil, nil
}

func typ(t string) func(map[string]any) bool {
	return func(f map[string]any) bool { return f["type"] == t }
}

// event matches an agent event frame of type et, optionally with a check.
func event(et string, check func(ev map[string]any) bool) func(map[string]any) bool {
	return func(f map[string]any) bool {
		ev, _ := f["event"].(map[string]any)
		return f["type"] == "event" && ev != nil && ev["type"] == et && (check == nil || check(ev))
	}
}

func msgText(m map[string]any) string {
	parts, _ := m["parts"].([]any)
	if len(parts) == 0 {
		return ""
	}
	p, _ := parts[0].(map[string]any)
	s, _ := p["text"].(string)
	return s
}

func cursorOf(f map[string]any) int64 {
	c, _ := f["cursor"].(float64)
	return int64(c)
}

// TestChatEndToEnd speaks both websocket protocols against a real server:
// a visitor writes, the conversation is dispatched to the online agent, the
// agent answers from one device while a second device of theirs follows;
// the second device drops, misses events and resumes exactly; a client id
// sent twice is stored once; bad frames get error frames on a socket that
// stays up; another tenant's agent gets 404.
func TestChatEndToEnd(t *testing.T) {
	s := startServer(t)
	tokA := s.login("demo", "agent@demo.local", s.password)

	// Agent device 1: hello, then resume from its (empty) timeline.
	dev1 := s.dial("/v1/agent/ws?token=" + tokA)
	hello := dev1.next()
	if hello["type"] != "hello" {
		t.Fatalf("first agent frame = %v, want hello", hello)
	}
	dev1.send(map[string]any{"type": "resume", "cursor": cursorOf(hello)})
	dev1.until("resumed", typ("resumed"))

	// The visitor: a session, the socket, presence says an agent is online.
	sess := s.mustCall("POST", "/v1/widget/sessions", "", map[string]any{"channel_id": s.channel}, 200)
	vtok := sess["visitor_token"].(string)
	visitor := s.dial("/v1/widget/ws?token=" + vtok)
	if p := visitor.next(); p["type"] != "presence" || p["agents_online"] != true {
		t.Fatalf("visitor's first frame = %v, want presence with agents_online", p)
	}
	visitor.send(map[string]any{"type": "send", "client_id": "c-1", "text": "hello, where is my order?"})
	ack, _ := visitor.until("ack", typ("ack"))
	m1 := ack["message"].(map[string]any)
	if ack["client_id"] != "c-1" || m1["seq"].(float64) != 1 || m1["direction"] != "in" || msgText(m1) != "hello, where is my order?" {
		t.Fatalf("ack = %v", ack)
	}
	convID := m1["conversation_id"].(string)

	// Dispatch gives the conversation to the only online agent; device 1
	// sees the message and the assignment (in either order: they are two
	// batches of events, handled concurrently).
	var sawCreated, sawAssigned bool
	dev1.until("message.created and conversation.assigned", func(f map[string]any) bool {
		switch {
		case event("message.created", func(ev map[string]any) bool { return ev["message"].(map[string]any)["id"] == m1["id"] })(f):
			sawCreated = true
		case event("conversation.assigned", func(ev map[string]any) bool {
			c := ev["conversation"].(map[string]any)
			return c["id"] == convID && c["assignee_id"] == hello["agent"].(map[string]any)["id"]
		})(f):
			sawAssigned = true
		}
		return sawCreated && sawAssigned
	})

	// The agent's list shows it as theirs, with one unread.
	list := s.mustCall("GET", "/v1/conversations?assignee=me", tokA, nil, 200)
	convs := list["conversations"].([]any)
	if len(convs) != 1 || convs[0].(map[string]any)["unread"].(float64) != 1 || convs[0].(map[string]any)["channel_kind"] != "webchat" {
		t.Fatalf("my conversations = %v", list)
	}

	// The agent replies; the visitor sees it.
	reply := s.mustCall("POST", "/v1/conversations/"+convID+"/messages", tokA, map[string]string{"text": "Let me check, one moment.", "client_id": "r-1"}, 201)
	if reply["status"] != "pending" || reply["seq"].(float64) != 2 {
		t.Fatalf("reply = %v", reply)
	}
	got, _ := visitor.until("the reply", func(f map[string]any) bool {
		m, _ := f["message"].(map[string]any)
		return f["type"] == "message" && m["id"] == reply["id"]
	})
	if vm := got["message"].(map[string]any); vm["direction"] != "out" || msgText(vm) != "Let me check, one moment." {
		t.Fatalf("visitor got %v", vm)
	}
	if _, internal := got["message"].(map[string]any)["tenant_id"]; internal {
		t.Fatalf("visitor frame leaks internal fields: %v", got)
	}
	dev1.until("reply sent", event("message.updated", func(ev map[string]any) bool {
		m := ev["message"].(map[string]any)
		return m["id"] == reply["id"] && m["status"] == "sent"
	}))

	// Device 2 of the same agent replays the whole timeline from 0: the
	// same events, same cursors, as device 1 got.
	dev2 := s.dial("/v1/agent/ws?token=" + tokA)
	dev2.next() // hello
	dev2.send(map[string]any{"type": "resume", "cursor": 0})
	_, backlog := dev2.until("resumed", typ("resumed"))
	var last int64
	for i, f := range backlog {
		if cursorOf(f) != int64(i+1) {
			t.Fatalf("device 2 backlog frame %d has cursor %d, want %d (gapless from 1): %v", i, cursorOf(f), i+1, backlog)
		}
		last = cursorOf(f)
	}
	if last < 4 {
		t.Fatalf("device 2 backlog has %d events, want at least created, assigned, reply created, reply sent", last)
	}

	// Device 2 goes offline; meanwhile the visitor writes twice (one of
	// them a duplicate client id) and the agent reads.
	dev2.c.Close(websocket.StatusNormalClosure, "offline")
	visitor.send(map[string]any{"type": "send", "client_id": "c-1", "text": "hello, where is my order?"})
	dup, _ := visitor.until("ack of the duplicate", typ("ack"))
	if dup["message"].(map[string]any)["id"] != m1["id"] {
		t.Fatalf("a client id sent twice acked a different message: %v vs %v", dup["message"], m1)
	}
	visitor.send(map[string]any{"type": "send", "client_id": "c-2", "text": "order #1042"})
	ack2, _ := visitor.until("ack c-2", typ("ack"))
	if ack2["message"].(map[string]any)["seq"].(float64) != 3 {
		t.Fatalf("second message got seq %v, want 3 (the duplicate took none)", ack2["message"])
	}
	read := s.mustCall("POST", "/v1/conversations/"+convID+"/read", tokA, map[string]int{"seq": 3}, 200)
	if read["read_seq"].(float64) != 3 || read["unread"].(float64) != 0 {
		t.Fatalf("read = %v", read)
	}
	readEv, skipped := dev1.until("conversation.read", event("conversation.read", nil))
	want := append(skipped, readEv)

	// Device 2 comes back and resumes from its last cursor: exactly what
	// device 1 got meanwhile, nothing twice, nothing missing.
	dev2 = s.dial("/v1/agent/ws?token=" + tokA)
	dev2.next()
	dev2.send(map[string]any{"type": "resume", "cursor": last})
	_, caught := dev2.until("resumed", typ("resumed"))
	var wantCursors, gotCursors []int64
	for _, f := range want {
		if f["type"] == "event" && cursorOf(f) > last {
			wantCursors = append(wantCursors, cursorOf(f))
		}
	}
	for _, f := range caught {
		gotCursors = append(gotCursors, cursorOf(f))
	}
	if fmt.Sprint(gotCursors) != fmt.Sprint(wantCursors) {
		t.Fatalf("device 2 caught up with cursors %v, device 1 got %v", gotCursors, wantCursors)
	}

	// A second tab of the visitor resumes from 0: exactly three messages,
	// in seq order (everything it could see live was settled before it
	// opened).
	tab2 := s.dial("/v1/widget/ws?token=" + vtok)
	tab2.next() // presence
	tab2.send(map[string]any{"type": "resume", "after_seq": 0})
	_, hist := tab2.until("resumed", typ("resumed"))
	var seqs []float64
	for _, f := range hist {
		if f["type"] == "message" {
			seqs = append(seqs, f["message"].(map[string]any)["seq"].(float64))
		}
	}
	if fmt.Sprint(seqs) != "[1 2 3]" {
		t.Fatalf("visitor resume gave seqs %v, want [1 2 3]", seqs)
	}

	// Bad frames: an error frame, and the socket stays up.
	visitor.sendRaw([]byte(`{"type":"send",`))
	if e, _ := visitor.until("error", typ("error")); e["code"] != "invalid" {
		t.Fatalf("malformed frame answered %v", e)
	}
	visitor.send(map[string]string{"type": "ping"})
	visitor.until("pong", typ("pong"))

	// Another tenant's agent: 404 on the demo conversation, never 403.
	mustCLI(t, s.data, "tenant", "create", "--name", "other")
	mustCLI(t, s.data, "agent", "create", "--tenant", "other", "--email", "eve@example.com", "--name", "Eve", "--password", "correct horse battery")
	tokE := s.login("other", "eve@example.com", "correct horse battery")
	for _, p := range []string{"/v1/conversations/" + convID, "/v1/conversations/" + convID + "/messages"} {
		if code, _ := s.call("GET", p, tokE, nil); code != 404 {
			t.Fatalf("other tenant GET %s = %d, want 404", p, code)
		}
	}
	if code, _ := s.call("POST", "/v1/conversations/"+convID+"/messages", tokE, map[string]string{"text": "hi"}); code != 404 {
		t.Fatalf("other tenant reply = %d, want 404", code)
	}

	// Unknown tokens: 401 before any upgrade.
	for _, p := range []string{"/v1/agent/ws?token=sb_1_nope", "/v1/widget/ws?token=sbv_1_nope"} {
		resp, err := http.Get("http://" + s.addr + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("GET %s = %d, want 401", p, resp.StatusCode)
		}
	}

	// An oversized frame closes the socket with 1009.
	big := s.dial("/v1/widget/ws?token=" + vtok)
	big.next()
	big.sendRaw([]byte(`{"type":"send","client_id":"x","text":"` + strings.Repeat("a", 70<<10) + `"}`))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, _, err := big.c.Read(ctx); err != nil {
			if websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
				t.Fatalf("oversized frame ended the socket with %v, want 1009", err)
			}
			break
		}
	}
}
