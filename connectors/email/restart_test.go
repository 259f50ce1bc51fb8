package email_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/connectors/email/imapwatch/imaptest"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// TestRestartsLoseNothing: 5,000 mails arrive in a Dovecot folder in 20
// rounds; in each, the watcher is started, the round's mail is appended
// while it watches, and the watcher is killed (its context cut, wherever
// it is: mid-download, between the bus and the saved position) after a
// random share of the mail has gone through. Then the folder is recreated
// with the same 5,000 mails under a new UIDVALIDITY, as after a restore.
// Every mail is stored exactly once: none lost, none twice.
func TestRestartsLoseNothing(t *testing.T) {
	raw := testenv.Require(t, "SWITCHBOARD_TEST_IMAP")
	const (
		total  = 5000
		rounds = 20
	)
	folder := imaptest.Folder(t, raw)
	e := newEnv(t)
	ch := e.channel(t, imapChannelConfig(folder, folder.Password))
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	run0 := time.Now().UnixNano()

	mails := make([][]byte, total)
	want := make(map[string]bool, total) // external ids: the hash of each mail's bytes
	for i := range mails {
		mails[i] = []byte(fmt.Sprintf("From: Customer %d <c%d@example.com>\r\nTo: support@acme.example\r\n"+
			"Subject: restart %d-%d\r\nMessage-ID: <r%d.%d@example.com>\r\nDate: %s\r\n\r\nmail %d of the restart test.\r\n",
			i%50, i%50, run0, i, run0, i, time.Now().Format(time.RFC1123Z), i))
		sum := sha256.Sum256(mails[i])
		want["sha256:"+hex.EncodeToString(sum[:])] = true
	}
	stored := func() map[string]bool {
		got := map[string]bool{}
		for _, in := range e.hub.published() {
			if in.ChannelID == ch.ID {
				got[in.ExternalID] = true
			}
		}
		return got
	}

	per := total / rounds
	for r := range rounds {
		before := len(stored())
		stop := run(t, e.connector(t, "node-a"))
		folder.AppendAll(t, mails[r*per:(r+1)*per])
		// Kill it somewhere in the round's mail: after 1 to all of it.
		target := before + 1 + rng.IntN(per)
		testenv.WaitFor(t, 2*time.Minute, fmt.Sprintf("round %d: %d mails through", r, target), func() bool {
			return len(stored()) >= target
		})
		stop()
	}
	stop := run(t, e.connector(t, "node-a"))
	testenv.WaitFor(t, 3*time.Minute, "all mail through after the last restart", func() bool { return len(stored()) == total })
	stop()
	validity := e.position(t, ch.ID).UIDValidity

	// The server renumbers the folder: the same mails under new UIDs.
	folder.Recreate(t)
	folder.AppendAll(t, mails)
	published := len(e.hub.published())
	run(t, e.connector(t, "node-a"))
	testenv.WaitFor(t, 3*time.Minute, "the re-scan of the renumbered folder", func() bool {
		p := e.position(t, ch.ID)
		return p.UIDValidity != validity && p.UID == total && p.RescanUntil == 0
	})
	if again := len(e.hub.published()) - published; again != total {
		t.Errorf("the re-scan handed %d mails to the bus, want all %d again (each stored once by its hash)", again, total)
	}

	got := stored()
	if len(got) != total {
		t.Fatalf("%d distinct mails stored, want %d", len(got), total)
	}
	for id := range want {
		if !got[id] {
			t.Fatalf("mail %s never stored", id)
		}
		if m := e.message(t, ch.ID, id); m.Direction != conv.In || m.Seq != 1 {
			t.Fatalf("mail %s stored as %+v, want the first message of its own thread", id, m)
		}
	}
}
