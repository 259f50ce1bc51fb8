package email_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/connectors/email/imapwatch/imaptest"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// TestRestartsLoseNothing: 5,000 mails arrive in a Dovecot folder in 20
// rounds; in each, the watcher is started, the round's mail is appended
// while it watches, and the watcher is killed (its context cut, wherever
// it is: mid-download, between the bus and the saved position) after a
// random share of the mail has gone through. Then the folder is recreated
// with the same 5,000 mails under a new UIDVALIDITY, as after a restore:
// the re-scan recognizes every one by its hash and hands none to the bus
// again. Every mail is stored exactly once: none lost, none twice.
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
	ids := make([]string, total) // external ids: the hash of each mail's bytes
	for i := range mails {
		mails[i] = []byte(fmt.Sprintf("From: Customer %d <c%d@example.com>\r\nTo: support@acme.example\r\n"+
			"Subject: restart %d-%d\r\nMessage-ID: <r%d.%d@example.com>\r\nDate: %s\r\n\r\nmail %d of the restart test.\r\n",
			i%50, i%50, run0, i, run0, i, time.Now().Format(time.RFC1123Z), i))
		sum := sha256.Sum256(mails[i])
		ids[i] = "sha256:" + hex.EncodeToString(sum[:])
	}
	// stored counts the appended mails the store holds, asking only about
	// the ones not seen stored yet. (What was published is not the measure:
	// a watcher killed between the store and the publish's return has
	// stored a mail it never saw acknowledged.)
	seen := make([]bool, total)
	appended, storedN := 0, 0
	stored := func() int {
		// A read transaction: it must not hold the store's writer from
		// ingest while it looks.
		err := e.store.Read(context.Background(), e.tenant, func(tx storage.Tx) error {
			for i := range appended {
				if seen[i] {
					continue
				}
				_, err := tx.MessageByExternalID(context.Background(), ch.ID, ids[i])
				if errors.Is(err, conv.ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				seen[i] = true
				storedN++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return storedN
	}

	per := total / rounds
	for r := range rounds {
		before := stored()
		stop := run(t, e.connector(t, "node-a"))
		folder.AppendAll(t, mails[r*per:(r+1)*per])
		appended = (r + 1) * per
		// Kill it somewhere in the round's mail: after 1 to all of it.
		target := before + 1 + rng.IntN(per)
		testenv.WaitFor(t, 2*time.Minute, fmt.Sprintf("round %d: %d mails through", r, target), func() bool {
			return stored() >= target
		})
		stop()
	}
	stop := run(t, e.connector(t, "node-a"))
	testenv.WaitFor(t, 3*time.Minute, "all mail through after the last restart", func() bool { return stored() == total })
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
	if again := len(e.hub.published()) - published; again != 0 {
		t.Errorf("the re-scan handed %d mails to the bus again, want none (each is known by its hash)", again)
	}

	// Each mail once, each the first and only message of its own thread:
	// a mail stored twice would have made a second message in its thread
	// (same Message-ID) or a second conversation of one sender and
	// subject.
	for _, id := range ids {
		m := e.message(t, ch.ID, id)
		if m.Direction != conv.In || m.Seq != 1 {
			t.Fatalf("mail %s stored as %+v, want the first message of its own thread", id, m)
		}
		if c := e.conversation(t, m.ConversationID); c.LastSeq != 1 {
			t.Fatalf("mail %s's conversation holds %d messages, want 1", id, c.LastSeq)
		}
	}
}
