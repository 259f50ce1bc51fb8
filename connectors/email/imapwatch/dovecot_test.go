package imapwatch

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/smtp"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// The suite below runs against the Dovecot and Postfix that
// .ci/mail-services.sh sets up: mail goes in through SMTP, LMTP delivers it
// to the mailbox, Watch must hand it over.

func TestDovecot(t *testing.T) {
	cfg := dovecotConfig(t, testenv.Require(t, "SWITCHBOARD_TEST_IMAP"))
	smtpAddr := smtpAddr(t, testenv.Require(t, "SWITCHBOARD_TEST_SMTP"))
	to := cfg.Username

	t.Run("backlog then idle", func(t *testing.T) {
		from := mailboxEnd(t, cfg)
		backlogToken := sendMail(t, smtpAddr, to)
		// LMTP delivery is asynchronous: wait until the mail is in the
		// mailbox, so that Watch finds it as backlog, not through IDLE.
		waitForUID(t, cfg, from.UID+1)

		c := cfg
		c.PollEvery = time.Hour // only IDLE can bring the second mail
		r := startWatch(t, c, from, nil)
		// Other suites deliver to the same INBOX meanwhile: their mail
		// may come first, in UID order with ours.
		m := r.nextWith(t, backlogToken)
		if m.UIDValidity != from.UIDValidity || m.UID <= from.UID {
			t.Fatalf("backlog mail (%d, %d); want the one with %s after %+v", m.UIDValidity, m.UID, backlogToken, from)
		}
		r.waitIdle(t)
		idleToken := sendMail(t, smtpAddr, to)
		m2 := r.nextWith(t, idleToken)
		if m2.UID <= m.UID {
			t.Fatalf("mail during IDLE: uid %d after %d", m2.UID, m.UID)
		}
		if m2.Size != int64(len(m2.Raw)) {
			t.Errorf("RFC822.SIZE %d, downloaded %d bytes", m2.Size, len(m2.Raw))
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		c := cfg
		c.Password += "-wrong"
		r := startWatch(t, c, Position{}, nil)
		if err := r.result(t); !errors.Is(err, conv.ErrUnauthorized) {
			t.Fatalf("Watch = %v, want conv.ErrUnauthorized", err)
		}
		if st := r.waitStatus(t, StateAuthFailed); !errors.Is(st.Err, conv.ErrUnauthorized) {
			t.Fatalf("status = %+v", st)
		}
	})
}

// nextWith returns the next mail holding token, passing over (at most 50)
// mails of other suites, each of which must still come in UID order.
func (r *watchRun) nextWith(t *testing.T, token string) Mail {
	t.Helper()
	var last uint32
	for range 50 {
		m := r.next(t)
		if m.UID <= last {
			t.Fatalf("uid %d after %d: not in UID order", m.UID, last)
		}
		last = m.UID
		if strings.Contains(string(m.Raw), token) {
			return m
		}
	}
	t.Fatalf("no mail with %s among the next 50", token)
	return Mail{}
}

// dovecotConfig reads imap://user:password@host:port (plaintext) or
// imaps://... (implicit TLS).
func dovecotConfig(t *testing.T, raw string) Config {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("SWITCHBOARD_TEST_IMAP: %v", err)
	}
	sec := SecurityNone
	if u.Scheme == "imaps" {
		sec = SecurityTLS
	}
	pass, _ := u.User.Password()
	return Config{
		Addr:           u.Host,
		Security:       sec,
		Username:       u.User.Username(),
		Password:       pass,
		CommandTimeout: waitFor,
		BackoffMin:     10 * time.Millisecond,
		BackoffMax:     100 * time.Millisecond,
		Logger:         testLog(t),
	}
}

func smtpAddr(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "smtp" || u.Host == "" {
		t.Fatalf("SWITCHBOARD_TEST_SMTP %q: want smtp://host:port", raw)
	}
	return u.Host
}

// mailboxEnd is the position after the last message now in the mailbox, so
// that a test sees only the mail it sends (the mailbox keeps earlier runs').
func mailboxEnd(t *testing.T, cfg Config) Position {
	t.Helper()
	c := dialTest(t, cfg)
	data, err := c.Select(DefaultMailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("examine: %v", err)
	}
	return Position{UIDValidity: data.UIDValidity, UID: uint32(data.UIDNext) - 1}
}

// waitForUID polls the mailbox until a message with a UID of at least uid
// exists.
func waitForUID(t *testing.T, cfg Config, uid uint32) {
	t.Helper()
	c := dialTest(t, cfg)
	deadline := time.After(waitFor)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := c.Status(DefaultMailbox, &imap.StatusOptions{UIDNext: true}).Wait()
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		if uint32(st.UIDNext) > uid {
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("uid %d not delivered within %s (UIDNEXT %d)", uid, waitFor, st.UIDNext)
		}
	}
}

func dialTest(t *testing.T, cfg Config) *imapclient.Client {
	t.Helper()
	var c *imapclient.Client
	var err error
	if cfg.Security == SecurityTLS {
		c, err = imapclient.DialTLS(cfg.Addr, nil)
	} else {
		c, err = imapclient.DialInsecure(cfg.Addr, nil)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", cfg.Addr, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(cfg.Username, cfg.Password).Wait(); err != nil {
		t.Fatalf("login: %v", err)
	}
	return c
}

// sendMail submits a message from the customer mailbox to to over SMTP and
// returns the token in its subject and body.
func sendMail(t *testing.T, addr, to string) string {
	t.Helper()
	b := make([]byte, 8)
	rand.Read(b)
	token := "imapwatch-" + hex.EncodeToString(b)
	msg := fmt.Sprintf("From: customer@test.local\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@test.local>\r\n"+
		"Date: %s\r\n\r\nHello, token %s.\r\n", to, token, token, time.Now().Format(time.RFC1123Z), token)
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatalf("smtp dial %s: %v", addr, err)
	}
	defer c.Close()
	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("smtp %s: %v", what, err)
		}
	}
	step("hello", c.Hello("localhost"))
	step("mail", c.Mail("customer@test.local"))
	step("rcpt", c.Rcpt(to))
	w, err := c.Data()
	step("data", err)
	_, err = w.Write([]byte(msg))
	step("write", err)
	step("end data", w.Close())
	step("quit", c.Quit())
	return token
}
