package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// The console's page size: ConversationQuery.Limit defaults to
// defaultPage and is capped at maxPage.
const (
	defaultPage = 50
	maxPage     = 200
)

// ChannelTenant reads the channel directory, the one table a transaction
// without a tenant may read (see 0002_console.sql): channels itself stays
// behind Row-Level Security.
func (s *Store) ChannelTenant(ctx context.Context, channel conv.ChannelID) (conv.TenantID, error) {
	op := "postgres.ChannelTenant " + channel.String()
	var tenant int64
	err := s.run(ctx, op, "", func(pt pgx.Tx) error {
		return fail(op, pt.QueryRow(ctx, `SELECT tenant_id FROM channel_directory WHERE channel_id = $1`,
			int64(channel)).Scan(&tenant))
	})
	return conv.TenantID(tenant), err
}

// Contacts.

func (t *tx) ContactByIdentity(ctx context.Context, identity conv.Identity) (conv.Contact, error) {
	const op = "postgres.ContactByIdentity"
	var id int64
	err := t.pg.QueryRow(ctx, `SELECT contact_id FROM identities WHERE tenant_id = $1 AND kind = $2 AND external_id = $3`,
		int64(t.tenant), identity.Kind, identity.ExternalID).Scan(&id)
	if err != nil {
		return conv.Contact{}, fail(op, err)
	}
	c, err := t.Contact(ctx, conv.ContactID(id))
	if err != nil {
		return conv.Contact{}, fmt.Errorf("%s: %w", op, err)
	}
	return c, nil
}

func (t *tx) RenameContact(ctx context.Context, id conv.ContactID, name string) error {
	op := "postgres.RenameContact " + id.String()
	tag, err := t.pg.Exec(ctx, `UPDATE contacts SET name = $3 WHERE tenant_id = $1 AND id = $2`,
		int64(t.tenant), int64(id), name)
	if err != nil {
		return fail(op, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s: %w", op, conv.ErrNotFound)
	}
	return nil
}

func (t *tx) MergeContacts(ctx context.Context, from, into conv.ContactID) error {
	op := fmt.Sprintf("postgres.MergeContacts %s into %s", from, into)
	// Lock both contacts, in id order so that two merges cannot deadlock. A
	// concurrent transaction that references from (ingest opening a
	// conversation for it) holds a key-share lock, so the merge waits for
	// it and then moves what it wrote; one that comes later waits for the
	// merge and finds from gone.
	rows, err := t.pg.Query(ctx, `SELECT id FROM contacts WHERE tenant_id = $1 AND id = ANY($2) ORDER BY id FOR UPDATE`,
		int64(t.tenant), []int64{int64(from), int64(into)})
	if err != nil {
		return fail(op, err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return fail(op, err)
	}
	switch {
	case from == into && len(found) == 1:
		return nil
	case from == into || len(found) != 2:
		return fmt.Errorf("%s: %w", op, conv.ErrNotFound)
	}
	tenant, at := int64(t.tenant), now()
	steps := []struct {
		what string
		q    string
		args []any
	}{
		// First, so that moving cannot put two open conversations of one
		// (channel, contact) side by side (conversations_one_open).
		{"resolve clashing conversations", `UPDATE conversations SET status = 'resolved', resolved_at = $4, updated_at = $4
			WHERE tenant_id = $1 AND contact_id = $2 AND status = 'open' AND channel_id IN
			(SELECT channel_id FROM conversations WHERE tenant_id = $1 AND contact_id = $3 AND status = 'open')`,
			[]any{tenant, int64(from), int64(into), at}},
		{"move conversations", `UPDATE conversations SET contact_id = $3 WHERE tenant_id = $1 AND contact_id = $2`,
			[]any{tenant, int64(from), int64(into)}},
		{"move identities", `UPDATE identities SET contact_id = $3 WHERE tenant_id = $1 AND contact_id = $2`,
			[]any{tenant, int64(from), int64(into)}},
		{"move visitors", `UPDATE visitors SET contact_id = $3 WHERE tenant_id = $1 AND contact_id = $2`,
			[]any{tenant, int64(from), int64(into)}},
	}
	for _, s := range steps {
		if _, err := t.pg.Exec(ctx, s.q, s.args...); err != nil {
			return fail(op+": "+s.what, err)
		}
	}
	if _, err := t.pg.Exec(ctx, `DELETE FROM contacts WHERE tenant_id = $1 AND id = $2`, int64(t.tenant), int64(from)); err != nil {
		return fail(op+": delete", err)
	}
	return nil
}

// Messages.

func (t *tx) MessagesBefore(ctx context.Context, conversation conv.ConversationID, beforeSeq int64, limit int) ([]conv.Message, error) {
	// Newest first along (tenant_id, conversation_id, seq), then turned around.
	out, err := t.messages(ctx, "postgres.MessagesBefore "+conversation.String(),
		`SELECT `+messageCols+` FROM messages WHERE tenant_id = $1 AND conversation_id = $2 AND seq < $3
		ORDER BY seq DESC LIMIT $4`, int64(t.tenant), int64(conversation), beforeSeq, max(limit, 0))
	slices.Reverse(out)
	return out, err
}

func (t *tx) RecallMessage(ctx context.Context, id conv.MessageID, at time.Time) (conv.Message, bool, error) {
	op := "postgres.RecallMessage " + id.String()
	if at.IsZero() {
		at = now()
	}
	// A concurrent recall waits for the row lock, then finds recalled_at
	// set and updates nothing: the first recall wins.
	m, err := t.scanMessage(t.pg.QueryRow(ctx, `UPDATE messages SET recalled_at = $3
		WHERE tenant_id = $1 AND id = $2 AND recalled_at IS NULL RETURNING `+messageCols,
		int64(t.tenant), int64(id), micros(at)))
	if err == nil {
		return m, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return conv.Message{}, false, fail(op, err)
	}
	m, err = t.Message(ctx, id)
	if err != nil {
		return conv.Message{}, false, fmt.Errorf("%s: %w", op, err)
	}
	return m, false, nil
}

// Assignment and queues.

func (t *tx) AssignConversation(ctx context.Context, id conv.ConversationID, from, to conv.AgentID) (conv.Conversation, error) {
	op := fmt.Sprintf("postgres.AssignConversation %s from %s to %s", id, from, to)
	// A concurrent assignment waits for the row lock and then re-checks the
	// condition against the committed assignee: only one of them wins.
	c, err := t.scanConversation(t.pg.QueryRow(ctx, `UPDATE conversations SET assignee_id = $3, updated_at = $5
		WHERE tenant_id = $1 AND id = $2 AND status = 'open' AND assignee_id IS NOT DISTINCT FROM $4
		RETURNING `+conversationCols, int64(t.tenant), int64(id), nullID(to), nullID(from), now()))
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return conv.Conversation{}, fail(op, err)
	}
	if _, err := t.Conversation(ctx, id); err != nil {
		return conv.Conversation{}, fmt.Errorf("%s: %w", op, err)
	}
	return conv.Conversation{}, fmt.Errorf("%s: %w: assigned meanwhile or resolved", op, conv.ErrConflict)
}

func (t *tx) OpenLoad(ctx context.Context) (map[conv.AgentID]int, error) {
	const op = "postgres.OpenLoad"
	// The predicate matches conversations_open_assignee.
	rows, err := t.pg.Query(ctx, `SELECT assignee_id, count(*) FROM conversations
		WHERE tenant_id = $1 AND status = 'open' AND assignee_id IS NOT NULL GROUP BY assignee_id`, int64(t.tenant))
	if err != nil {
		return nil, fail(op, err)
	}
	out := make(map[conv.AgentID]int)
	var agent, n int64
	_, err = pgx.ForEachRow(rows, []any{&agent, &n}, func() error {
		out[conv.AgentID(agent)] = int(n)
		return nil
	})
	if err != nil {
		return nil, fail(op, err)
	}
	return out, nil
}

func (t *tx) Queued(ctx context.Context, group conv.GroupID, limit int) ([]conv.Conversation, error) {
	const op = "postgres.Queued"
	// The predicate matches conversations_queue and conversations_queue_group.
	q := `SELECT ` + conversationCols + ` FROM conversations
		WHERE tenant_id = $1 AND status = 'open' AND assignee_id IS NULL`
	args := []any{int64(t.tenant), max(limit, 0)}
	if !group.IsZero() {
		q += ` AND group_id = $3`
		args = append(args, int64(group))
	}
	rows, err := t.pg.Query(ctx, q+` ORDER BY created_at, id LIMIT $2`, args...)
	if err != nil {
		return nil, fail(op, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (conv.Conversation, error) { return t.scanConversation(r) })
	if err != nil {
		return nil, fail(op, err)
	}
	return out, nil
}

// Read state and lists.

func (t *tx) SetRead(ctx context.Context, agent conv.AgentID, conversation conv.ConversationID, seq int64) (int64, error) {
	op := fmt.Sprintf("postgres.SetRead %s agent %s", conversation, agent)
	// One statement: no row from the SELECT (an unknown conversation) is no
	// row returned; the position is clamped to the messages that exist and
	// never moves back, also when two devices of the agent race (the
	// loser's ON CONFLICT takes the winner's committed row).
	var stored int64
	err := t.pg.QueryRow(ctx, `INSERT INTO conversation_reads (tenant_id, agent_id, conversation_id, read_seq)
		SELECT tenant_id, $3::bigint, id, LEAST(GREATEST($4::bigint, 0), last_seq) FROM conversations
		WHERE tenant_id = $1 AND id = $2
		ON CONFLICT (tenant_id, agent_id, conversation_id)
		DO UPDATE SET read_seq = GREATEST(conversation_reads.read_seq, EXCLUDED.read_seq)
		RETURNING read_seq`, int64(t.tenant), int64(conversation), int64(agent), seq).Scan(&stored)
	if err != nil {
		// An unknown agent fails the foreign key: ErrNotFound too.
		return 0, fail(op, err)
	}
	return stored, nil
}

// summarySelect is a conversation with what the console shows beside it.
// The last message is a LATERAL lookup, fenced (OFFSET 0) so the planner
// cannot fold it back into a join, so that it is always one probe of
// (tenant_id, conversation_id, seq): as a plain LEFT JOIN, a generic plan
// made while the tables were empty joined on (tenant_id, conversation_id)
// only and filtered seq afterwards — or on tenant_id alone — reading a
// conversation's (or the tenant's) every message per summary, which under
// load starved the ingest writers of the same database. Replacing such
// plans once the tables have statistics is KeepStats's job (stats.go).
const summarySelect = `SELECT c.id, c.channel_id, c.contact_id, c.status, COALESCE(c.assignee_id, 0),
	COALESCE(c.group_id, 0), c.priority, c.scene, c.reply_deadline, c.last_seq, c.created_at, c.updated_at, c.resolved_at,
	ch.kind, ch.name, ct.name, r.read_seq,
	(SELECT count(*) FROM messages u WHERE u.tenant_id = c.tenant_id AND u.conversation_id = c.id
		AND u.direction = 'in' AND u.seq > r.read_seq),
	COALESCE(lm.id, 0), c.id, c.channel_id, COALESCE(lm.seq, 0), COALESCE(lm.direction, ''),
	COALESCE(lm.sender_type, ''), COALESCE(lm.sender_id, ''), COALESCE(lm.sender_name, ''), COALESCE(lm.parts::text, '[]'),
	COALESCE(lm.external_id, ''), COALESCE(lm.client_id, ''), COALESCE(lm.status, ''), COALESCE(lm.status_reason, ''),
	COALESCE(lm.created_at, 'epoch'), lm.recalled_at
	FROM conversations c
	JOIN channels ch ON ch.tenant_id = c.tenant_id AND ch.id = c.channel_id
	JOIN contacts ct ON ct.tenant_id = c.tenant_id AND ct.id = c.contact_id
	CROSS JOIN LATERAL (SELECT COALESCE(max(read_seq), 0) AS read_seq FROM conversation_reads
		WHERE tenant_id = c.tenant_id AND agent_id = $1 AND conversation_id = c.id) r
	LEFT JOIN LATERAL (SELECT * FROM messages m WHERE m.tenant_id = c.tenant_id AND m.conversation_id = c.id
		AND m.seq = c.last_seq OFFSET 0) lm ON true
	WHERE c.tenant_id = $2`

// listSQL builds ListConversations' query for q.
func listSQL(tenant conv.TenantID, q storage.ConversationQuery) (string, []any, error) {
	query := summarySelect
	args := []any{int64(q.Reader), int64(tenant)}
	param := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	switch q.Status {
	case "":
	case conv.StatusOpen, conv.StatusResolved:
		// A literal (the status is one of two known words): a generic plan
		// of a cached statement can then still use the partial index
		// conversations_open_assignee.
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
		query += ` AND c.assignee_id = ` + param(int64(q.Agent))
	default:
		return "", nil, fmt.Errorf("%w: assignee filter %d", conv.ErrInvalid, q.Assignee)
	}
	if !q.BeforeUpdated.IsZero() {
		query += ` AND (c.updated_at, c.id) < (` + param(micros(q.BeforeUpdated)) + `, ` + param(int64(q.BeforeID)) + `)`
	}
	limit := q.Limit
	if limit <= 0 {
		limit = defaultPage
	}
	query += ` ORDER BY c.updated_at DESC, c.id DESC LIMIT ` + param(min(limit, maxPage))
	return query, args, nil
}

func (t *tx) scanSummary(r pgx.Row) (storage.ConversationSummary, error) {
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
	if m.id == 0 {
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
	const op = "postgres.ListConversations"
	query, args, err := listSQL(t.tenant, q)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	rows, err := t.pg.Query(ctx, query, args...)
	if err != nil {
		return nil, fail(op, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.ConversationSummary, error) { return t.scanSummary(r) })
	if err != nil {
		return nil, fail(op, err)
	}
	return out, nil
}

func (t *tx) ConversationSummary(ctx context.Context, reader conv.AgentID, id conv.ConversationID) (storage.ConversationSummary, error) {
	s, err := t.scanSummary(t.pg.QueryRow(ctx, summarySelect+` AND c.id = $3`, int64(reader), int64(t.tenant), int64(id)))
	if err != nil {
		return storage.ConversationSummary{}, fail("postgres.ConversationSummary "+id.String(), err)
	}
	return s, nil
}

// Visitors.

func (t *tx) CreateVisitor(ctx context.Context, v conv.Visitor) error {
	op := "postgres.CreateVisitor " + v.ID.String()
	if v.ID.IsZero() || len(v.Hash) == 0 {
		return fmt.Errorf("%s: %w: visitor needs id and hash", op, conv.ErrInvalid)
	}
	if v.CreatedAt.IsZero() {
		v.CreatedAt = now()
	}
	// The foreign keys turn another tenant's channel or contact into ErrNotFound.
	_, err := t.pg.Exec(ctx, `INSERT INTO visitors (tenant_id, id, channel_id, contact_id, hash, created_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, int64(t.tenant), int64(v.ID), int64(v.ChannelID), int64(v.ContactID),
		v.Hash, v.CreatedAt)
	return fail(op, err)
}

func (t *tx) VisitorByHash(ctx context.Context, hash []byte) (conv.Visitor, error) {
	var (
		v                    conv.Visitor
		id, channel, contact int64
	)
	err := t.pg.QueryRow(ctx, `SELECT id, channel_id, contact_id, hash, created_at FROM visitors
		WHERE tenant_id = $1 AND hash = $2`, int64(t.tenant), hash).Scan(&id, &channel, &contact, &v.Hash, &v.CreatedAt)
	if err != nil {
		// Never the hash in the error: it is as good as the token.
		return conv.Visitor{}, fail("postgres.VisitorByHash", err)
	}
	v.ID, v.TenantID, v.ChannelID, v.ContactID = conv.VisitorID(id), t.tenant, conv.ChannelID(channel), conv.ContactID(contact)
	v.CreatedAt = v.CreatedAt.UTC()
	return v, nil
}

func (t *tx) UpdateVisitorContact(ctx context.Context, id conv.VisitorID, contact conv.ContactID) error {
	op := fmt.Sprintf("postgres.UpdateVisitorContact %s contact %s", id, contact)
	tag, err := t.pg.Exec(ctx, `UPDATE visitors SET contact_id = $3 WHERE tenant_id = $1 AND id = $2`,
		int64(t.tenant), int64(id), int64(contact))
	if err != nil {
		return fail(op, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s: %w", op, conv.ErrNotFound)
	}
	return nil
}
