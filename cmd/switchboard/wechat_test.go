package main

import (
	"bytes"
	"context"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/connectors/wechat/wechattest"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// TestWeChatEndToEnd: a business connects an Official Account (channel
// create), WeChat pushes a customer's message in safe mode, the agent's
// console socket receives it, and WeChat's retry of the same push stores
// nothing twice.
func TestWeChatEndToEnd(t *testing.T) {
	s := startServer(t)
	fake := wechattest.Start(t, wechattest.Config{})
	const (
		appID  = "wx5823bf96d3bd56c7"
		token  = "QDG6eK"
		aesKey = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
		openid = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
	)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"channel", "create", "--data", s.data, "--tenant", "demo", "--kind", "wechat_oa",
		"--name", "Shop OA", "--config", `{"app_id":"` + appID + `","app_secret":"app-s3cret","token":"` + token +
			`","encoding_aes_key":"` + aesKey + `","api_base":"` + fake.URL() + `"}`},
		&out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	var ch struct {
		ID          string `json:"id"`
		WebhookPath string `json:"webhook_path"`
	}
	if err := json.Unmarshal(out.Bytes(), &ch); err != nil || ch.WebhookPath == "" {
		t.Fatalf("channel create printed %s (%v)", out.String(), err)
	}

	tok := s.login("demo", "agent@demo.local", s.password)
	dev := s.dial("/v1/agent/ws?token=" + tok)
	hello := dev.next()
	dev.send(map[string]any{"type": "resume", "cursor": cursorOf(hello)})
	dev.until("resumed", typ("resumed"))

	fake.AddApp(appID, "app-s3cret")
	p := &wechattest.Pusher{URL: "http://" + s.addr + ch.WebhookPath, Token: token, EncodingAESKey: aesKey, AppID: appID,
		Mode: wechattest.ModeSafe, Server: fake}
	msg := wechattest.Text("gh_1234567890ab", openid, "我的快递到哪了？", 24016853811020416, time.Now().Unix())
	for attempt := range 2 { // WeChat retries a push; the retry must change nothing
		status, body, err := p.PushMessage(t.Context(), msg)
		if err != nil || status != http.StatusOK || string(body) != "success" {
			t.Fatalf("push %d = %d %q %v, want 200 success", attempt, status, body, err)
		}
	}
	created, _ := dev.until("the WeChat message", event("message.created", func(ev map[string]any) bool {
		return msgText(ev["message"].(map[string]any)) == "我的快递到哪了？"
	}))
	c := created["event"].(map[string]any)["conversation"].(map[string]any)
	convID := c["id"].(string)
	if c["channel_id"] != ch.ID || c["reply_deadline"] == nil {
		t.Fatalf("conversation = %v, want channel %s with a reply deadline", c, ch.ID)
	}
	// The agent types: the customer sees WeChat's "typing", then not.
	dev.send(map[string]any{"type": "typing", "conversation_id": convID, "typing": true})
	dev.send(map[string]any{"type": "typing", "conversation_id": convID, "typing": false})
	var ty []wechattest.Typing
	testenv.WaitFor(t, 10*time.Second, "Typing then CancelTyping at WeChat", func() bool {
		ty = fake.Typing()
		return len(ty) >= 2
	})
	if len(ty) != 2 || ty[0].ToUser != openid || ty[0].Command != "Typing" || ty[1].Command != "CancelTyping" {
		t.Fatalf("WeChat typing calls = %+v", ty)
	}

	msgs := s.mustCall("GET", "/v1/conversations/"+convID+"/messages?after_seq=0", tok, nil, 200)
	if n := len(msgs["messages"].([]any)); n != 1 {
		t.Fatalf("%d messages after a push and its retry, want 1: %v", n, msgs)
	}

	// The agent answers: the reply goes out through customer-service
	// send with the customer's openid and the app's token, and is sent.
	reply := s.mustCall("POST", "/v1/conversations/"+convID+"/messages", tok, map[string]string{"text": "正在查询，请稍等"}, 201)
	sent := fake.WaitSent(t, 1, 10*time.Second)
	var body struct {
		ToUser  string `json:"touser"`
		MsgType string `json:"msgtype"`
		Text    struct {
			Content string `json:"content"`
		} `json:"text"`
	}
	if err := json.Unmarshal(sent[0].Body, &body); err != nil || body.ToUser != openid || body.MsgType != "text" ||
		body.Text.Content != "正在查询，请稍等" || sent[0].AppID != appID || sent[0].Token == "" {
		t.Fatalf("WeChat got %+v (%s), %v", sent[0], sent[0].Body, err)
	}
	dev.until("reply sent", event("message.updated", func(ev map[string]any) bool {
		m := ev["message"].(map[string]any)
		return m["id"] == reply["id"] && m["status"] == "sent"
	}))

	// WeChat refuses the next one: the agent sees it failed, and why.
	fake.FailNext(wechattest.PathSend, 45015, "response out of time limit or subscription is canceled", 1)
	refused := s.mustCall("POST", "/v1/conversations/"+convID+"/messages", tok, map[string]string{"text": "还在吗？"}, 201)
	failed, _ := dev.until("reply failed", event("message.updated", func(ev map[string]any) bool {
		m := ev["message"].(map[string]any)
		return m["id"] == refused["id"] && m["status"] == "failed"
	}))
	if reason, _ := failed["event"].(map[string]any)["message"].(map[string]any)["status_reason"].(string); !strings.Contains(reason, "48-hour") {
		t.Fatalf("failed reply's reason = %q, want the reply window explained", reason)
	}

	// The agent attaches a picture: uploaded to WeChat first, then sent
	// as an image message with the media id WeChat gave.
	png := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{0}, 200)...)
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, _ := mw.CreateFormFile("file", "map.png")
	fw.Write(png)
	mw.Close()
	req, _ := http.NewRequest("POST", "http://"+s.addr+"/v1/uploads", &form)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var up struct {
		Part map[string]any `json:"part"`
	}
	json.NewDecoder(resp.Body).Decode(&up)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || up.Part["type"] != "image" {
		t.Fatalf("upload = %d %v", resp.StatusCode, up)
	}
	s.mustCall("POST", "/v1/conversations/"+convID+"/messages", tok, map[string]any{"parts": []any{up.Part}}, 201)
	sent = fake.WaitSent(t, 2, 10*time.Second)
	var img struct {
		ToUser  string `json:"touser"`
		MsgType string `json:"msgtype"`
		Image   struct {
			MediaID string `json:"media_id"`
		} `json:"image"`
	}
	if err := json.Unmarshal(sent[1].Body, &img); err != nil || img.MsgType != "image" || img.ToUser != openid {
		t.Fatalf("WeChat got %s, %v", sent[1].Body, err)
	}
	if m, ok := fake.Media(img.Image.MediaID); !ok || !bytes.Equal(m.Data, png) {
		t.Fatalf("media %q not the uploaded picture (found %v)", img.Image.MediaID, ok)
	}
	// WeChat is busy once: the agent sees the reply retrying, and why,
	// then sent.
	fake.FailNext(wechattest.PathSend, -1, "system error", 1)
	busy := s.mustCall("POST", "/v1/conversations/"+convID+"/messages", tok, map[string]string{"text": "马上就好"}, 201)
	retrying, _ := dev.until("reply retrying", event("message.updated", func(ev map[string]any) bool {
		m := ev["message"].(map[string]any)
		return m["id"] == busy["id"] && m["status"] == "pending"
	}))
	if reason, _ := retrying["event"].(map[string]any)["message"].(map[string]any)["status_reason"].(string); !strings.HasPrefix(reason, "retrying: ") {
		t.Fatalf("retrying reason = %q", reason)
	}
	dev.until("busy reply sent after all", event("message.updated", func(ev map[string]any) bool {
		m := ev["message"].(map[string]any)
		return m["id"] == busy["id"] && m["status"] == "sent"
	}))

	// A link card: WeChat shows it as a one-article news message.
	s.mustCall("POST", "/v1/conversations/"+convID+"/messages", tok, map[string]any{"parts": []any{map[string]any{
		"type": "card", "title": "Track your parcel", "description": "Order 42", "url": "https://shop.example/track/42"}}}, 201)
	sent = fake.WaitSent(t, 4, 10*time.Second)
	var news struct {
		MsgType string `json:"msgtype"`
		News    struct {
			Articles []struct {
				Title string `json:"title"`
				URL   string `json:"url"`
			} `json:"articles"`
		} `json:"news"`
	}
	if err := json.Unmarshal(sent[3].Body, &news); err != nil || news.MsgType != "news" || len(news.News.Articles) != 1 ||
		news.News.Articles[0].URL != "https://shop.example/track/42" {
		t.Fatalf("WeChat got %s, %v", sent[3].Body, err)
	}

	// Parts must be our own uploads: no sending an arbitrary URL.
	s.mustCall("POST", "/v1/conversations/"+convID+"/messages", tok,
		map[string]any{"parts": []any{map[string]any{"type": "image", "url": "http://169.254.169.254/latest"}}}, 400)

	// A new follower: recorded, but no conversation waits for an agent.
	follow := wechattest.Event("gh_1234567890ab", "oFollower_only_0000000000000", "subscribe", "qrscene_spring", time.Now().Unix())
	if status, body, err := p.PushMessage(t.Context(), follow); err != nil || status != http.StatusOK || string(body) != "success" {
		t.Fatalf("follow push = %d %q %v", status, body, err)
	}
	var resolved []any
	testenv.WaitFor(t, 10*time.Second, "the follow to be recorded", func() bool {
		resolved = s.mustCall("GET", "/v1/conversations?status=resolved", tok, nil, 200)["conversations"].([]any)
		return len(resolved) > 0
	})
	if r := resolved[0].(map[string]any); len(resolved) != 1 || r["channel_id"] != ch.ID || r["scene"] != "qrscene_spring" {
		t.Fatalf("the follow's conversations = %v", resolved)
	}
	open := s.mustCall("GET", "/v1/conversations?status=open&assignee=unassigned", tok, nil, 200)["conversations"].([]any)
	for _, c := range open {
		if c.(map[string]any)["id"] != convID {
			t.Fatalf("a follow put a conversation in the queue: %v", c)
		}
	}
}
