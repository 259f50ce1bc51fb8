package storagetest

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// testChannels: every field round-trips through Channel and Channels, with
// secrets opened in both (connectors load all channels with their secrets).
func testChannels(t *testing.T, h Harness) {
	e := newEnv(t, h)
	tenant := e.tenant("acme")
	group := conv.NewID[conv.GroupID](e.ids)
	e.tx(tenant, func(tx storage.Tx) error {
		return tx.CreateGroup(e.ctx, conv.Group{ID: group, TenantID: tenant, Name: "sales", CreatedAt: now()})
	})
	full := conv.Channel{
		ID: conv.NewID[conv.ChannelID](e.ids), TenantID: tenant, Kind: conv.KindWeChatOA, Name: "公众号",
		Config:    json.RawMessage(`{"app_id":"wx123","menu":[1,2],"nested":{"a":true}}`),
		Secrets:   map[string]string{"app_secret": "s3cr3t-app", "aes_key": "k€y with spaces"},
		GroupID:   group,
		CreatedAt: now(),
	}
	bare := conv.Channel{ID: conv.NewID[conv.ChannelID](e.ids), TenantID: tenant, Kind: conv.KindWebchat,
		Name: "widget", CreatedAt: now()}
	for _, c := range []conv.Channel{full, bare} {
		e.tx(tenant, func(tx storage.Tx) error { return tx.CreateChannel(e.ctx, c) })
	}
	e.tx(tenant, func(tx storage.Tx) error {
		for _, want := range []conv.Channel{full, bare} {
			got, err := tx.Channel(e.ctx, want.ID)
			ok(t, "Channel", err)
			same(t, "Channel "+want.Name, normChannel(t, got), normChannel(t, want))
		}
		list, err := tx.Channels(e.ctx)
		ok(t, "Channels", err)
		for i := range list {
			list[i] = normChannel(t, list[i])
		}
		slices.SortFunc(list, func(a, b conv.Channel) int { return int(a.ID - b.ID) })
		same(t, "Channels", list, []conv.Channel{normChannel(t, full), normChannel(t, bare)})

		_, err = tx.Channel(e.ctx, 424242)
		wantKind(t, "Channel(unknown)", err, conv.ErrNotFound)
		return nil
	})
	// A failed write ends its transaction (Postgres aborts it), so each
	// expected failure gets a Tx of its own.
	dup := bare
	dup.Name = "again"
	wantKind(t, "CreateChannel(duplicate id)",
		e.txErr(tenant, func(tx storage.Tx) error { return tx.CreateChannel(e.ctx, dup) }), conv.ErrConflict)
}

// testUpdateChannel: name, config, group, disabled and the secret set are
// rewritten (a secret left out is gone, a new one is sealed and opens);
// kind and creation time stay; another tenant's channel is ErrNotFound.
func testUpdateChannel(t *testing.T, h Harness) {
	e := newEnv(t, h)
	tenant, other := e.tenant("acme"), e.tenant("globex")
	c := conv.Channel{ID: conv.NewID[conv.ChannelID](e.ids), TenantID: tenant, Kind: conv.KindWeChatOA, Name: "OA",
		Config:  json.RawMessage(`{"app_id":"wx1"}`),
		Secrets: map[string]string{"app_secret": "one", "encoding_aes_key": "old-key"}, CreatedAt: now()}
	e.tx(tenant, func(tx storage.Tx) error { return tx.CreateChannel(e.ctx, c) })
	upd := c
	upd.Name, upd.Config, upd.Disabled = "OA (rotated)", json.RawMessage(`{"app_id":"wx1","api_base":"http://egress"}`), true
	upd.Kind, upd.CreatedAt = conv.KindEmail, now().Add(time.Hour) // must not change
	upd.Secrets = map[string]string{"app_secret": "two", "encoding_aes_key": "new-key", "previous_encoding_aes_key": "old-key"}
	e.tx(tenant, func(tx storage.Tx) error { return tx.UpdateChannel(e.ctx, upd) })
	want := upd
	want.Kind, want.CreatedAt = c.Kind, c.CreatedAt
	e.tx(tenant, func(tx storage.Tx) error {
		got, err := tx.Channel(e.ctx, c.ID)
		ok(t, "Channel", err)
		same(t, "updated channel", normChannel(t, got), normChannel(t, want))
		return nil
	})
	// Back on, and a secret dropped.
	want.Disabled, want.Secrets = false, map[string]string{"app_secret": "two"}
	e.tx(tenant, func(tx storage.Tx) error { return tx.UpdateChannel(e.ctx, want) })
	e.tx(tenant, func(tx storage.Tx) error {
		got, err := tx.Channel(e.ctx, c.ID)
		ok(t, "Channel", err)
		same(t, "re-enabled channel", normChannel(t, got), normChannel(t, want))
		return nil
	})
	wantKind(t, "UpdateChannel(another tenant's)",
		e.txErr(other, func(tx storage.Tx) error { return tx.UpdateChannel(e.ctx, want) }), conv.ErrNotFound)
}

// testChannelSecretsSealed: plaintext secrets never reach the store's bytes,
// and each is sealed bound to storage.SecretAAD(tenant, channel, field).
func testChannelSecretsSealed(t *testing.T, h Harness) {
	e := newEnv(t, h)
	tenant := e.tenant("acme")
	const secret = "PLAINTEXT-SECRET-7f3a9c"
	const marker = "CHANNEL-NAME-MARKER-51d2"
	c := conv.Channel{ID: conv.NewID[conv.ChannelID](e.ids), TenantID: tenant, Kind: conv.KindEmail,
		Name: marker, Secrets: map[string]string{"imap_password": secret, "smtp_password": secret + "-2"}, CreatedAt: now()}
	e.tx(tenant, func(tx storage.Tx) error { return tx.CreateChannel(e.ctx, c) })

	aads := e.sealer.AADs()
	slices.Sort(aads)
	same(t, "sealed with AAD", aads, []string{
		storage.SecretAAD(tenant, c.ID, "imap_password"),
		storage.SecretAAD(tenant, c.ID, "smtp_password"),
	})

	dump := h.Dump(t, e.s)
	// The marker proves the dump holds what was written, so the absence of
	// the secret below means something.
	if !bytes.Contains(dump, []byte(marker)) {
		t.Fatalf("Dump (%d bytes) lacks the channel name: it does not show what the store persisted", len(dump))
	}
	if bytes.Contains(dump, []byte(secret)) {
		t.Fatal("Dump contains a channel secret in plaintext")
	}
	e.tx(tenant, func(tx storage.Tx) error {
		got, err := tx.Channel(e.ctx, c.ID)
		ok(t, "Channel", err)
		same(t, "opened secrets", got.Secrets, c.Secrets)
		return nil
	})
}

// testChannelIsolation: another tenant cannot read, list or overwrite a
// channel; the same channel id answers ErrNotFound there.
func testChannelIsolation(t *testing.T, h Harness) {
	e := newEnv(t, h)
	a, b := e.tenant("acme"), e.tenant("globex")
	ca := e.channel(a, map[string]string{"token": "a-token"})
	e.tx(b, func(tx storage.Tx) error {
		_, err := tx.Channel(e.ctx, ca.ID)
		wantKind(t, "Channel of another tenant", err, conv.ErrNotFound)
		list, err := tx.Channels(e.ctx)
		ok(t, "Channels", err)
		if len(list) != 0 {
			t.Fatalf("tenant B lists %d channels, want 0", len(list))
		}
		return nil
	})
	cb := e.channel(b, nil)
	e.tx(a, func(tx storage.Tx) error {
		list, err := tx.Channels(e.ctx)
		ok(t, "Channels", err)
		if len(list) != 1 || list[0].ID != ca.ID {
			t.Fatalf("tenant A lists %+v, want only its own channel", list)
		}
		_, err = tx.Channel(e.ctx, cb.ID)
		wantKind(t, "Channel of another tenant", err, conv.ErrNotFound)
		return nil
	})
}

// testResealSecrets: after a key rotation, ResealSecrets rewrites exactly the
// secrets of its tenant that are not under the current key (so a second call
// returns 0), and they open with the old key forgotten.
func testResealSecrets(t *testing.T, h Harness) {
	e := newEnv(t, h)
	a, b := e.tenant("acme"), e.tenant("globex")
	a1 := e.channel(a, map[string]string{"app_secret": "a1-secret", "token": "a1-token"})
	a2 := e.channel(a, map[string]string{"password": "a2-password"})
	e.channel(a, nil)
	b1 := e.channel(b, map[string]string{"app_secret": "b1-secret", "aes_key": "b1-aes"})

	reseal := func(tenant conv.TenantID) int {
		t.Helper()
		var n int
		e.tx(tenant, func(tx storage.Tx) error {
			var err error
			n, err = tx.ResealSecrets(e.ctx)
			return err
		})
		return n
	}
	if n := reseal(a); n != 0 {
		t.Fatalf("ResealSecrets before any rotation = %d, want 0", n)
	}
	old := "k1"
	e.sealer.Rotate()
	if n := reseal(a); n != 3 {
		t.Fatalf("ResealSecrets(A) = %d, want 3", n)
	}
	if n := reseal(a); n != 0 {
		t.Fatalf("second ResealSecrets(A) = %d, want 0", n)
	}
	// B was not touched by A's reseal: its secrets still need the old key.
	if n := reseal(b); n != 2 {
		t.Fatalf("ResealSecrets(B) = %d, want 2", n)
	}
	e.sealer.Forget(old)
	for _, tc := range []struct {
		tenant conv.TenantID
		ch     conv.Channel
	}{{a, a1}, {a, a2}, {b, b1}} {
		e.tx(tc.tenant, func(tx storage.Tx) error {
			got, err := tx.Channel(e.ctx, tc.ch.ID)
			ok(t, "Channel after reseal", err)
			same(t, "secrets after reseal", got.Secrets, tc.ch.Secrets)
			return nil
		})
	}
}
