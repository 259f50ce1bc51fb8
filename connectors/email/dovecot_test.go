package email_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/connectors/email"
	"github.com/switchboard-hq/switchboard/connectors/email/imapwatch"
	"github.com/switchboard-hq/switchboard/connectors/email/imapwatch/imaptest"
	"github.com/switchboard-hq/switchboard/connectors/email/mail"
	"github.com/switchboard-hq/switchboard/connectors/email/smtpsend"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// The suite below runs against the Dovecot and Postfix of
// .ci/mail-services.sh: support@test.local is the channel's mailbox,
// customer@test.local the customer's; Postfix on loopback takes mail for
// both without AUTH or TLS.

// dovecotChannel is a channel on the mailbox of imapURL that sends through
// smtpURL. Its Message-IDs are under sb.test.local, so that the customer's
// mail (from test.local) is not taken for our own.
func dovecotChannel(t *testing.T, imapURL, smtpURL, mailbox string) map[string]any {
	t.Helper()
	u, err := url.Parse(imapURL)
	if err != nil {
		t.Fatal(err)
	}
	s, err := url.Parse(smtpURL)
	if err != nil || s.Host == "" {
		t.Fatalf("SWITCHBOARD_TEST_SMTP %q: want smtp://host:port", smtpURL)
	}
	pass, _ := u.User.Password()
	sec := "none"
	if u.Scheme == "imaps" {
		sec = "tls"
	}
	return map[string]any{
		"imap_addr": u.Host, "imap_security": sec, "username": u.User.Username(), "password": pass, "mailbox": mailbox,
		"smtp_addr": s.Host, "smtp_security": "none", "smtp_username": "",
		"from_address": u.User.Username(), "from_name": "Test Support", "message_id_domain": "sb.test.local",
	}
}

func imapConfigOf(t *testing.T, raw, mailbox string) imapwatch.Config {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	pass, _ := u.User.Password()
	cfg := imapwatch.Config{Addr: u.Host, Security: imapwatch.SecurityNone, Username: u.User.Username(), Password: pass,
		Mailbox: mailbox, CommandTimeout: waitFor, BackoffMin: 10 * time.Millisecond, BackoffMax: 200 * time.Millisecond}
	if u.Scheme == "imaps" {
		cfg.Security = imapwatch.SecurityTLS
	}
	return cfg
}

func token(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	return "sbmail-" + hex.EncodeToString(b)
}

// customerSends submits a mail from the customer to the support mailbox.
func customerSends(t *testing.T, smtpURL string, m mail.Outgoing) {
	t.Helper()
	s, _ := url.Parse(smtpURL)
	m.From = mail.Address{Name: "Test Customer", Email: "customer@test.local"}
	m.To = []mail.Address{{Email: "support@test.local"}}
	raw, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := smtpsend.Send(ctx, smtpsend.Config{Addr: s.Host, Security: smtpsend.SecurityNone, HeloName: "customer.test.local"},
		"customer@test.local", []string{"support@test.local"}, raw); err != nil {
		t.Fatalf("customer's mail: %v", err)
	}
}

// awaitMail watches cfg's mailbox from from until a mail containing want
// arrives, and returns it.
func awaitMail(t *testing.T, cfg imapwatch.Config, from imapwatch.Position, want string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var got []byte
	found := errors.New("found")
	err := imapwatch.Watch(ctx, cfg, from, func(_ context.Context, m imapwatch.Mail) error {
		if bytes.Contains(m.Raw, []byte(want)) {
			got = m.Raw
			return found
		}
		return nil
	}, nil)
	if !errors.Is(err, found) {
		t.Fatalf("no mail with %s arrived: Watch = %v", want, err)
	}
	return got
}

func TestDovecot(t *testing.T) {
	imapURL := testenv.Require(t, "SWITCHBOARD_TEST_IMAP")
	customerURL := testenv.Require(t, "SWITCHBOARD_TEST_IMAP_CUSTOMER")
	smtpURL := testenv.Require(t, "SWITCHBOARD_TEST_SMTP")

	// The customer writes through Postfix, the connector ingests it from
	// Dovecot, the agent's reply goes out through Postfix and threads in
	// the customer's mailbox, and the customer's answer to it comes back
	// into the same conversation.
	t.Run("round trip", func(t *testing.T) {
		ctx := context.Background()
		e := newEnv(t)
		ch := e.channel(t, dovecotChannel(t, imapURL, smtpURL, "INBOX"))
		// The mailbox is shared with other suites and keeps earlier runs':
		// start from its end.
		end, err := imapwatch.End(ctx, imapConfigOf(t, imapURL, "INBOX"))
		if err != nil {
			t.Fatal(err)
		}
		e.savePosition(t, ch.ID, end)
		c := e.connector(t, "node-a")
		run(t, c)

		tok := token(t)
		customerSends(t, smtpURL, mail.Outgoing{Subject: "Order " + tok, MessageID: "<" + tok + "@test.local>",
			References: []string{"<root-" + tok + "@test.local>"}, Text: "Where is order " + tok + "?"})
		waitPublished(t, e.hub, tok)
		first := e.hub.publishedWith(tok)[0]
		asked := e.message(t, ch.ID, first.ExternalID)
		want(t, "sender", first.From, email.EmailIdentity("customer@test.local"))
		contains(t, "text", asked.Parts[1].Text, "Where is order "+tok+"?")
		st := e.waitStatus(t, ch.ID, "connected", func(s email.Status) bool { return s.State == email.StateConnected })
		if st.Holder != "node-a" || st.UIDValidity != end.UIDValidity {
			t.Fatalf("status = %+v", st)
		}

		customerCfg := imapConfigOf(t, customerURL, "INBOX")
		from, err := imapwatch.End(ctx, customerCfg)
		if err != nil {
			t.Fatal(err)
		}
		reply := agentReplies(t, e, asked.ConversationID, conv.Part{Type: conv.PartText, Text: "It left today, " + tok + "."})
		if err := c.Outbound(ctx, e.hub.lastOutbound(t)); err != nil {
			t.Fatal(err)
		}
		sent := e.stored(t, reply.ID)
		if sent.Status != conv.MsgSent || sent.ExternalID == "" {
			t.Fatalf("reply %s %q, want sent with its Message-ID", sent.Status, sent.ExternalID)
		}
		raw := awaitMail(t, customerCfg, from, sent.ExternalID)
		got, err := mail.Parse(bytes.NewReader(raw), mail.Limits{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		want(t, "message id", got.MessageID, sent.ExternalID)
		want(t, "subject", got.Subject, "Re: Order "+tok)
		want(t, "in-reply-to", got.InReplyTo, "<"+tok+"@test.local>")
		want(t, "references", got.References, []string{"<root-" + tok + "@test.local>", "<" + tok + "@test.local>"})
		want(t, "from", got.From, mail.Address{Name: "Test Support", Email: "support@test.local"})
		want(t, "to", got.To, []mail.Address{{Name: "Test Customer", Email: "customer@test.local"}})
		contains(t, "text", got.Text, "It left today, "+tok+".")
		key := []byte(e.channelSecret(t, ch.ID, email.SecretThreadKey))
		if cv, m, ok := mail.ParseTokenMessage(got.MessageID, "sb.test.local", key); !ok || cv != asked.ConversationID || m != reply.ID {
			t.Fatalf("token of %s = (%v, %v, %v), want (%v, %v)", got.MessageID, cv, m, ok, asked.ConversationID, reply.ID)
		}

		// The customer's client answers with only In-Reply-To and a new
		// subject: the token still finds the conversation.
		customerSends(t, smtpURL, mail.Outgoing{Subject: "thanks " + tok, MessageID: "<again-" + tok + "@test.local>",
			InReplyTo: got.MessageID, Text: "Got it."})
		testenv.WaitFor(t, waitFor, "the answer published", func() bool { return len(e.hub.publishedWith("thanks "+tok)) > 0 })
		answer := e.message(t, ch.ID, e.hub.publishedWith("thanks " + tok)[0].ExternalID)
		if answer.ConversationID != asked.ConversationID {
			t.Fatalf("the answer went to conversation %s, want %s", answer.ConversationID, asked.ConversationID)
		}
	})

	// A folder of its own: what is already there is the backlog; the
	// customer's mail is ingested, our own copy is not, and an unreadable
	// one is kept and counted.
	t.Run("backlog in a folder", func(t *testing.T) {
		folder := imaptest.Folder(t, imapURL)
		e := newEnv(t)
		ch := e.channel(t, dovecotChannel(t, imapURL, smtpURL, folder.Name))
		tok := token(t)
		folder.Append(t, customerMail("folder-"+tok))
		folder.Append(t, []byte("From: Test Support <support@test.local>\r\nSubject: own-"+tok+"\r\nMessage-ID: <own-"+tok+"@sb.test.local>\r\n\r\nours\r\n"))
		junk := []byte("Subject: broken-" + tok + "\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" + strings.Repeat("--b\r\n\r\nx\r\n", 150) + "--b--\r\n")
		folder.Append(t, junk)
		run(t, e.connector(t, "node-a"))

		waitPublished(t, e.hub, "folder-"+tok)
		waitPublished(t, e.hub, "broken-"+tok)
		st := e.waitStatus(t, ch.ID, "three mails handled", func(s email.Status) bool {
			return s.State == email.StateConnected && s.Unreadable == 1
		})
		testenv.WaitFor(t, waitFor, "the position after uid 3", func() bool { return e.position(t, ch.ID).UID == 3 })
		if st.Error != "" || len(e.hub.publishedWith("own-"+tok)) != 0 {
			t.Fatalf("status %+v; own mail published %d times", st, len(e.hub.publishedWith("own-"+tok)))
		}
		broken := e.hub.publishedWith("broken-" + tok)[0]
		if !strings.Contains(broken.Parts[0].Email.Error, "too many parts") {
			t.Fatalf("unreadable mail's email part = %+v", broken.Parts[0].Email)
		}
		if !bytes.Contains(e.readMedia(t, broken.Parts[0].Email.Raw), []byte("broken-"+tok)) {
			t.Fatal("the unreadable mail's raw bytes are not kept")
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		e := newEnv(t)
		cfg := dovecotChannel(t, imapURL, smtpURL, "INBOX")
		cfg["password"] = "not-the-password"
		ch := e.channel(t, cfg)
		run(t, e.connector(t, "node-a"))
		st := e.waitStatus(t, ch.ID, "auth_failed", func(s email.Status) bool { return s.State == email.StateAuthFailed })
		if st.Error == "" || strings.Contains(st.Error, "not-the-password") {
			t.Fatalf("status = %+v", st)
		}
	})
}

// channelSecret reads one secret of a stored channel.
func (e *env) channelSecret(t *testing.T, id conv.ChannelID, name string) string {
	t.Helper()
	var ch conv.Channel
	e.tx(t, func(tx storage.Tx) error {
		var err error
		ch, err = tx.Channel(context.Background(), id)
		return err
	})
	return ch.Secrets[name]
}
