package smtpsend

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/connectors/email/imapwatch"
	"github.com/switchboard-hq/switchboard/connectors/email/mail"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// The suite below runs against the Postfix (and Dovecot, to see the mail
// arrive) that .ci/mail-services.sh sets up: loopback, no STARTTLS, no
// AUTH; support@test.local exists, ghost@test.local does not.

func TestPostfix(t *testing.T) {
	cfg := postfixConfig(t, testenv.Require(t, "SWITCHBOARD_TEST_SMTP"))

	t.Run("delivered", func(t *testing.T) {
		cfg := cfg
		cfg.Logger = testLog(t)
		token := randomToken(t)
		msg := outgoing(t, token)
		res, err := Send(testCtx(t), cfg, "customer@test.local", []string{"support@test.local"}, msg)
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
		if res.Code != 250 || res.Enhanced != "2.0.0" || res.Message == "" {
			t.Fatalf("Result = %+v, want 250 2.0.0 with a queue id", res)
		}
		if raw := os.Getenv("SWITCHBOARD_TEST_IMAP"); raw != "" {
			waitForMail(t, raw, token)
		}
	})

	t.Run("unknown recipient", func(t *testing.T) {
		cfg := cfg
		cfg.Logger = testLog(t)
		_, err := Send(testCtx(t), cfg, "customer@test.local", []string{"ghost@test.local"}, outgoing(t, randomToken(t)))
		se := sendErr(t, err)
		if se.Code != 550 || se.Enhanced != "5.1.1" || se.Temporary || Temporary(err) || !errors.Is(err, conv.ErrInvalid) || se.Sent {
			t.Fatalf("error %v = %+v; want a permanent 550 5.1.1", err, se)
		}
		t.Logf("Reason: %s", se.Reason())
	})

	t.Run("one unknown of two", func(t *testing.T) {
		cfg := cfg
		cfg.Logger = testLog(t)
		res, err := Send(testCtx(t), cfg, "customer@test.local", []string{"ghost@test.local", "support@test.local"}, outgoing(t, randomToken(t)))
		se := sendErr(t, err)
		if res.Code != 250 || !se.Sent || se.Code != 550 || len(se.Rejected) != 1 || se.Rejected[0] != "ghost@test.local" {
			t.Fatalf("Send = %+v, %v; want sent with ghost refused", res, err)
		}
	})
}

func postfixConfig(t *testing.T, raw string) Config {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "smtp" || u.Host == "" {
		t.Fatalf("SWITCHBOARD_TEST_SMTP %q: want smtp://host:port", raw)
	}
	return Config{Addr: u.Host, Security: SecurityNone, HeloName: "switchboard.test.local", Timeout: waitFor}
}

func randomToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func outgoing(t *testing.T, token string) []byte {
	t.Helper()
	b, err := mail.Outgoing{
		From:      mail.Address{Name: "Customer", Email: "customer@test.local"},
		To:        []mail.Address{{Name: "Support", Email: "support@test.local"}},
		Subject:   "smtpsend test " + token,
		MessageID: "<smtpsend." + token + "@test.local>",
		Text:      "Hello " + token + "\n.leading dot\n",
	}.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitForMail watches the support mailbox (from its start) until the mail
// with token arrives.
func waitForMail(t *testing.T, raw, token string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("SWITCHBOARD_TEST_IMAP: %v", err)
	}
	pass, _ := u.User.Password()
	cfg := imapwatch.Config{
		Addr:           u.Host,
		Security:       imapwatch.SecurityNone,
		Username:       u.User.Username(),
		Password:       pass,
		CommandTimeout: waitFor,
		BackoffMin:     10 * time.Millisecond,
		BackoffMax:     100 * time.Millisecond,
	}
	if u.Scheme == "imaps" {
		cfg.Security = imapwatch.SecurityTLS
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errFound := errors.New("found")
	want := []byte("Message-Id: <smtpsend." + token + "@test.local>")
	err = imapwatch.Watch(ctx, cfg, imapwatch.Position{}, func(_ context.Context, m imapwatch.Mail) error {
		if bytes.Contains(m.Raw, want) {
			return errFound
		}
		return nil
	}, nil)
	if !errors.Is(err, errFound) {
		t.Fatalf("mail %s did not arrive in the mailbox: Watch = %v", token, err)
	}
}
