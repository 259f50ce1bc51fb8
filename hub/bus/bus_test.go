package bus

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		c := Config{DataDir: "/tmp/x"}
		c.setDefaults()
		return c
	}
	cases := []struct {
		name    string
		edit    func(*Config)
		wantErr string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"external needs no data dir", func(c *Config) { c.URL, c.DataDir = "nats://x:4222", "" }, ""},
		{"embedded needs a data dir", func(c *Config) { c.DataDir = "" }, "DataDir"},
		{"ack wait too short", func(c *Config) { c.AckWait = time.Millisecond }, "AckWait"},
		{"no subscribers", func(c *Config) { c.Subscribers = -1 }, "Subscribers"},
		{"max deliver below one", func(c *Config) { c.MaxDeliver = -2 }, "MaxDeliver"},
		{"ack pending below subscribers", func(c *Config) { c.MaxAckPending = c.Subscribers - 1 }, "MaxAckPending"},
		{"retries outlast ack wait", func(c *Config) { c.Retry.MaxRetries, c.Retry.MaxInterval = 20, 2*time.Second }, "Retry budget"},
		{"retry intervals decreasing", func(c *Config) { c.Retry.MaxInterval = c.Retry.InitialInterval / 2 }, "Retry intervals"},
		{"redelivery not positive", func(c *Config) { c.Redelivery.InitialInterval = -time.Second }, "Redelivery"},
		{"max age below dedup window", func(c *Config) { c.MaxAge = time.Minute }, "MaxAge"},
		{"too many replicas", func(c *Config) { c.Replicas = 7 }, "Replicas"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate = %v, want an error about %s", err, tc.wantErr)
			case tc.wantErr != "" && !errors.Is(err, conv.ErrInvalid):
				t.Fatalf("Validate error %v is not conv.ErrInvalid", err)
			}
		})
	}
}

func TestSetDefaults(t *testing.T) {
	c := Config{DataDir: "d", URL: "", Replicas: 3, Retry: Retry{MaxRetries: -1}}
	c.setDefaults()
	if c.AckWait != DefaultAckWait || c.Subscribers != DefaultSubscribers || c.MaxDeliver != DefaultMaxDeliver || c.MaxAge != DefaultMaxAge ||
		c.MaxAckPending != DefaultMaxAckPending {
		t.Errorf("defaults not applied: %+v", c)
	}
	if c.Replicas != 1 {
		t.Errorf("embedded Replicas = %d, want 1 (one server)", c.Replicas)
	}
	if c.Retry.MaxRetries != 0 {
		t.Errorf("Retry.MaxRetries -1 became %d, want 0 (no retries)", c.Retry.MaxRetries)
	}
}

func TestDurableName(t *testing.T) {
	cases := []struct{ group, topic string }{
		{"core-ingest", "inbound"},
		{"connector", "outbound.wechat_oa"},
		{"a.b", "c"},
		{"a_b", "c"},
		{"with space*>", "x"},
		{strings.Repeat("long", 40), "events"},
	}
	seen := map[string]string{}
	for _, tc := range cases {
		name := durableName(tc.group, tc.topic)
		if name != durableName(tc.group, tc.topic) {
			t.Errorf("durableName(%q, %q) is not stable", tc.group, tc.topic)
		}
		if len(name) > 64 {
			t.Errorf("durableName(%q, %q) = %q is longer than 64", tc.group, tc.topic, name)
		}
		if strings.ContainsAny(name, ".*> \t/\\") {
			t.Errorf("durableName(%q, %q) = %q has a character JetStream refuses", tc.group, tc.topic, name)
		}
		if prev, dup := seen[name]; dup {
			t.Errorf("durableName(%q, %q) = %q, same as %s", tc.group, tc.topic, name, prev)
		}
		seen[name] = tc.group + "/" + tc.topic
	}
}

func TestBackoffDelay(t *testing.T) {
	d := backoffDelay{InitialInterval: time.Second, MaxInterval: 10 * time.Second}
	for _, tc := range []struct {
		delivered uint64
		want      time.Duration
	}{
		{0, time.Second}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second},
		{4, 8 * time.Second}, {5, 10 * time.Second}, {1000, 10 * time.Second},
	} {
		if got := d.WaitTime(tc.delivered); got != tc.want {
			t.Errorf("WaitTime(%d) = %s, want %s", tc.delivered, got, tc.want)
		}
	}
}

// TestEmbeddedServer checks the promises of the embedded default: no
// listening port, every write fsynced before the publish ack, the store
// in DataDir/nats, and /readyz turning unavailable once closed.
func TestEmbeddedServer(t *testing.T) {
	cfg := fastConfig(t)
	b := openBus(t, cfg)
	if addr := b.srv.Addr(); addr != nil {
		t.Errorf("embedded server listens on %s", addr)
	}
	js := b.srv.JetStreamConfig()
	if js == nil || !js.SyncAlways {
		t.Errorf("JetStream config %+v: want SyncAlways", js)
	}
	if js != nil && !strings.HasPrefix(js.StoreDir, cfg.DataDir+"/nats") {
		t.Errorf("store dir %s is not under %s/nats", js.StoreDir, cfg.DataDir)
	}
	if err := b.Ready(context.Background()); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	for _, s := range streams {
		si, err := b.js.StreamInfo(s.name)
		if err != nil {
			t.Fatalf("stream %s: %v", s.name, err)
		}
		if si.Config.Duplicates != DedupWindow || si.Config.MaxAge != DefaultMaxAge {
			t.Errorf("stream %s: dedup %s max age %s", s.name, si.Config.Duplicates, si.Config.MaxAge)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.Ready(context.Background()); !errors.Is(err, conv.ErrUnavailable) {
		t.Fatalf("Ready after Close = %v, want ErrUnavailable", err)
	}
	if _, err := b.Subscriber("late"); !errors.Is(err, conv.ErrUnavailable) {
		t.Fatalf("Subscriber after Close = %v, want ErrUnavailable", err)
	}
}

// TestOpenIsIdempotent reopens a store whose streams exist, with a new
// MaxAge: provisioning updates them instead of failing.
func TestOpenIsIdempotent(t *testing.T) {
	cfg := fastConfig(t)
	if err := openBus(t, cfg).Close(); err != nil {
		t.Fatal(err)
	}
	cfg.MaxAge = time.Hour
	b := openBus(t, cfg)
	si, err := b.js.StreamInfo("INBOUND")
	if err != nil {
		t.Fatal(err)
	}
	if si.Config.MaxAge != time.Hour {
		t.Errorf("MaxAge after reopen = %s, want 1h", si.Config.MaxAge)
	}
}

func TestPublishDedup(t *testing.T) {
	b := openBus(t, fastConfig(t))
	pub := b.Publisher()
	publish := func(topic, uuid, payload string) {
		t.Helper()
		if err := pub.Publish(topic, message.NewMessage(uuid, []byte(payload))); err != nil {
			t.Fatalf("Publish %s %s: %v", topic, uuid, err)
		}
	}
	publish(TopicEvents, "ev-1", "first")
	publish(TopicEvents, "ev-1", "second") // same UUID, same topic: dropped
	publish(TopicEvents, "ev-2", "other")
	// Same UUID on two topics of one stream: both kept.
	publish(OutboundPrefix+"email", "out-1", "mail")
	publish(OutboundPrefix+"webchat", "out-1", "chat")

	// Publish has returned: JetStream holds the messages already.
	if n := streamMsgs(t, b, TopicEvents); n != 2 {
		t.Errorf("EVENTS holds %d messages, want 2 (ev-1 once, ev-2)", n)
	}
	if n := streamMsgs(t, b, OutboundPrefix+"email"); n != 2 {
		t.Errorf("OUTBOUND holds %d messages, want 2 (out-1 per topic)", n)
	}

	sub, err := b.Subscriber("dedup")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ch, err := sub.Subscribe(context.Background(), TopicEvents)
	if err != nil {
		t.Fatal(err)
	}
	got := readN(t, ch, 2, 30*time.Second)
	settled(t, b, "dedup", TopicEvents)
	payloads := map[string]string{}
	for _, m := range got {
		payloads[m.UUID] = string(m.Payload)
	}
	if payloads["ev-1"] != "first" || payloads["ev-2"] != "other" {
		t.Errorf("received %v, want ev-1=first ev-2=other", payloads)
	}
	if m := got[0]; m.Metadata.Get(MetaDeliveryAttempt) != "1" {
		t.Errorf("delivery attempt = %q, want 1", m.Metadata.Get(MetaDeliveryAttempt))
	}
}

// TestPersistence closes the embedded bus with one message acked, one in
// flight and one not yet delivered, and reopens it on the same DataDir:
// the group resumes where it was (the acked one is not replayed) and the
// in-flight one comes back.
func TestPersistence(t *testing.T) {
	cfg := fastConfig(t)
	cfg.Subscribers = 1 // one at a time, in order
	cfg.AckWait = time.Second
	b := openBus(t, cfg)
	for _, id := range []string{"m1", "m2", "m3"} {
		if err := b.Publisher().Publish(TopicInbound, message.NewMessage(id, []byte(id))); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := b.Subscriber("g")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := sub.Subscribe(context.Background(), TopicInbound)
	if err != nil {
		t.Fatal(err)
	}
	first := readN(t, ch, 1, 30*time.Second)[0] // acked
	var second *message.Message                 // in flight, never acked
	select {
	case second = <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("second message not delivered")
	}
	if first.UUID != "m1" || second.UUID != "m2" {
		t.Fatalf("got %s then %s, want m1 then m2", first.UUID, second.UUID)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = openBus(t, cfg)
	if err := b.Publisher().Publish(TopicInbound, message.NewMessage("m4", []byte("m4"))); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, b, TopicInbound); n != 4 {
		t.Errorf("INBOUND holds %d messages after reopen, want 4", n)
	}
	sub, err = b.Subscriber("g")
	if err != nil {
		t.Fatal(err)
	}
	ch, err = sub.Subscribe(context.Background(), TopicInbound)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, m := range readN(t, ch, 3, 30*time.Second) {
		got[m.UUID] = true
	}
	settled(t, b, "g", TopicInbound)
	if len(got) != 3 || !got["m2"] || !got["m3"] || !got["m4"] {
		t.Errorf("after reopen got %v, want m2 (was in flight), m3, m4 and not m1 (acked)", got)
	}
}

// TestNewGroupReceivesOldMessages: a group created after messages were
// published starts from the oldest one the stream keeps.
func TestNewGroupReceivesOldMessages(t *testing.T) {
	b := openBus(t, fastConfig(t))
	for _, id := range []string{"old-1", "old-2"} {
		if err := b.Publisher().Publish(TopicEvents, message.NewMessage(id, nil)); err != nil {
			t.Fatal(err)
		}
	}
	for _, group := range []string{"first", "late"} {
		sub, err := b.Subscriber(group)
		if err != nil {
			t.Fatal(err)
		}
		ch, err := sub.Subscribe(context.Background(), TopicEvents)
		if err != nil {
			t.Fatal(err)
		}
		readN(t, ch, 2, 30*time.Second)
		settled(t, b, group, TopicEvents)
		if err := sub.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSubscriberRejectsEmptyGroup(t *testing.T) {
	b := openBus(t, fastConfig(t))
	if _, err := b.Subscriber(" "); !errors.Is(err, conv.ErrInvalid) {
		t.Fatalf("Subscriber(\" \") = %v, want ErrInvalid", err)
	}
}

// TestCloseWaitsForHandlerAck: Close lets a handler that is still working
// finish and ack; the ack reaches JetStream instead of the message coming
// back after AckWait.
func TestCloseWaitsForHandlerAck(t *testing.T) {
	cfg := fastConfig(t)
	cfg.AckWait = 30 * time.Second // a lost ack would show for 30s
	b := openBus(t, cfg)
	if err := b.Publisher().Publish(TopicInbound, message.NewMessage("m1", nil)); err != nil {
		t.Fatal(err)
	}
	sub, err := b.Subscriber("slow")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := sub.Subscribe(context.Background(), TopicInbound)
	if err != nil {
		t.Fatal(err)
	}
	var m *message.Message
	select {
	case m = <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("no message")
	}
	closed := make(chan error, 1)
	go func() { closed <- sub.Close() }()
	ts := sub.(*subscriber)
	testenv.WaitFor(t, 10*time.Second, "Close to start stopping", func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		if len(ts.subs) == 0 {
			return false
		}
		g := &ts.subs[0].gate
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.closed
	})
	m.Ack() // the handler finishes while Close waits
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, ok := <-ch; ok {
		t.Error("channel still open after Close")
	}
	testenv.WaitFor(t, 10*time.Second, "the ack to be recorded", func() bool {
		ci, err := b.js.ConsumerInfo("INBOUND", durableName("slow", TopicInbound))
		return err == nil && ci.NumAckPending == 0 && ci.AckFloor.Stream == 1
	})
	// The group's backlog waits on the server beyond the configured bound.
	if ci, err := b.js.ConsumerInfo("INBOUND", durableName("slow", TopicInbound)); err != nil || ci.Config.MaxAckPending != b.cfg.MaxAckPending {
		t.Fatalf("consumer MaxAckPending = %v (%v), want %d", ci.Config.MaxAckPending, err, b.cfg.MaxAckPending)
	}
}
