package storagetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// Harness builds fresh, empty, migrated stores for the suite.
type Harness struct {
	// New returns a new empty store using sealer for channel secrets and ids
	// for generated ids. The harness closes the store in t.Cleanup; the suite
	// may have closed it already, so Close must be safe to call twice.
	New func(t *testing.T, sealer storage.Sealer, ids *conv.IDGen) storage.Store
	// Dump returns every byte the store persisted (a file's bytes, or a SQL
	// dump), so the suite can grep it for plaintext secrets.
	Dump func(t *testing.T, s storage.Store) []byte
}

// Run runs the whole suite against the stores h makes. Every subtest gets
// its own store.
func Run(t *testing.T, h Harness) {
	if h.New == nil || h.Dump == nil {
		t.Fatal("storagetest.Harness needs New and Dump")
	}
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"Tenants", testTenants},
		{"DeadLetters", testDeadLetters},
		{"PingClose", testPingClose},
		{"TxRollback", testTxRollback},
		{"Read", testRead},
		{"Channels", testChannels},
		{"UpdateChannel", testUpdateChannel},
		{"ChannelSecretsSealed", testChannelSecretsSealed},
		{"ChannelIsolation", testChannelIsolation},
		{"ResealSecrets", testResealSecrets},
		{"Contacts", testContacts},
		{"Conversations", testConversations},
		{"ConversationIsolation", testConversationIsolation},
		{"AppendMessage", testAppendMessage},
		{"MessageDuplicates", testMessageDuplicates},
		{"MessageLookups", testMessageLookups},
		{"MessagesPaging", testMessagesPaging},
		{"MessageIsolation", testMessageIsolation},
		{"SetMessageStatus", testSetMessageStatus},
		{"Outbox", testOutbox},
		{"Agents", testAgents},
		{"Groups", testGroups},
		{"Tokens", testTokens},
		{"ConcurrentAppend", testConcurrentAppend},
		{"ConcurrentIngest", testConcurrentIngest},
		{"ChannelTenant", testChannelTenant},
		{"ContactLookupAndRename", testContactLookupAndRename},
		{"MergeContacts", testMergeContacts},
		{"MessagesBefore", testMessagesBefore},
		{"LatestConversation", testLatestConversation},
		{"RecallMessage", testRecallMessage},
		{"AssignConversation", testAssignConversation},
		{"OpenLoad", testOpenLoad},
		{"Queued", testQueued},
		{"SetRead", testSetRead},
		{"ListConversations", testListConversations},
		{"ListConversationsPaging", testListConversationsPaging},
		{"Visitors", testVisitors},
		{"ConsoleIsolation", testConsoleIsolation},
		{"ThreadKeys", testThreadKeys},
		{"ChannelState", testChannelState},
	}
	for _, tc := range append(tests, ingestTests...) {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

// ingestTests pin storage.Ingest; Run runs them with the rest.
var ingestTests = []struct {
	name string
	fn   func(*testing.T, Harness)
}{
	{"Ingest", testIngest},
	{"IngestReplyWindow", testIngestReplyWindow},
	{"IngestSystemEvents", testIngestSystemEvents},
	{"IngestErrors", testIngestErrors},
	{"IngestConcurrentBatches", testIngestConcurrentBatches},
	{"IngestThreads", testIngestThreads},
}

// RunIngest runs only the storage.Ingest tests: for a store that wants
// them against another path too (its set-wise path hidden by WithoutBatch,
// so that storage.IngestEach answers to the same expectations).
func RunIngest(t *testing.T, h Harness) {
	if h.New == nil {
		t.Fatal("storagetest.Harness needs New")
	}
	for _, tc := range ingestTests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

// env is one fresh store with the sealer and id generator it was made with.
type env struct {
	t      *testing.T
	h      Harness
	s      storage.Store
	sealer *Sealer
	ids    *conv.IDGen
	ctx    context.Context
}

func newEnv(t *testing.T, h Harness) *env {
	t.Helper()
	ids, err := conv.NewIDGen(1)
	if err != nil {
		t.Fatal(err)
	}
	sealer := NewSealer()
	s := h.New(t, sealer, ids)
	if s == nil {
		t.Fatal("Harness.New returned nil")
	}
	return &env{t: t, h: h, s: s, sealer: sealer, ids: ids, ctx: t.Context()}
}

// now is the current time at the precision every store keeps.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// tx runs fn in a transaction for tenant and fails the test on error.
func (e *env) tx(tenant conv.TenantID, fn func(storage.Tx) error) {
	e.t.Helper()
	if err := e.s.Tx(e.ctx, tenant, fn); err != nil {
		e.t.Fatalf("Tx(%s): %v", tenant, err)
	}
}

// txErr runs fn in a transaction for tenant and returns Tx's error.
func (e *env) txErr(tenant conv.TenantID, fn func(storage.Tx) error) error {
	return e.s.Tx(e.ctx, tenant, fn)
}

func (e *env) tenant(name string) conv.TenantID {
	e.t.Helper()
	id := conv.NewID[conv.TenantID](e.ids)
	if err := e.s.CreateTenant(e.ctx, conv.Tenant{ID: id, Name: name, CreatedAt: now()}); err != nil {
		e.t.Fatalf("CreateTenant(%s): %v", name, err)
	}
	return id
}

func (e *env) channel(tenant conv.TenantID, secrets map[string]string) conv.Channel {
	e.t.Helper()
	c := conv.Channel{
		ID:        conv.NewID[conv.ChannelID](e.ids),
		TenantID:  tenant,
		Kind:      conv.KindTest,
		Name:      "channel " + tenant.String(),
		Config:    json.RawMessage(`{"token":"public-config"}`),
		Secrets:   secrets,
		CreatedAt: now(),
	}
	e.tx(tenant, func(tx storage.Tx) error { return tx.CreateChannel(e.ctx, c) })
	return c
}

func (e *env) contact(tenant conv.TenantID, externalID string) conv.Contact {
	e.t.Helper()
	var c conv.Contact
	e.tx(tenant, func(tx storage.Tx) error {
		var err error
		c, _, err = tx.EnsureContact(e.ctx, conv.Identity{Kind: "visitor", ExternalID: externalID}, "Visitor "+externalID)
		return err
	})
	return c
}

// conversation makes a channel, a contact and an open conversation of tenant.
func (e *env) conversation(tenant conv.TenantID) conv.Conversation {
	e.t.Helper()
	ch := e.channel(tenant, nil)
	ct := e.contact(tenant, fmt.Sprintf("v-%d", e.ids.Next()))
	var c conv.Conversation
	e.tx(tenant, func(tx storage.Tx) error {
		var err error
		c, _, err = tx.OpenConversation(e.ctx, ch.ID, ct.ID, conv.Conversation{
			ID: conv.NewID[conv.ConversationID](e.ids), CreatedAt: now(),
		})
		return err
	})
	return c
}

// message builds an unsaved message of c.
func (e *env) message(c conv.Conversation, dir conv.Direction, text string) conv.Message {
	st := conv.MsgReceived
	sender := conv.Sender{Type: conv.SenderContact, ID: c.ContactID.String()}
	if dir == conv.Out {
		st = conv.MsgPending
		sender = conv.Sender{Type: conv.SenderAgent, ID: "7", Name: "Agent Seven"}
	}
	return conv.Message{
		ID:             conv.NewID[conv.MessageID](e.ids),
		TenantID:       c.TenantID,
		ConversationID: c.ID,
		ChannelID:      c.ChannelID,
		Direction:      dir,
		Sender:         sender,
		Parts:          []conv.Part{{Type: conv.PartText, Text: text}},
		Status:         st,
		CreatedAt:      now(),
	}
}

func (e *env) append(m conv.Message) conv.Message {
	e.t.Helper()
	var got conv.Message
	e.tx(m.TenantID, func(tx storage.Tx) error {
		var err error
		got, err = tx.AppendMessage(e.ctx, m)
		return err
	})
	return got
}

func (e *env) getConversation(tenant conv.TenantID, id conv.ConversationID) conv.Conversation {
	e.t.Helper()
	var c conv.Conversation
	e.tx(tenant, func(tx storage.Tx) error {
		var err error
		c, err = tx.Conversation(e.ctx, id)
		return err
	})
	return c
}

func (e *env) getMessage(tenant conv.TenantID, id conv.MessageID) conv.Message {
	e.t.Helper()
	var m conv.Message
	e.tx(tenant, func(tx storage.Tx) error {
		var err error
		m, err = tx.Message(e.ctx, id)
		return err
	})
	return m
}

// wantKind fails the test unless err wraps kind.
func wantKind(t *testing.T, what string, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("%s: err = %v, want %v", what, err, kind)
	}
}

// ok fails the test on err.
func ok(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Normalizers make records comparable with reflect.DeepEqual: times in UTC
// without monotonic readings, and nil and empty collections alike.

func utc(t time.Time) time.Time { return t.UTC().Round(0) }

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := utc(*t)
	return &u
}

func normTenant(x conv.Tenant) conv.Tenant {
	x.CreatedAt = utc(x.CreatedAt)
	return x
}

func normMessage(m conv.Message) conv.Message {
	m.CreatedAt = utc(m.CreatedAt)
	m.RecalledAt = utcPtr(m.RecalledAt)
	if len(m.Parts) == 0 {
		m.Parts = nil
	}
	return m
}

func normConversation(c conv.Conversation) conv.Conversation {
	c.CreatedAt = utc(c.CreatedAt)
	c.UpdatedAt = utc(c.UpdatedAt)
	c.ReplyDeadline = utcPtr(c.ReplyDeadline)
	c.ResolvedAt = utcPtr(c.ResolvedAt)
	return c
}

func normAgent(a conv.Agent) conv.Agent {
	a.CreatedAt = utc(a.CreatedAt)
	a.GroupIDs = slices.Clone(a.GroupIDs)
	slices.Sort(a.GroupIDs)
	if len(a.GroupIDs) == 0 {
		a.GroupIDs = nil
	}
	return a
}

func normGroup(g conv.Group) conv.Group {
	g.CreatedAt = utc(g.CreatedAt)
	if len(g.Skills) == 0 {
		g.Skills = nil
	}
	return g
}

func normToken(x conv.Token) conv.Token {
	x.CreatedAt = utc(x.CreatedAt)
	x.ExpiresAt = utc(x.ExpiresAt)
	x.RevokedAt = utcPtr(x.RevokedAt)
	if len(x.Hash) == 0 {
		x.Hash = nil
	}
	return x
}

func normDeadLetter(d conv.DeadLetter) conv.DeadLetter {
	d.CreatedAt = utc(d.CreatedAt)
	if len(d.Payload) == 0 {
		d.Payload = nil
	}
	if len(d.Metadata) == 0 {
		d.Metadata = nil
	}
	return d
}

// normChannel compares Config as JSON values (Postgres jsonb re-formats it)
// and treats nil and empty Secrets alike.
func normChannel(t *testing.T, c conv.Channel) conv.Channel {
	t.Helper()
	c.CreatedAt = utc(c.CreatedAt)
	if len(c.Secrets) == 0 {
		c.Secrets = nil
	}
	if len(bytes.TrimSpace(c.Config)) == 0 || string(bytes.TrimSpace(c.Config)) == "null" {
		c.Config = nil
	} else {
		var v any
		if err := json.Unmarshal(c.Config, &v); err != nil {
			t.Fatalf("channel %s config is not JSON: %v", c.ID, err)
		}
		b, _ := json.Marshal(v)
		c.Config = b
	}
	return c
}

// same fails the test unless got and want are deeply equal.
func same[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

// WithoutBatch hides s's set-wise ingest: its transactions are plain
// storage.Tx, so storage.Ingest takes storage.IngestEach. Unwrap returns s.
func WithoutBatch(s storage.Store) storage.Store { return eachStore{s} }

type eachStore struct{ storage.Store }

type eachTx struct{ storage.Tx }

func (s eachStore) Tx(ctx context.Context, tenant conv.TenantID, fn func(storage.Tx) error) error {
	return s.Store.Tx(ctx, tenant, func(tx storage.Tx) error { return fn(eachTx{tx}) })
}

// Unwrap returns the store WithoutBatch was given.
func (s eachStore) Unwrap() storage.Store { return s.Store }
