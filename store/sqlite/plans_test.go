package sqlite

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/core/storage/storagetest"
)

// TestQueryPlans pins the index every console query walks. SQLite keeps no
// statistics, so it picks indexes by the shape of the WHERE and ORDER BY
// alone, and a shape without a matching index quietly walks a whole
// tenant's conversations (a wrong pick once cost a query 5x). Each case
// explains the statement the store runs and wants its table searched
// through the named index, never a full scan, and no sort where the index
// is meant to give the order.
func TestQueryPlans(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "plans.db"), storagetest.NewSealer(), testIDs(t))
	list := func(q storage.ConversationQuery) string {
		t.Helper()
		sql, _, err := listSQL(1, q)
		if err != nil {
			t.Fatal(err)
		}
		return sql
	}
	open, resolved := conv.StatusOpen, conv.StatusResolved
	mine := func(q storage.ConversationQuery) storage.ConversationQuery {
		q.Assignee, q.Agent = storage.AssignedTo, 7
		return q
	}
	queue := func(q storage.ConversationQuery) storage.ConversationQuery {
		q.Assignee = storage.Unassigned
		return q
	}
	page := storage.ConversationQuery{BeforeUpdated: time.Now(), BeforeID: 9}
	const unread = "SEARCH u USING COVERING INDEX messages_inbound (tenant_id=? AND conversation_id=? AND seq>?)"
	tests := []struct {
		name string
		sql  string
		want []string // lines the plan must contain
	}{
		{"list: everything", list(storage.ConversationQuery{}),
			[]string{"SEARCH c USING INDEX conversations_recent (tenant_id=?)", unread}},
		{"list: next page", list(page),
			[]string{"SEARCH c USING INDEX conversations_recent (tenant_id=? AND (updated_at,id)<(?,?))"}},
		{"list: open", list(storage.ConversationQuery{Status: open}),
			[]string{"SEARCH c USING INDEX conversations_status_recent (tenant_id=? AND status=?)"}},
		{"list: resolved, next page", list(storage.ConversationQuery{Status: resolved, BeforeUpdated: page.BeforeUpdated}),
			[]string{"SEARCH c USING INDEX conversations_status_recent (tenant_id=? AND status=? AND (updated_at,id)<(?,?))"}},
		{"list: mine", list(mine(storage.ConversationQuery{})),
			[]string{"SEARCH c USING INDEX conversations_assignee_recent (tenant_id=? AND assignee_id=?)"}},
		{"list: mine, open", list(mine(storage.ConversationQuery{Status: open})),
			[]string{"SEARCH c USING INDEX conversations_open_assignee (tenant_id=? AND assignee_id=? AND status=?)"}},
		{"list: mine, open, next page", list(mine(storage.ConversationQuery{Status: open, BeforeUpdated: page.BeforeUpdated})),
			[]string{"SEARCH c USING INDEX conversations_open_assignee (tenant_id=? AND assignee_id=? AND status=? AND (updated_at,id)<(?,?))"}},
		{"list: mine, resolved", list(mine(storage.ConversationQuery{Status: resolved})),
			[]string{"SEARCH c USING INDEX conversations_assignee_recent (tenant_id=? AND assignee_id=?)"}},
		{"list: unassigned", list(queue(storage.ConversationQuery{})),
			[]string{"SEARCH c USING INDEX conversations_assignee_recent (tenant_id=? AND assignee_id=?)"}},
		{"list: queue", list(queue(storage.ConversationQuery{Status: open})),
			[]string{"SEARCH c USING INDEX conversations_open_assignee (tenant_id=? AND assignee_id=? AND status=?)"}},
		{"list: unassigned, resolved", list(queue(storage.ConversationQuery{Status: resolved})),
			[]string{"SEARCH c USING INDEX conversations_assignee_recent (tenant_id=? AND assignee_id=?)"}},
		{"summary", summarySelect + ` AND c.id = ?`, []string{
			"SEARCH c USING INDEX sqlite_autoindex_conversations_1 (tenant_id=? AND id=?)",
			"SEARCH ch USING INDEX sqlite_autoindex_channels_1 (tenant_id=? AND id=?) LEFT-JOIN",
			"SEARCH ct USING INDEX sqlite_autoindex_contacts_1 (tenant_id=? AND id=?) LEFT-JOIN",
			"SEARCH r USING INDEX sqlite_autoindex_conversation_reads_1 (tenant_id=? AND agent_id=? AND conversation_id=?) LEFT-JOIN",
			"SEARCH lm USING INDEX messages_seq (tenant_id=? AND conversation_id=? AND seq=?) LEFT-JOIN",
			unread}},
		{"Queued", queuedSQL(false), []string{"SEARCH conversations USING INDEX conversations_queue (tenant_id=?)"}},
		{"Queued one group", queuedSQL(true),
			[]string{"SEARCH conversations USING INDEX conversations_queue_group (tenant_id=? AND group_id=?)"}},
		{"OpenLoad", openLoadSQL,
			[]string{"SEARCH conversations USING COVERING INDEX conversations_open_assignee (tenant_id=? AND assignee_id>?)"}},
		{"ChannelTenant", channelTenantSQL, []string{"SEARCH channels USING INDEX channels_id (id=?)"}},
		{"MessagesBefore", messagesBeforeSQL,
			[]string{"SEARCH messages USING INDEX messages_seq (tenant_id=? AND conversation_id=? AND seq<?)"}},
		{"SetRead", setReadSQL,
			[]string{"SEARCH conversations USING INDEX sqlite_autoindex_conversations_1 (tenant_id=? AND id=?)"}},
		{"VisitorByHash", visitorByHashSQL, []string{"SEARCH visitors USING INDEX visitors_hash (tenant_id=? AND hash=?)"}},
		{"merge: resolve", mergeResolveSQL, []string{
			"SEARCH conversations USING COVERING INDEX conversations_one_open (tenant_id=? AND channel_id=? AND contact_id=?)"}},
		{"merge: conversations", mergeConversationsSQL,
			[]string{"SEARCH conversations USING COVERING INDEX conversations_contact (tenant_id=? AND contact_id=?)"}},
		{"merge: identities", mergeIdentitiesSQL,
			[]string{"SEARCH identities USING COVERING INDEX identities_contact (tenant_id=? AND contact_id=?)"}},
		{"ingest: channels", lookupChannelsSQL,
			[]string{"SEARCH channels USING INDEX sqlite_autoindex_channels_1 (tenant_id=? AND id=?)"}},
		{"ingest: stored", lookupStoredSQL, []string{
			"SEARCH messages USING INDEX sqlite_autoindex_messages_1 (tenant_id=? AND id=?)",
			"SEARCH m USING INDEX messages_external (tenant_id=? AND channel_id=? AND external_id=?)"}},
		{"ingest: contacts", lookupContactsSQL, []string{
			"SEARCH i USING INDEX sqlite_autoindex_identities_1 (tenant_id=? AND kind=? AND external_id=?)",
			"SEARCH ct USING INDEX sqlite_autoindex_contacts_1 (tenant_id=? AND id=?)"}},
		{"ingest: conversations", conversationsByIDSQL,
			[]string{"SEARCH conversations USING INDEX sqlite_autoindex_conversations_1 (tenant_id=? AND id=?)"}},
		{"merge: visitors", mergeVisitorsSQL,
			[]string{"SEARCH visitors USING COVERING INDEX visitors_contact (tenant_id=? AND contact_id=?)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Values do not matter to a planner without statistics; every
			// placeholder needs one.
			args := make([]any, strings.Count(tc.sql, "?"))
			for i := range args {
				args[i] = 1
			}
			rows, err := s.db.QueryContext(t.Context(), `EXPLAIN QUERY PLAN `+tc.sql, args...)
			if err != nil {
				t.Fatal(err)
			}
			lines, err := collect(rows, func(r scanner) (string, error) {
				var (
					id, parent, unused int
					detail             string
				)
				err := r.Scan(&id, &parent, &unused, &detail)
				return detail, err
			})
			if err != nil {
				t.Fatal(err)
			}
			plan := strings.Join(lines, "\n")
			for _, want := range tc.want {
				if !strings.Contains(plan, want) {
					t.Errorf("plan lacks %q:\n%s", want, plan)
				}
			}
			for _, line := range lines {
				// Reading the rows passed in with json_each is a scan of
				// what was passed; any other scan walks a table.
				if strings.Contains(line, "USE TEMP B-TREE") ||
					strings.Contains(line, "SCAN ") && !strings.Contains(line, "VIRTUAL TABLE") {
					t.Errorf("plan has %q:\n%s", line, plan)
				}
			}
		})
	}
}
