package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/connectors/email/imapwatch/imaptest"
	"github.com/switchboard-hq/switchboard/connectors/email/mail"
	"github.com/switchboard-hq/switchboard/connectors/email/smtpsend"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// emailNode is a node with an email channel on a mailbox and an agent's
// websocket open and resumed.
type emailNode struct {
	s   *server
	dev *ws
	// created is when the channel was created: the watcher starts within
	// --channel-rescan of it.
	created time.Time
}

// startEmailNode starts a node, creates an email channel watching folder
// of acct (sending through smtpAddr; importing the mail already there or
// not) and connects the demo agent.
func startEmailNode(tb testing.TB, acct mailAccount, folder, smtpAddr string, importExisting bool) *emailNode {
	tb.Helper()
	s := startServer(tb, "--channel-rescan", "100ms")
	tok := s.login("demo", "agent@demo.local", s.password)
	dev := s.dial("/v1/agent/ws?token=" + tok)
	hello := dev.next()
	dev.send(map[string]any{"type": "resume", "cursor": cursorOf(hello)})
	dev.until("resumed", typ("resumed"))
	cfg, _ := json.Marshal(map[string]any{
		"imap_addr": acct.addr, "imap_security": "none", "username": acct.user, "password": acct.password,
		"mailbox": folder, "smtp_addr": smtpAddr, "smtp_security": "none", "smtp_username": "",
		"from_address": acct.user, "import_existing": importExisting,
	})
	created := time.Now()
	if err := run(context.Background(), []string{"channel", "create", "--data", s.data, "--tenant", "demo", "--kind", "email",
		"--name", "Bench mailbox", "--config", string(cfg)}, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		tb.Fatal(err)
	}
	if !importExisting {
		waitMailboxConnected(tb, s)
	}
	return &emailNode{s: s, dev: dev, created: created}
}

// awaitMarkers reads the agent's frames until a message.created carrying
// each of markers has arrived, and returns when each did.
func (n *emailNode) awaitMarkers(tb testing.TB, markers map[string]int, timeout time.Duration) []time.Time {
	tb.Helper()
	at := make([]time.Time, len(markers))
	left := len(markers)
	deadline := time.Now().Add(timeout)
	for left > 0 {
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d mails not in the console after %s", left, len(markers), timeout)
		}
		f := n.dev.next()
		ev, _ := f["event"].(map[string]any)
		if f["type"] != "event" || ev == nil || ev["type"] != "message.created" {
			continue
		}
		text := mailText(ev["message"].(map[string]any))
		for m, i := range markers {
			if at[i].IsZero() && strings.Contains(text, m) {
				at[i] = time.Now()
				left--
				break
			}
		}
	}
	return at
}

// BenchmarkEmailArrival: mails sent one by one through Postfix into the
// watched INBOX (IDLE); reported is the time from Postfix accepting a mail
// to its message.created frame at the agent's websocket.
//
//	go test -run XXX -bench EmailArrival -benchtime 1x ./cmd/switchboard/
func BenchmarkEmailArrival(b *testing.B) {
	support := mailAccountFrom(b, "SWITCHBOARD_TEST_IMAP")
	smtpURL, err := url.Parse(testenv.Require(b, "SWITCHBOARD_TEST_SMTP"))
	if err != nil {
		b.Fatal(err)
	}
	const mails = 100
	for b.Loop() {
		n := startEmailNode(b, support, "INBOX", smtpURL.Host, false)
		run := time.Now().UnixNano()
		markers := map[string]int{}
		sent := make([]time.Time, mails)
		errs := make(chan error, 1)
		// One mail every 100 ms, as customers write: each is measured
		// alone, not behind a queue of the benchmark's own making.
		pace := time.NewTicker(100 * time.Millisecond)
		defer pace.Stop()
		go func() {
			defer close(errs)
			for i := range mails {
				<-pace.C
				o := mail.Outgoing{From: mail.Address{Email: "customer@test.local"}, To: []mail.Address{{Email: support.user}},
					Subject: fmt.Sprintf("arrival %d/%d", run, i), Text: fmt.Sprintf("arrival marker %d-%d.", run, i)}
				raw, err := o.Bytes()
				if err == nil {
					_, err = smtpsend.Send(context.Background(), smtpsend.Config{Addr: smtpURL.Host, Security: smtpsend.SecurityNone},
						o.From.Email, []string{support.user}, raw)
				}
				if err != nil {
					errs <- err
					return
				}
				sent[i] = time.Now()
			}
		}()
		for i := range mails {
			markers[fmt.Sprintf("arrival marker %d-%d.", run, i)] = i
		}
		at := n.awaitMarkers(b, markers, 2*time.Minute)
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
		lat := make([]time.Duration, mails)
		for i := range lat {
			lat[i] = at[i].Sub(sent[i])
		}
		b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
	}
}

// BenchmarkEmailBacklog: 1,000 mails already in a folder when the channel
// is created; reported is how fast they reach the agent's console.
//
//	go test -run XXX -bench EmailBacklog -benchtime 1x ./cmd/switchboard/
func BenchmarkEmailBacklog(b *testing.B) {
	support := mailAccountFrom(b, "SWITCHBOARD_TEST_IMAP")
	raw := testenv.Require(b, "SWITCHBOARD_TEST_IMAP")
	smtpURL, err := url.Parse(testenv.Require(b, "SWITCHBOARD_TEST_SMTP"))
	if err != nil {
		b.Fatal(err)
	}
	const mails = 1000
	for b.Loop() {
		folder := imaptest.Folder(b, raw)
		run := time.Now().UnixNano()
		markers := map[string]int{}
		for i := range mails {
			o := mail.Outgoing{From: mail.Address{Email: fmt.Sprintf("customer%d@example.com", i%50)},
				To: []mail.Address{{Email: support.user}}, Subject: fmt.Sprintf("backlog %d", i),
				Text: fmt.Sprintf("backlog marker %d-%d.", run, i)}
			m, err := o.Bytes()
			if err != nil {
				b.Fatal(err)
			}
			folder.Append(b, m)
			markers[fmt.Sprintf("backlog marker %d-%d.", run, i)] = i
		}
		n := startEmailNode(b, support, folder.Name, smtpURL.Host, true)
		at := n.awaitMarkers(b, markers, 5*time.Minute)
		start, last := n.created, n.created
		for _, t := range at {
			if t.After(last) {
				last = t
			}
		}
		el := last.Sub(start)
		b.ReportMetric(float64(mails)/el.Seconds(), "mails/s")
		b.ReportMetric(el.Seconds(), "s-total")
	}
}
