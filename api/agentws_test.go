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
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/internal/wsframe"
	"github.com/switchboard-hq/switchboard/store/memory"
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
	st, ids := testenv.SQLiteStore(t)
	svc, err := auth.New(auth.Config{Store: st, Limiter: memory.NewLimiter(memory.Config{}), IDs: ids})
	if err != nil {
		t.Fatal(err)
	}
	tenant := conv.NewID[conv.TenantID](ids)
	if err := st.CreateTenant(ctx, conv.Tenant{ID: tenant, Name: "acme", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateAgent(ctx, tenant, auth.NewAgent{Email: "ann@example.com", Name: "Ann", Password: "correct horse battery"}); err != nil {
		t.Fatal(err)
	}
	tl, err := memory.NewTimelines(memory.TimelinesConfig{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Config{Auth: svc, Console: &api.Console{
		Store: st, Replies: noReplies{}, Events: noEvents{}, Timelines: tl, Fanout: memory.NewFanout(),
		Presence: memory.NewPresence(memory.Config{}), Dispatch: noDrain{},
		// Sockets re-check their token every third of this.
		PresenceTTL: 300 * time.Millisecond,
	}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)

	code, out, _ := do(t, "POST", hs.URL+"/v1/auth/login", "", `{"tenant":"acme","email":"ann@example.com","password":"correct horse battery"}`)
	if code != 200 {
		t.Fatalf("login = %d %v", code, out)
	}
	tok := out["token"].(string)
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
