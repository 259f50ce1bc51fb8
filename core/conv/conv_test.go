package conv

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestIDJSONIsDecimalString(t *testing.T) {
	// 2^53+1 is the first integer a float64 cannot hold: exactly the case
	// that breaks JavaScript clients and Redis scores.
	const big = MessageID(1<<53 + 1)
	b, err := json.Marshal(struct {
		ID MessageID `json:"id"`
	}{big})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"id":"9007199254740993"}` {
		t.Fatalf("got %s", b)
	}
	if got, err := big.AppendText([]byte("x")); err != nil || string(got) != "x9007199254740993" {
		t.Fatalf("AppendText = %q, %v", got, err)
	}
	var back struct {
		ID MessageID `json:"id"`
	}
	if err := json.Unmarshal(b, &back); err != nil || back.ID != big {
		t.Fatalf("round trip = %v, %v", back.ID, err)
	}
	for _, bad := range []string{`{"id":"-1"}`, `{"id":"12a"}`, `{"id":"99999999999999999999"}`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestParseID(t *testing.T) {
	id, err := ParseID[TenantID]("42")
	if err != nil || id != 42 {
		t.Fatalf("ParseID = %v, %v", id, err)
	}
	if _, err := ParseID[TenantID]("x"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("ParseID(x) err = %v, want ErrInvalid", err)
	}
}

func TestIDGenUniqueOrderedAcrossGoroutines(t *testing.T) {
	g, err := NewIDGen(7)
	if err != nil {
		t.Fatal(err)
	}
	const workers, per = 8, 5000
	var mu sync.Mutex
	seen := make(map[int64]bool, workers*per)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prev := int64(0)
			local := make([]int64, 0, per)
			for range per {
				id := g.Next()
				if id <= prev {
					t.Errorf("id %d not above previous %d from the same goroutine", id, prev)
					return
				}
				prev = id
				local = append(local, id)
			}
			mu.Lock()
			for _, id := range local {
				if seen[id] {
					t.Errorf("duplicate id %d", id)
				}
				seen[id] = true
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(seen) != workers*per {
		t.Fatalf("%d unique ids, want %d", len(seen), workers*per)
	}
}

func TestIDGenClockStepBack(t *testing.T) {
	g, _ := NewIDGen(1)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g.now = func() time.Time { return now }
	a := g.Next()
	now = now.Add(-time.Second)
	b := g.Next()
	if b <= a {
		t.Fatalf("after clock step back id %d <= %d", b, a)
	}
	if got := MessageID(a).Time(); !got.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("Time() = %v", got)
	}
	if _, err := NewIDGen(MaxNode + 1); !errors.Is(err, ErrInvalid) {
		t.Fatal("node id above MaxNode accepted")
	}
}

func TestAdvances(t *testing.T) {
	tests := []struct {
		from, to MessageStatus
		want     bool
	}{
		{MsgPending, MsgSent, true},
		{MsgPending, MsgFailed, true},
		{MsgSent, MsgDelivered, true},
		{MsgDelivered, MsgRead, true},
		{MsgSent, MsgPending, false},
		{MsgRead, MsgSent, false},
		{MsgFailed, MsgSent, false},
		{MsgSent, MsgFailed, true}, // a bounce after the server took it
		{MsgDelivered, MsgFailed, false},
		{MsgReceived, MsgSent, false},
		{MsgPending, "bogus", false},
	}
	for _, tc := range tests {
		if got := Advances(tc.from, tc.to); got != tc.want {
			t.Errorf("Advances(%s, %s) = %v, want %v", tc.from, tc.to, got, tc.want)
		}
	}
}

func TestInboundValidate(t *testing.T) {
	ok := Inbound{TenantID: 1, ChannelID: 2, ExternalID: "m1", From: Identity{Kind: "visitor", ExternalID: "v1"},
		Parts: []Part{{Type: PartText, Text: "hi"}}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid envelope: %v", err)
	}
	tests := []struct {
		name string
		mut  func(*Inbound)
	}{
		{"no tenant", func(i *Inbound) { i.TenantID = 0 }},
		{"no channel", func(i *Inbound) { i.ChannelID = 0 }},
		{"no external id", func(i *Inbound) { i.ExternalID = "" }},
		{"long external id", func(i *Inbound) { i.ExternalID = strings.Repeat("x", MaxExternalID+1) }},
		{"no identity", func(i *Inbound) { i.From = Identity{} }},
		{"no parts", func(i *Inbound) { i.Parts = nil }},
		{"too many parts", func(i *Inbound) { i.Parts = make([]Part, MaxParts+1) }},
		{"empty text", func(i *Inbound) { i.Parts = []Part{{Type: PartText, Text: "  "}} }},
		{"huge text", func(i *Inbound) { i.Parts = []Part{{Type: PartText, Text: strings.Repeat("字", MaxTextRune+1)}} }},
		{"unknown part", func(i *Inbound) { i.Parts = []Part{{Type: "sticker"}} }},
		{"image without media", func(i *Inbound) { i.Parts = []Part{{Type: PartImage}} }},
		{"bad location", func(i *Inbound) { i.Parts = []Part{{Type: PartLocation, Lat: 91}} }},
		{"call without event", func(i *Inbound) { i.Parts = []Part{{Type: PartCall}} }},
		{"negative window", func(i *Inbound) { i.ReplyWindow = -1 }},
		{"email part without email", func(i *Inbound) { i.Parts = []Part{{Type: PartEmail}} }},
		{"email headers on a text part", func(i *Inbound) { i.Parts = []Part{{Type: PartText, Text: "x", Email: &Email{}}} }},
		{"line break in subject", func(i *Inbound) { i.Parts = []Part{{Type: PartEmail, Email: &Email{Subject: "a\r\nBcc: x@y"}}} }},
		{"line break in a recipient", func(i *Inbound) { i.Parts = []Part{{Type: PartEmail, Email: &Email{Cc: []string{"a@b\nX: y"}}}} }},
		{"too many recipients", func(i *Inbound) {
			i.Parts = []Part{{Type: PartEmail, Email: &Email{To: make([]string, MaxRecipients+1)}}}
		}},
		{"huge quoted", func(i *Inbound) {
			i.Parts = []Part{{Type: PartEmail, Email: &Email{Quoted: strings.Repeat("字", MaxTextRune+1)}}}
		}},
		{"too many thread keys", func(i *Inbound) { i.Thread = &Thread{Refs: make([]string, MaxThreadKeys), Keys: []string{"k"}} }},
		{"empty thread key", func(i *Inbound) { i.Thread = &Thread{Keys: []string{""}} }},
		{"long thread key", func(i *Inbound) { i.Thread = &Thread{Weak: strings.Repeat("x", MaxThreadKeyLen+1)} }},
		{"negative weak window", func(i *Inbound) { i.Thread = &Thread{Weak: "w", WeakWindow: -1} }},
	}
	mail := ok
	mail.Parts = []Part{{Type: PartEmail, Email: &Email{Subject: "Refund", From: "Ann <ann@example.com>",
		To: []string{"support@shop.example"}, MessageID: "<a1@example.com>"}}, {Type: PartText, Text: "hi"}}
	mail.Thread = &Thread{Refs: []string{"<a0@example.com>"}, Keys: []string{"<a1@example.com>"}, Weak: "ann\nrefund"}
	if err := mail.Validate(); err != nil {
		t.Fatalf("valid mail envelope: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := ok
			in.Parts = append([]Part(nil), ok.Parts...)
			tc.mut(&in)
			if err := in.Validate(); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate = %v, want ErrInvalid", err)
			}
			if !Permanent(in.Validate()) {
				t.Fatal("validation error not permanent")
			}
		})
	}
}

func TestSecretsNeverSerialized(t *testing.T) {
	c := Channel{ID: 1, Kind: KindTest, Secrets: map[string]string{"app_secret": "hunter2hunter2"}}
	b, _ := json.Marshal(c)
	if strings.Contains(string(b), "hunter2") {
		t.Fatalf("channel JSON leaks secret: %s", b)
	}
	if got := c.SecretNames(); len(got) != 1 || got[0] != "app_secret" {
		t.Fatalf("SecretNames = %v", got)
	}
}

func TestUpdatesAndPendingReports(t *testing.T) {
	if !Updates(MsgPending, "", MsgPending, "retrying: busy") || Updates(MsgPending, "retrying: busy", MsgPending, "retrying: busy") {
		t.Error("a pending message must take a new reason, and only a new one")
	}
	if Updates(MsgSent, "", MsgPending, "retrying") {
		t.Error("a sent message must not go back to pending")
	}
	d := Delivery{TenantID: 1, MessageID: 2, Status: MsgPending}
	if d.Validate() == nil {
		t.Error("a pending report without a reason must be refused")
	}
	d.Reason = "retrying: WeChat is busy"
	if err := d.Validate(); err != nil {
		t.Errorf("a pending report with a reason: %v", err)
	}
}

func TestClipAndShorten(t *testing.T) {
	for _, tc := range []struct {
		s         string
		n         int
		clip, cut string
	}{
		{"abc", 3, "abc", "abc"},
		{"abcd", 3, "abc", "abc…"},
		{"你好", 4, "你", "你…"}, // 3 bytes each: the second is not split
		{"你好", 2, "", "…"},
		{"", 0, "", ""},
	} {
		if got := Clip(tc.s, tc.n); got != tc.clip {
			t.Errorf("Clip(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.clip)
		}
		if got := Shorten(tc.s, tc.n); got != tc.cut {
			t.Errorf("Shorten(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.cut)
		}
	}
}
