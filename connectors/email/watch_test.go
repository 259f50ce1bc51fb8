package email_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/connectors/email"
	"github.com/switchboard-hq/switchboard/connectors/email/imapwatch/imaptest"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// imapChannelConfig is a channel watching mailbox m.
func imapChannelConfig(m imaptest.Mailbox, password string) map[string]any {
	return map[string]any{
		"imap_addr": m.Addr, "imap_security": string(m.Security), "username": m.Username, "password": password,
		"mailbox": m.Name, "smtp_addr": "127.0.0.1:1", "smtp_security": "none", "smtp_username": "",
		"from_address": "support@acme.example", "message_id_domain": "mail.acme.example", "thread_key": testKey,
	}
}

// customerMail is a mail from a customer whose subject is token.
func customerMail(token string) []byte {
	return []byte(fmt.Sprintf("From: Jane <jane@example.com>\r\nTo: support@acme.example\r\nSubject: %s\r\n"+
		"Message-ID: <%s@example.com>\r\nDate: %s\r\n\r\nHello, %s.\r\n", token, token, time.Now().Format(time.RFC1123Z), token))
}

// waitPublished waits until a mail with subject token was published and
// returns how many times it was.
func waitPublished(t *testing.T, h *testHub, token string) int {
	t.Helper()
	testenv.WaitFor(t, waitFor, "mail "+token+" published", func() bool { return len(h.publishedWith(token)) > 0 })
	return len(h.publishedWith(token))
}

func TestWatch(t *testing.T) {
	e := newEnv(t)
	srv := imaptest.NewServer(t, "support@acme.example", "pw")
	ch := e.channel(t, imapChannelConfig(srv.Mailbox(), "pw"))
	srv.Deliver(t, customerMail("backlog-1"))
	srv.Deliver(t, []byte("From: Acme <support@acme.example>\r\nSubject: own-copy\r\nMessage-ID: <o1@example.com>\r\n\r\nours\r\n"))
	srv.Deliver(t, []byte("\x00garbage without a header"))
	run(t, e.connector(t, "node-a"))

	waitPublished(t, e.hub, "backlog-1")
	st := e.waitStatus(t, ch.ID, "the position past the three backlog mails and connected", func(s email.Status) bool {
		return s.State == email.StateConnected && s.LastMailAt != nil && s.Unreadable == 1
	})
	if st.Holder != "node-a" || st.UIDValidity == 0 || st.Error != "" {
		t.Fatalf("status = %+v", st)
	}
	testenv.WaitFor(t, waitFor, "the position after uid 3", func() bool { return e.position(t, ch.ID).UID == 3 })
	if n := len(e.hub.publishedWith("own-copy")); n != 0 {
		t.Fatalf("our own mail was published %d times", n)
	}
	if n := len(e.hub.published()); n != 2 {
		t.Fatalf("%d envelopes published, want the customer's and the unreadable one", n)
	}

	// New mail while the watcher waits.
	srv.Deliver(t, customerMail("live-1"))
	waitPublished(t, e.hub, "live-1")
	in := e.hub.publishedWith("live-1")[0]
	m := e.message(t, ch.ID, in.ExternalID)
	if m.Sender.Type != conv.SenderContact || m.Parts[1].Text != "Hello, live-1." {
		t.Fatalf("stored message = %+v", m)
	}
}

// TestStartFromNow: a channel created with import_existing false leaves
// the mail already in the folder alone and takes what arrives after.
func TestStartFromNow(t *testing.T) {
	e := newEnv(t)
	srv := imaptest.NewServer(t, "support@acme.example", "pw")
	srv.Deliver(t, customerMail("old-1"))
	srv.Deliver(t, customerMail("old-2"))
	cfg := imapChannelConfig(srv.Mailbox(), "pw")
	cfg["import_existing"] = false
	ch := e.channel(t, cfg)
	run(t, e.connector(t, "node-a"))
	testenv.WaitFor(t, waitFor, "the position saved at the mailbox's end", func() bool { return e.position(t, ch.ID).UID == 2 })
	srv.Deliver(t, customerMail("new-1"))
	waitPublished(t, e.hub, "new-1")
	if n := len(e.hub.published()); n != 1 {
		t.Fatalf("%d envelopes published, want only the mail that came after the channel", n)
	}
}

func TestPositionSurvivesRestart(t *testing.T) {
	e := newEnv(t)
	srv := imaptest.NewServer(t, "support@acme.example", "pw")
	ch := e.channel(t, imapChannelConfig(srv.Mailbox(), "pw"))
	srv.Deliver(t, customerMail("first"))
	srv.Deliver(t, customerMail("second"))
	stop := run(t, e.connector(t, "node-a"))
	waitPublished(t, e.hub, "second")
	testenv.WaitFor(t, waitFor, "the position after uid 2", func() bool { return e.position(t, ch.ID).UID == 2 })
	stop()

	srv.Deliver(t, customerMail("third"))
	run(t, e.connector(t, "node-a"))
	waitPublished(t, e.hub, "third")
	for _, token := range []string{"first", "second", "third"} {
		if n := len(e.hub.publishedWith(token)); n != 1 {
			t.Errorf("mail %s published %d times, want once", token, n)
		}
	}
}

// TestLeaseHandover: two nodes share the leases; one watches, and when it
// dies (without handing over) the other takes over from the saved position.
func TestLeaseHandover(t *testing.T) {
	e := newEnv(t)
	srv := imaptest.NewServer(t, "support@acme.example", "pw")
	ch := e.channel(t, imapChannelConfig(srv.Mailbox(), "pw"))
	leases := &countingLease{l: e.leases, calls: map[string]int{}}

	// node-a dies rather than stopping: its lease is never released.
	stopA := run(t, e.connector(t, "node-a", func(c *email.Config) { c.Lease = noRelease{leases} }))
	e.waitStatus(t, ch.ID, "node-a connected", func(s email.Status) bool {
		return s.State == email.StateConnected && s.Holder == "node-a"
	})
	run(t, e.connector(t, "node-b", func(c *email.Config) { c.Lease = leases }))
	testenv.WaitFor(t, waitFor, "node-b asking for the lease", func() bool { return leases.count("node-b") >= 2 })

	srv.Deliver(t, customerMail("while-a"))
	waitPublished(t, e.hub, "while-a")
	testenv.WaitFor(t, waitFor, "the position after uid 1", func() bool { return e.position(t, ch.ID).UID == 1 })
	if st := e.status(t, ch.ID); st.Holder != "node-a" {
		t.Fatalf("status holder %q while node-a holds the lease", st.Holder)
	}

	stopA()
	e.waitStatus(t, ch.ID, "node-b taking over", func(s email.Status) bool {
		return s.State == email.StateConnected && s.Holder == "node-b"
	})
	srv.Deliver(t, customerMail("after-a"))
	waitPublished(t, e.hub, "after-a")
	for _, token := range []string{"while-a", "after-a"} {
		if n := len(e.hub.publishedWith(token)); n != 1 {
			t.Errorf("mail %s published %d times: more than one node watched", token, n)
		}
	}
}

func TestAuthFailure(t *testing.T) {
	e := newEnv(t)
	srv := imaptest.NewServer(t, "support@acme.example", "pw")
	bad := e.channel(t, imapChannelConfig(srv.Mailbox(), "wrong"))
	good := e.channel(t, imapChannelConfig(srv.Mailbox(), "pw"))
	srv.Deliver(t, customerMail("still-flows"))
	stop := run(t, e.connector(t, "node-a"))

	st := e.waitStatus(t, bad.ID, "auth_failed", func(s email.Status) bool { return s.State == email.StateAuthFailed })
	if st.Error == "" || strings.Contains(st.Error, "wrong") || st.Config == "" {
		t.Fatalf("status = %+v; want the reason, no password, and the config fingerprint", st)
	}
	// The other channel of the same server is unaffected.
	waitPublished(t, e.hub, "still-flows")
	e.waitStatus(t, good.ID, "the good channel connected", func(s email.Status) bool { return s.State == email.StateConnected })
	logins := srv.Logins()
	stop()

	// Another node (or a restart) does not try the refused password again.
	stop = run(t, e.connector(t, "node-b"))
	e.waitStatus(t, bad.ID, "node-b keeping auth_failed", func(s email.Status) bool {
		return s.State == email.StateAuthFailed && s.Holder == "node-b"
	})
	e.waitStatus(t, good.ID, "node-b watching the good channel", func(s email.Status) bool {
		return s.State == email.StateConnected && s.Holder == "node-b"
	})
	// node-b logged in once, for the good channel only.
	if n := srv.Logins(); n != logins+1 {
		t.Fatalf("%d logins after the restart, want %d: the refused password was tried again", n, logins+1)
	}

	// Fixing the password is a change: the watcher starts again.
	bad.Secrets["password"] = "pw"
	e.update(t, bad)
	e.waitStatus(t, bad.ID, "connected with the new password", func(s email.Status) bool { return s.State == email.StateConnected })
	stop()
}

func TestChannelDisabledAndEnabled(t *testing.T) {
	e := newEnv(t)
	srv := imaptest.NewServer(t, "support@acme.example", "pw")
	ch := e.channel(t, imapChannelConfig(srv.Mailbox(), "pw"))
	run(t, e.connector(t, "node-a"))
	e.waitStatus(t, ch.ID, "connected", func(s email.Status) bool { return s.State == email.StateConnected })

	ch.Disabled = true
	e.update(t, ch)
	e.waitStatus(t, ch.ID, "stopped", func(s email.Status) bool { return s.State == email.StateStopped })
	srv.Deliver(t, customerMail("while-disabled"))

	ch.Disabled = false
	e.update(t, ch)
	waitPublished(t, e.hub, "while-disabled")
	e.waitStatus(t, ch.ID, "connected again", func(s email.Status) bool { return s.State == email.StateConnected })

	// A config nothing can watch is reported, not retried.
	ch.Config = []byte(strings.Replace(string(ch.Config), `"imap_security":"none"`, `"imap_security":"bogus"`, 1))
	e.update(t, ch)
	st := e.waitStatus(t, ch.ID, "stopped for its config", func(s email.Status) bool {
		return s.State == email.StateStopped && strings.Contains(s.Error, "imap_security")
	})
	if !strings.HasPrefix(st.Error, "configuration:") {
		t.Fatalf("status = %+v", st)
	}
}

func TestPublishFailureRetries(t *testing.T) {
	e := newEnv(t)
	srv := imaptest.NewServer(t, "support@acme.example", "pw")
	ch := e.channel(t, imapChannelConfig(srv.Mailbox(), "pw"))
	e.hub.failInbound(1, fmt.Errorf("%w: bus down", conv.ErrUnavailable))
	srv.Deliver(t, customerMail("retried"))
	run(t, e.connector(t, "node-a", func(c *email.Config) { c.BackoffMin, c.BackoffMax = 500*time.Millisecond, time.Second }))

	st := e.waitStatus(t, ch.ID, "reconnecting after the failed publish", func(s email.Status) bool {
		return s.State == email.StateReconnecting && strings.Contains(s.Error, "bus down")
	})
	if st.RetryInMS <= 0 {
		t.Fatalf("status = %+v, want a retry delay", st)
	}
	if n := waitPublished(t, e.hub, "retried"); n != 1 {
		t.Fatalf("published %d times", n)
	}
	e.waitStatus(t, ch.ID, "connected", func(s email.Status) bool { return s.State == email.StateConnected && s.LastMailAt != nil })
}

func (e *env) position(t *testing.T, ch conv.ChannelID) email.Position {
	t.Helper()
	var p email.Position
	e.tx(t, func(tx storage.Tx) error {
		v, err := tx.ChannelState(context.Background(), ch, email.StateKeyPosition)
		if errors.Is(err, conv.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return json.Unmarshal([]byte(v), &p)
	})
	return p
}

// countingLease counts Acquire calls per holder.
type countingLease struct {
	l interface {
		email.Lease
		Release(ctx context.Context, key, holder string) error
	}
	mu    sync.Mutex
	calls map[string]int
}

func (c *countingLease) Acquire(ctx context.Context, key, holder string, ttl time.Duration) (bool, error) {
	c.mu.Lock()
	c.calls[holder]++
	c.mu.Unlock()
	return c.l.Acquire(ctx, key, holder, ttl)
}

func (c *countingLease) Release(ctx context.Context, key, holder string) error {
	return c.l.Release(ctx, key, holder)
}

func (c *countingLease) count(holder string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[holder]
}

// noRelease hides Release: the node holding it dies rather than stops.
type noRelease struct{ l email.Lease }

func (n noRelease) Acquire(ctx context.Context, key, holder string, ttl time.Duration) (bool, error) {
	return n.l.Acquire(ctx, key, holder, ttl)
}

// TestLeaseLostStopsWatching: when another node gets the lease (here the
// lease store says so), the watcher stops at once, not at its next mail.
func TestLeaseLostStopsWatching(t *testing.T) {
	e := newEnv(t)
	srv := imaptest.NewServer(t, "support@acme.example", "pw")
	ch := e.channel(t, imapChannelConfig(srv.Mailbox(), "pw"))
	lease := &fakeLease{holder: "node-a"}
	withLease := func(c *email.Config) { c.Lease = lease }
	run(t, e.connector(t, "node-a", withLease))
	run(t, e.connector(t, "node-b", withLease))
	e.waitStatus(t, ch.ID, "node-a connected", func(s email.Status) bool {
		return s.State == email.StateConnected && s.Holder == "node-a"
	})
	if n := srv.Sessions(); n != 1 {
		t.Fatalf("%d IMAP sessions while one node holds the lease", n)
	}

	lease.give("node-b")
	e.waitStatus(t, ch.ID, "node-b connected", func(s email.Status) bool {
		return s.State == email.StateConnected && s.Holder == "node-b"
	})
	testenv.WaitFor(t, waitFor, "node-a's session to end", func() bool { return srv.Sessions() == 1 })
	srv.Deliver(t, customerMail("after-switch"))
	if n := waitPublished(t, e.hub, "after-switch"); n != 1 {
		t.Fatalf("published %d times", n)
	}
}

// fakeLease is held by whoever the test says.
type fakeLease struct {
	mu     sync.Mutex
	holder string
}

func (f *fakeLease) Acquire(_ context.Context, _, holder string, _ time.Duration) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return holder == f.holder, nil
}

func (f *fakeLease) give(holder string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.holder = holder
}
