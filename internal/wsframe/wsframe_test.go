package wsframe

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDecode(t *testing.T) {
	good := []struct {
		in   string
		want Frame
	}{
		{`{"type":"send","client_id":"c1","text":"hi"}`, Frame{Type: "send", ClientID: "c1", Text: "hi"}},
		{`{"type":"resume","after_seq":7}`, Frame{Type: "resume", AfterSeq: 7}},
		{`{"type":"resume","cursor":42}`, Frame{Type: "resume", Cursor: 42}},
		{`{"type":"typing","conversation_id":"9007199254740993","typing":true}`, Frame{Type: "typing", ConversationID: 9007199254740993, Typing: true}},
	}
	for _, tt := range good {
		got, err := Decode([]byte(tt.in))
		if err != nil {
			t.Errorf("Decode(%s): %v", tt.in, err)
			continue
		}
		if got.Type != tt.want.Type || got.ClientID != tt.want.ClientID || got.Text != tt.want.Text ||
			got.AfterSeq != tt.want.AfterSeq || got.Cursor != tt.want.Cursor || got.ConversationID != tt.want.ConversationID || got.Typing != tt.want.Typing {
			t.Errorf("Decode(%s) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
	bad := []string{
		``, `null`, `[]`, `"send"`, `{`, `{}`, `{"type":""}`,
		`{"type":"send","bogus":1}`,
		`{"type":"send"} {"type":"send"}`,
		`{"type":"resume","after_seq":-1}`,
		`{"type":"resume","cursor":"x"}`,
		`{"type":"send","client_id":"` + strings.Repeat("x", 129) + `"}`,
		`{"type":"` + strings.Repeat("t", 33) + `"}`,
		`{"type":"send","text":"` + strings.Repeat("x", MaxFrame) + `"}`,
	}
	for _, in := range bad {
		if _, err := Decode([]byte(in)); !errors.Is(err, ErrBadFrame) {
			t.Errorf("Decode(%.60q) = %v, want ErrBadFrame", in, err)
		}
	}
}

func TestLimiter(t *testing.T) {
	l := Limiter{Rate: 10, Burst: 3}
	now := time.Unix(1000, 0)
	for i := range 3 {
		if !l.Allow(now) {
			t.Fatalf("burst frame %d refused", i)
		}
	}
	if l.Allow(now) {
		t.Fatal("frame past the burst allowed")
	}
	if !l.Allow(now.Add(100 * time.Millisecond)) {
		t.Fatal("a token should refill after 1/rate")
	}
	if l.Allow(now.Add(100 * time.Millisecond)) {
		t.Fatal("only one token refilled")
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"type":"send","client_id":"a","text":"b"}`, `{"type":"resume","after_seq":1}`,
		`{"type":"typing","typing":true,"conversation_id":"1"}`, `{"type":"send","parts":[{"type":"image","url":"/x"}]}`, `{`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("error %v is not ErrBadFrame", err)
			}
			return
		}
		if fr.Type == "" || len(b) > MaxFrame || fr.AfterSeq < 0 || fr.Cursor < 0 {
			t.Fatalf("accepted an invalid frame %+v", fr)
		}
	})
}

func TestEventFrame(t *testing.T) {
	ev := []byte(`{"type":"message.created","message":{"id":"1","text":"a \"quoted\" 你好"}}`)
	for _, cursor := range []int64{0, 7, 1 << 53} {
		var got, want map[string]any
		if err := json.Unmarshal(EventFrame(cursor, ev), &got); err != nil {
			t.Fatalf("cursor %d: not JSON: %v", cursor, err)
		}
		w := map[string]any{"type": "event", "event": json.RawMessage(ev)}
		if cursor != 0 {
			w["cursor"] = cursor
		}
		b, _ := json.Marshal(w)
		json.Unmarshal(b, &want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("cursor %d: EventFrame = %v, want %v", cursor, got, want)
		}
	}
}
