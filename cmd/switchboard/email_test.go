package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/connectors/email/imapwatch"
	"github.com/switchboard-hq/switchboard/connectors/email/mail"
	"github.com/switchboard-hq/switchboard/connectors/email/smtpsend"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// mailAccount is one of the test mailboxes .ci/mail-services.sh sets up.
type mailAccount struct {
	addr, user, password string
}

func mailAccountFrom(t testing.TB, env string) mailAccount {
	t.Helper()
	u, err := url.Parse(testenv.Require(t, env))
	if err != nil {
		t.Fatalf("%s: %v", env, err)
	}
	pw, _ := u.User.Password()
	return mailAccount{addr: u.Host, user: u.User.Username(), password: pw}
}

// sendMail hands o to the SMTP server at addr, as a customer's mail
// client would.
func sendMail(t *testing.T, addr string, o mail.Outgoing) {
	t.Helper()
	raw, err := o.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	rcpts := make([]string, 0, len(o.To))
	for _, a := range o.To {
		rcpts = append(rcpts, a.Email)
	}
	if _, err := smtpsend.Send(t.Context(), smtpsend.Config{Addr: addr, Security: smtpsend.SecurityNone, Timeout: 20 * time.Second},
		o.From.Email, rcpts, raw); err != nil {
		t.Fatalf("send %q: %v", o.Subject, err)
	}
}

// awaitMail watches acct's INBOX from the start until a mail whose
// Subject is subject arrives, and returns it parsed.
func awaitMail(t *testing.T, acct mailAccount, subject string) *mail.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var found *mail.Message
	errFound := fmt.Errorf("found")
	err := imapwatch.Watch(ctx, imapwatch.Config{Addr: acct.addr, Security: imapwatch.SecurityNone,
		Username: acct.user, Password: acct.password}, imapwatch.Position{},
		func(_ context.Context, m imapwatch.Mail) error {
			if m.TooLarge {
				return nil
			}
			msg, err := mail.Parse(bytes.NewReader(m.Raw), mail.DefaultLimits, nil)
			if err == nil && msg.Subject == subject {
				found = msg
				return errFound
			}
			return nil
		}, nil)
	if found == nil {
		t.Fatalf("no mail %q in %s's mailbox: %v", subject, acct.user, err)
	}
	return found
}

// mailText is the text of a mail message: its parts after the email part.
func mailText(m map[string]any) string {
	var b strings.Builder
	parts, _ := m["parts"].([]any)
	for _, p := range parts {
		if p, ok := p.(map[string]any); ok && p["type"] == "text" {
			s, _ := p["text"].(string)
			b.WriteString(s)
		}
	}
	return b.String()
}

// waitMailboxConnected waits until `channel list` shows the node's
// watcher connected to the email channel's mailbox.
func waitMailboxConnected(t testing.TB, s *server) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, "the email channel's status connected", func() bool {
		var out bytes.Buffer
		if err := run(context.Background(), []string{"channel", "list", "--data", s.data, "--tenant", "demo"}, &out, &bytes.Buffer{}); err != nil {
			return false
		}
		var list struct {
			Channels []struct {
				Kind   string `json:"kind"`
				Status struct {
					State string `json:"state"`
				} `json:"status"`
			} `json:"channels"`
		}
		if json.Unmarshal(out.Bytes(), &list) != nil {
			return false
		}
		for _, ch := range list.Channels {
			if ch.Kind == "email" && ch.Status.State == "connected" {
				return true
			}
		}
		return false
	})
}

// TestEmailEndToEnd: a customer's mail sent through Postfix reaches the
// agent's console through Dovecot; the agent's reply lands in the
// customer's mailbox with the threading headers; the customer's answer to
// it joins the same conversation; after the conversation is resolved, a
// reply to it reopens it.
func TestEmailEndToEnd(t *testing.T) {
	support := mailAccountFrom(t, "SWITCHBOARD_TEST_IMAP")
	customer := mailAccountFrom(t, "SWITCHBOARD_TEST_IMAP_CUSTOMER")
	smtpURL, err := url.Parse(testenv.Require(t, "SWITCHBOARD_TEST_SMTP"))
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "--channel-rescan", "200ms")
	cfg, _ := json.Marshal(map[string]any{
		"imap_addr": support.addr, "imap_security": "none", "username": support.user, "password": support.password,
		"smtp_addr": smtpURL.Host, "smtp_security": "none", "smtp_username": "",
		"from_address": support.user, "from_name": "Shop Support",
		// The shared test INBOX holds every earlier run's mail.
		"import_existing": false,
	})
	var out bytes.Buffer
	if err := run(context.Background(), []string{"channel", "create", "--data", s.data, "--tenant", "demo", "--kind", "email",
		"--name", "Support mailbox", "--config", string(cfg)}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), support.password) {
		t.Fatalf("channel create echoed the password: %s", out.String())
	}

	// The channel starts from now: send only once it is watching.
	waitMailboxConnected(t, s)

	tok := s.login("demo", "agent@demo.local", s.password)
	dev := s.dial("/v1/agent/ws?token=" + tok)
	hello := dev.next()
	dev.send(map[string]any{"type": "resume", "cursor": cursorOf(hello)})
	dev.until("resumed", typ("resumed"))

	run := time.Now().UnixNano()
	subject := fmt.Sprintf("Kettle broken (order %d)", run)
	first := mail.Outgoing{
		From: mail.Address{Name: "Cus Tomer", Email: customer.user}, To: []mail.Address{{Email: support.user}},
		Subject: subject, MessageID: fmt.Sprintf("<c1.%d@customer.example>", run),
		Text: fmt.Sprintf("My kettle (order %d) stopped working after a week.\n\nCus", run),
	}
	sendMail(t, smtpURL.Host, first)
	created, _ := dev.until("the customer's mail in the console", event("message.created", func(ev map[string]any) bool {
		return strings.Contains(mailText(ev["message"].(map[string]any)), fmt.Sprintf("(order %d) stopped working", run))
	}))
	ev := created["event"].(map[string]any)
	convID := ev["conversation"].(map[string]any)["id"].(string)
	head := ev["message"].(map[string]any)["parts"].([]any)[0].(map[string]any)
	if head["type"] != "email" || head["email"].(map[string]any)["subject"] != subject ||
		head["email"].(map[string]any)["message_id"] != first.MessageID {
		t.Fatalf("first part of the ingested mail = %v, want its email headers", head)
	}

	// The agent answers; the reply is sent through Postfix and lands in
	// the customer's mailbox, threaded.
	reply := s.mustCall("POST", "/v1/conversations/"+convID+"/messages", tok, map[string]string{"text": "Sorry! A new kettle is on its way."}, 201)
	dev.until("reply sent", event("message.updated", func(ev map[string]any) bool {
		m := ev["message"].(map[string]any)
		return m["id"] == reply["id"] && m["status"] == "sent"
	}))
	got := awaitMail(t, customer, "Re: "+subject)
	if got.InReplyTo != first.MessageID || !slices.Contains(got.References, first.MessageID) {
		t.Fatalf("reply threading: In-Reply-To %q, References %q; want both to name %s", got.InReplyTo, got.References, first.MessageID)
	}
	if !strings.HasPrefix(got.MessageID, "<sb.") || !strings.HasSuffix(got.MessageID, "@test.local>") {
		t.Fatalf("reply Message-ID %q, want our token under the channel's domain", got.MessageID)
	}
	if got.From.Email != support.user || len(got.To) != 1 || got.To[0].Email != customer.user ||
		!strings.Contains(got.Text, "new kettle") {
		t.Fatalf("reply = from %v to %v text %q", got.From, got.To, got.Text)
	}

	// The customer answers the reply: same conversation.
	answer := mail.Outgoing{
		From: mail.Address{Name: "Cus Tomer", Email: customer.user}, To: []mail.Address{{Email: support.user}},
		Subject: "Re: " + got.Subject, MessageID: fmt.Sprintf("<c2.%d@customer.example>", run),
		InReplyTo: got.MessageID, References: append(slices.Clone(got.References), got.MessageID),
		Text: fmt.Sprintf("Thank you, it arrived (%d).\n\nOn a day, Shop Support wrote:\n> Sorry! A new kettle is on its way.", run),
	}
	sendMail(t, smtpURL.Host, answer)
	joined, _ := dev.until("the customer's answer", event("message.created", func(ev map[string]any) bool {
		return strings.Contains(mailText(ev["message"].(map[string]any)), fmt.Sprintf("it arrived (%d)", run))
	}))
	if id := joined["event"].(map[string]any)["conversation"].(map[string]any)["id"]; id != convID {
		t.Fatalf("the customer's answer went to conversation %v, want %s", id, convID)
	}

	// Resolved, then a late answer (headers only in References, as some
	// clients send): the same conversation opens again.
	s.mustCall("POST", "/v1/conversations/"+convID+"/resolve", tok, nil, 200)
	late := answer
	late.MessageID, late.InReplyTo = fmt.Sprintf("<c3.%d@customer.example>", run), ""
	late.Text = fmt.Sprintf("One more thing: the lid squeaks (%d).", run)
	sendMail(t, smtpURL.Host, late)
	reopened, _ := dev.until("the late answer", event("message.created", func(ev map[string]any) bool {
		return strings.Contains(mailText(ev["message"].(map[string]any)), fmt.Sprintf("lid squeaks (%d)", run))
	}))
	c := reopened["event"].(map[string]any)["conversation"].(map[string]any)
	if c["id"] != convID || c["status"] != "open" {
		t.Fatalf("late answer landed in %v (%v), want %s open again", c["id"], c["status"], convID)
	}
	msgs := s.mustCall("GET", "/v1/conversations/"+convID+"/messages?after_seq=0", tok, nil, 200)
	if n := len(msgs["messages"].([]any)); n != 4 {
		t.Fatalf("conversation holds %d messages, want 4 (mail, reply, answer, late answer)", n)
	}
}
