package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

var _ storage.Tx = (*tx)(nil)

// tx is a storage.Tx. Every statement names tenant_id explicitly even though
// Row-Level Security would filter anyway: the WHERE clause is what lets the
// planner use the (tenant_id, …) indexes, and RLS is the second wall.
type tx struct {
	s      *Store
	tenant conv.TenantID
	pg     pgx.Tx
}

func (t *tx) Tenant() conv.TenantID { return t.tenant }

// now is the current time at the precision Postgres keeps, so what a method
// returns equals what a later read returns.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// micros drops what a timestamptz cannot hold, as pgx does when it
// encodes one.
func micros(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func utcPtr(p *time.Time) *time.Time {
	if p == nil {
		return nil
	}
	u := p.UTC()
	return &u
}

// nullID stores a zero id as NULL.
func nullID[K any](id conv.ID[K]) *int64 {
	if id.IsZero() {
		return nil
	}
	v := int64(id)
	return &v
}

// nullText stores an empty string as NULL, so optional keys under a unique
// index never collide on "".
func nullText(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Channels.

func (t *tx) CreateChannel(ctx context.Context, c conv.Channel) error {
	op := "postgres.CreateChannel " + c.ID.String()
	if c.ID.IsZero() || c.Kind == "" {
		return fmt.Errorf("%s: %w: channel needs id and kind", op, conv.ErrInvalid)
	}
	var config []byte
	if cfg := bytes.TrimSpace(c.Config); len(cfg) > 0 {
		if !json.Valid(cfg) {
			return fmt.Errorf("%s: %w: config is not JSON", op, conv.ErrInvalid)
		}
		config = cfg
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now()
	}
	_, err := t.pg.Exec(ctx, `INSERT INTO channels (tenant_id, id, kind, name, config, group_id, disabled, created_at)
		VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, $7, $8)`,
		int64(t.tenant), int64(c.ID), string(c.Kind), c.Name, nullJSON(config), nullID(c.GroupID), c.Disabled, c.CreatedAt)
	if err != nil {
		return fail(op, err)
	}
	// The directory entry ChannelTenant reads (see 0002_console.sql). Its
	// primary key makes an id another tenant already uses ErrConflict.
	if _, err := t.pg.Exec(ctx, `INSERT INTO channel_directory (channel_id, tenant_id) VALUES ($1, $2)`,
		int64(c.ID), int64(t.tenant)); err != nil {
		return fail(op+" directory", err)
	}
	return t.sealSecrets(ctx, op, c)
}

// sealSecrets stores c's secrets, sealed.
func (t *tx) sealSecrets(ctx context.Context, op string, c conv.Channel) error {
	for _, field := range c.SecretNames() {
		if field == "" {
			return fmt.Errorf("%s: %w: secret with an empty name", op, conv.ErrInvalid)
		}
		sealed, err := t.s.sealer.Seal([]byte(c.Secrets[field]), storage.SecretAAD(t.tenant, c.ID, field))
		if err != nil {
			return fmt.Errorf("%s: seal %s: %w", op, field, err)
		}
		if _, err := t.pg.Exec(ctx, `INSERT INTO channel_secrets (tenant_id, channel_id, field, sealed)
			VALUES ($1, $2, $3, $4)`, int64(t.tenant), int64(c.ID), field, sealed); err != nil {
			return fail(op+" secret "+field, err)
		}
	}
	return nil
}

// UpdateChannel rewrites a channel's settings and secrets.
func (t *tx) UpdateChannel(ctx context.Context, c conv.Channel) error {
	op := "postgres.UpdateChannel " + c.ID.String()
	var config []byte
	if cfg := bytes.TrimSpace(c.Config); len(cfg) > 0 {
		if !json.Valid(cfg) {
			return fmt.Errorf("%s: %w: config is not JSON", op, conv.ErrInvalid)
		}
		config = cfg
	}
	tag, err := t.pg.Exec(ctx, `UPDATE channels SET name = $3, config = $4::text::jsonb, group_id = $5, disabled = $6
		WHERE tenant_id = $1 AND id = $2`, int64(t.tenant), int64(c.ID), c.Name, nullJSON(config), nullID(c.GroupID), c.Disabled)
	if err != nil {
		return fail(op, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s: %w", op, conv.ErrNotFound)
	}
	if _, err := t.pg.Exec(ctx, `DELETE FROM channel_secrets WHERE tenant_id = $1 AND channel_id = $2`, int64(t.tenant), int64(c.ID)); err != nil {
		return fail(op, err)
	}
	return t.sealSecrets(ctx, op, c)
}

const channelCols = `id, kind, name, config::text, COALESCE(group_id, 0), disabled, created_at`

func (t *tx) scanChannel(r pgx.Row) (conv.Channel, error) {
	var (
		c         conv.Channel
		id, group int64
		kind      string
		config    *string
	)
	if err := r.Scan(&id, &kind, &c.Name, &config, &group, &c.Disabled, &c.CreatedAt); err != nil {
		return c, err
	}
	c.ID, c.TenantID, c.Kind, c.GroupID = conv.ChannelID(id), t.tenant, conv.ChannelKind(kind), conv.GroupID(group)
	if config != nil {
		c.Config = json.RawMessage(*config)
	}
	c.CreatedAt = c.CreatedAt.UTC()
	return c, nil
}

// openSecrets opens the sealed secrets of one channel of the tenant, or of
// all of them when only is zero.
func (t *tx) openSecrets(ctx context.Context, only conv.ChannelID) (map[conv.ChannelID]map[string]string, error) {
	q := `SELECT channel_id, field, sealed FROM channel_secrets WHERE tenant_id = $1`
	args := []any{int64(t.tenant)}
	if !only.IsZero() {
		q += ` AND channel_id = $2`
		args = append(args, int64(only))
	}
	rows, err := t.pg.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[conv.ChannelID]map[string]string)
	for rows.Next() {
		var (
			id            int64
			field, sealed string
		)
		if err := rows.Scan(&id, &field, &sealed); err != nil {
			return nil, err
		}
		ch := conv.ChannelID(id)
		plain, err := t.s.sealer.Open(sealed, storage.SecretAAD(t.tenant, ch, field))
		if err != nil {
			// Never the sealed value or plaintext: only where it failed.
			return nil, fmt.Errorf("open secret %s of channel %s: %w", field, ch, err)
		}
		if out[ch] == nil {
			out[ch] = make(map[string]string)
		}
		out[ch][field] = string(plain)
	}
	return out, rows.Err()
}

func (t *tx) Channel(ctx context.Context, id conv.ChannelID) (conv.Channel, error) {
	op := "postgres.Channel " + id.String()
	c, err := t.scanChannel(t.pg.QueryRow(ctx, `SELECT `+channelCols+` FROM channels WHERE tenant_id = $1 AND id = $2`,
		int64(t.tenant), int64(id)))
	if err != nil {
		return conv.Channel{}, fail(op, err)
	}
	secrets, err := t.openSecrets(ctx, id)
	if err != nil {
		return conv.Channel{}, fail(op, err)
	}
	c.Secrets = secrets[id]
	return c, nil
}

func (t *tx) Channels(ctx context.Context) ([]conv.Channel, error) {
	const op = "postgres.Channels"
	rows, err := t.pg.Query(ctx, `SELECT `+channelCols+` FROM channels WHERE tenant_id = $1 ORDER BY id`, int64(t.tenant))
	if err != nil {
		return nil, fail(op, err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (conv.Channel, error) { return t.scanChannel(r) })
	if err != nil {
		return nil, fail(op, err)
	}
	secrets, err := t.openSecrets(ctx, 0)
	if err != nil {
		return nil, fail(op, err)
	}
	for i := range list {
		list[i].Secrets = secrets[list[i].ID]
	}
	return list, nil
}

func (t *tx) ResealSecrets(ctx context.Context) (int, error) {
	const op = "postgres.ResealSecrets"
	// FOR UPDATE: two concurrent reseals must not both rewrite a row.
	rows, err := t.pg.Query(ctx, `SELECT channel_id, field, sealed FROM channel_secrets WHERE tenant_id = $1
		ORDER BY channel_id, field FOR UPDATE`, int64(t.tenant))
	if err != nil {
		return 0, fail(op, err)
	}
	type secret struct {
		channel       conv.ChannelID
		field, sealed string
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (secret, error) {
		var (
			s  secret
			id int64
		)
		err := r.Scan(&id, &s.field, &s.sealed)
		s.channel = conv.ChannelID(id)
		return s, err
	})
	if err != nil {
		return 0, fail(op, err)
	}
	n := 0
	for _, s := range all {
		if t.s.sealer.Current(s.sealed) {
			continue
		}
		aad := storage.SecretAAD(t.tenant, s.channel, s.field)
		plain, err := t.s.sealer.Open(s.sealed, aad)
		if err != nil {
			return n, fmt.Errorf("%s: open secret %s of channel %s: %w", op, s.field, s.channel, err)
		}
		sealed, err := t.s.sealer.Seal(plain, aad)
		if err != nil {
			return n, fmt.Errorf("%s: seal secret %s of channel %s: %w", op, s.field, s.channel, err)
		}
		if _, err := t.pg.Exec(ctx, `UPDATE channel_secrets SET sealed = $4
			WHERE tenant_id = $1 AND channel_id = $2 AND field = $3`,
			int64(t.tenant), int64(s.channel), s.field, sealed); err != nil {
			return n, fail(op, err)
		}
		n++
	}
	return n, nil
}

// Contacts.

func (t *tx) EnsureContact(ctx context.Context, identity conv.Identity, name string) (conv.Contact, bool, error) {
	const op = "postgres.EnsureContact"
	if err := identity.Validate(); err != nil {
		return conv.Contact{}, false, fmt.Errorf("%s: %w", op, err)
	}
	find := func() (conv.ContactID, error) {
		var id int64
		err := t.pg.QueryRow(ctx, `SELECT contact_id FROM identities WHERE tenant_id = $1 AND kind = $2 AND external_id = $3`,
			int64(t.tenant), identity.Kind, identity.ExternalID).Scan(&id)
		return conv.ContactID(id), err
	}
	id, err := find()
	if err == nil {
		c, err := t.Contact(ctx, id)
		return c, false, err
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return conv.Contact{}, false, fail(op, err)
	}

	// Create under a savepoint. If another transaction claims the identity
	// first, ON CONFLICT waits for it to commit and does nothing; rolling back
	// to the savepoint drops our orphan contact and the transaction goes on
	// with theirs, which the next statement (a new snapshot under READ
	// COMMITTED) sees.
	c := conv.Contact{ID: conv.NewID[conv.ContactID](t.s.ids), TenantID: t.tenant, Name: name,
		Identities: []conv.Identity{identity}, CreatedAt: now()}
	sp, err := t.pg.Begin(ctx)
	if err != nil {
		return conv.Contact{}, false, fail(op, err)
	}
	created, err := func() (bool, error) {
		if _, err := sp.Exec(ctx, `INSERT INTO contacts (tenant_id, id, name, created_at) VALUES ($1, $2, $3, $4)`,
			int64(t.tenant), int64(c.ID), c.Name, c.CreatedAt); err != nil {
			return false, err
		}
		tag, err := sp.Exec(ctx, `INSERT INTO identities (tenant_id, kind, external_id, contact_id, created_at)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, kind, external_id) DO NOTHING`,
			int64(t.tenant), identity.Kind, identity.ExternalID, int64(c.ID), c.CreatedAt)
		if err != nil {
			return false, err
		}
		return tag.RowsAffected() == 1, nil
	}()
	if err != nil {
		sp.Rollback(ctx)
		return conv.Contact{}, false, fail(op, err)
	}
	if created {
		if err := sp.Commit(ctx); err != nil {
			return conv.Contact{}, false, fail(op, err)
		}
		return c, true, nil
	}
	if err := sp.Rollback(ctx); err != nil {
		return conv.Contact{}, false, fail(op, err)
	}
	if id, err = find(); err != nil {
		return conv.Contact{}, false, fail(op+" after a concurrent create", err)
	}
	c, err = t.Contact(ctx, id)
	return c, false, err
}

func (t *tx) Contact(ctx context.Context, id conv.ContactID) (conv.Contact, error) {
	op := "postgres.Contact " + id.String()
	c := conv.Contact{ID: id, TenantID: t.tenant}
	err := t.pg.QueryRow(ctx, `SELECT name, created_at FROM contacts WHERE tenant_id = $1 AND id = $2`,
		int64(t.tenant), int64(id)).Scan(&c.Name, &c.CreatedAt)
	if err != nil {
		return conv.Contact{}, fail(op, err)
	}
	c.CreatedAt = c.CreatedAt.UTC()
	rows, err := t.pg.Query(ctx, `SELECT kind, external_id FROM identities WHERE tenant_id = $1 AND contact_id = $2
		ORDER BY created_at, kind, external_id`, int64(t.tenant), int64(id))
	if err != nil {
		return conv.Contact{}, fail(op, err)
	}
	c.Identities, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (conv.Identity, error) {
		var i conv.Identity
		err := r.Scan(&i.Kind, &i.ExternalID)
		return i, err
	})
	if err != nil {
		return conv.Contact{}, fail(op, err)
	}
	return c, nil
}

// Conversations.

const conversationCols = `id, channel_id, contact_id, status, COALESCE(assignee_id, 0), COALESCE(group_id, 0),
	priority, scene, reply_deadline, last_seq, created_at, updated_at, resolved_at`

// conversationRow holds conversationCols as scanned, so that a query
// joining more columns (the console's summaries) scans them in one go.
type conversationRow struct {
	c                                   conv.Conversation
	id, channel, contact, assignee, grp int64
	status                              string
}

func (r *conversationRow) dest() []any {
	return []any{&r.id, &r.channel, &r.contact, &r.status, &r.assignee, &r.grp, &r.c.Priority, &r.c.Scene,
		&r.c.ReplyDeadline, &r.c.LastSeq, &r.c.CreatedAt, &r.c.UpdatedAt, &r.c.ResolvedAt}
}

func (r *conversationRow) conversation(tenant conv.TenantID) conv.Conversation {
	c := r.c
	c.ID, c.TenantID, c.ChannelID, c.ContactID = conv.ConversationID(r.id), tenant, conv.ChannelID(r.channel), conv.ContactID(r.contact)
	c.Status, c.AssigneeID, c.GroupID = conv.ConversationStatus(r.status), conv.AgentID(r.assignee), conv.GroupID(r.grp)
	c.CreatedAt, c.UpdatedAt = c.CreatedAt.UTC(), c.UpdatedAt.UTC()
	c.ReplyDeadline, c.ResolvedAt = utcPtr(c.ReplyDeadline), utcPtr(c.ResolvedAt)
	return c
}

func (t *tx) scanConversation(r pgx.Row) (conv.Conversation, error) {
	var row conversationRow
	if err := r.Scan(row.dest()...); err != nil {
		return conv.Conversation{}, err
	}
	return row.conversation(t.tenant), nil
}

func (t *tx) OpenConversation(ctx context.Context, channel conv.ChannelID, contact conv.ContactID, tmpl conv.Conversation) (conv.Conversation, bool, error) {
	op := fmt.Sprintf("postgres.OpenConversation channel %s contact %s", channel, contact)
	if tmpl.ID.IsZero() {
		tmpl.ID = conv.NewID[conv.ConversationID](t.s.ids)
	}
	if tmpl.CreatedAt.IsZero() {
		tmpl.CreatedAt = now()
	}
	findOpen := func() (conv.Conversation, error) {
		return t.scanConversation(t.pg.QueryRow(ctx, `SELECT `+conversationCols+` FROM conversations
			WHERE tenant_id = $1 AND channel_id = $2 AND contact_id = $3 AND thread = '' AND status = 'open'`,
			int64(t.tenant), int64(channel), int64(contact)))
	}
	// A few rounds: the open conversation another transaction inserted may
	// be resolved again before we read it.
	for range 3 {
		c, err := findOpen()
		if err == nil {
			return c, false, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return conv.Conversation{}, false, fail(op, err)
		}
		// The partial unique index settles concurrent opens: the loser waits
		// for the winner to commit, inserts nothing, and reads the winner's
		// row. The foreign keys turn an unknown or other tenant's channel or
		// contact into ErrNotFound.
		c, err = t.scanConversation(t.pg.QueryRow(ctx, `INSERT INTO conversations
			(tenant_id, id, channel_id, contact_id, status, group_id, priority, scene, last_seq, created_at, updated_at)
			VALUES ($1, $2, $3, $4, 'open', $5, $6, $7, 0, $8, $8)
			ON CONFLICT (tenant_id, channel_id, contact_id) WHERE status = 'open' AND thread = '' DO NOTHING
			RETURNING `+conversationCols,
			int64(t.tenant), int64(tmpl.ID), int64(channel), int64(contact), nullID(tmpl.GroupID), tmpl.Priority,
			tmpl.Scene, tmpl.CreatedAt))
		if err == nil {
			return c, true, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return conv.Conversation{}, false, fail(op, err)
		}
	}
	return conv.Conversation{}, false, fmt.Errorf("%s: %w: the open conversation keeps changing", op, conv.ErrConflict)
}

func (t *tx) NewConversation(ctx context.Context, channel conv.ChannelID, contact conv.ContactID, tmpl conv.Conversation) (conv.Conversation, error) {
	op := fmt.Sprintf("postgres.NewConversation channel %s contact %s", channel, contact)
	if tmpl.ID.IsZero() {
		tmpl.ID = conv.NewID[conv.ConversationID](t.s.ids)
	}
	if tmpl.CreatedAt.IsZero() {
		tmpl.CreatedAt = now()
	}
	// The foreign keys turn an unknown or other tenant's channel or contact
	// into ErrNotFound.
	c, err := t.scanConversation(t.pg.QueryRow(ctx, `INSERT INTO conversations
		(tenant_id, id, channel_id, contact_id, status, group_id, priority, scene, last_seq, created_at, updated_at, thread)
		VALUES ($1, $2, $3, $4, 'open', $5, $6, $7, 0, $8, $8, $9)
		RETURNING `+conversationCols,
		int64(t.tenant), int64(tmpl.ID), int64(channel), int64(contact), nullID(tmpl.GroupID), tmpl.Priority,
		tmpl.Scene, tmpl.CreatedAt, tmpl.ID.String()))
	if err != nil {
		return conv.Conversation{}, fail(op, err)
	}
	return c, nil
}

func (t *tx) ThreadConversation(ctx context.Context, channel conv.ChannelID, keys []string) (conv.ConversationID, error) {
	var id int64
	err := t.pg.QueryRow(ctx, `SELECT k.conversation_id FROM unnest($3::text[]) WITH ORDINALITY AS w(key, n)
		JOIN thread_keys k ON k.tenant_id = $1 AND k.channel_id = $2 AND k.key = w.key
		ORDER BY w.n LIMIT 1`, int64(t.tenant), int64(channel), keys).Scan(&id)
	if err != nil {
		return 0, fail("postgres.ThreadConversation "+channel.String(), err)
	}
	return conv.ConversationID(id), nil
}

func (t *tx) SetThreadKeys(ctx context.Context, channel conv.ChannelID, conversation conv.ConversationID, keys []string, at time.Time) error {
	op := "postgres.SetThreadKeys " + channel.String()
	for _, k := range keys {
		if k == "" || len(k) > conv.MaxThreadKeyLen {
			return fmt.Errorf("%s: %w: thread key must be 1 to %d bytes", op, conv.ErrInvalid, conv.MaxThreadKeyLen)
		}
	}
	// Sorted and distinct, so concurrent writers lock the keys in one order
	// and one statement does not touch a key twice.
	keys = slices.Compact(slices.Sorted(slices.Values(keys)))
	_, err := t.pg.Exec(ctx, `INSERT INTO thread_keys (tenant_id, channel_id, key, conversation_id, updated_at)
		SELECT $1, $2, k, $4, $5 FROM unnest($3::text[]) AS k
		ON CONFLICT (tenant_id, channel_id, key)
		DO UPDATE SET conversation_id = excluded.conversation_id, updated_at = excluded.updated_at`,
		int64(t.tenant), int64(channel), keys, int64(conversation), micros(at))
	if err != nil {
		return fail(op, err)
	}
	return nil
}

func (t *tx) ChannelState(ctx context.Context, channel conv.ChannelID, key string) (string, error) {
	var v string
	err := t.pg.QueryRow(ctx, `SELECT value FROM channel_state WHERE tenant_id = $1 AND channel_id = $2 AND key = $3`,
		int64(t.tenant), int64(channel), key).Scan(&v)
	if err != nil {
		return "", fail(fmt.Sprintf("postgres.ChannelState %s %q", channel, key), err)
	}
	return v, nil
}

func (t *tx) SetChannelState(ctx context.Context, channel conv.ChannelID, key, value string, at time.Time) error {
	op := "postgres.SetChannelState " + channel.String()
	if err := storage.CheckState(key, value); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	// The foreign key rejects another tenant's channel: ErrNotFound.
	_, err := t.pg.Exec(ctx, `INSERT INTO channel_state (tenant_id, channel_id, key, value, updated_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, channel_id, key)
		DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
		int64(t.tenant), int64(channel), key, value, micros(at))
	if err != nil {
		return fail(op, err)
	}
	return nil
}

func (t *tx) Conversation(ctx context.Context, id conv.ConversationID) (conv.Conversation, error) {
	c, err := t.scanConversation(t.pg.QueryRow(ctx, `SELECT `+conversationCols+` FROM conversations
		WHERE tenant_id = $1 AND id = $2`, int64(t.tenant), int64(id)))
	if err != nil {
		return conv.Conversation{}, fail("postgres.Conversation "+id.String(), err)
	}
	return c, nil
}

func (t *tx) UpdateConversation(ctx context.Context, c conv.Conversation) error {
	op := "postgres.UpdateConversation " + c.ID.String()
	if c.Status != conv.StatusOpen && c.Status != conv.StatusResolved {
		return fmt.Errorf("%s: %w: status %q", op, conv.ErrInvalid, c.Status)
	}
	updated := c.UpdatedAt
	if updated.IsZero() {
		updated = now()
	}
	tag, err := t.pg.Exec(ctx, `UPDATE conversations SET status = $3, assignee_id = $4, group_id = $5, priority = $6,
		scene = $7, reply_deadline = $8, resolved_at = $9, updated_at = $10
		WHERE tenant_id = $1 AND id = $2`,
		int64(t.tenant), int64(c.ID), string(c.Status), nullID(c.AssigneeID), nullID(c.GroupID), c.Priority,
		c.Scene, c.ReplyDeadline, c.ResolvedAt, updated)
	if err != nil {
		return fail(op, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s: %w", op, conv.ErrNotFound)
	}
	return nil
}

// Messages.

const messageCols = `id, conversation_id, channel_id, seq, direction, sender_type, sender_id, sender_name,
	parts::text, COALESCE(external_id, ''), COALESCE(client_id, ''), status, status_reason, created_at, recalled_at`

// messageRow holds messageCols as scanned.
type messageRow struct {
	m                       conv.Message
	id, conversation, ch    int64
	dir, senderType, status string
	parts                   string
}

func (r *messageRow) dest() []any {
	return []any{&r.id, &r.conversation, &r.ch, &r.m.Seq, &r.dir, &r.senderType, &r.m.Sender.ID, &r.m.Sender.Name,
		&r.parts, &r.m.ExternalID, &r.m.ClientID, &r.status, &r.m.StatusReason, &r.m.CreatedAt, &r.m.RecalledAt}
}

func (r *messageRow) message(tenant conv.TenantID) (conv.Message, error) {
	m := r.m
	if err := json.Unmarshal([]byte(r.parts), &m.Parts); err != nil {
		return conv.Message{}, fmt.Errorf("message %d parts: %w", r.id, err)
	}
	m.ID, m.TenantID, m.ConversationID, m.ChannelID = conv.MessageID(r.id), tenant, conv.ConversationID(r.conversation), conv.ChannelID(r.ch)
	m.Direction, m.Sender.Type, m.Status = conv.Direction(r.dir), conv.SenderType(r.senderType), conv.MessageStatus(r.status)
	m.CreatedAt, m.RecalledAt = m.CreatedAt.UTC(), utcPtr(m.RecalledAt)
	return m, nil
}

func (t *tx) scanMessage(r pgx.Row) (conv.Message, error) {
	var row messageRow
	if err := r.Scan(row.dest()...); err != nil {
		return conv.Message{}, err
	}
	return row.message(t.tenant)
}

func (t *tx) AppendMessage(ctx context.Context, m conv.Message) (conv.Message, error) {
	if m.ID.IsZero() {
		m.ID = conv.NewID[conv.MessageID](t.s.ids)
	}
	op := "postgres.AppendMessage " + m.ID.String()
	switch {
	case m.Direction != conv.In && m.Direction != conv.Out:
		return conv.Message{}, fmt.Errorf("%s: %w: direction %q", op, conv.ErrInvalid, m.Direction)
	case !m.Status.Valid():
		return conv.Message{}, fmt.Errorf("%s: %w: status %q", op, conv.ErrInvalid, m.Status)
	}
	parts, err := json.Marshal(m.Parts)
	if err != nil {
		return conv.Message{}, fmt.Errorf("%s: %w: parts: %v", op, conv.ErrInvalid, err)
	}
	// What AppendMessage returns must equal what a later read returns:
	// keep the microseconds Postgres keeps (pgx truncates the rest).
	if m.CreatedAt.IsZero() {
		m.CreatedAt = now()
	}
	m.CreatedAt = micros(m.CreatedAt)
	if m.RecalledAt != nil {
		r := micros(*m.RecalledAt)
		m.RecalledAt = &r
	}
	// The UPDATE takes the conversation's row lock until commit, which
	// serializes appends to one conversation across nodes and keeps seq
	// gapless: a rolled-back append gives its seq back.
	var channel int64
	// updated_at moves at most once per storage.ActivityGranularity, so
	// that most appends touch no indexed column (a HOT update; see
	// migration 0004).
	err = t.pg.QueryRow(ctx, `UPDATE conversations SET last_seq = last_seq + 1,
		updated_at = CASE WHEN updated_at <= $3::timestamptz - $4::interval THEN $3 ELSE updated_at END
		WHERE tenant_id = $1 AND id = $2 RETURNING last_seq, channel_id`,
		int64(t.tenant), int64(m.ConversationID), now(), storage.ActivityGranularity).Scan(&m.Seq, &channel)
	if err != nil {
		return conv.Message{}, fail(op+" conversation "+m.ConversationID.String(), err)
	}
	if !m.ChannelID.IsZero() && int64(m.ChannelID) != channel {
		return conv.Message{}, fmt.Errorf("%s: %w: channel %s is not conversation %s's channel %d",
			op, conv.ErrInvalid, m.ChannelID, m.ConversationID, channel)
	}
	m.ChannelID = conv.ChannelID(channel)
	m.TenantID = t.tenant
	_, err = t.pg.Exec(ctx, `INSERT INTO messages (tenant_id, id, conversation_id, channel_id, seq, direction,
		sender_type, sender_id, sender_name, parts, external_id, client_id, status, status_reason, created_at, recalled_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::jsonb, $11, $12, $13, $14, $15, $16)`,
		int64(t.tenant), int64(m.ID), int64(m.ConversationID), channel, m.Seq, string(m.Direction),
		string(m.Sender.Type), m.Sender.ID, m.Sender.Name, string(parts), nullText(m.ExternalID), nullText(m.ClientID),
		string(m.Status), m.StatusReason, m.CreatedAt, m.RecalledAt)
	if err != nil {
		return conv.Message{}, fail(op, err)
	}
	return m, nil
}

func (t *tx) messageWhere(ctx context.Context, op, where string, args ...any) (conv.Message, error) {
	m, err := t.scanMessage(t.pg.QueryRow(ctx, `SELECT `+messageCols+` FROM messages WHERE tenant_id = $1 AND `+where,
		append([]any{int64(t.tenant)}, args...)...))
	if err != nil {
		return conv.Message{}, fail(op, err)
	}
	return m, nil
}

func (t *tx) Message(ctx context.Context, id conv.MessageID) (conv.Message, error) {
	return t.messageWhere(ctx, "postgres.Message "+id.String(), `id = $2`, int64(id))
}

func (t *tx) MessageByExternalID(ctx context.Context, channel conv.ChannelID, externalID string) (conv.Message, error) {
	const op = "postgres.MessageByExternalID"
	if externalID == "" {
		return conv.Message{}, fmt.Errorf("%s: %w: empty external id", op, conv.ErrNotFound)
	}
	return t.messageWhere(ctx, op, `channel_id = $2 AND external_id = $3`, int64(channel), externalID)
}

func (t *tx) MessageByClientID(ctx context.Context, conversation conv.ConversationID, clientID string) (conv.Message, error) {
	const op = "postgres.MessageByClientID"
	if clientID == "" {
		return conv.Message{}, fmt.Errorf("%s: %w: empty client id", op, conv.ErrNotFound)
	}
	return t.messageWhere(ctx, op, `conversation_id = $2 AND client_id = $3`, int64(conversation), clientID)
}

func (t *tx) messages(ctx context.Context, op, q string, args ...any) ([]conv.Message, error) {
	rows, err := t.pg.Query(ctx, q, args...)
	if err != nil {
		return nil, fail(op, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (conv.Message, error) { return t.scanMessage(r) })
	if err != nil {
		return nil, fail(op, err)
	}
	return out, nil
}

func (t *tx) Messages(ctx context.Context, conversation conv.ConversationID, afterSeq int64, limit int) ([]conv.Message, error) {
	return t.messages(ctx, "postgres.Messages "+conversation.String(),
		`SELECT `+messageCols+` FROM messages WHERE tenant_id = $1 AND conversation_id = $2 AND seq > $3
		ORDER BY seq LIMIT $4`, int64(t.tenant), int64(conversation), afterSeq, max(limit, 0))
}

func (t *tx) SetMessageStatus(ctx context.Context, id conv.MessageID, status conv.MessageStatus, reason, externalID string) (conv.Message, bool, error) {
	op := "postgres.SetMessageStatus " + id.String()
	// FOR UPDATE: two delivery reports for one message decide in turn, so a
	// late "sent" cannot overwrite a "read" that committed meanwhile.
	m, err := t.messageWhere(ctx, op, `id = $2 FOR UPDATE`, int64(id))
	if err != nil {
		return conv.Message{}, false, err
	}
	if !conv.Updates(m.Status, m.StatusReason, status, reason) {
		return m, false, nil
	}
	m, err = t.scanMessage(t.pg.QueryRow(ctx, `UPDATE messages SET status = $3, status_reason = $4,
		external_id = COALESCE($5, external_id) WHERE tenant_id = $1 AND id = $2 RETURNING `+messageCols,
		int64(t.tenant), int64(id), string(status), reason, nullText(externalID)))
	if err != nil {
		return conv.Message{}, false, fail(op, err)
	}
	return m, true, nil
}

// Outbox.

func (t *tx) MarkPublished(ctx context.Context, id conv.MessageID, at time.Time) error {
	op := "postgres.MarkPublished " + id.String()
	tag, err := t.pg.Exec(ctx, `UPDATE messages SET published_at = COALESCE(published_at, $3)
		WHERE tenant_id = $1 AND id = $2`, int64(t.tenant), int64(id), at)
	if err != nil {
		return fail(op, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s: %w", op, conv.ErrNotFound)
	}
	return nil
}

func (t *tx) UnpublishedBefore(ctx context.Context, before time.Time, limit int) ([]conv.Message, error) {
	// The predicate matches the partial index messages_unpublished.
	return t.messages(ctx, "postgres.UnpublishedBefore",
		`SELECT `+messageCols+` FROM messages WHERE tenant_id = $1
		AND direction = 'out' AND status = 'pending' AND published_at IS NULL AND created_at < $2
		ORDER BY created_at, id LIMIT $3`, int64(t.tenant), before, max(limit, 0))
}

// Agents and groups.

func (t *tx) CreateAgent(ctx context.Context, a conv.Agent) error {
	op := "postgres.CreateAgent " + a.ID.String()
	if a.ID.IsZero() || strings.TrimSpace(a.Email) == "" {
		return fmt.Errorf("%s: %w: agent needs id and email", op, conv.ErrInvalid)
	}
	if a.CreatedAt.IsZero() {
		a.CreatedAt = now()
	}
	groups := make([]int64, 0, len(a.GroupIDs))
	for _, g := range a.GroupIDs {
		groups = append(groups, int64(g))
	}
	_, err := t.pg.Exec(ctx, `INSERT INTO agents (tenant_id, id, email, name, role, password_hash, capacity, group_ids,
		disabled, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		int64(t.tenant), int64(a.ID), a.Email, a.Name, a.Role, a.PasswordHash, a.Capacity, groups, a.Disabled, a.CreatedAt)
	return fail(op, err)
}

const agentCols = `id, email, name, role, password_hash, capacity, group_ids, disabled, created_at`

func (t *tx) scanAgent(r pgx.Row) (conv.Agent, error) {
	var (
		a      conv.Agent
		id     int64
		groups []int64
	)
	if err := r.Scan(&id, &a.Email, &a.Name, &a.Role, &a.PasswordHash, &a.Capacity, &groups, &a.Disabled, &a.CreatedAt); err != nil {
		return a, err
	}
	a.ID, a.TenantID, a.CreatedAt = conv.AgentID(id), t.tenant, a.CreatedAt.UTC()
	for _, g := range groups {
		a.GroupIDs = append(a.GroupIDs, conv.GroupID(g))
	}
	return a, nil
}

func (t *tx) Agent(ctx context.Context, id conv.AgentID) (conv.Agent, error) {
	a, err := t.scanAgent(t.pg.QueryRow(ctx, `SELECT `+agentCols+` FROM agents WHERE tenant_id = $1 AND id = $2`,
		int64(t.tenant), int64(id)))
	if err != nil {
		return conv.Agent{}, fail("postgres.Agent "+id.String(), err)
	}
	return a, nil
}

func (t *tx) AgentByEmail(ctx context.Context, email string) (conv.Agent, error) {
	// lower(email) is what the unique index agents_email holds.
	a, err := t.scanAgent(t.pg.QueryRow(ctx, `SELECT `+agentCols+` FROM agents WHERE tenant_id = $1 AND lower(email) = lower($2)`,
		int64(t.tenant), email))
	if err != nil {
		return conv.Agent{}, fail("postgres.AgentByEmail", err)
	}
	return a, nil
}

func (t *tx) Agents(ctx context.Context) ([]conv.Agent, error) {
	const op = "postgres.Agents"
	rows, err := t.pg.Query(ctx, `SELECT `+agentCols+` FROM agents WHERE tenant_id = $1 ORDER BY id`, int64(t.tenant))
	if err != nil {
		return nil, fail(op, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (conv.Agent, error) { return t.scanAgent(r) })
	if err != nil {
		return nil, fail(op, err)
	}
	return out, nil
}

func (t *tx) CreateGroup(ctx context.Context, g conv.Group) error {
	op := "postgres.CreateGroup " + g.ID.String()
	if g.ID.IsZero() {
		return fmt.Errorf("%s: %w: group needs an id", op, conv.ErrInvalid)
	}
	if g.CreatedAt.IsZero() {
		g.CreatedAt = now()
	}
	skills := g.Skills
	if skills == nil {
		skills = []string{}
	}
	_, err := t.pg.Exec(ctx, `INSERT INTO groups (tenant_id, id, name, skills, created_at) VALUES ($1, $2, $3, $4, $5)`,
		int64(t.tenant), int64(g.ID), g.Name, skills, g.CreatedAt)
	return fail(op, err)
}

func (t *tx) Groups(ctx context.Context) ([]conv.Group, error) {
	const op = "postgres.Groups"
	rows, err := t.pg.Query(ctx, `SELECT id, name, skills, created_at FROM groups WHERE tenant_id = $1 ORDER BY id`,
		int64(t.tenant))
	if err != nil {
		return nil, fail(op, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (conv.Group, error) {
		var (
			g  conv.Group
			id int64
		)
		if err := r.Scan(&id, &g.Name, &g.Skills, &g.CreatedAt); err != nil {
			return g, err
		}
		if len(g.Skills) == 0 {
			g.Skills = nil
		}
		g.ID, g.TenantID, g.CreatedAt = conv.GroupID(id), t.tenant, g.CreatedAt.UTC()
		return g, nil
	})
	if err != nil {
		return nil, fail(op, err)
	}
	return out, nil
}

// Tokens.

func (t *tx) CreateToken(ctx context.Context, tok conv.Token) error {
	op := "postgres.CreateToken " + tok.ID.String()
	if tok.ID.IsZero() || len(tok.Hash) == 0 {
		return fmt.Errorf("%s: %w: token needs id and hash", op, conv.ErrInvalid)
	}
	if tok.CreatedAt.IsZero() {
		tok.CreatedAt = now()
	}
	_, err := t.pg.Exec(ctx, `INSERT INTO tokens (tenant_id, id, agent_id, hash, created_at, expires_at, revoked_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, int64(t.tenant), int64(tok.ID), int64(tok.AgentID), tok.Hash,
		tok.CreatedAt, tok.ExpiresAt, tok.RevokedAt)
	return fail(op, err)
}

func (t *tx) TokenByHash(ctx context.Context, hash []byte) (conv.Token, error) {
	var (
		tok       conv.Token
		id, agent int64
	)
	err := t.pg.QueryRow(ctx, `SELECT id, agent_id, hash, created_at, expires_at, revoked_at FROM tokens
		WHERE tenant_id = $1 AND hash = $2`, int64(t.tenant), hash).
		Scan(&id, &agent, &tok.Hash, &tok.CreatedAt, &tok.ExpiresAt, &tok.RevokedAt)
	if err != nil {
		// Never the hash in the error: with database access it is as good
		// as the token.
		return conv.Token{}, fail("postgres.TokenByHash", err)
	}
	tok.ID, tok.TenantID, tok.AgentID = conv.TokenID(id), t.tenant, conv.AgentID(agent)
	tok.CreatedAt, tok.ExpiresAt, tok.RevokedAt = tok.CreatedAt.UTC(), tok.ExpiresAt.UTC(), utcPtr(tok.RevokedAt)
	return tok, nil
}

func (t *tx) RevokeToken(ctx context.Context, id conv.TokenID, at time.Time) error {
	op := "postgres.RevokeToken " + id.String()
	tag, err := t.pg.Exec(ctx, `UPDATE tokens SET revoked_at = COALESCE(revoked_at, $3) WHERE tenant_id = $1 AND id = $2`,
		int64(t.tenant), int64(id), at)
	if err != nil {
		return fail(op, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s: %w", op, conv.ErrNotFound)
	}
	return nil
}
