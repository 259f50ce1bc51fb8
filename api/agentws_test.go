package api_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-hq/switchboard/api"
	"github.com/switchboard-hq/switchboard/core/auth"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/outbound"
	"github.com/switchboard-hq/switchboard/internal/wsframe"
)

type noReplies struct{}

func (noReplies) Reply(context.Context, conv.TenantID, outbound.Reply) (conv.Message, error) {
	return conv.Message{}, conv.ErrUnavailable
}

type noEvents struct{}

func (noEvents) PublishEvents(context.Context, []conv.Event) error { return nil }

type noDrain struct{}

func (noDrain) Drain(context.Context, conv.TenantID) (int, error) { return 0, nil }

// TestAgentSocketClosedOnRevoke: a console socket whose token is revoked
// (logout on another device) is closed with 4401 at its next check, and a
// revoked token cannot open a new one (401).
func TestAgentSocketClosedOnRevoke(t *testing.T) {
	ctx := context.Background()
	a := newAcme(t, auth.Config{})
	console := a.console(t, noReplies{})
	console.PresenceTTL = 300 * time.Millisecond // sockets re-check their token every third of this
	srv, err := api.New(api.Config{Auth: a.auth, Console: console})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)

	tok := loginAnn(t, hs.URL)
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(hs.URL, "http")+"/v1/agent/ws?token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	_, b, err := ws.Read(dctx)
	var hello map[string]any
	if err != nil || json.Unmarshal(b, &hello) != nil || hello["type"] != "hello" {
		t.Fatalf("first frame = %s, %v", b, err)
	}
	if code, _, _ := do(t, "POST", hs.URL+"/v1/auth/logout", tok, ""); code != 204 {
		t.Fatalf("logout = %d", code)
	}
	for {
		if _, _, err := ws.Read(dctx); err != nil {
			if got := websocket.CloseStatus(err); got != wsframe.CloseUnauthorized {
				t.Fatalf("socket ended with %v (status %d), want close 4401", err, got)
			}
			break
		}
	}
	if code, _, _ := do(t, "GET", hs.URL+"/v1/agent/ws?token="+tok, "", ""); code != 401 {
		t.Fatalf("a revoked token opening a socket = %d, want 401", code)
	}
}
