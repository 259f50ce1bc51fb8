package hub

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/switchboard-hq/switchboard/core/conv"
)

func TestRegistrySplit(t *testing.T) {
	r := NewRegistry(Kind{Name: "wechat_oa", Secrets: []string{"app_secret", "token"}, Required: []string{"app_id", "app_secret"}})
	cfg, secrets, err := r.Split("wechat_oa", []byte(`{"app_id":"wx1","app_secret":"s3","token":"t0","api_base":"https://x"}`))
	if err != nil {
		t.Fatal(err)
	}
	if secrets["app_secret"] != "s3" || secrets["token"] != "t0" || len(secrets) != 2 {
		t.Fatalf("secrets = %v", secrets)
	}
	var rest map[string]any
	json.Unmarshal(cfg, &rest)
	if rest["app_id"] != "wx1" || rest["api_base"] != "https://x" || rest["app_secret"] != nil || rest["token"] != nil {
		t.Fatalf("config = %s", cfg)
	}
	tests := []struct{ name, kind, cfg, want string }{
		{"unknown kind", "fax", `{}`, `unknown channel kind "fax" (known: wechat_oa)`},
		{"not an object", "wechat_oa", `[1]`, "not a JSON object"},
		{"missing required", "wechat_oa", `{"app_id":"wx1"}`, `needs "app_secret"`},
		{"secret not a string", "wechat_oa", `{"app_id":"wx1","app_secret":5}`, `"app_secret" must be a string`},
		{"too large", "wechat_oa", `{"app_id":"` + strings.Repeat("x", MaxConfig) + `"}`, "larger than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := r.Split(conv.ChannelKind(tc.kind), []byte(tc.cfg))
			if !errors.Is(err, conv.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Split = %v, want invalid containing %q", err, tc.want)
			}
		})
	}
}

func TestDecodeRejectsBadPayloadsPermanently(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
	}{
		{"not json", []byte("{")},
		{"wrong shape", []byte(`{"tenant_id":[1]}`)},
		{"too large", make([]byte, MaxPayload+1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var in conv.Inbound
			err := Decode(message.NewMessage("x", tc.payload), &in)
			if !conv.Permanent(err) {
				t.Fatalf("Decode = %v, want a permanent error", err)
			}
		})
	}
}
