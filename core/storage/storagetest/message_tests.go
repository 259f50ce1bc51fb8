package storagetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// richParts exercises every Part field, odd floats and text that needs
// escaping, so a lossy parts encoding fails the round trip.
func richParts() []conv.Part {
	return []conv.Part{
		{Type: conv.PartText, Text: "你好 🌏 \"quoted\" <b>&amp;</b>\nline2\t\\"},
		{Type: conv.PartImage, URL: "media/abc.jpg", MediaID: "wx-media-1", Name: "photo.jpg", MIME: "image/jpeg", Size: 123456, Text: "caption"},
		{Type: conv.PartFile, URL: "media/doc.pdf", Name: "合同.pdf", MIME: "application/pdf", Size: 1 << 40},
		{Type: conv.PartAudio, MediaID: "voice-1", MIME: "audio/amr", Duration: 4321, Text: "transcript"},
		{Type: conv.PartVideo, URL: "media/v.mp4", Duration: 60000, Thumb: "media/v.jpg"},
		{Type: conv.PartLocation, Lat: 31.230416, Lng: -121.4737010000001, Label: "上海市 People's Square"},
		{Type: conv.PartLocation, Lat: -0.000001, Lng: 179.999999},
		{Type: conv.PartCard, Title: "Order #42", Description: "2 items", Thumb: "https://example.com/t.png",
			URL: "https://example.com/o/42", AppID: "wxapp123", Page: "pages/order?id=42"},
		{Type: conv.PartCall, Event: "ended", Duration: 93000},
	}
}

// testAppendMessage: seq is 1, 2, 3 per conversation whatever m.Seq says;
// every field and part round-trips; Conversation.LastSeq follows.
func testAppendMessage(t *testing.T, h Harness) {
	e := newEnv(t, h)
	tenant := e.tenant("acme")
	c := e.conversation(tenant)
	other := e.conversation(tenant)
	recalled := now()

	m1 := e.message(c, conv.In, "x")
	m1.Parts = richParts()
	m1.ExternalID = "wx-msg-1"
	m2 := e.message(c, conv.Out, "reply")
	m2.ClientID = "client-1"
	m2.StatusReason = "queued"
	m2.RecalledAt = &recalled
	m3 := e.message(c, conv.In, "third")
	m3.Seq = 42 // the store assigns seq; this must be ignored
	m3.Sender = conv.Sender{Type: conv.SenderSystem}

	for i, m := range []conv.Message{m1, m2, m3} {
		got := e.append(m)
		want := m
		want.Seq = int64(i + 1)
		same(t, fmt.Sprintf("AppendMessage #%d", i+1), normMessage(got), normMessage(want))
		same(t, fmt.Sprintf("Message #%d", i+1), normMessage(e.getMessage(tenant, m.ID)), normMessage(want))
	}
	if got := e.getConversation(tenant, c.ID).LastSeq; got != 3 {
		t.Fatalf("LastSeq = %d, want 3", got)
	}
	if got := e.append(e.message(other, conv.In, "elsewhere")); got.Seq != 1 {
		t.Fatalf("first message of another conversation has seq %d, want 1", got.Seq)
	}
	if got := e.getConversation(tenant, c.ID).LastSeq; got != 3 {
		t.Fatalf("LastSeq moved to %d by another conversation's message", got)
	}

	// AppendMessage returns the stored message, even when the caller's
	// times are finer than the store keeps.
	fine := e.message(c, conv.Out, "nanoseconds")
	fine.CreatedAt = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	fineRecalled := fine.CreatedAt.Add(time.Nanosecond)
	fine.RecalledAt = &fineRecalled
	got := e.append(fine)
	same(t, "AppendMessage with nanosecond times vs Message", normMessage(e.getMessage(tenant, fine.ID)), normMessage(got))
	if d := got.CreatedAt.Sub(fine.CreatedAt); d < -time.Microsecond || d > time.Microsecond {
		t.Fatalf("stored CreatedAt %v, want %v to the microsecond", got.CreatedAt, fine.CreatedAt)
	}
	ghost := e.message(c, conv.In, "nowhere")
	ghost.ConversationID = 8675309
	err := e.txErr(tenant, func(tx storage.Tx) error { _, err := tx.AppendMessage(e.ctx, ghost); return err })
	wantKind(t, "AppendMessage to an unknown conversation", err, conv.ErrNotFound)
}

// testMessageDuplicates: the dedup keys. A conflicting append is ErrConflict
// and, once the caller rolls back, leaves no trace (no message, no seq).
func testMessageDuplicates(t *testing.T, h Harness) {
	e := newEnv(t, h)
	a, b := e.tenant("acme"), e.tenant("globex")
	c := e.conversation(a)
	elsewhere := e.conversation(a) // another contact on another channel
	inB := e.conversation(b)

	base := e.message(c, conv.In, "original")
	base.ExternalID = "ext-1"
	e.append(base)
	out := e.message(c, conv.Out, "reply")
	out.ClientID = "cli-1"
	e.append(out)

	tests := []struct {
		name string
		mk   func() conv.Message
		want error // nil: stored
	}{
		{"same channel and external id", func() conv.Message {
			m := e.message(c, conv.In, "again")
			m.ExternalID = "ext-1"
			return m
		}, conv.ErrConflict},
		{"same conversation and client id", func() conv.Message {
			m := e.message(c, conv.Out, "again")
			m.ClientID = "cli-1"
			return m
		}, conv.ErrConflict},
		{"same message id", func() conv.Message {
			m := e.message(c, conv.In, "again")
			m.ID = base.ID
			return m
		}, conv.ErrConflict},
		{"external id on another channel", func() conv.Message {
			m := e.message(elsewhere, conv.In, "other channel")
			m.ExternalID = "ext-1"
			return m
		}, nil},
		{"client id in another conversation", func() conv.Message {
			m := e.message(elsewhere, conv.Out, "other conversation")
			m.ClientID = "cli-1"
			return m
		}, nil},
		{"external id in another tenant", func() conv.Message {
			m := e.message(inB, conv.In, "other tenant")
			m.ExternalID = "ext-1"
			return m
		}, nil},
		{"empty ids 1", func() conv.Message { return e.message(c, conv.Out, "no keys") }, nil},
		{"empty ids 2", func() conv.Message { return e.message(c, conv.Out, "no keys") }, nil},
		{"empty ids 3", func() conv.Message { return e.message(c, conv.In, "no keys") }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.mk()
			before := e.getConversation(m.TenantID, m.ConversationID).LastSeq
			err := e.txErr(m.TenantID, func(tx storage.Tx) error { _, err := tx.AppendMessage(e.ctx, m); return err })
			after := e.getConversation(m.TenantID, m.ConversationID).LastSeq
			if tc.want == nil {
				ok(t, "AppendMessage", err)
				if after != before+1 {
					t.Fatalf("LastSeq %d → %d, want +1", before, after)
				}
				if got := e.getMessage(m.TenantID, m.ID); got.ExternalID != m.ExternalID || got.ClientID != m.ClientID {
					t.Fatalf("stored keys %q/%q, want %q/%q", got.ExternalID, got.ClientID, m.ExternalID, m.ClientID)
				}
				return
			}
			wantKind(t, "AppendMessage", err, tc.want)
			if after != before {
				t.Fatalf("rejected append moved LastSeq %d → %d", before, after)
			}
			if m.ID != base.ID {
				err := e.txErr(m.TenantID, func(tx storage.Tx) error { _, err := tx.Message(e.ctx, m.ID); return err })
				wantKind(t, "Message(rejected)", err, conv.ErrNotFound)
			}
		})
	}
}

// testMessageLookups: by id, by (channel, external id), by (conversation,
// client id); empty keys never match.
func testMessageLookups(t *testing.T, h Harness) {
	e := newEnv(t, h)
	tenant := e.tenant("acme")
	c := e.conversation(tenant)
	c2 := e.conversation(tenant)
	in := e.message(c, conv.In, "in")
	in.ExternalID = "wx-9"
	in = e.append(in)
	out := e.message(c, conv.Out, "out")
	out.ClientID = "cli-9"
	out = e.append(out)
	e.append(e.message(c, conv.Out, "keyless"))

	e.tx(tenant, func(tx storage.Tx) error {
		got, err := tx.MessageByExternalID(e.ctx, c.ChannelID, "wx-9")
		ok(t, "MessageByExternalID", err)
		same(t, "MessageByExternalID", normMessage(got), normMessage(in))
		got, err = tx.MessageByClientID(e.ctx, c.ID, "cli-9")
		ok(t, "MessageByClientID", err)
		same(t, "MessageByClientID", normMessage(got), normMessage(out))

		misses := []struct {
			name string
			fn   func() error
		}{
			{"Message(unknown)", func() error { _, err := tx.Message(e.ctx, 123); return err }},
			{"MessageByExternalID(other channel)", func() error {
				_, err := tx.MessageByExternalID(e.ctx, c2.ChannelID, "wx-9")
				return err
			}},
			{"MessageByExternalID(unknown)", func() error { _, err := tx.MessageByExternalID(e.ctx, c.ChannelID, "wx-0"); return err }},
			{"MessageByExternalID(empty)", func() error { _, err := tx.MessageByExternalID(e.ctx, c.ChannelID, ""); return err }},
			{"MessageByClientID(other conversation)", func() error { _, err := tx.MessageByClientID(e.ctx, c2.ID, "cli-9"); return err }},
			{"MessageByClientID(unknown)", func() error { _, err := tx.MessageByClientID(e.ctx, c.ID, "cli-0"); return err }},
			{"MessageByClientID(empty)", func() error { _, err := tx.MessageByClientID(e.ctx, c.ID, ""); return err }},
		}
		for _, m := range misses {
			wantKind(t, m.name, m.fn(), conv.ErrNotFound)
		}
		return nil
	})
}

// testMessagesPaging: Messages returns afterSeq < seq, ascending, at most
// limit, only of the conversation asked for.
func testMessagesPaging(t *testing.T, h Harness) {
	e := newEnv(t, h)
	tenant := e.tenant("acme")
	c := e.conversation(tenant)
	other := e.conversation(tenant)
	var all []conv.Message
	for i := range 7 {
		all = append(all, normMessage(e.append(e.message(c, conv.In, fmt.Sprintf("m%d", i+1)))))
		e.append(e.message(other, conv.In, "noise"))
	}
	tests := []struct {
		name            string
		after           int64
		limit           int
		wantFrom, wantN int // all[wantFrom : wantFrom+wantN]
	}{
		{"first page", 0, 3, 0, 3},
		{"second page", 3, 3, 3, 3},
		{"last partial page", 6, 3, 6, 1},
		{"past the end", 7, 3, 0, 0},
		{"everything", 0, 100, 0, 7},
		{"from the middle", 2, 100, 2, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []conv.Message
			e.tx(tenant, func(tx storage.Tx) error {
				var err error
				got, err = tx.Messages(e.ctx, c.ID, tc.after, tc.limit)
				return err
			})
			for i := range got {
				got[i] = normMessage(got[i])
			}
			want := all[tc.wantFrom : tc.wantFrom+tc.wantN]
			if len(got) == 0 && len(want) == 0 {
				return
			}
			same(t, "Messages", got, want)
		})
	}
}

// testMessageIsolation: nothing of tenant A's messages is visible to or
// writable by tenant B.
func testMessageIsolation(t *testing.T, h Harness) {
	e := newEnv(t, h)
	a, b := e.tenant("acme"), e.tenant("globex")
	c := e.conversation(a)
	e.conversation(b)
	in := e.message(c, conv.In, "secret business")
	in.ExternalID = "ext-a"
	in = e.append(in)
	out := e.message(c, conv.Out, "reply")
	out.ClientID = "cli-a"
	out = e.append(out)

	e.tx(b, func(tx storage.Tx) error {
		_, err := tx.Message(e.ctx, in.ID)
		wantKind(t, "Message", err, conv.ErrNotFound)
		_, err = tx.MessageByExternalID(e.ctx, c.ChannelID, "ext-a")
		wantKind(t, "MessageByExternalID", err, conv.ErrNotFound)
		_, err = tx.MessageByClientID(e.ctx, c.ID, "cli-a")
		wantKind(t, "MessageByClientID", err, conv.ErrNotFound)
		// A list of another tenant's conversation is empty or ErrNotFound.
		list, err := tx.Messages(e.ctx, c.ID, 0, 100)
		if err != nil && !errors.Is(err, conv.ErrNotFound) {
			t.Fatalf("Messages: %v", err)
		}
		if len(list) != 0 {
			t.Fatalf("tenant B reads %d of tenant A's messages", len(list))
		}
		pending, err := tx.UnpublishedBefore(e.ctx, now().Add(time.Hour), 100)
		ok(t, "UnpublishedBefore", err)
		if len(pending) != 0 {
			t.Fatalf("tenant B's outbox holds %d of tenant A's messages", len(pending))
		}
		return nil
	})
	writes := []struct {
		name string
		fn   func(tx storage.Tx) error
	}{
		{"AppendMessage", func(tx storage.Tx) error {
			m := e.message(c, conv.In, "intruder")
			m.TenantID = b
			_, err := tx.AppendMessage(e.ctx, m)
			return err
		}},
		{"SetMessageStatus", func(tx storage.Tx) error {
			_, _, err := tx.SetMessageStatus(e.ctx, out.ID, conv.MsgSent, "", "x")
			return err
		}},
		{"MarkPublished", func(tx storage.Tx) error { return tx.MarkPublished(e.ctx, out.ID, now()) }},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			wantKind(t, w.name, e.txErr(b, w.fn), conv.ErrNotFound)
		})
	}
	if got := e.getConversation(a, c.ID).LastSeq; got != 2 {
		t.Fatalf("tenant A's LastSeq = %d after tenant B's attempts, want 2", got)
	}
	if got := e.getMessage(a, out.ID); got.Status != conv.MsgPending || got.ExternalID != "" {
		t.Fatalf("tenant B changed tenant A's message: %+v", got)
	}
	e.tx(a, func(tx storage.Tx) error {
		pending, err := tx.UnpublishedBefore(e.ctx, now().Add(time.Hour), 100)
		ok(t, "UnpublishedBefore", err)
		if len(pending) != 1 || pending[0].ID != out.ID {
			t.Fatalf("tenant A's outbox = %+v after tenant B's MarkPublished, want its pending reply", pending)
		}
		return nil
	})
}

// testSetMessageStatus: status moves only as conv.Updates allows; a move
// records the reason as given and the external id when non-empty; a refused
// move writes nothing.
func testSetMessageStatus(t *testing.T, h Harness) {
	e := newEnv(t, h)
	tenant := e.tenant("acme")
	c := e.conversation(tenant)
	tests := []struct {
		name     string
		dir      conv.Direction
		from, to conv.MessageStatus
		changed  bool
	}{
		{"pending to sent", conv.Out, conv.MsgPending, conv.MsgSent, true},
		{"pending to failed", conv.Out, conv.MsgPending, conv.MsgFailed, true},
		{"pending to read", conv.Out, conv.MsgPending, conv.MsgRead, true},
		{"sent to delivered", conv.Out, conv.MsgSent, conv.MsgDelivered, true},
		{"delivered to read", conv.Out, conv.MsgDelivered, conv.MsgRead, true},
		{"sent to pending", conv.Out, conv.MsgSent, conv.MsgPending, false},
		{"pending to pending with a new reason (retrying)", conv.Out, conv.MsgPending, conv.MsgPending, true},
		{"read to delivered", conv.Out, conv.MsgRead, conv.MsgDelivered, false},
		{"failed is final", conv.Out, conv.MsgFailed, conv.MsgSent, false},
		{"failed to read", conv.Out, conv.MsgFailed, conv.MsgRead, false},
		{"sent to failed (a bounce)", conv.Out, conv.MsgSent, conv.MsgFailed, true},
		{"delivered to failed", conv.Out, conv.MsgDelivered, conv.MsgFailed, false},
		{"received never moves", conv.In, conv.MsgReceived, conv.MsgRead, false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := e.message(c, tc.dir, tc.name)
			m.Status = tc.from
			m.StatusReason = "before"
			if tc.dir == conv.In {
				m.ExternalID = fmt.Sprintf("in-%d", i)
			}
			m = e.append(m)
			ext := fmt.Sprintf("channel-id-%d", i)
			var (
				got     conv.Message
				changed bool
			)
			e.tx(tenant, func(tx storage.Tx) error {
				var err error
				got, changed, err = tx.SetMessageStatus(e.ctx, m.ID, tc.to, "reason: "+tc.name, ext)
				return err
			})
			want := m
			if tc.changed {
				want.Status, want.StatusReason, want.ExternalID = tc.to, "reason: "+tc.name, ext
			}
			if changed != tc.changed {
				t.Fatalf("changed = %v, want %v", changed, tc.changed)
			}
			same(t, "returned message", normMessage(got), normMessage(want))
			same(t, "stored message", normMessage(e.getMessage(tenant, m.ID)), normMessage(want))
		})
	}

	t.Run("pending with the same reason is no change", func(t *testing.T) {
		m := e.message(c, conv.Out, "same")
		m.StatusReason = "retrying: WeChat is busy"
		m = e.append(m)
		e.tx(tenant, func(tx storage.Tx) error {
			_, changed, err := tx.SetMessageStatus(e.ctx, m.ID, conv.MsgPending, "retrying: WeChat is busy", "")
			if err != nil || changed {
				t.Fatalf("SetMessageStatus(same pending reason) changed=%v err=%v, want no change", changed, err)
			}
			return nil
		})
	})

	t.Run("empty external id keeps the old one", func(t *testing.T) {
		m := e.append(e.message(c, conv.Out, "keep"))
		e.tx(tenant, func(tx storage.Tx) error {
			if _, _, err := tx.SetMessageStatus(e.ctx, m.ID, conv.MsgSent, "", "wx-keep"); err != nil {
				return err
			}
			got, changed, err := tx.SetMessageStatus(e.ctx, m.ID, conv.MsgDelivered, "", "")
			if err != nil || !changed || got.ExternalID != "wx-keep" || got.Status != conv.MsgDelivered {
				t.Fatalf("SetMessageStatus = %+v changed=%v err=%v, want delivered keeping wx-keep", got, changed, err)
			}
			return nil
		})
		if got := e.getMessage(tenant, m.ID); got.ExternalID != "wx-keep" {
			t.Fatalf("stored external id %q, want wx-keep", got.ExternalID)
		}
	})
	t.Run("unknown message", func(t *testing.T) {
		err := e.txErr(tenant, func(tx storage.Tx) error {
			_, _, err := tx.SetMessageStatus(e.ctx, 4040, conv.MsgSent, "", "")
			return err
		})
		wantKind(t, "SetMessageStatus(unknown)", err, conv.ErrNotFound)
	})
}

// testOutbox: UnpublishedBefore returns the tenant's outbound messages that
// are still pending, never marked published and created strictly before
// before, at most limit; MarkPublished takes one out.
func testOutbox(t *testing.T, h Harness) {
	e := newEnv(t, h)
	a, b := e.tenant("acme"), e.tenant("globex")
	c := e.conversation(a)
	cb := e.conversation(b)
	t0 := now()
	at := func(m conv.Message, d time.Duration) conv.Message { m.CreatedAt = t0.Add(d); return m }

	e.append(at(e.message(c, conv.In, "inbound"), -10*time.Minute))
	out1 := e.append(at(e.message(c, conv.Out, "out1"), -10*time.Minute))
	out2 := e.append(at(e.message(c, conv.Out, "out2"), -5*time.Minute))
	out3 := e.append(at(e.message(c, conv.Out, "out3"), 0))
	sent := e.append(at(e.message(c, conv.Out, "already sent"), -10*time.Minute))
	e.tx(a, func(tx storage.Tx) error {
		_, _, err := tx.SetMessageStatus(e.ctx, sent.ID, conv.MsgSent, "", "")
		return err
	})
	e.append(at(e.message(cb, conv.Out, "other tenant"), -10*time.Minute))

	unpublished := func(before time.Time, limit int) []conv.Message {
		t.Helper()
		var got []conv.Message
		e.tx(a, func(tx storage.Tx) error {
			var err error
			got, err = tx.UnpublishedBefore(e.ctx, before, limit)
			return err
		})
		for i := range got {
			got[i] = normMessage(got[i])
		}
		slices.SortFunc(got, func(x, y conv.Message) int { return int(x.Seq - y.Seq) })
		return got
	}
	check := func(what string, got []conv.Message, want ...conv.Message) {
		t.Helper()
		for i := range want {
			want[i] = normMessage(want[i])
		}
		if len(got) == 0 && len(want) == 0 {
			return
		}
		same(t, what, got, want)
	}
	check("before t0-1m", unpublished(t0.Add(-time.Minute), 10), out1, out2)
	check("before out2 (strict)", unpublished(out2.CreatedAt, 10), out1)
	check("before t0+1h", unpublished(t0.Add(time.Hour), 10), out1, out2, out3)
	if got := unpublished(t0.Add(time.Hour), 2); len(got) != 2 {
		t.Fatalf("limit 2 returned %d messages", len(got))
	}

	e.tx(a, func(tx storage.Tx) error { return tx.MarkPublished(e.ctx, out1.ID, now()) })
	check("after MarkPublished(out1)", unpublished(t0.Add(time.Hour), 10), out2, out3)
	e.tx(a, func(tx storage.Tx) error { return tx.MarkPublished(e.ctx, out3.ID, now()) })
	check("after MarkPublished(out3)", unpublished(t0.Add(time.Hour), 10), out2)
	if got := e.getMessage(a, out1.ID); got.Status != conv.MsgPending {
		t.Fatalf("MarkPublished changed the status to %s", got.Status)
	}
	wantKind(t, "MarkPublished(unknown)",
		e.txErr(a, func(tx storage.Tx) error { return tx.MarkPublished(e.ctx, 9999, now()) }), conv.ErrNotFound)
}
