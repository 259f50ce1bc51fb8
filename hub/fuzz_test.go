package hub

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// FuzzDecodeInbound: whatever bytes arrive on the inbound topic, decoding
// and validating them never panics, and anything that validates is an
// envelope ingest can store.
func FuzzDecodeInbound(f *testing.F) {
	f.Add([]byte(`{"tenant_id":"1","channel_id":"2","external_id":"m1","from":{"kind":"visitor","external_id":"v"},"parts":[{"type":"text","text":"hi"}]}`))
	f.Add([]byte(`{"tenant_id":"1","channel_id":"2","external_id":"m1","from":{"kind":"openid","external_id":"o"},"parts":[{"type":"location","lat":91}]}`))
	f.Add([]byte(`{"tenant_id":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var in conv.Inbound
		if err := Decode(message.NewMessage("x", b), &in); err != nil {
			if !conv.Permanent(err) {
				t.Fatalf("decode error not permanent: %v", err)
			}
			return
		}
		if err := in.Validate(); err != nil {
			if !conv.Permanent(err) {
				t.Fatalf("validation error not permanent: %v", err)
			}
			return
		}
		if in.TenantID.IsZero() || in.ChannelID.IsZero() || in.ExternalID == "" || len(in.Parts) == 0 {
			t.Fatalf("validated envelope lacks a key field: %+v", in)
		}
	})
}
