package email_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/connectors/email"
	"github.com/switchboard-hq/switchboard/connectors/email/imapwatch"
	"github.com/switchboard-hq/switchboard/connectors/email/mail"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/outbound"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// smtpChannelConfig is a channel whose replies go to the test SMTP server
// at addr (no TLS, no AUTH) and whose mailbox is never watched here.
func smtpChannelConfig(addr string) map[string]any {
	return map[string]any{
		"imap_addr": "127.0.0.1:1", "imap_security": "none", "username": "support@acme.example", "password": "pw",
		"smtp_addr": addr, "smtp_security": "none", "smtp_username": "",
		"from_address": "support@acme.example", "from_name": "Acme Support",
		"message_id_domain": "mail.acme.example", "thread_key": testKey,
	}
}

var mailUID uint32

// customerWrites ingests raw as a mail of ch and returns its conversation
// and stored message.
func customerWrites(t *testing.T, e *env, c *email.Connector, ch conv.Channel, raw string) (conv.ConversationID, conv.Message) {
	t.Helper()
	mailUID++
	r := receive(t, e, c, ch, imapwatch.Mail{UIDValidity: 1, UID: mailUID, Raw: []byte(raw)})
	if r.In == nil {
		t.Fatal("not ingested")
	}
	if err := e.hub.PublishInbound(context.Background(), *r.In); err != nil {
		t.Fatal(err)
	}
	m := e.message(t, ch.ID, r.In.ExternalID)
	return m.ConversationID, m
}

// agentReplies stores a reply through core, which publishes it for the
// connector (testHub.lastOutbound).
func agentReplies(t *testing.T, e *env, cv conv.ConversationID, parts ...conv.Part) conv.Message {
	t.Helper()
	m, err := e.hub.out.Reply(context.Background(), e.tenant, outbound.Reply{
		ConversationID: cv, Sender: conv.Sender{Type: conv.SenderAgent, ID: "1", Name: "Ann"}, Parts: parts,
	})
	if err != nil {
		t.Fatalf("Reply: %v", err)
	}
	return m
}

func (e *env) stored(t *testing.T, id conv.MessageID) conv.Message {
	t.Helper()
	var m conv.Message
	e.tx(t, func(tx storage.Tx) error {
		var err error
		m, err = tx.Message(context.Background(), id)
		return err
	})
	return m
}

func parseSent(t *testing.T, m smtpMail) *mail.Message {
	t.Helper()
	msg, err := mail.Parse(bytes.NewReader(m.data), mail.Limits{}, nil)
	if err != nil {
		t.Fatalf("the sent mail does not parse: %v\n%s", err, m.data)
	}
	return msg
}

const janeWrites = "From: Jane Doe <jane@example.com>\r\nTo: Acme Support <support@acme.example>, ops@example.org\r\n" +
	"Cc: boss@example.com, SUPPORT@acme.example\r\nSubject: RE: 回复: Order 1234\r\nMessage-ID: <c1@example.com>\r\n" +
	"References: <r0@example.com>\r\n\r\nWhere is my order?\r\n"

func TestOutboundReply(t *testing.T) {
	e := newEnv(t)
	smtp := startSMTP(t)
	c := e.connector(t, "node-a")
	ch := e.channel(t, smtpChannelConfig(smtp.addr()))
	cv, _ := customerWrites(t, e, c, ch, janeWrites)

	png := []byte("\x89PNG\r\n\x1a\nfake image")
	key, _, err := e.media.Put(e.tenant, "image/png", bytes.NewReader(png), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	reply := agentReplies(t, e, cv,
		conv.Part{Type: conv.PartText, Text: "Hello Jane,\n\nit ships <today> & tomorrow.\nThanks"},
		conv.Part{Type: conv.PartImage, URL: e.media.URL(key), Name: "label.png", MIME: "image/png", Size: int64(len(png))})
	if err := c.Outbound(context.Background(), e.hub.lastOutbound(t)); err != nil {
		t.Fatal(err)
	}

	got := smtp.received()
	if len(got) != 1 {
		t.Fatalf("%d mails sent, want 1", len(got))
	}
	want(t, "envelope", [2]any{got[0].from, got[0].rcpts}, [2]any{"support@acme.example", []string{"jane@example.com", "ops@example.org", "boss@example.com"}})
	msg := parseSent(t, got[0])
	want(t, "subject", msg.Subject, "Re: Order 1234")
	want(t, "in-reply-to", msg.InReplyTo, "<c1@example.com>")
	want(t, "references", msg.References, []string{"<r0@example.com>", "<c1@example.com>"})
	want(t, "from", msg.From, mail.Address{Name: "Acme Support", Email: "support@acme.example"})
	want(t, "to", msg.To, []mail.Address{{Name: "Jane Doe", Email: "jane@example.com"}})
	want(t, "cc", msg.Cc, []mail.Address{{Email: "ops@example.org"}, {Email: "boss@example.com"}})
	gotConv, gotMsg, ok := mail.ParseTokenMessage(msg.MessageID, "mail.acme.example", []byte(testKey))
	if !ok || gotConv != cv || gotMsg != reply.ID {
		t.Fatalf("Message-ID %s carries (%v, %v, %v), want (%v, %v)", msg.MessageID, gotConv, gotMsg, ok, cv, reply.ID)
	}
	contains(t, "text", msg.Text, "it ships <today> & tomorrow.\nThanks")
	contains(t, "html", msg.HTML, "it ships &lt;today&gt; &amp; tomorrow.<br>")
	if len(msg.Attachments) != 1 || !bytes.Equal(msg.Attachments[0].Data, png) || msg.Attachments[0].Filename != "label.png" {
		t.Fatalf("attachments = %+v", msg.Attachments)
	}

	stored := e.stored(t, reply.ID)
	if stored.Status != conv.MsgSent || stored.ExternalID != msg.MessageID {
		t.Fatalf("reply stored as %s with external id %q, want sent with %s", stored.Status, stored.ExternalID, msg.MessageID)
	}

	// The bus delivers it again: nothing is sent twice, by this node or
	// by another (which has no memory of sending it).
	if err := c.Outbound(context.Background(), e.hub.lastOutbound(t)); err != nil {
		t.Fatal(err)
	}
	if err := e.connector(t, "node-b").Outbound(context.Background(), e.hub.lastOutbound(t)); err != nil {
		t.Fatal(err)
	}
	if n := len(smtp.received()); n != 1 {
		t.Fatalf("%d mails sent after redelivery, want 1", n)
	}

	// The customer answers our reply from a client that keeps only
	// In-Reply-To; it lands in the same conversation.
	next, _ := customerWrites(t, e, c, ch, "From: jane@example.com\r\nSubject: Re: Order 1234\r\nMessage-ID: <c2@example.com>\r\n"+
		"In-Reply-To: "+msg.MessageID+"\r\n\r\nthanks\r\n")
	if next != cv {
		t.Fatalf("the answer to our reply went to %s, want %s", next, cv)
	}
}

func TestOutboundOverrides(t *testing.T) {
	e := newEnv(t)
	smtp := startSMTP(t)
	c := e.connector(t, "node-a")
	ch := e.channel(t, smtpChannelConfig(smtp.addr()))
	cv, _ := customerWrites(t, e, c, ch, janeWrites)

	agentReplies(t, e, cv,
		conv.Part{Type: conv.PartEmail, Email: &conv.Email{Subject: "Your refund", To: []string{"Boss <boss@example.com>"}}},
		conv.Part{Type: conv.PartText, Text: "Refunded."})
	if err := c.Outbound(context.Background(), e.hub.lastOutbound(t)); err != nil {
		t.Fatal(err)
	}
	got := smtp.received()
	if len(got) != 1 {
		t.Fatalf("%d mails sent", len(got))
	}
	want(t, "recipients", got[0].rcpts, []string{"boss@example.com"})
	msg := parseSent(t, got[0])
	want(t, "subject", msg.Subject, "Your refund")
	want(t, "to", msg.To, []mail.Address{{Name: "Boss", Email: "boss@example.com"}})
	want(t, "in-reply-to", msg.InReplyTo, "<c1@example.com>")
}

// TestOutboundReplyTo: a mail with Reply-To (a web form sending for the
// customer, a shared inbox) is answered there, and the form's own address
// is not copied.
func TestOutboundReplyTo(t *testing.T) {
	e := newEnv(t)
	smtp := startSMTP(t)
	c := e.connector(t, "node-a")
	ch := e.channel(t, smtpChannelConfig(smtp.addr()))
	cv, _ := customerWrites(t, e, c, ch, "From: Shop Form <forms@shop-forms.example>\r\nReply-To: Jane Doe <jane@example.com>\r\n"+
		"To: support@acme.example\r\nSubject: Contact form\r\nMessage-ID: <f1@shop-forms.example>\r\n\r\nPlease call me.\r\n")
	agentReplies(t, e, cv, conv.Part{Type: conv.PartText, Text: "Calling you now."})
	if err := c.Outbound(context.Background(), e.hub.lastOutbound(t)); err != nil {
		t.Fatal(err)
	}
	got := smtp.received()
	if len(got) != 1 {
		t.Fatalf("%d mails sent, want 1", len(got))
	}
	want(t, "recipients", got[0].rcpts, []string{"jane@example.com"})
	msg := parseSent(t, got[0])
	want(t, "to", msg.To, []mail.Address{{Name: "Jane Doe", Email: "jane@example.com"}})
	want(t, "in-reply-to", msg.InReplyTo, "<f1@shop-forms.example>")
}

// TestOutboundStartsThread: an agent writes first (no mail to answer):
// the mail goes to the contact's address.
func TestOutboundStartsThread(t *testing.T) {
	e := newEnv(t)
	smtp := startSMTP(t)
	c := e.connector(t, "node-a")
	ch := e.channel(t, smtpChannelConfig(smtp.addr()))
	in := conv.Inbound{TenantID: e.tenant, ChannelID: ch.ID, ExternalID: "imported-1", From: email.EmailIdentity("New@Example.com"),
		Parts: []conv.Part{{Type: conv.PartText, Text: "call me back"}}, SentAt: time.Now()}
	if err := e.hub.PublishInbound(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	cv := e.message(t, ch.ID, "imported-1").ConversationID

	agentReplies(t, e, cv, conv.Part{Type: conv.PartText, Text: "Hello"})
	if err := c.Outbound(context.Background(), e.hub.lastOutbound(t)); err != nil {
		t.Fatal(err)
	}
	agentReplies(t, e, cv, conv.Part{Type: conv.PartEmail, Email: &conv.Email{Subject: "Your call"}}, conv.Part{Type: conv.PartText, Text: "Again"})
	if err := c.Outbound(context.Background(), e.hub.lastOutbound(t)); err != nil {
		t.Fatal(err)
	}
	got := smtp.received()
	if len(got) != 2 {
		t.Fatalf("%d mails sent, want 2", len(got))
	}
	first, second := parseSent(t, got[0]), parseSent(t, got[1])
	want(t, "to", first.To, []mail.Address{{Email: "new@example.com"}})
	want(t, "subject", first.Subject, "(no subject)")
	want(t, "in-reply-to", first.InReplyTo, "")
	want(t, "subject", second.Subject, "Your call")
}

func TestOutboundFailures(t *testing.T) {
	e := newEnv(t)
	smtp := startSMTP(t)
	c := e.connector(t, "node-a")
	ch := e.channel(t, smtpChannelConfig(smtp.addr()))
	cv, _ := customerWrites(t, e, c, ch, janeWrites)
	ctx := context.Background()

	t.Run("refused for good", func(t *testing.T) {
		smtp.refuse("550 5.1.1 <jane@example.com>: Recipient address rejected: User unknown", "")
		defer smtp.refuse("", "")
		reply := agentReplies(t, e, cv, conv.Part{Type: conv.PartText, Text: "hi"})
		if err := c.Outbound(ctx, e.hub.lastOutbound(t)); err != nil {
			t.Fatalf("Outbound = %v; a permanent refusal is reported, not retried", err)
		}
		m := e.stored(t, reply.ID)
		if m.Status != conv.MsgFailed || !strings.Contains(m.StatusReason, "550 5.1.1 <jane@example.com>: Recipient address rejected") {
			t.Fatalf("reply %s %q, want failed with the server's reply", m.Status, m.StatusReason)
		}
	})

	t.Run("refused for now, then taken", func(t *testing.T) {
		smtp.refuse("451 4.3.0 Try again later", "")
		reply := agentReplies(t, e, cv, conv.Part{Type: conv.PartText, Text: "hi again"})
		out := e.hub.lastOutbound(t)
		if err := c.Outbound(ctx, out); err == nil {
			t.Fatal("Outbound = nil; a temporary failure must return an error so the bus retries")
		}
		m := e.stored(t, reply.ID)
		if m.Status != conv.MsgPending || !strings.HasPrefix(m.StatusReason, "Retrying — 451 4.3.0 Try again later") {
			t.Fatalf("reply %s %q, want pending with the reason", m.Status, m.StatusReason)
		}
		before := len(smtp.received())
		smtp.refuse("", "")
		if err := c.Outbound(ctx, out); err != nil {
			t.Fatal(err)
		}
		if m := e.stored(t, reply.ID); m.Status != conv.MsgSent || len(smtp.received()) != before+1 {
			t.Fatalf("after the retry: %s, %d mails", m.Status, len(smtp.received())-before)
		}
	})

	t.Run("attachment that is not ours", func(t *testing.T) {
		otherKey, _, err := e.media.Put(e.tenant+1, "image/png", strings.NewReader("\x89PNG"), 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range []string{"https://evil.example/x.png", e.media.URL(otherKey)} {
			before := len(smtp.received())
			reply := agentReplies(t, e, cv, conv.Part{Type: conv.PartImage, URL: u, Name: "x.png"})
			if err := c.Outbound(ctx, e.hub.lastOutbound(t)); err != nil {
				t.Fatal(err)
			}
			m := e.stored(t, reply.ID)
			if m.Status != conv.MsgFailed || !strings.Contains(m.StatusReason, "not a file uploaded to this workspace") || len(smtp.received()) != before {
				t.Fatalf("reply with %s: %s %q", u, m.Status, m.StatusReason)
			}
		}
	})

	t.Run("channel disabled", func(t *testing.T) {
		reply := agentReplies(t, e, cv, conv.Part{Type: conv.PartText, Text: "late"})
		ch.Disabled = true
		e.update(t, ch)
		defer func() {
			ch.Disabled = false
			e.update(t, ch)
		}()
		if err := c.Outbound(ctx, e.hub.lastOutbound(t)); err != nil {
			t.Fatal(err)
		}
		if m := e.stored(t, reply.ID); m.Status != conv.MsgFailed || !strings.Contains(m.StatusReason, "disabled") {
			t.Fatalf("reply %s %q, want failed: channel disabled", m.Status, m.StatusReason)
		}
	})
}
