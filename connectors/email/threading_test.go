package email_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/connectors/email/imapwatch"
	"github.com/switchboard-hq/switchboard/connectors/email/mail"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// TestThreading runs mails through the mapping and core's real ingest and
// checks which conversation each lands in.
func TestThreading(t *testing.T) {
	e := newEnv(t)
	c := e.connector(t, "node-a")
	ch := goldenChannel(t, e)
	uid := uint32(0)
	ingestMail := func(t *testing.T, headers string) conv.Message {
		t.Helper()
		uid++
		raw := []byte(headers + fmt.Sprintf("Date: %s\r\n\r\nbody %d\r\n", time.Now().Format(time.RFC1123Z), uid))
		r := receive(t, e, c, ch, imapwatch.Mail{UIDValidity: 1, UID: uid, Raw: raw})
		if r.In == nil {
			t.Fatal("not ingested")
		}
		if err := e.hub.PublishInbound(context.Background(), *r.In); err != nil {
			t.Fatalf("ingest: %v", err)
		}
		return e.message(t, ch.ID, r.In.ExternalID)
	}

	a := ingestMail(t, "From: Jane <jane@example.com>\r\nSubject: Order 1234\r\nMessage-ID: <a@example.com>\r\n")
	x := a.ConversationID
	if a.Seq != 1 {
		t.Fatalf("first mail has seq %d, want a new conversation", a.Seq)
	}
	steps := []struct {
		name    string
		headers string
		want    func(m conv.Message) bool
		before  func(t *testing.T)
		after   func(t *testing.T, m conv.Message)
	}{
		{name: "reply by In-Reply-To",
			headers: "From: jane@example.com\r\nSubject: Re: Order 1234\r\nMessage-ID: <b@example.com>\r\nIn-Reply-To: <a@example.com>\r\n",
			want:    func(m conv.Message) bool { return m.ConversationID == x }},
		{name: "reply by References only, newest known first",
			headers: "From: jane@example.com\r\nSubject: something else\r\nMessage-ID: <b2@example.com>\r\nReferences: <unknown@example.com> <b@example.com> <nothing@example.com>\r\n",
			want:    func(m conv.Message) bool { return m.ConversationID == x }},
		{name: "client that drops the headers: same sender and subject",
			headers: "From: JANE@example.com\r\nSubject: RE: 回复: Order 1234\r\nMessage-ID: <c@example.com>\r\n",
			want:    func(m conv.Message) bool { return m.ConversationID == x }},
		{name: "same subject from someone else",
			headers: "From: bob@example.com\r\nSubject: Re: Order 1234\r\nMessage-ID: <d@example.com>\r\n",
			want:    func(m conv.Message) bool { return m.ConversationID != x && m.Seq == 1 }},
		{name: "a second thread of the same customer",
			headers: "From: jane@example.com\r\nSubject: Invoice\r\nMessage-ID: <e@example.com>\r\n",
			want:    func(m conv.Message) bool { return m.ConversationID != x && m.Seq == 1 }},
		{name: "subject match reopens within the window",
			before:  func(t *testing.T) { e.resolve(t, x) },
			headers: "From: jane@example.com\r\nSubject: Re: Order 1234\r\nMessage-ID: <f@example.com>\r\n",
			want:    func(m conv.Message) bool { return m.ConversationID == x },
			after: func(t *testing.T, m conv.Message) {
				if c := e.conversation(t, x); c.Status != conv.StatusOpen {
					t.Errorf("conversation is %s, want reopened", c.Status)
				}
			}},
		{name: "an auto-reply is recorded without reopening",
			before:  func(t *testing.T) { e.resolve(t, x) },
			headers: "From: jane@example.com\r\nSubject: Automatic reply: Order 1234\r\nMessage-ID: <g@example.com>\r\nIn-Reply-To: <f@example.com>\r\nAuto-Submitted: auto-replied\r\n",
			want:    func(m conv.Message) bool { return m.ConversationID == x && m.Sender.Type == conv.SenderSystem },
			after: func(t *testing.T, m conv.Message) {
				if c := e.conversation(t, x); c.Status != conv.StatusResolved {
					t.Errorf("conversation is %s, want still resolved", c.Status)
				}
			}},
		{name: "our token names the conversation, whoever writes",
			headers: "From: colleague@example.net\r\nSubject: fwd\r\nMessage-ID: <h@example.net>\r\nIn-Reply-To: " +
				mail.MessageIDFor("mail.acme.example", x, 77, []byte(testKey)) + "\r\n",
			want: func(m conv.Message) bool { return m.ConversationID == x }},
		{name: "a forged token is ignored",
			headers: "From: eve@example.net\r\nSubject: hi\r\nMessage-ID: <i@example.net>\r\nIn-Reply-To: " +
				mail.MessageIDFor("mail.acme.example", x, 77, []byte("another-key-0123456789")) + "\r\n",
			want: func(m conv.Message) bool { return m.ConversationID != x && m.Seq == 1 }},
		{name: "subject match past the window opens a new conversation",
			before: func(t *testing.T) {
				e.tx(t, func(tx storage.Tx) error {
					cv, err := tx.Conversation(context.Background(), x)
					if err != nil {
						return err
					}
					long := time.Now().Add(-100 * time.Hour).UTC()
					cv.Status, cv.ResolvedAt = conv.StatusResolved, &long
					return tx.UpdateConversation(context.Background(), cv)
				})
			},
			headers: "From: jane@example.com\r\nSubject: Re: Order 1234\r\nMessage-ID: <j@example.com>\r\n",
			want:    func(m conv.Message) bool { return m.ConversationID != x && m.Seq == 1 }},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.before != nil {
				s.before(t)
			}
			m := ingestMail(t, s.headers)
			if !s.want(m) {
				t.Fatalf("message landed in conversation %s at seq %d (first thread: %s)", m.ConversationID, m.Seq, x)
			}
			if s.after != nil {
				s.after(t, m)
			}
		})
	}
}

// TestBounceMarksReplyFailed: a DSN for one of our replies, through the
// real pipeline, fails the reply and lands in its conversation.
func TestBounceMarksReplyFailed(t *testing.T) {
	e := newEnv(t)
	smtp := startSMTP(t)
	c := e.connector(t, "node-a")
	ch := e.channel(t, smtpChannelConfig(smtp.addr()))
	cv, _ := customerWrites(t, e, c, ch, "From: Jane <jane@example.com>\r\nTo: support@acme.example\r\nSubject: Order\r\nMessage-ID: <q@example.com>\r\n\r\nwhere is it?\r\n")
	reply := agentReplies(t, e, cv, conv.Part{Type: conv.PartText, Text: "On its way."})
	if err := c.Outbound(context.Background(), e.hub.lastOutbound(t)); err != nil {
		t.Fatal(err)
	}
	sent := e.stored(t, reply.ID)
	if sent.Status != conv.MsgSent {
		t.Fatalf("reply is %s, want sent", sent.Status)
	}
	e.resolve(t, cv)

	dsn := fmt.Sprintf("From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\r\nTo: support@acme.example\r\n"+
		"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn1@mx.example.com>\r\nAuto-Submitted: auto-replied\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"+
		"--B\r\nContent-Type: text/plain\r\n\r\nCould not deliver.\r\n"+
		"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n"+
		"Final-Recipient: rfc822; jane@example.com\r\nAction: failed\r\nStatus: 5.2.2\r\nDiagnostic-Code: smtp; 552 5.2.2 mailbox full\r\n\r\n"+
		"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: support@acme.example\r\nMessage-ID: %s\r\nSubject: Re: Order\r\n\r\n"+
		"--B--\r\n", sent.ExternalID)
	r := receive(t, e, c, ch, imapwatch.Mail{UIDValidity: 1, UID: 99, Raw: []byte(dsn)})
	if r.Delivery == nil {
		t.Fatal("no failed delivery for the bounce")
	}
	if err := e.hub.PublishDelivery(context.Background(), *r.Delivery); err != nil {
		t.Fatal(err)
	}
	if err := e.hub.PublishInbound(context.Background(), *r.In); err != nil {
		t.Fatal(err)
	}
	const reason = "bounced by jane@example.com: 5.2.2 552 5.2.2 mailbox full"
	reports := e.hub.reports()
	if last := reports[len(reports)-1]; last.MessageID != reply.ID || last.Status != conv.MsgFailed || last.Reason != reason {
		t.Fatalf("last delivery report = %+v, want the reply failed: %s", last, reason)
	}
	// Core decides whether a sent message may still fail (a bounce comes
	// after the server took the mail); where it may, the reply shows it.
	if conv.Advances(conv.MsgSent, conv.MsgFailed) {
		if failed := e.stored(t, reply.ID); failed.Status != conv.MsgFailed || failed.StatusReason != reason {
			t.Fatalf("reply is %s %q, want failed with the bounce", failed.Status, failed.StatusReason)
		}
	}
	m := e.message(t, ch.ID, r.In.ExternalID)
	if m.ConversationID != cv || m.Sender.Type != conv.SenderSystem {
		t.Fatalf("bounce stored in %s as %s, want the reply's conversation %s as system", m.ConversationID, m.Sender.Type, cv)
	}
	if got := e.conversation(t, cv); got.Status != conv.StatusResolved {
		t.Errorf("a bounce reopened the conversation")
	}

	// A delay report is recorded, and fails nothing.
	delayed := []byte(strings.NewReplacer("Action: failed", "Action: delayed", "dsn1@", "dsn2@").Replace(dsn))
	r = receive(t, e, c, ch, imapwatch.Mail{UIDValidity: 1, UID: 100, Raw: delayed})
	if r.Delivery != nil || r.In == nil || !r.In.System {
		t.Fatalf("delayed DSN: delivery %+v, envelope %+v", r.Delivery, r.In)
	}
}
