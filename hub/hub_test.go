package hub

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

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

// TestRegistryGeneratesSecrets: a Generated secret is made when the
// config has none (fresh per channel, 32 bytes hex) and kept when it has
// one, as an update that merges the stored secrets in does.
func TestRegistryGeneratesSecrets(t *testing.T) {
	r := NewRegistry(Kind{Name: "email", Secrets: []string{"password", "thread_key"}, Generated: []string{"thread_key"}})
	_, a, err := r.Split("email", []byte(`{"password":"pw"}`))
	if err != nil {
		t.Fatal(err)
	}
	_, b, err := r.Split("email", []byte(`{"password":"pw"}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(a["thread_key"]) != 64 || a["thread_key"] == b["thread_key"] || a["password"] != "pw" {
		t.Fatalf("generated secrets %q and %q, want two different 64-hex-digit keys", a["thread_key"], b["thread_key"])
	}
	_, kept, err := r.Split("email", []byte(`{"password":"pw2","thread_key":"`+a["thread_key"]+`"}`))
	if err != nil || kept["thread_key"] != a["thread_key"] {
		t.Fatalf("an update carrying the key got %q (%v), want it kept", kept["thread_key"], err)
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

// capture is a message.Publisher that keeps what it is given.
type capture struct{ msgs []*message.Message }

func (c *capture) Publish(_ string, msgs ...*message.Message) error {
	c.msgs = append(c.msgs, msgs...)
	return nil
}
func (c *capture) Close() error { return nil }

func TestPublishEventsBatchesPerTenantWithTypes(t *testing.T) {
	conversation := func(tenant conv.TenantID, id conv.ConversationID) *conv.Conversation {
		return &conv.Conversation{ID: id, TenantID: tenant, Status: conv.StatusOpen}
	}
	message1 := &conv.Message{ID: 11, TenantID: 1, ConversationID: 5, Seq: 1, Parts: []conv.Part{{Type: conv.PartText, Text: "hi"}}}
	events := []conv.Event{
		{Type: conv.EventConversationOpened, TenantID: 1, Conversation: conversation(1, 5)},
		{Type: conv.EventMessageCreated, TenantID: 2, Conversation: conversation(2, 6), Message: &conv.Message{ID: 12, TenantID: 2, ConversationID: 6, Seq: 1}},
		{Type: conv.EventMessageCreated, TenantID: 1, Conversation: conversation(1, 5), Message: message1},
	}
	var c capture
	if err := NewPublisher(&c).PublishEvents(t.Context(), events); err != nil {
		t.Fatal(err)
	}
	if len(c.msgs) != 2 {
		t.Fatalf("published %d messages, want one per tenant (2)", len(c.msgs))
	}
	wantTypes := map[string]string{"1": "conversation.opened,message.created", "2": "message.created"}
	for _, m := range c.msgs {
		tenant := m.Metadata.Get(MetaTenant)
		if got := m.Metadata.Get(MetaEventTypes); got != wantTypes[tenant] {
			t.Errorf("tenant %s: event_types = %q, want %q", tenant, got, wantTypes[tenant])
		}
		evs, err := DecodeEvents(m)
		if err != nil {
			t.Fatalf("tenant %s: DecodeEvents: %v", tenant, err)
		}
		for _, e := range evs {
			if e.TenantID.String() != tenant {
				t.Errorf("tenant %s's message holds an event of tenant %s", tenant, e.TenantID)
			}
		}
		if tenant == "1" && (len(evs) != 2 || evs[0].Type != conv.EventConversationOpened || evs[1].Message.Parts[0].Text != "hi") {
			t.Errorf("tenant 1's events = %+v, want opened then created, in order", evs)
		}
	}
	if !EventsOf(c.msgs[0], conv.EventConversationOpened) || EventsOf(c.msgs[1], conv.EventConversationOpened) {
		t.Error("EventsOf does not follow the metadata")
	}
	if !EventsOf(message.NewMessage("old", []byte(`{"events":[]}`)), conv.EventConversationOpened) {
		t.Error("a message without event_types must count as holding anything")
	}
}

// TestDecodeRoundTrip pins that Decode reads back exactly what the
// Publisher's encoding wrote, for every payload type on the bus.
func TestDecodeRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 21, 8, 30, 0, 123456000, time.UTC)
	deadline := at.Add(48 * time.Hour)
	msg := conv.Message{ID: 1 << 60, TenantID: 7, ConversationID: 9, ChannelID: 3, Seq: 4, Direction: conv.Out,
		Sender: conv.Sender{Type: conv.SenderAgent, ID: "5", Name: "Ana"}, ExternalID: "x", ClientID: "c",
		Parts:  []conv.Part{{Type: conv.PartImage, URL: "u", MIME: "image/png", Size: 12, Duration: 3}, {Type: conv.PartLocation, Lat: 31.2, Lng: 121.4, Label: "上海"}},
		Status: conv.MsgFailed, StatusReason: "45015", CreatedAt: at, RecalledAt: &at}
	cases := []struct {
		name string
		v    any
		into func() any
	}{
		{"inbound", conv.Inbound{TenantID: 7, ChannelID: 3, ExternalID: "m1", From: conv.Identity{Kind: "openid", ExternalID: "o1"},
			FromName: "李", Parts: []conv.Part{{Type: conv.PartText, Text: "你好"}}, System: true, Scene: "qrscene_1", SentAt: at,
			ReplyWindow: 48 * time.Hour}, func() any { return new(conv.Inbound) }},
		{"outbound", conv.Outbound{TenantID: 7, ChannelID: 3, Kind: conv.KindWeChatOA, To: []conv.Identity{{Kind: "openid", ExternalID: "o1"}},
			Message: msg}, func() any { return new(conv.Outbound) }},
		{"delivery", conv.Delivery{TenantID: 7, MessageID: 11, Status: conv.MsgFailed, Reason: "r", ExternalID: "e", At: at},
			func() any { return new(conv.Delivery) }},
		{"events", EventBatch{Events: []conv.Event{{Type: conv.EventConversationAssigned, TenantID: 7, Previous: 4, Agent: 5, ReadSeq: 2, At: at,
			Conversation: &conv.Conversation{ID: 9, TenantID: 7, ChannelID: 3, ContactID: 2, Status: conv.StatusResolved, AssigneeID: 5,
				GroupID: 1, Priority: 2, Scene: "s", ReplyDeadline: &deadline, LastSeq: 4, CreatedAt: at, UpdatedAt: at, ResolvedAt: &at},
			Message: &msg}}}, func() any { return new(EventBatch) }},
		{"dead letter", conv.DeadLetter{ID: 3, Topic: "t", Payload: []byte{0, 1}, Metadata: map[string]string{"a": "b"}, TenantID: 7, CreatedAt: at},
			func() any { return new(conv.DeadLetter) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			// Encode writes what encoding/json writes, byte for byte.
			if e, err := Encode(tc.v); err != nil || !bytes.Equal(e, b) {
				t.Fatalf("Encode = %s, %v\nencoding/json: %s", e, err, b)
			}
			got := tc.into()
			if err := Decode(message.NewMessage("x", b), got); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(reflect.ValueOf(got).Elem().Interface(), tc.v) {
				t.Errorf("round trip changed the value:\n got %+v\nwant %+v", reflect.ValueOf(got).Elem().Interface(), tc.v)
			}
		})
	}
}

func TestTenantOf(t *testing.T) {
	m := message.NewMessage("m", nil)
	m.Metadata.Set(MetaTenant, "42")
	if got, err := TenantOf(m); err != nil || got != 42 {
		t.Fatalf("TenantOf(42) = %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "-", "4x", "99999999999999999999"} {
		m.Metadata.Set(MetaTenant, bad)
		if _, err := TenantOf(m); !errors.Is(err, conv.ErrInvalid) {
			t.Errorf("TenantOf(%q) = %v, want invalid", bad, err)
		}
	}
}
