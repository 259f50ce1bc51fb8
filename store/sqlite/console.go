package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// The console's page size: ConversationQuery.Limit defaults to
// defaultPage and is capped at maxPage.
const (
	defaultPage = 50
	maxPage     = 200
)

// The console's statements, named so that TestQueryPlans explains exactly
// the text that runs. Every one names the tenant (ChannelTenant has none to
// name); where a partial index is meant, the WHERE repeats its predicate.
const (
	channelTenantSQL = `SELECT tenant_id FROM channels WHERE id = ?`

	// Newest first along messages_seq; MessagesBefore turns them around.
	messagesBeforeSQL = `SELECT ` + messageCols + ` FROM messages WHERE tenant_id = ? AND conversation_id = ? AND seq < ?
		ORDER BY seq DESC LIMIT ?`

	// Through conversations_open_assignee.
	openLoadSQL = `SELECT assignee_id, count(*) FROM conversations
		WHERE tenant_id = ? AND status = 'open' AND assignee_id IS NOT NULL GROUP BY assignee_id`

	// One statement: no row from the SELECT (an unknown conversation) is no
	// row returned; the position is clamped to the messages that exist and
	// never moves back.
	setReadSQL = `INSERT INTO conversation_reads (tenant_id, agent_id, conversation_id, read_seq)
		SELECT tenant_id, ?, id, min(max(?, 0), last_seq) FROM conversations WHERE tenant_id = ? AND id = ?
		ON CONFLICT (tenant_id, agent_id, conversation_id) DO UPDATE SET read_seq = max(read_seq, excluded.read_seq)
		RETURNING read_seq`

	visitorByHashSQL = `SELECT id, channel_id, contact_id, hash, created_at FROM visitors WHERE tenant_id = ? AND hash = ?`

	// MergeContacts, in this order. Resolving comes first, so that moving
	// cannot put two open conversations of one (channel, contact) side by
	// side (conversations_one_open).
	mergeResolveSQL = `UPDATE conversations SET status = 'resolved', resolved_at = ?, updated_at = ?
		WHERE tenant_id = ? AND contact_id = ? AND status = 'open' AND channel_id IN
		(SELECT channel_id FROM conversations WHERE tenant_id = ? AND contact_id = ? AND status = 'open')`
	mergeConversationsSQL = `UPDATE conversations SET contact_id = ? WHERE tenant_id = ? AND contact_id = ?`
	mergeIdentitiesSQL    = `UPDATE identities SET contact_id = ? WHERE tenant_id = ? AND contact_id = ?`
	mergeVisitorsSQL      = `UPDATE visitors SET contact_id = ? WHERE tenant_id = ? AND contact_id = ?`
)

// queuedSQL is Queued's statement, through conversations_queue or, for one
// group, conversations_queue_group.
func queuedSQL(oneGroup bool) string {
	q := `SELECT ` + conversationCols + ` FROM conversations
		WHERE tenant_id = ? AND status = 'open' AND assignee_id IS NULL`
	if oneGroup {
		q += ` AND group_id = ?`
	}
	return q + ` ORDER BY created_at, id LIMIT ?`
}

// ChannelTenant returns the tenant owning channel. Channel ids are unique
// across tenants (the channels_id index), so the answer is unambiguous.
func (s *Store) ChannelTenant(ctx context.Context, channel conv.ChannelID) (conv.TenantID, error) {
	var tenant conv.TenantID
	if err := s.db.QueryRowContext(ctx, channelTenantSQL, channel).Scan(&tenant); err != nil {
		return 0, fmt.Errorf("sqlite.ChannelTenant %s: %w", channel, mapErr(err))
	}
	return tenant, nil
}

// Contacts.

func (t *tx) ContactByIdentity(ctx context.Context, identity conv.Identity) (conv.Contact, error) {
	op := fmt.Sprintf("sqlite.ContactByIdentity %s/%s", identity.Kind, identity.ExternalID)
	var id conv.ContactID
	err := t.queryRow(ctx, `SELECT contact_id FROM identities WHERE tenant_id = ? AND kind = ? AND external_id = ?`,
		t.tenant, identity.Kind, identity.ExternalID).Scan(&id)
	if err != nil {
		return conv.Contact{}, fmt.Errorf("%s: %w", op, mapErr(err))
	}
	c, err := t.Contact(ctx, id)
	if err != nil {
		return conv.Contact{}, fmt.Errorf("%s: %w", op, err)
	}
	return c, nil
}

func (t *tx) RenameContact(ctx context.Context, id conv.ContactID, name string) error {
	err := t.execOne(ctx, `UPDATE contacts SET name = ? WHERE tenant_id = ? AND id = ?`, name, t.tenant, id)
	if err != nil {
		return fmt.Errorf("sqlite.RenameContact %s: %w", id, err)
	}
	return nil
}

func (t *tx) MergeContacts(ctx context.Context, from, into conv.ContactID) error {
	op := fmt.Sprintf("sqlite.MergeContacts %s into %s", from, into)
	var n int
	if err := t.queryRow(ctx, `SELECT count(*) FROM contacts WHERE tenant_id = ? AND id IN (?, ?)`,
		t.tenant, from, into).Scan(&n); err != nil {
		return fmt.Errorf("%s: %w", op, mapErr(err))
	}
	switch {
	case from == into && n == 1:
		return nil
	case from == into || n != 2:
		return fmt.Errorf("%s: %w", op, conv.ErrNotFound)
	}
	now := micros(time.Now())
	move := []any{into, t.tenant, from}
	steps := []struct {
		what string
		q    string
		args []any
	}{
		{"resolve clashing conversations", mergeResolveSQL, []any{now, now, t.tenant, from, t.tenant, into}},
		{"move conversations", mergeConversationsSQL, move},
		{"move identities", mergeIdentitiesSQL, move},
		{"move visitors", mergeVisitorsSQL, move},
	}
	for _, s := range steps {
		if _, err := t.exec(ctx, s.q, s.args...); err != nil {
			return fmt.Errorf("%s: %s: %w", op, s.what, mapErr(err))
		}
	}
	if err := t.execOne(ctx, `DELETE FROM contacts WHERE tenant_id = ? AND id = ?`, t.tenant, from); err != nil {
		return fmt.Errorf("%s: delete: %w", op, err)
	}
	return nil
}

// Messages.

func (t *tx) MessagesBefore(ctx context.Context, conversation conv.ConversationID, beforeSeq int64, limit int) ([]conv.Message, error) {
	out, err := t.messages(ctx, fmt.Sprintf("sqlite.MessagesBefore %s", conversation),
		messagesBeforeSQL, t.tenant, conversation, beforeSeq, max(limit, 0))
	slices.Reverse(out)
	return out, err
}

func (t *tx) RecallMessage(ctx context.Context, id conv.MessageID, at time.Time) (conv.Message, bool, error) {
	op := fmt.Sprintf("sqlite.RecallMessage %s", id)
	if at.IsZero() {
		at = time.Now()
	}
	// The condition on recalled_at makes the first recall win.
	m, err := t.scanMessage(t.queryRow(ctx, `UPDATE messages SET recalled_at = ?
		WHERE tenant_id = ? AND id = ? AND recalled_at IS NULL RETURNING `+messageCols, micros(at), t.tenant, id))
	if err == nil {
		return m, true, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return conv.Message{}, false, fmt.Errorf("%s: %w", op, mapErr(err))
	}
	m, err = t.Message(ctx, id)
	if err != nil {
		return conv.Message{}, false, fmt.Errorf("%s: %w", op, err)
	}
	return m, false, nil
}

// Assignment and queues.

func (t *tx) AssignConversation(ctx context.Context, id conv.ConversationID, from, to conv.AgentID) (conv.Conversation, error) {
	op := fmt.Sprintf("sqlite.AssignConversation %s from %s to %s", id, from, to)
	// IS compares NULL (unassigned) like any value.
	c, err := t.scanConversation(t.queryRow(ctx, `UPDATE conversations SET assignee_id = ?, updated_at = ?
		WHERE tenant_id = ? AND id = ? AND status = 'open' AND assignee_id IS ? RETURNING `+conversationCols,
		nullID(to), micros(time.Now()), t.tenant, id, nullID(from)))
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return conv.Conversation{}, fmt.Errorf("%s: %w", op, mapErr(err))
	}
	if _, err := t.Conversation(ctx, id); err != nil {
		return conv.Conversation{}, fmt.Errorf("%s: %w", op, err)
	}
	return conv.Conversation{}, fmt.Errorf("%s: %w: assigned meanwhile or resolved", op, conv.ErrConflict)
}

func (t *tx) OpenLoad(ctx context.Context) (map[conv.AgentID]int, error) {
	const op = "sqlite.OpenLoad"
	rows, err := t.query(ctx, openLoadSQL, t.tenant)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, mapErr(err))
	}
	type load struct {
		agent conv.AgentID
		n     int
	}
	list, err := collect(rows, func(r scanner) (load, error) {
		var l load
		return l, r.Scan(&l.agent, &l.n)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, mapErr(err))
	}
	out := make(map[conv.AgentID]int, len(list))
	for _, l := range list {
		out[l.agent] = l.n
	}
	return out, nil
}

func (t *tx) Queued(ctx context.Context, group conv.GroupID, limit int) ([]conv.Conversation, error) {
	const op = "sqlite.Queued"
	args := []any{t.tenant}
	if !group.IsZero() {
		args = append(args, group)
	}
	rows, err := t.query(ctx, queuedSQL(!group.IsZero()), append(args, max(limit, 0))...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, mapErr(err))
	}
	out, err := collect(rows, t.scanConversation)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, mapErr(err))
	}
	return out, nil
}

// Read state and lists.

func (t *tx) SetRead(ctx context.Context, agent conv.AgentID, conversation conv.ConversationID, seq int64) (int64, error) {
	op := fmt.Sprintf("sqlite.SetRead %s agent %s", conversation, agent)
	var stored int64
	err := t.queryRow(ctx, setReadSQL, agent, seq, t.tenant, conversation).Scan(&stored)
	if err != nil {
		// An unknown agent fails the foreign key: ErrNotFound too.
		return 0, fmt.Errorf("%s: %w", op, mapErr(err))
	}
	return stored, nil
}

// summarySelect is a conversation with what the console shows beside it.
// The first parameter is the reader. The newest message is found by
// last_seq; its columns are coalesced so a conversation without messages
// scans (id 0 then means none). The unread count reads messages_inbound
// only. The joins are LEFT JOINs although the foreign keys guarantee a
// channel and a contact: SQLite does not reorder a LEFT JOIN, so
// conversations stays the outer loop and its index serves the ORDER BY and
// the LIMIT.
const summarySelect = `SELECT c.id, c.channel_id, c.contact_id, c.status, c.assignee_id, c.group_id, c.priority,
	c.scene, c.reply_deadline, c.last_seq, c.created_at, c.updated_at, c.resolved_at,
	ch.kind, ch.name, ct.name, coalesce(r.read_seq, 0),
	(SELECT count(*) FROM messages u WHERE u.tenant_id = c.tenant_id AND u.conversation_id = c.id
		AND u.direction = 'in' AND u.seq > coalesce(r.read_seq, 0)),
	coalesce(lm.id, 0), c.id, c.channel_id, coalesce(lm.seq, 0), coalesce(lm.direction, ''),
	coalesce(lm.sender_type, ''), coalesce(lm.sender_id, ''), coalesce(lm.sender_name, ''), coalesce(lm.parts, '[]'),
	lm.external_id, lm.client_id, coalesce(lm.status, ''), coalesce(lm.status_reason, ''), coalesce(lm.created_at, 0),
	lm.recalled_at
	FROM conversations c
	LEFT JOIN channels ch ON ch.tenant_id = c.tenant_id AND ch.id = c.channel_id
	LEFT JOIN contacts ct ON ct.tenant_id = c.tenant_id AND ct.id = c.contact_id
	LEFT JOIN conversation_reads r ON r.tenant_id = c.tenant_id AND r.agent_id = ? AND r.conversation_id = c.id
	LEFT JOIN messages lm ON lm.tenant_id = c.tenant_id AND lm.conversation_id = c.id AND lm.seq = c.last_seq
	WHERE c.tenant_id = ?`

// listSQL builds ListConversations' query for q; TestQueryPlans explains
// every shape it makes.
func listSQL(tenant conv.TenantID, q storage.ConversationQuery) (string, []any, error) {
	query := summarySelect
	args := []any{q.Reader, tenant}
	switch q.Status {
	case "":
	case conv.StatusOpen, conv.StatusResolved:
		// A literal (the status is one of two known words), so that SQLite
		// can prove the partial index conversations_open_assignee applies.
		query += ` AND c.status = '` + string(q.Status) + `'`
	default:
		return "", nil, fmt.Errorf("%w: status %q", conv.ErrInvalid, q.Status)
	}
	switch q.Assignee {
	case storage.AnyAssignee:
	case storage.Unassigned:
		query += ` AND c.assignee_id IS NULL`
	case storage.AssignedTo:
		if q.Agent.IsZero() {
			return "", nil, fmt.Errorf("%w: AssignedTo without an agent", conv.ErrInvalid)
		}
		query += ` AND c.assignee_id = ?`
		args = append(args, q.Agent)
	default:
		return "", nil, fmt.Errorf("%w: assignee filter %d", conv.ErrInvalid, q.Assignee)
	}
	if !q.BeforeUpdated.IsZero() {
		query += ` AND (c.updated_at, c.id) < (?, ?)`
		args = append(args, micros(q.BeforeUpdated), q.BeforeID)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = defaultPage
	}
	query += ` ORDER BY c.updated_at DESC, c.id DESC LIMIT ?`
	return query, append(args, min(limit, maxPage)), nil
}

func (t *tx) scanSummary(r scanner) (storage.ConversationSummary, error) {
	var (
		s    storage.ConversationSummary
		c    conversationRow
		m    messageRow
		kind string
	)
	dest := append(c.dest(), &kind, &s.ChannelName, &s.ContactName, &s.ReadSeq, &s.Unread)
	if err := r.Scan(append(dest, m.dest()...)...); err != nil {
		return s, err
	}
	s.Conversation = c.conversation(t.tenant)
	s.ChannelKind = conv.ChannelKind(kind)
	if m.m.ID.IsZero() {
		return s, nil
	}
	last, err := m.message(t.tenant)
	if err != nil {
		return s, err
	}
	s.Last = &last
	return s, nil
}

func (t *tx) ListConversations(ctx context.Context, q storage.ConversationQuery) ([]storage.ConversationSummary, error) {
	const op = "sqlite.ListConversations"
	query, args, err := listSQL(t.tenant, q)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	rows, err := t.query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, mapErr(err))
	}
	out, err := collect(rows, t.scanSummary)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, mapErr(err))
	}
	return out, nil
}

func (t *tx) ConversationSummary(ctx context.Context, reader conv.AgentID, id conv.ConversationID) (storage.ConversationSummary, error) {
	s, err := t.scanSummary(t.queryRow(ctx, summarySelect+` AND c.id = ?`, reader, t.tenant, id))
	if err != nil {
		return storage.ConversationSummary{}, fmt.Errorf("sqlite.ConversationSummary %s: %w", id, mapErr(err))
	}
	return s, nil
}

// Visitors.

func (t *tx) CreateVisitor(ctx context.Context, v conv.Visitor) error {
	op := fmt.Sprintf("sqlite.CreateVisitor %s", v.ID)
	if v.ID.IsZero() || len(v.Hash) == 0 {
		return fmt.Errorf("%s: %w: visitor needs id and hash", op, conv.ErrInvalid)
	}
	if v.CreatedAt.IsZero() {
		v.CreatedAt = time.Now()
	}
	// The foreign keys turn another tenant's channel or contact into ErrNotFound.
	_, err := t.exec(ctx, `INSERT INTO visitors (tenant_id, id, channel_id, contact_id, hash, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`, t.tenant, v.ID, v.ChannelID, v.ContactID, v.Hash, micros(v.CreatedAt))
	if err != nil {
		return fmt.Errorf("%s: %w", op, mapErr(err))
	}
	return nil
}

func (t *tx) VisitorByHash(ctx context.Context, hash []byte) (conv.Visitor, error) {
	v := conv.Visitor{TenantID: t.tenant}
	var created int64
	err := t.queryRow(ctx, visitorByHashSQL, t.tenant, hash).Scan(&v.ID, &v.ChannelID, &v.ContactID, &v.Hash, &created)
	if err != nil {
		// Never the hash in the error: it is as good as the token.
		return conv.Visitor{}, fmt.Errorf("sqlite.VisitorByHash: %w", mapErr(err))
	}
	v.CreatedAt = fromMicros(created)
	return v, nil
}

func (t *tx) UpdateVisitorContact(ctx context.Context, id conv.VisitorID, contact conv.ContactID) error {
	err := t.execOne(ctx, `UPDATE visitors SET contact_id = ? WHERE tenant_id = ? AND id = ?`, contact, t.tenant, id)
	if err != nil {
		return fmt.Errorf("sqlite.UpdateVisitorContact %s contact %s: %w", id, contact, err)
	}
	return nil
}
