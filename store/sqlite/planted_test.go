package sqlite

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/core/storage/storagetest"
)

// plantedEnv names the bug TestPlantedBug plants in the store.
const plantedEnv = "SWITCHBOARD_PLANTED_BUG"

// consoleSuite lists the conformance subtests of the console contract.
var consoleSuite = []string{"ChannelTenant", "ContactLookupAndRename", "MergeContacts", "MessagesBefore",
	"LatestConversation", "RecallMessage", "AssignConversation", "OpenLoad", "Queued", "SetRead",
	"ListConversations", "ListConversationsPaging", "Visitors", "ConsoleIsolation"}

// TestSuiteCatchesPlantedBugs: a conformance suite that passes a broken
// store proves nothing. Each case plants one bug in one method of the
// SQLite store and runs, in a child process (a failing *testing.T cannot be
// caught in-process), the subtest meant to catch it, which must fail. With
// no bug planted the wrapped store must pass every console subtest, so the
// failures are the bugs' doing.
func TestSuiteCatchesPlantedBugs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the suite in child processes")
	}
	tests := []struct {
		bug    string
		failIn string // "" for must pass
	}{
		{"none", ""},
		{"channel-tenant-guesses", "ChannelTenant"},
		{"rename-any-tenant", "ConsoleIsolation"},
		{"contact-by-identity-any-tenant", "ConsoleIsolation"},
		{"merge-drops-identities", "MergeContacts"},
		{"merge-resolves-into", "MergeContacts"},
		{"before-descending", "MessagesBefore"},
		{"recall-overwrites", "RecallMessage"},
		{"assign-ignores-from", "AssignConversation"},
		{"openload-counts-resolved", "OpenLoad"},
		{"queued-ignores-group", "Queued"},
		{"queued-newest-first", "Queued"},
		{"read-decreases", "SetRead"},
		{"read-unclamped", "SetRead"},
		{"unread-counts-outbound", "ListConversations"},
		{"last-is-first", "ListConversations"},
		{"list-any-tenant", "ConsoleIsolation"},
		{"paging-skips-ties", "ListConversationsPaging"},
		{"limit-uncapped", "ListConversationsPaging"},
		{"visitor-any-tenant", "ConsoleIsolation"},
	}
	for _, tc := range tests {
		t.Run(tc.bug, func(t *testing.T) {
			t.Parallel()
			run := "^TestPlantedBug$/^" + tc.failIn + "$"
			if tc.failIn == "" {
				run = "^TestPlantedBug$/^(" + strings.Join(consoleSuite, "|") + ")$"
			}
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run="+run, "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), plantedEnv+"="+tc.bug)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				t.Fatalf("running the child: %v", err)
			}
			if strings.Contains(string(out), "panic:") {
				t.Fatalf("bug %q: the child panicked:\n%s", tc.bug, out)
			}
			if tc.failIn == "" {
				if err != nil {
					t.Fatalf("the store with no bug planted fails the suite:\n%s", out)
				}
				for _, name := range consoleSuite {
					if !strings.Contains(string(out), "--- PASS: TestPlantedBug/"+name+" ") {
						t.Fatalf("subtest %s did not run and pass:\n%s", name, out)
					}
				}
				return
			}
			if err == nil {
				t.Fatalf("the suite passes a store with bug %q", tc.bug)
			}
			if want := "--- FAIL: TestPlantedBug/" + tc.failIn + " "; !strings.Contains(string(out), want) {
				t.Fatalf("bug %q: %s did not fail; output:\n%s", tc.bug, tc.failIn, out)
			}
		})
	}
}

// TestPlantedBug is the child process of the test above; it does nothing
// when run directly.
func TestPlantedBug(t *testing.T) {
	bug := os.Getenv(plantedEnv)
	if bug == "" {
		return
	}
	storagetest.Run(t, storagetest.Harness{
		New: func(t *testing.T, sealer storage.Sealer, ids *conv.IDGen) storage.Store {
			return &plantedStore{Store: open(t, filepath.Join(t.TempDir(), "planted.db"), sealer, ids), bug: bug}
		},
		Dump: func(t *testing.T, s storage.Store) []byte { return nil },
	})
}

// plantedStore is the SQLite store with the bug its name says planted.
type plantedStore struct {
	*Store
	bug string
}

func (s *plantedStore) Tx(ctx context.Context, tenant conv.TenantID, fn func(storage.Tx) error) error {
	return s.Store.Tx(ctx, tenant, func(inner storage.Tx) error {
		return fn(&plantedTx{tx: inner.(*tx), bug: s.bug})
	})
}

func (s *plantedStore) ChannelTenant(ctx context.Context, channel conv.ChannelID) (conv.TenantID, error) {
	tenant, err := s.Store.ChannelTenant(ctx, channel)
	if s.bug == "channel-tenant-guesses" && errors.Is(err, conv.ErrNotFound) {
		return 1, nil
	}
	return tenant, err
}

// plantedTx overrides the methods that carry a bug; the rest are the
// store's own.
type plantedTx struct {
	*tx
	bug string
}

func (p *plantedTx) RenameContact(ctx context.Context, id conv.ContactID, name string) error {
	if p.bug != "rename-any-tenant" {
		return p.tx.RenameContact(ctx, id, name)
	}
	return p.execOne(ctx, `UPDATE contacts SET name = ? WHERE id = ?`, name, id)
}

func (p *plantedTx) ContactByIdentity(ctx context.Context, identity conv.Identity) (conv.Contact, error) {
	if p.bug != "contact-by-identity-any-tenant" {
		return p.tx.ContactByIdentity(ctx, identity)
	}
	var (
		c       conv.Contact
		created int64
	)
	err := p.queryRow(ctx, `SELECT c.id, c.name, c.created_at FROM identities i JOIN contacts c
		ON c.tenant_id = i.tenant_id AND c.id = i.contact_id WHERE i.kind = ? AND i.external_id = ?`,
		identity.Kind, identity.ExternalID).Scan(&c.ID, &c.Name, &created)
	c.TenantID, c.CreatedAt, c.Identities = p.tenant, fromMicros(created), []conv.Identity{identity}
	return c, mapErr(err)
}

func (p *plantedTx) MergeContacts(ctx context.Context, from, into conv.ContactID) error {
	switch p.bug {
	case "merge-drops-identities":
		// identities cascade from contacts: not moving them loses them.
		if _, err := p.exec(ctx, mergeResolveSQL, micros(time.Now()), micros(time.Now()), p.tenant, from, p.tenant, into); err != nil {
			return err
		}
		for _, q := range []string{mergeConversationsSQL, mergeVisitorsSQL} {
			if _, err := p.exec(ctx, q, into, p.tenant, from); err != nil {
				return err
			}
		}
		return p.execOne(ctx, `DELETE FROM contacts WHERE tenant_id = ? AND id = ?`, p.tenant, from)
	case "merge-resolves-into":
		// Resolves into's clashing conversation instead of from's.
		if _, err := p.exec(ctx, mergeResolveSQL, micros(time.Now()), micros(time.Now()), p.tenant, into, p.tenant, from); err != nil {
			return err
		}
	}
	return p.tx.MergeContacts(ctx, from, into)
}

func (p *plantedTx) MessagesBefore(ctx context.Context, conversation conv.ConversationID, beforeSeq int64, limit int) ([]conv.Message, error) {
	out, err := p.tx.MessagesBefore(ctx, conversation, beforeSeq, limit)
	if p.bug == "before-descending" {
		slices.Reverse(out)
	}
	return out, err
}

func (p *plantedTx) RecallMessage(ctx context.Context, id conv.MessageID, at time.Time) (conv.Message, bool, error) {
	if p.bug != "recall-overwrites" {
		return p.tx.RecallMessage(ctx, id, at)
	}
	if err := p.execOne(ctx, `UPDATE messages SET recalled_at = ? WHERE tenant_id = ? AND id = ?`, micros(at), p.tenant, id); err != nil {
		return conv.Message{}, false, err
	}
	m, err := p.Message(ctx, id)
	return m, true, err
}

func (p *plantedTx) AssignConversation(ctx context.Context, id conv.ConversationID, from, to conv.AgentID) (conv.Conversation, error) {
	if p.bug != "assign-ignores-from" {
		return p.tx.AssignConversation(ctx, id, from, to)
	}
	if err := p.execOne(ctx, `UPDATE conversations SET assignee_id = ?, updated_at = ?
		WHERE tenant_id = ? AND id = ? AND status = 'open'`, nullID(to), micros(time.Now()), p.tenant, id); err != nil {
		return conv.Conversation{}, err
	}
	return p.Conversation(ctx, id)
}

func (p *plantedTx) OpenLoad(ctx context.Context) (map[conv.AgentID]int, error) {
	if p.bug != "openload-counts-resolved" {
		return p.tx.OpenLoad(ctx)
	}
	rows, err := p.query(ctx, `SELECT assignee_id, count(*) FROM conversations
		WHERE tenant_id = ? AND assignee_id IS NOT NULL GROUP BY assignee_id`, p.tenant)
	if err != nil {
		return nil, err
	}
	out := map[conv.AgentID]int{}
	_, err = collect(rows, func(r scanner) (struct{}, error) {
		var (
			a conv.AgentID
			n int
		)
		err := r.Scan(&a, &n)
		out[a] = n
		return struct{}{}, err
	})
	return out, err
}

func (p *plantedTx) Queued(ctx context.Context, group conv.GroupID, limit int) ([]conv.Conversation, error) {
	switch p.bug {
	case "queued-ignores-group":
		return p.tx.Queued(ctx, 0, limit)
	case "queued-newest-first":
		all, err := p.tx.Queued(ctx, group, 1000)
		slices.Reverse(all)
		return all[:min(limit, len(all))], err
	}
	return p.tx.Queued(ctx, group, limit)
}

func (p *plantedTx) SetRead(ctx context.Context, agent conv.AgentID, conversation conv.ConversationID, seq int64) (int64, error) {
	var q string
	switch p.bug {
	case "read-decreases":
		q = `INSERT INTO conversation_reads (tenant_id, agent_id, conversation_id, read_seq)
			SELECT tenant_id, ?, id, min(max(?, 0), last_seq) FROM conversations WHERE tenant_id = ? AND id = ?
			ON CONFLICT DO UPDATE SET read_seq = excluded.read_seq RETURNING read_seq`
	case "read-unclamped":
		q = `INSERT INTO conversation_reads (tenant_id, agent_id, conversation_id, read_seq)
			SELECT tenant_id, ?, id, max(?, 0) FROM conversations WHERE tenant_id = ? AND id = ?
			ON CONFLICT DO UPDATE SET read_seq = max(read_seq, excluded.read_seq) RETURNING read_seq`
	default:
		return p.tx.SetRead(ctx, agent, conversation, seq)
	}
	var stored int64
	err := p.queryRow(ctx, q, agent, seq, p.tenant, conversation).Scan(&stored)
	return stored, mapErr(err)
}

func (p *plantedTx) ListConversations(ctx context.Context, q storage.ConversationQuery) ([]storage.ConversationSummary, error) {
	query, args, err := listSQL(p.tenant, q)
	if err != nil {
		return nil, err
	}
	switch p.bug {
	case "list-any-tenant":
		query = strings.Replace(query, "WHERE c.tenant_id = ?", "WHERE ? IS NOT NULL", 1)
	case "paging-skips-ties":
		query = strings.Replace(query, "(c.updated_at, c.id) < (?, ?)", "c.updated_at < ? AND ? IS NOT NULL", 1)
	case "limit-uncapped":
		if q.Limit > 0 {
			args[len(args)-1] = q.Limit
		}
	}
	rows, err := p.query(ctx, query, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	out, err := collect(rows, p.scanSummary)
	if err != nil {
		return nil, err
	}
	for i, s := range out {
		switch p.bug {
		case "unread-counts-outbound":
			err = p.queryRow(ctx, `SELECT count(*) FROM messages WHERE tenant_id = ? AND conversation_id = ? AND seq > ?`,
				p.tenant, s.ID, s.ReadSeq).Scan(&out[i].Unread)
		case "last-is-first":
			if s.Last != nil {
				first, ferr := p.Messages(ctx, s.ID, 0, 1)
				out[i].Last, err = &first[0], ferr
			}
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (p *plantedTx) VisitorByHash(ctx context.Context, hash []byte) (conv.Visitor, error) {
	if p.bug != "visitor-any-tenant" {
		return p.tx.VisitorByHash(ctx, hash)
	}
	v := conv.Visitor{TenantID: p.tenant}
	var created int64
	err := p.queryRow(ctx, `SELECT id, channel_id, contact_id, hash, created_at FROM visitors WHERE hash = ? ORDER BY rowid`,
		hash).Scan(&v.ID, &v.ChannelID, &v.ContactID, &v.Hash, &created)
	v.CreatedAt = fromMicros(created)
	return v, mapErr(err)
}
