package imapwatch

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/switchboard-hq/switchboard/core/conv"
)

func TestBacklogInUIDOrder(t *testing.T) {
	s := startMemServer(t)
	var raws []string
	for _, subj := range subjects(5) {
		raw := message(subj, "body of "+subj)
		raws = append(raws, raw)
		s.deliver(t, raw)
	}
	validity := s.uidValidity(t)
	r := startWatch(t, baseConfig(t, s), Position{}, nil)

	r.waitStatus(t, StateConnected)
	for i, raw := range raws {
		m := r.next(t)
		want := uint32(i + 1)
		if m.UID != want || m.UIDValidity != validity {
			t.Fatalf("mail %d: (uidvalidity, uid) = (%d, %d), want (%d, %d)", i, m.UIDValidity, m.UID, validity, want)
		}
		if string(m.Raw) != raw || m.Size != int64(len(raw)) || m.TooLarge || m.Rescan {
			t.Fatalf("mail uid %d = %+v, want raw %q", m.UID, m, raw)
		}
		if got := m.Position(); got != (Position{UIDValidity: validity, UID: want}) {
			t.Fatalf("Position() = %+v", got)
		}
	}
	r.noMailBeforeIdle(t)
	// Bodies are peeked in a read-only session: the mailbox is shared with
	// humans, whose \Seen flags are theirs.
	wire := s.wire.String()
	if !strings.Contains(wire, "EXAMINE INBOX") || regexp.MustCompile(`UID FETCH [^\r\n]*BODY\[\]`).MatchString(wire) {
		t.Errorf("want EXAMINE and BODY.PEEK[] only; the server saw:\n%s", wire)
	}
}

func TestNewMailWhileWaiting(t *testing.T) {
	tests := []struct {
		name     string
		opt      serverOpt
		poll     time.Duration
		wantIdle bool
	}{
		// PollEvery is an hour: only IDLE's EXISTS can bring the mail.
		{name: "imap4rev1 with idle", opt: withCaps(imap.CapSet{imap.CapIMAP4rev1: {}}), poll: time.Hour, wantIdle: true},
		{name: "imap4rev2 implies idle", opt: withCaps(imap.CapSet{imap.CapIMAP4rev2: {}}), poll: time.Hour, wantIdle: true},
		{name: "poll without idle", opt: withoutIdle(), poll: 20 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startMemServer(t, tc.opt)
			s.deliver(t, message("first", "x"))
			cfg := baseConfig(t, s)
			cfg.PollEvery = tc.poll
			r := startWatch(t, cfg, Position{}, nil)
			if m := r.next(t); m.UID != 1 {
				t.Fatalf("backlog uid = %d, want 1", m.UID)
			}
			var uid uint32
			var m Mail
			if tc.wantIdle {
				uid, m = r.deliverDuringIdle(t, s, message("second", "y"))
			} else {
				uid = s.deliver(t, message("second", "y"))
				m = r.next(t)
			}
			if m.UID != uid || !strings.Contains(string(m.Raw), "Subject: second") {
				t.Fatalf("got uid %d %q, want uid %d", m.UID, m.Raw, uid)
			}
			if idled := r.idles.Load() > 0; idled != tc.wantIdle {
				t.Errorf("IDLE used = %v, want %v", idled, tc.wantIdle)
			}
		})
	}
}

func TestIdleIsReissued(t *testing.T) {
	s := startMemServer(t)
	cfg := baseConfig(t, s)
	cfg.IdleRestart = 20 * time.Millisecond
	r := startWatch(t, cfg, Position{}, nil)
	for range 3 {
		r.waitIdle(t)
	}
	if n := strings.Count(s.wire.String(), "DONE\r\n"); n < 2 {
		t.Fatalf("IDLE ended %d times, want it re-issued", n)
	}
	uid := s.deliver(t, message("after-restarts", "z"))
	if m := r.next(t); m.UID != uid {
		t.Fatalf("uid = %d, want %d", m.UID, uid)
	}
}

func TestSizeLimit(t *testing.T) {
	s := startMemServer(t)
	small := message("small", "short")
	big := message("big", strings.Repeat("x", 1000))
	s.deliver(t, small)
	bigUID := s.deliver(t, big)
	s.deliver(t, small)
	cfg := baseConfig(t, s)
	cfg.MaxSize = int64(len(small))
	r := startWatch(t, cfg, Position{}, nil)

	for uid := uint32(1); uid <= 3; uid++ {
		m := r.next(t)
		if m.UID != uid {
			t.Fatalf("uid = %d, want %d", m.UID, uid)
		}
		switch uid {
		case bigUID:
			if !m.TooLarge || m.Raw != nil || m.Size != int64(len(big)) {
				t.Fatalf("big mail = TooLarge %v, %d raw bytes, size %d; want TooLarge, no body, size %d",
					m.TooLarge, len(m.Raw), m.Size, len(big))
			}
			if head, _, _ := strings.Cut(big, "\r\n\r\n"); string(m.Header) != head+"\r\n\r\n" {
				t.Fatalf("big mail header = %q, want %q", m.Header, head+"\r\n\r\n")
			}
		default:
			if m.TooLarge || string(m.Raw) != small || m.Header != nil {
				t.Fatalf("small mail uid %d = TooLarge %v, raw %q, header %q", uid, m.TooLarge, m.Raw, m.Header)
			}
		}
	}
	wire := s.wire.String()
	// Only the header of the oversized mail is fetched, never all of it.
	bodyFetch := func(uid uint32) *regexp.Regexp {
		return regexp.MustCompile(fmt.Sprintf(`UID FETCH %d \([^)]*BODY[.A-Z]*\[([A-Z]*)\]`, uid))
	}
	if m := bodyFetch(1).FindStringSubmatch(wire); m == nil || m[1] != "" {
		t.Fatalf("no whole-body fetch for uid 1 in the wire log; the pattern is stale:\n%s", wire)
	}
	fetches := bodyFetch(bigUID).FindAllStringSubmatch(wire, -1)
	if len(fetches) == 0 {
		t.Fatalf("the header of the oversized uid %d was not requested:\n%s", bigUID, wire)
	}
	for _, f := range fetches {
		if f[1] != "HEADER" {
			t.Fatalf("the body of the oversized uid %d was requested (%s):\n%s", bigUID, f[0], wire)
		}
	}
}

func TestResumeFromPosition(t *testing.T) {
	s := startMemServer(t)
	for _, subj := range subjects(3) {
		s.deliver(t, message(subj, "x"))
	}
	validity := s.uidValidity(t)
	r := startWatch(t, baseConfig(t, s), Position{UIDValidity: validity, UID: 2}, nil)
	if m := r.next(t); m.UID != 3 || m.Rescan {
		t.Fatalf("first delivery uid %d rescan %v, want uid 3 (1 and 2 were handled before)", m.UID, m.Rescan)
	}
	if uid, m := r.deliverDuringIdle(t, s, message("later", "x")); m.UID != uid {
		t.Fatalf("uid = %d, want %d", m.UID, uid)
	}
}

func TestUIDValidityChange(t *testing.T) {
	s := startMemServer(t)
	old := s.uidValidity(t)
	s.deliver(t, message("a", "x"))
	s.deliver(t, message("b", "x"))
	// The server rebuilt its index: same mail, new UIDVALIDITY, new UIDs.
	s.recreateInbox(t)
	fresh := s.uidValidity(t)
	if fresh == old {
		t.Fatalf("uidvalidity did not change (%d)", fresh)
	}
	s.deliver(t, message("a", "x"))
	s.deliver(t, message("b", "x"))

	t.Run("rescan", func(t *testing.T) {
		r := startWatch(t, baseConfig(t, s), Position{UIDValidity: old, UID: 2}, nil)
		if st := r.waitStatus(t, StateConnected); st.UIDValidity != fresh {
			t.Errorf("connected status uidvalidity = %d, want %d", st.UIDValidity, fresh)
		}
		// Both old messages come again, from UID 1, flagged for content dedup.
		for uid := uint32(1); uid <= 2; uid++ {
			m := r.next(t)
			if m.UID != uid || m.UIDValidity != fresh || !m.Rescan {
				t.Fatalf("mail = (uidvalidity %d, uid %d, rescan %v), want (%d, %d, true)", m.UIDValidity, m.UID, m.Rescan, fresh, uid)
			}
			wantPos := Position{UIDValidity: fresh, UID: uid}
			if uid < 2 {
				wantPos.RescanUntil = 2
			}
			if got := m.Position(); got != wantPos {
				t.Fatalf("Position() = %+v, want %+v", got, wantPos)
			}
		}
		if uid, m := r.deliverDuringIdle(t, s, message("c", "x")); m.UID != uid || m.Rescan {
			t.Fatalf("new mail uid %d rescan %v, want uid %d not a rescan", m.UID, m.Rescan, uid)
		}
	})
	t.Run("resume an interrupted rescan", func(t *testing.T) {
		r := startWatch(t, baseConfig(t, s), Position{UIDValidity: fresh, UID: 1, RescanUntil: 2}, nil)
		if m := r.next(t); m.UID != 2 || !m.Rescan {
			t.Fatalf("uid %d rescan %v, want uid 2 still a rescan", m.UID, m.Rescan)
		}
		if m := r.next(t); m.UID != 3 || m.Rescan {
			t.Fatalf("uid %d rescan %v, want uid 3 not a rescan", m.UID, m.Rescan)
		}
	})
}

func TestWrongPassword(t *testing.T) {
	s := startMemServer(t)
	s.deliver(t, message("a", "x"))
	cfg := baseConfig(t, s)
	cfg.Password = "wrong"
	r := startWatch(t, cfg, Position{}, nil)

	err := r.result(t)
	if !errors.Is(err, conv.ErrUnauthorized) {
		t.Fatalf("Watch = %v, want conv.ErrUnauthorized", err)
	}
	st := r.waitStatus(t, StateAuthFailed)
	if !errors.Is(st.Err, conv.ErrUnauthorized) || st.At.IsZero() {
		t.Fatalf("status = %+v, want auth_failed with conv.ErrUnauthorized", st)
	}
	close(r.statuses)
	for st := range r.statuses {
		t.Errorf("status after auth_failed: %+v", st)
	}
	if n := strings.Count(s.wire.String(), " LOGIN "); n != 1 {
		t.Errorf("%d LOGIN attempts, want 1 (a wrong password is not retried)", n)
	}
	select {
	case m := <-r.mails:
		t.Fatalf("delivered uid %d without logging in", m.UID)
	default:
	}
}

func TestServerDisappears(t *testing.T) {
	s := startMemServer(t)
	s.deliver(t, message("before", "x"))
	r := startWatch(t, baseConfig(t, s), Position{}, nil)
	if m := r.next(t); m.UID != 1 {
		t.Fatalf("uid = %d, want 1", m.UID)
	}
	r.waitStatus(t, StateConnected)
	r.waitIdle(t)

	s.stop() // connections and listener gone
	st := r.waitStatus(t, StateReconnecting)
	if !errors.Is(st.Err, conv.ErrUnavailable) || st.RetryIn <= 0 {
		t.Fatalf("reconnecting status = %+v, want ErrUnavailable and a delay", st)
	}
	uid := s.deliver(t, message("while-down", "x"))
	s.start(t) // back, on another port, same mail store

	r.waitStatus(t, StateConnected)
	if m := r.next(t); m.UID != uid {
		t.Fatalf("after reconnect: uid %d, want %d (and no re-delivery of 1)", m.UID, uid)
	}
}

func TestHandleErrorStopsWatch(t *testing.T) {
	s := startMemServer(t)
	for _, subj := range subjects(3) {
		s.deliver(t, message(subj, "x"))
	}
	r := startWatch(t, baseConfig(t, s), Position{}, func(m Mail) error {
		if m.UID == 2 {
			return errBoom
		}
		return nil
	})
	if m := r.next(t); m.UID != 1 {
		t.Fatalf("uid = %d, want 1", m.UID)
	}
	err := r.result(t)
	if !errors.Is(err, errBoom) || !strings.Contains(err.Error(), "uid 2") {
		t.Fatalf("Watch = %v, want boom at uid 2", err)
	}
	select {
	case m := <-r.mails:
		t.Fatalf("delivered uid %d after handle failed", m.UID)
	default:
	}
}

func TestSecurity(t *testing.T) {
	serverTLS, clientTLS := selfSigned(t)
	tests := []struct {
		name     string
		implicit bool
		security Security
		trust    bool
		wantAuth bool // the watch ends with auth_failed instead of delivering
	}{
		{name: "implicit tls", implicit: true, security: SecurityTLS, trust: true},
		{name: "starttls", security: SecurityStartTLS, trust: true},
		// The server requires TLS to log in: a plaintext LOGIN is refused
		// (PRIVACYREQUIRED), which is a configuration the channel must fix.
		{name: "plaintext to a tls-only server", security: SecurityNone, trust: true, wantAuth: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startMemServer(t, withTLS(serverTLS, tc.implicit))
			s.deliver(t, message("secure", "x"))
			cfg := baseConfig(t, s)
			cfg.Security = tc.security
			cfg.TLSConfig = clientTLS
			r := startWatch(t, cfg, Position{}, nil)
			if tc.wantAuth {
				if err := r.result(t); !errors.Is(err, conv.ErrUnauthorized) {
					t.Fatalf("Watch = %v, want conv.ErrUnauthorized", err)
				}
				return
			}
			if m := r.next(t); m.UID != 1 {
				t.Fatalf("uid = %d, want 1", m.UID)
			}
		})
	}

	t.Run("untrusted certificate is retried, not accepted", func(t *testing.T) {
		s := startMemServer(t, withTLS(serverTLS, true))
		cfg := baseConfig(t, s)
		cfg.Security = SecurityTLS // system roots: the test CA is unknown
		r := startWatch(t, cfg, Position{}, nil)
		st := r.waitStatus(t, StateReconnecting)
		if !strings.Contains(st.Err.Error(), "certificate") {
			t.Fatalf("reconnecting because %v, want a certificate error", st.Err)
		}
	})
}

func TestConfigValidation(t *testing.T) {
	valid := Config{Addr: "127.0.0.1:143", Username: "u", Password: "p"}
	tests := []struct {
		name   string
		modify func(*Config)
	}{
		{"no addr", func(c *Config) { c.Addr = "" }},
		{"addr without port", func(c *Config) { c.Addr = "mail.example.org" }},
		{"unknown security", func(c *Config) { c.Security = "ssl" }},
		{"no password", func(c *Config) { c.Password = "" }},
		{"idle restart at 29 minutes", func(c *Config) { c.IdleRestart = 29 * time.Minute }},
		{"negative idle restart", func(c *Config) { c.IdleRestart = -time.Second }},
		{"negative max size", func(c *Config) { c.MaxSize = -1 }},
		{"backoff bounds reversed", func(c *Config) { c.BackoffMin, c.BackoffMax = time.Minute, time.Second }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid
			tc.modify(&cfg)
			err := Watch(context.Background(), cfg, Position{}, func(context.Context, Mail) error { return nil }, nil)
			if !errors.Is(err, conv.ErrInvalid) {
				t.Fatalf("Watch = %v, want conv.ErrInvalid", err)
			}
		})
	}
	t.Run("defaults", func(t *testing.T) {
		cfg := valid
		cfg.setDefaults()
		if err := cfg.validate(); err != nil {
			t.Fatal(err)
		}
		if cfg.Security != SecurityTLS || cfg.Mailbox != "INBOX" || cfg.MaxSize != 25<<20 ||
			cfg.IdleRestart != 25*time.Minute || cfg.PollEvery != 30*time.Second {
			t.Fatalf("defaults = %+v", cfg)
		}
	})
}

func TestBackoff(t *testing.T) {
	w := &watcher{cfg: Config{BackoffMin: 100 * time.Millisecond, BackoffMax: time.Second}}
	tests := []struct {
		failures int
		lo, hi   time.Duration
	}{
		{0, 50 * time.Millisecond, 100 * time.Millisecond},
		{1, 100 * time.Millisecond, 200 * time.Millisecond},
		{3, 400 * time.Millisecond, 800 * time.Millisecond},
		{4, 500 * time.Millisecond, time.Second}, // capped
		{60, 500 * time.Millisecond, time.Second},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.failures), func(t *testing.T) {
			for range 50 {
				if d := w.backoff(tc.failures); d < tc.lo || d > tc.hi {
					t.Fatalf("backoff(%d) = %s, want within [%s, %s]", tc.failures, d, tc.lo, tc.hi)
				}
			}
		})
	}
}

func TestEnd(t *testing.T) {
	s := startMemServer(t)
	cfg := baseConfig(t, s)
	empty, err := End(t.Context(), cfg)
	if err != nil || empty.UIDValidity != s.uidValidity(t) || empty.UID != 0 {
		t.Fatalf("End of an empty mailbox = %+v, %v", empty, err)
	}
	s.deliver(t, message("old-1", "x"))
	last := s.deliver(t, message("old-2", "x"))
	end, err := End(t.Context(), cfg)
	if err != nil || end.UIDValidity != s.uidValidity(t) || end.UID != last {
		t.Fatalf("End = %+v, %v; want uid %d", end, err, last)
	}
	r := startWatch(t, cfg, end, nil)
	uid := s.deliver(t, message("new", "x"))
	if m := r.next(t); m.UID != uid || !strings.Contains(string(m.Raw), "new@example.org") {
		t.Fatalf("first mail from End = uid %d %q, want the new one (%d)", m.UID, m.Raw, uid)
	}

	cfg.Password = "wrong"
	if _, err := End(t.Context(), cfg); !errors.Is(err, conv.ErrUnauthorized) {
		t.Fatalf("End with a wrong password = %v, want conv.ErrUnauthorized", err)
	}
	s.stop()
	if _, err := End(t.Context(), baseConfig(t, s)); !errors.Is(err, conv.ErrUnavailable) {
		t.Fatalf("End with the server down = %v, want conv.ErrUnavailable", err)
	}
}

// TestSaysWhoItIs: a server that offers ID (RFC 2971) is told the
// client's name after login — NetEase's servers refuse SELECT otherwise —
// and one that then answers the ID command with an error still gets the
// SELECT and delivers.
func TestSaysWhoItIs(t *testing.T) {
	s := startMemServer(t, withID())
	raw := message("who", "body")
	s.deliver(t, raw)
	r := startWatch(t, baseConfig(t, s), Position{}, nil)
	if m := r.next(t); string(m.Raw) != raw {
		t.Fatalf("delivered %q, want %q", m.Raw, raw)
	}
	if w := s.wire.String(); !strings.Contains(w, ` ID (`) || !strings.Contains(w, `"Switchboard"`) {
		t.Fatalf("no ID command with our name on the wire:\n%s", w)
	}
}
