package webchat

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/internal/wspoll"
)

func TestTokenTenant(t *testing.T) {
	tok, hash := newToken(42)
	if got, ok := tokenTenant(tok); !ok || got != 42 {
		t.Fatalf("tokenTenant(%q) = %v, %v", tok, got, ok)
	}
	if string(hashToken(tok)) != string(hash) {
		t.Fatal("the stored hash is not the token's")
	}
	for _, bad := range []string{"", "sbv_", "sbv__x", "sbv_0_x", "sbv_-1_x", "sb_42_x", "sbv_42", "sbv_abc_x", "sbv_99999999999999999999999_x"} {
		if _, ok := tokenTenant(bad); ok {
			t.Errorf("tokenTenant(%q) accepted", bad)
		}
	}
}

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig(nil)
	if err != nil || c.UploadMaxBytes != DefaultUploadMaxBytes || len(c.UploadTypes) == 0 || !c.originAllowed("https://any.example") {
		t.Fatalf("defaults = %+v, %v", c, err)
	}
	c, err = ParseConfig(json.RawMessage(`{"allowed_origins":["https://shop.example.com"]}`))
	if err != nil || !c.originAllowed("https://shop.example.com") || c.originAllowed("https://evil.example") || !c.originAllowed("") {
		t.Fatalf("allowlist = %+v, %v", c, err)
	}
	for _, bad := range []string{`{"allowed_origins":["shop.example.com"]}`, `{"allowed_origins":["https://x.example/path"]}`, `{"allowed_origins":"x"}`, `[`} {
		if _, err := ParseConfig(json.RawMessage(bad)); err == nil {
			t.Errorf("ParseConfig(%s) accepted", bad)
		}
	}
}

func TestView(t *testing.T) {
	m := conv.Message{ID: 1, TenantID: 9, ChannelID: 3, ConversationID: 2, Seq: 1, Direction: conv.In,
		ExternalID: "visitor:77:c-1", Parts: []conv.Part{{Type: conv.PartText, Text: "hi"}}, Status: conv.MsgReceived}
	v := View(m)
	if v.ClientID != "c-1" || len(v.Parts) != 1 {
		t.Fatalf("View = %+v", v)
	}
	b, _ := json.Marshal(v)
	var raw map[string]any
	json.Unmarshal(b, &raw)
	for _, internal := range []string{"tenant_id", "channel_id", "external_id"} {
		if _, ok := raw[internal]; ok {
			t.Errorf("visitor view carries %s: %s", internal, b)
		}
	}
}

// FuzzVisitorToken: whatever a client sends as a token, parsing it never
// panics and accepts only the token shape.
func FuzzVisitorToken(f *testing.F) {
	tok, _ := newToken(7)
	for _, s := range []string{tok, "sbv_1_", "sbv_x", "", "sbv_18446744073709551616_a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := tokenTenant(s)
		if ok && (id <= 0 || len(s) > 128) {
			t.Fatalf("tokenTenant(%q) = %v", s, id)
		}
	})
}

// FuzzParseConfig: channel configuration is outside input too.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{`{}`, `{"allowed_origins":["https://a.example"],"upload_max_bytes":5}`, `{"upload_types":[1]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err == nil && (c.UploadMaxBytes <= 0 || len(c.UploadTypes) == 0) {
			t.Fatalf("ParseConfig(%q) gave %+v", b, c)
		}
	})
}

func TestEndedNormally(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("wspoll: read: %w", syscall.ECONNRESET), true},
		{fmt.Errorf("wspoll: write: %w", syscall.EPIPE), true},
		{fmt.Errorf("wspoll: read: %w", io.EOF), true},
		{wspoll.ErrClosed, true},
		{errSlow, true},
		{fmt.Errorf("wspoll: read: %w", syscall.ENOMEM), false},
		{errors.New("handshake: bad frame"), false},
	} {
		if got := endedNormally(c.err); got != c.want {
			t.Errorf("endedNormally(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
