package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// tx is a storage.Tx: every statement names t.tenant in its WHERE clause or
// its inserted row.
type tx struct {
	s      *Store
	tx     *sql.Tx
	tenant conv.TenantID
	ro     bool // a Read transaction, on the readers' pool
}

var _ storage.Tx = (*tx)(nil)

func (t *tx) Tenant() conv.TenantID { return t.tenant }

// Statements run through the store's prepared-statement cache: parsing SQL
// was half the CPU of an append.

func (t *tx) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	var (
		st  *sql.Stmt
		err error
	)
	if t.ro {
		st, err = prepareOn(ctx, t.s.rdb, &t.s.rstmts, q)
	} else {
		st, err = t.s.prepared(ctx, q)
	}
	if err != nil {
		return nil, err
	}
	return t.tx.StmtContext(ctx, st), nil
}

func (t *tx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	st, err := t.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (t *tx) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := t.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (t *tx) queryRow(ctx context.Context, q string, args ...any) scanner {
	st, err := t.stmt(ctx, q)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRowContext(ctx, args...)
}

// errRow is a row whose statement could not be prepared.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// execOne runs a statement that must touch exactly one row; none is ErrNotFound.
func (t *tx) execOne(ctx context.Context, q string, args ...any) error {
	res, err := t.exec(ctx, q, args...)
	if err != nil {
		return mapErr(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return conv.ErrNotFound
	}
	return nil
}

// Channels.

func (t *tx) CreateChannel(ctx context.Context, c conv.Channel) error {
	op := fmt.Sprintf("sqlite.CreateChannel %s", c.ID)
	if c.ID.IsZero() || c.Kind == "" {
		return fmt.Errorf("%s: %w: channel needs id and kind", op, conv.ErrInvalid)
	}
	var config any
	if cfg := bytes.TrimSpace(c.Config); len(cfg) > 0 {
		if !json.Valid(cfg) {
			return fmt.Errorf("%s: %w: config is not JSON", op, conv.ErrInvalid)
		}
		config = string(cfg)
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = time.Now()
	}
	_, err := t.exec(ctx, `INSERT INTO channels (tenant_id, id, kind, name, config, group_id, disabled, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, t.tenant, c.ID, string(c.Kind), c.Name, config, nullID(c.GroupID), c.Disabled, micros(c.CreatedAt))
	if err != nil {
		return fmt.Errorf("%s: %w", op, mapErr(err))
	}
	return t.sealSecrets(ctx, op, c)
}

// sealSecrets stores c's secrets, sealed.
func (t *tx) sealSecrets(ctx context.Context, op string, c conv.Channel) error {
	for _, field := range c.SecretNames() {
		sealed, err := t.s.sealer.Seal([]byte(c.Secrets[field]), storage.SecretAAD(t.tenant, c.ID, field))
		if err != nil {
			return fmt.Errorf("%s: seal %s: %w", op, field, err)
		}
		if _, err := t.exec(ctx, `INSERT INTO channel_secrets (tenant_id, channel_id, field, sealed) VALUES (?, ?, ?, ?)`,
			t.tenant, c.ID, field, sealed); err != nil {
			return fmt.Errorf("%s: secret %s: %w", op, field, mapErr(err))
		}
	}
	return nil
}

// UpdateChannel rewrites a channel's settings and secrets.
func (t *tx) UpdateChannel(ctx context.Context, c conv.Channel) error {
	op := fmt.Sprintf("sqlite.UpdateChannel %s", c.ID)
	var config any
	if cfg := bytes.TrimSpace(c.Config); len(cfg) > 0 {
		if !json.Valid(cfg) {
			return fmt.Errorf("%s: %w: config is not JSON", op, conv.ErrInvalid)
		}
		config = string(cfg)
	}
	if err := t.execOne(ctx, `UPDATE channels SET name = ?, config = ?, group_id = ?, disabled = ? WHERE tenant_id = ? AND id = ?`,
		c.Name, config, nullID(c.GroupID), c.Disabled, t.tenant, c.ID); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if _, err := t.exec(ctx, `DELETE FROM channel_secrets WHERE tenant_id = ? AND channel_id = ?`, t.tenant, c.ID); err != nil {
		return fmt.Errorf("%s: %w", op, mapErr(err))
	}
	return t.sealSecrets(ctx, op, c)
}

const channelCols = `id, kind, name, config, group_id, disabled, created_at`

func (t *tx) scanChannel(r scanner) (conv.Channel, error) {
	var (
		c       conv.Channel
		kind    string
		config  sql.NullString
		group   sql.NullInt64
		created int64
	)
	if err := r.Scan(&c.ID, &kind, &c.Name, &config, &group, &c.Disabled, &created); err != nil {
		return c, err
	}
	c.TenantID = t.tenant
	c.Kind = conv.ChannelKind(kind)
	if config.Valid {
		c.Config = json.RawMessage(config.String)
	}
	c.GroupID = conv.GroupID(group.Int64)
	c.CreatedAt = fromMicros(created)
	return c, nil
}

// openSecrets opens the secrets of the tenant's channels, all of them when
// only is zero.
func (t *tx) openSecrets(ctx context.Context, only conv.ChannelID) (map[conv.ChannelID]map[string]string, error) {
	q := `SELECT channel_id, field, sealed FROM channel_secrets WHERE tenant_id = ?`
	args := []any{t.tenant}
	if !only.IsZero() {
		q += ` AND channel_id = ?`
		args = append(args, only)
	}
	rows, err := t.query(ctx, q, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	out := make(map[conv.ChannelID]map[string]string)
	for rows.Next() {
		var (
			ch            conv.ChannelID
			field, sealed string
		)
		if err := rows.Scan(&ch, &field, &sealed); err != nil {
			return nil, mapErr(err)
		}
		pt, err := t.s.sealer.Open(sealed, storage.SecretAAD(t.tenant, ch, field))
		if err != nil {
			// A missing or wrong key is an operator problem that a retry
			// after fixing the keyring cures, so not a permanent error.
			return nil, fmt.Errorf("open secret %s of channel %s: %w (%w)", field, ch, conv.ErrUnavailable, err)
		}
		if out[ch] == nil {
			out[ch] = make(map[string]string)
		}
		out[ch][field] = string(pt)
	}
	return out, mapErr(rows.Err())
}

func (t *tx) Channel(ctx context.Context, id conv.ChannelID) (conv.Channel, error) {
	c, err := t.scanChannel(t.queryRow(ctx,
		`SELECT `+channelCols+` FROM channels WHERE tenant_id = ? AND id = ?`, t.tenant, id))
	if err != nil {
		return conv.Channel{}, fmt.Errorf("sqlite.Channel %s: %w", id, mapErr(err))
	}
	secrets, err := t.openSecrets(ctx, id)
	if err != nil {
		return conv.Channel{}, fmt.Errorf("sqlite.Channel %s: %w", id, err)
	}
	c.Secrets = secrets[id]
	return c, nil
}

func (t *tx) Channels(ctx context.Context) ([]conv.Channel, error) {
	rows, err := t.query(ctx, `SELECT `+channelCols+` FROM channels WHERE tenant_id = ? ORDER BY id`, t.tenant)
	if err != nil {
		return nil, fmt.Errorf("sqlite.Channels: %w", mapErr(err))
	}
	out, err := collect(rows, t.scanChannel)
	if err != nil {
		return nil, fmt.Errorf("sqlite.Channels: %w", mapErr(err))
	}
	secrets, err := t.openSecrets(ctx, 0)
	if err != nil {
		return nil, fmt.Errorf("sqlite.Channels: %w", err)
	}
	for i := range out {
		out[i].Secrets = secrets[out[i].ID]
	}
	return out, nil
}

func (t *tx) ResealSecrets(ctx context.Context) (int, error) {
	type secret struct {
		ch            conv.ChannelID
		field, sealed string
	}
	rows, err := t.query(ctx, `SELECT channel_id, field, sealed FROM channel_secrets WHERE tenant_id = ?`, t.tenant)
	if err != nil {
		return 0, fmt.Errorf("sqlite.ResealSecrets: %w", mapErr(err))
	}
	all, err := collect(rows, func(r scanner) (secret, error) {
		var s secret
		return s, r.Scan(&s.ch, &s.field, &s.sealed)
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite.ResealSecrets: %w", mapErr(err))
	}
	n := 0
	for _, s := range all {
		if t.s.sealer.Current(s.sealed) {
			continue
		}
		aad := storage.SecretAAD(t.tenant, s.ch, s.field)
		pt, err := t.s.sealer.Open(s.sealed, aad)
		if err != nil {
			return n, fmt.Errorf("sqlite.ResealSecrets: open %s of channel %s: %w (%w)", s.field, s.ch, conv.ErrUnavailable, err)
		}
		sealed, err := t.s.sealer.Seal(pt, aad)
		if err != nil {
			return n, fmt.Errorf("sqlite.ResealSecrets: seal %s of channel %s: %w", s.field, s.ch, err)
		}
		if err := t.execOne(ctx, `UPDATE channel_secrets SET sealed = ? WHERE tenant_id = ? AND channel_id = ? AND field = ?`,
			sealed, t.tenant, s.ch, s.field); err != nil {
			return n, fmt.Errorf("sqlite.ResealSecrets: %s of channel %s: %w", s.field, s.ch, err)
		}
		n++
	}
	return n, nil
}

// Contacts.

func (t *tx) EnsureContact(ctx context.Context, identity conv.Identity, name string) (conv.Contact, bool, error) {
	op := fmt.Sprintf("sqlite.EnsureContact %s/%s", identity.Kind, identity.ExternalID)
	if err := identity.Validate(); err != nil {
		return conv.Contact{}, false, fmt.Errorf("%s: %w", op, err)
	}
	var id conv.ContactID
	err := t.queryRow(ctx, `SELECT contact_id FROM identities WHERE tenant_id = ? AND kind = ? AND external_id = ?`,
		t.tenant, identity.Kind, identity.ExternalID).Scan(&id)
	switch {
	case err == nil:
		c, err := t.Contact(ctx, id)
		if err != nil {
			return c, false, fmt.Errorf("%s: %w", op, err)
		}
		return c, false, nil
	case err != sql.ErrNoRows:
		return conv.Contact{}, false, fmt.Errorf("%s: %w", op, mapErr(err))
	}
	c := conv.Contact{ID: conv.NewID[conv.ContactID](t.s.ids), TenantID: t.tenant, Name: name,
		Identities: []conv.Identity{identity}, CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}
	if _, err := t.exec(ctx, `INSERT INTO contacts (tenant_id, id, name, created_at) VALUES (?, ?, ?, ?)`,
		t.tenant, c.ID, c.Name, micros(c.CreatedAt)); err != nil {
		return conv.Contact{}, false, fmt.Errorf("%s: %w", op, mapErr(err))
	}
	if _, err := t.exec(ctx, `INSERT INTO identities (tenant_id, kind, external_id, contact_id) VALUES (?, ?, ?, ?)`,
		t.tenant, identity.Kind, identity.ExternalID, c.ID); err != nil {
		return conv.Contact{}, false, fmt.Errorf("%s: %w", op, mapErr(err))
	}
	return c, true, nil
}

func (t *tx) Contact(ctx context.Context, id conv.ContactID) (conv.Contact, error) {
	c := conv.Contact{ID: id, TenantID: t.tenant}
	var created int64
	err := t.queryRow(ctx, `SELECT name, created_at FROM contacts WHERE tenant_id = ? AND id = ?`,
		t.tenant, id).Scan(&c.Name, &created)
	if err != nil {
		return conv.Contact{}, fmt.Errorf("sqlite.Contact %s: %w", id, mapErr(err))
	}
	c.CreatedAt = fromMicros(created)
	rows, err := t.query(ctx, `SELECT kind, external_id FROM identities WHERE tenant_id = ? AND contact_id = ?
		ORDER BY kind, external_id`, t.tenant, id)
	if err != nil {
		return conv.Contact{}, fmt.Errorf("sqlite.Contact %s: %w", id, mapErr(err))
	}
	c.Identities, err = collect(rows, func(r scanner) (conv.Identity, error) {
		var i conv.Identity
		return i, r.Scan(&i.Kind, &i.ExternalID)
	})
	if err != nil {
		return conv.Contact{}, fmt.Errorf("sqlite.Contact %s: %w", id, mapErr(err))
	}
	return c, nil
}

// Conversations.

const conversationCols = `id, channel_id, contact_id, status, assignee_id, group_id, priority, scene,
	reply_deadline, last_seq, created_at, updated_at, resolved_at`

// conversationRow holds conversationCols as scanned, so that a query
// joining more columns (the console's summaries) scans them in one go.
type conversationRow struct {
	c                  conv.Conversation
	status             string
	assignee, group    sql.NullInt64
	deadline, resolved sql.NullInt64
	created, updated   int64
}

func (r *conversationRow) dest() []any {
	return []any{&r.c.ID, &r.c.ChannelID, &r.c.ContactID, &r.status, &r.assignee, &r.group, &r.c.Priority, &r.c.Scene,
		&r.deadline, &r.c.LastSeq, &r.created, &r.updated, &r.resolved}
}

func (r *conversationRow) conversation(tenant conv.TenantID) conv.Conversation {
	c := r.c
	c.TenantID = tenant
	c.Status = conv.ConversationStatus(r.status)
	c.AssigneeID = conv.AgentID(r.assignee.Int64)
	c.GroupID = conv.GroupID(r.group.Int64)
	c.ReplyDeadline = fromMicrosPtr(r.deadline)
	c.ResolvedAt = fromMicrosPtr(r.resolved)
	c.CreatedAt = fromMicros(r.created)
	c.UpdatedAt = fromMicros(r.updated)
	return c
}

func (t *tx) scanConversation(r scanner) (conv.Conversation, error) {
	var row conversationRow
	if err := r.Scan(row.dest()...); err != nil {
		return conv.Conversation{}, err
	}
	return row.conversation(t.tenant), nil
}

func (t *tx) OpenConversation(ctx context.Context, channel conv.ChannelID, contact conv.ContactID, tmpl conv.Conversation) (conv.Conversation, bool, error) {
	op := fmt.Sprintf("sqlite.OpenConversation %s/%s", channel, contact)
	c, err := t.scanConversation(t.queryRow(ctx, `SELECT `+conversationCols+` FROM conversations
		WHERE tenant_id = ? AND channel_id = ? AND contact_id = ? AND thread = '' AND status = 'open'`, t.tenant, channel, contact))
	if err == nil {
		return c, false, nil
	}
	if err != sql.ErrNoRows {
		return c, false, fmt.Errorf("%s: %w", op, mapErr(err))
	}
	if tmpl.ID.IsZero() {
		tmpl.ID = conv.NewID[conv.ConversationID](t.s.ids)
	}
	if tmpl.CreatedAt.IsZero() {
		tmpl.CreatedAt = time.Now()
	}
	// The foreign keys on (tenant_id, channel_id) and (tenant_id, contact_id)
	// reject another tenant's channel or contact: mapErr makes that ErrNotFound.
	_, err = t.exec(ctx, `INSERT INTO conversations (tenant_id, id, channel_id, contact_id, status, group_id,
		priority, scene, last_seq, created_at, updated_at) VALUES (?, ?, ?, ?, 'open', ?, ?, ?, 0, ?, ?)`,
		t.tenant, tmpl.ID, channel, contact, nullID(tmpl.GroupID), tmpl.Priority, tmpl.Scene,
		micros(tmpl.CreatedAt), micros(tmpl.CreatedAt))
	if err != nil {
		return conv.Conversation{}, false, fmt.Errorf("%s: %w", op, mapErr(err))
	}
	c, err = t.Conversation(ctx, tmpl.ID)
	if err != nil {
		return c, false, fmt.Errorf("%s: %w", op, err)
	}
	return c, true, nil
}

func (t *tx) NewConversation(ctx context.Context, channel conv.ChannelID, contact conv.ContactID, tmpl conv.Conversation) (conv.Conversation, error) {
	op := fmt.Sprintf("sqlite.NewConversation %s/%s", channel, contact)
	if tmpl.ID.IsZero() {
		tmpl.ID = conv.NewID[conv.ConversationID](t.s.ids)
	}
	if tmpl.CreatedAt.IsZero() {
		tmpl.CreatedAt = time.Now()
	}
	_, err := t.exec(ctx, `INSERT INTO conversations (tenant_id, id, channel_id, contact_id, status, group_id,
		priority, scene, last_seq, created_at, updated_at, thread) VALUES (?, ?, ?, ?, 'open', ?, ?, ?, 0, ?, ?, ?)`,
		t.tenant, tmpl.ID, channel, contact, nullID(tmpl.GroupID), tmpl.Priority, tmpl.Scene,
		micros(tmpl.CreatedAt), micros(tmpl.CreatedAt), tmpl.ID.String())
	if err != nil {
		return conv.Conversation{}, fmt.Errorf("%s: %w", op, mapErr(err))
	}
	c, err := t.Conversation(ctx, tmpl.ID)
	if err != nil {
		return c, fmt.Errorf("%s: %w", op, err)
	}
	return c, nil
}

func (t *tx) ThreadConversation(ctx context.Context, channel conv.ChannelID, keys []string) (conv.ConversationID, error) {
	for _, k := range keys {
		var id conv.ConversationID
		err := t.queryRow(ctx, `SELECT conversation_id FROM thread_keys WHERE tenant_id = ? AND channel_id = ? AND key = ?`,
			t.tenant, channel, k).Scan(&id)
		if err == nil {
			return id, nil
		}
		if err != sql.ErrNoRows {
			return 0, fmt.Errorf("sqlite.ThreadConversation %s: %w", channel, mapErr(err))
		}
	}
	return 0, fmt.Errorf("sqlite.ThreadConversation %s: %w", channel, conv.ErrNotFound)
}

func (t *tx) SetThreadKeys(ctx context.Context, channel conv.ChannelID, conversation conv.ConversationID, keys []string, at time.Time) error {
	for _, k := range keys {
		if k == "" || len(k) > conv.MaxThreadKeyLen {
			return fmt.Errorf("sqlite.SetThreadKeys %s: %w: thread key must be 1 to %d bytes", channel, conv.ErrInvalid, conv.MaxThreadKeyLen)
		}
		if _, err := t.exec(ctx, `INSERT INTO thread_keys (tenant_id, channel_id, key, conversation_id, updated_at)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, channel_id, key)
			DO UPDATE SET conversation_id = excluded.conversation_id, updated_at = excluded.updated_at`,
			t.tenant, channel, k, conversation, micros(at)); err != nil {
			return fmt.Errorf("sqlite.SetThreadKeys %s: %w", channel, mapErr(err))
		}
	}
	return nil
}

func (t *tx) ChannelState(ctx context.Context, channel conv.ChannelID, key string) (string, error) {
	var v string
	err := t.queryRow(ctx, `SELECT value FROM channel_state WHERE tenant_id = ? AND channel_id = ? AND key = ?`,
		t.tenant, channel, key).Scan(&v)
	if err != nil {
		return "", fmt.Errorf("sqlite.ChannelState %s %q: %w", channel, key, mapErr(err))
	}
	return v, nil
}

func (t *tx) SetChannelState(ctx context.Context, channel conv.ChannelID, key, value string, at time.Time) error {
	op := fmt.Sprintf("sqlite.SetChannelState %s", channel)
	if err := storage.CheckState(key, value); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	// The foreign key rejects another tenant's channel: ErrNotFound.
	if _, err := t.exec(ctx, `INSERT INTO channel_state (tenant_id, channel_id, key, value, updated_at)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, channel_id, key)
		DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
		t.tenant, channel, key, value, micros(at)); err != nil {
		return fmt.Errorf("%s: %w", op, mapErr(err))
	}
	return nil
}

func (t *tx) Conversation(ctx context.Context, id conv.ConversationID) (conv.Conversation, error) {
	c, err := t.scanConversation(t.queryRow(ctx,
		`SELECT `+conversationCols+` FROM conversations WHERE tenant_id = ? AND id = ?`, t.tenant, id))
	if err != nil {
		return conv.Conversation{}, fmt.Errorf("sqlite.Conversation %s: %w", id, mapErr(err))
	}
	return c, nil
}

func (t *tx) UpdateConversation(ctx context.Context, c conv.Conversation) error {
	op := fmt.Sprintf("sqlite.UpdateConversation %s", c.ID)
	if c.Status != conv.StatusOpen && c.Status != conv.StatusResolved {
		return fmt.Errorf("%s: %w: status %q", op, conv.ErrInvalid, c.Status)
	}
	// Reopening while another conversation of the pair is open violates
	// conversations_one_open: ErrConflict.
	err := t.execOne(ctx, `UPDATE conversations SET status = ?, assignee_id = ?, group_id = ?, priority = ?,
		scene = ?, reply_deadline = ?, resolved_at = ?, updated_at = ? WHERE tenant_id = ? AND id = ?`,
		string(c.Status), nullID(c.AssigneeID), nullID(c.GroupID), c.Priority, c.Scene,
		microsPtr(c.ReplyDeadline), microsPtr(c.ResolvedAt), micros(time.Now()), t.tenant, c.ID)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// Messages.

const messageCols = `id, conversation_id, channel_id, seq, direction, sender_type, sender_id, sender_name,
	parts, external_id, client_id, status, status_reason, created_at, recalled_at`

// messageRow holds messageCols as scanned.
type messageRow struct {
	m                              conv.Message
	dir, senderType, status, parts string
	externalID, clientID           sql.NullString
	created                        int64
	recalled                       sql.NullInt64
}

func (r *messageRow) dest() []any {
	return []any{&r.m.ID, &r.m.ConversationID, &r.m.ChannelID, &r.m.Seq, &r.dir, &r.senderType, &r.m.Sender.ID,
		&r.m.Sender.Name, &r.parts, &r.externalID, &r.clientID, &r.status, &r.m.StatusReason, &r.created, &r.recalled}
}

func (r *messageRow) message(tenant conv.TenantID) (conv.Message, error) {
	m := r.m
	if err := json.Unmarshal([]byte(r.parts), &m.Parts); err != nil {
		return conv.Message{}, fmt.Errorf("message %s parts: %w", m.ID, err)
	}
	m.TenantID = tenant
	m.Direction = conv.Direction(r.dir)
	m.Sender.Type = conv.SenderType(r.senderType)
	m.ExternalID = r.externalID.String
	m.ClientID = r.clientID.String
	m.Status = conv.MessageStatus(r.status)
	m.CreatedAt = fromMicros(r.created)
	m.RecalledAt = fromMicrosPtr(r.recalled)
	return m, nil
}

func (t *tx) scanMessage(r scanner) (conv.Message, error) {
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
	op := fmt.Sprintf("sqlite.AppendMessage %s", m.ID)
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
	if m.CreatedAt.IsZero() {
		m.CreatedAt = time.Now()
	}
	// Return exactly what is stored: UTC microseconds.
	m.CreatedAt = fromMicros(micros(m.CreatedAt))
	if m.RecalledAt != nil {
		r := fromMicros(micros(*m.RecalledAt))
		m.RecalledAt = &r
	}
	// Taking the seq with an UPDATE serializes appends to one conversation
	// and keeps seq gapless: a rolled-back append gives its seq back.
	var (
		channel conv.ChannelID
		updated int64
	)
	err = t.queryRow(ctx, `UPDATE conversations SET last_seq = last_seq + 1
		WHERE tenant_id = ? AND id = ? RETURNING last_seq, channel_id, updated_at`,
		t.tenant, m.ConversationID).Scan(&m.Seq, &channel, &updated)
	if err != nil {
		return conv.Message{}, fmt.Errorf("%s: conversation %s: %w", op, m.ConversationID, mapErr(err))
	}
	// updated_at orders the console's lists and sits in four of their
	// indexes: rewriting it on every append made appends several times
	// slower. A busy conversation moves it at most once a second.
	if now := micros(time.Now()); now-updated >= storage.ActivityGranularity.Microseconds() {
		if _, err := t.exec(ctx, `UPDATE conversations SET updated_at = ? WHERE tenant_id = ? AND id = ?`,
			now, t.tenant, m.ConversationID); err != nil {
			return conv.Message{}, fmt.Errorf("%s: conversation %s: %w", op, m.ConversationID, mapErr(err))
		}
	}
	if !m.ChannelID.IsZero() && m.ChannelID != channel {
		return conv.Message{}, fmt.Errorf("%s: %w: channel %s is not conversation %s's channel %s",
			op, conv.ErrInvalid, m.ChannelID, m.ConversationID, channel)
	}
	m.ChannelID = channel
	m.TenantID = t.tenant
	_, err = t.exec(ctx, `INSERT INTO messages (tenant_id, id, conversation_id, channel_id, seq, direction,
		sender_type, sender_id, sender_name, parts, external_id, client_id, status, status_reason, created_at, recalled_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.tenant, m.ID, m.ConversationID, m.ChannelID, m.Seq, string(m.Direction),
		string(m.Sender.Type), m.Sender.ID, m.Sender.Name, string(parts), nullString(m.ExternalID), nullString(m.ClientID),
		string(m.Status), m.StatusReason, micros(m.CreatedAt), microsPtr(m.RecalledAt))
	if err != nil {
		return conv.Message{}, fmt.Errorf("%s: %w", op, mapErr(err))
	}
	return m, nil
}

func (t *tx) messageWhere(ctx context.Context, op, where string, args ...any) (conv.Message, error) {
	m, err := t.scanMessage(t.queryRow(ctx, `SELECT `+messageCols+` FROM messages WHERE tenant_id = ? AND `+where,
		append([]any{t.tenant}, args...)...))
	if err != nil {
		return conv.Message{}, fmt.Errorf("%s: %w", op, mapErr(err))
	}
	return m, nil
}

func (t *tx) Message(ctx context.Context, id conv.MessageID) (conv.Message, error) {
	return t.messageWhere(ctx, "sqlite.Message "+id.String(), `id = ?`, id)
}

func (t *tx) MessageByExternalID(ctx context.Context, channel conv.ChannelID, externalID string) (conv.Message, error) {
	op := fmt.Sprintf("sqlite.MessageByExternalID %s/%s", channel, externalID)
	if externalID == "" {
		return conv.Message{}, fmt.Errorf("%s: %w: empty external id", op, conv.ErrNotFound)
	}
	return t.messageWhere(ctx, op, `channel_id = ? AND external_id = ?`, channel, externalID)
}

func (t *tx) MessageByClientID(ctx context.Context, conversation conv.ConversationID, clientID string) (conv.Message, error) {
	op := fmt.Sprintf("sqlite.MessageByClientID %s/%s", conversation, clientID)
	if clientID == "" {
		return conv.Message{}, fmt.Errorf("%s: %w: empty client id", op, conv.ErrNotFound)
	}
	return t.messageWhere(ctx, op, `conversation_id = ? AND client_id = ?`, conversation, clientID)
}

func (t *tx) messages(ctx context.Context, op, q string, args ...any) ([]conv.Message, error) {
	rows, err := t.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, mapErr(err))
	}
	out, err := collect(rows, t.scanMessage)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, mapErr(err))
	}
	return out, nil
}

func (t *tx) Messages(ctx context.Context, conversation conv.ConversationID, afterSeq int64, limit int) ([]conv.Message, error) {
	return t.messages(ctx, fmt.Sprintf("sqlite.Messages %s", conversation),
		`SELECT `+messageCols+` FROM messages WHERE tenant_id = ? AND conversation_id = ? AND seq > ?
		ORDER BY seq LIMIT ?`, t.tenant, conversation, afterSeq, max(limit, 0))
}

func (t *tx) SetMessageStatus(ctx context.Context, id conv.MessageID, status conv.MessageStatus, reason, externalID string) (conv.Message, bool, error) {
	op := fmt.Sprintf("sqlite.SetMessageStatus %s %s", id, status)
	m, err := t.Message(ctx, id)
	if err != nil {
		return m, false, fmt.Errorf("%s: %w", op, err)
	}
	if !conv.Updates(m.Status, m.StatusReason, status, reason) {
		return m, false, nil
	}
	m.Status, m.StatusReason = status, reason
	if externalID != "" {
		m.ExternalID = externalID
	}
	err = t.execOne(ctx, `UPDATE messages SET status = ?, status_reason = ?, external_id = ? WHERE tenant_id = ? AND id = ?`,
		string(m.Status), m.StatusReason, nullString(m.ExternalID), t.tenant, id)
	if err != nil {
		return conv.Message{}, false, fmt.Errorf("%s: %w", op, err)
	}
	return m, true, nil
}

// Outbox.

func (t *tx) MarkPublished(ctx context.Context, id conv.MessageID, at time.Time) error {
	// The first publication time is kept: a republish by the sweeper does
	// not hide how long the message waited.
	err := t.execOne(ctx, `UPDATE messages SET published_at = coalesce(published_at, ?) WHERE tenant_id = ? AND id = ?`,
		micros(at), t.tenant, id)
	if err != nil {
		return fmt.Errorf("sqlite.MarkPublished %s: %w", id, err)
	}
	return nil
}

func (t *tx) UnpublishedBefore(ctx context.Context, before time.Time, limit int) ([]conv.Message, error) {
	// The WHERE repeats messages_outbox's predicate so SQLite can use it.
	return t.messages(ctx, "sqlite.UnpublishedBefore",
		`SELECT `+messageCols+` FROM messages WHERE tenant_id = ?
		AND direction = 'out' AND status = 'pending' AND published_at IS NULL AND created_at < ?
		ORDER BY created_at, id LIMIT ?`, t.tenant, micros(before), max(limit, 0))
}

// Agents and groups.

func (t *tx) CreateAgent(ctx context.Context, a conv.Agent) error {
	op := fmt.Sprintf("sqlite.CreateAgent %s", a.ID)
	if a.ID.IsZero() || strings.TrimSpace(a.Email) == "" {
		return fmt.Errorf("%s: %w: agent needs id and email", op, conv.ErrInvalid)
	}
	if a.CreatedAt.IsZero() {
		a.CreatedAt = time.Now()
	}
	_, err := t.exec(ctx, `INSERT INTO agents (tenant_id, id, email, name, role, password_hash, capacity, disabled, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, t.tenant, a.ID, a.Email, a.Name, a.Role, a.PasswordHash, a.Capacity,
		a.Disabled, micros(a.CreatedAt))
	if err != nil {
		return fmt.Errorf("%s: %w", op, mapErr(err))
	}
	for _, g := range a.GroupIDs {
		if _, err := t.exec(ctx, `INSERT OR IGNORE INTO agent_groups (tenant_id, agent_id, group_id) VALUES (?, ?, ?)`,
			t.tenant, a.ID, g); err != nil {
			return fmt.Errorf("%s: group %s: %w", op, g, mapErr(err))
		}
	}
	return nil
}

const agentCols = `id, email, name, role, password_hash, capacity, disabled, created_at`

func (t *tx) scanAgent(r scanner) (conv.Agent, error) {
	var (
		a       conv.Agent
		created int64
	)
	err := r.Scan(&a.ID, &a.Email, &a.Name, &a.Role, &a.PasswordHash, &a.Capacity, &a.Disabled, &created)
	a.TenantID = t.tenant
	a.CreatedAt = fromMicros(created)
	return a, err
}

// agentGroups returns group ids per agent, for one agent or all when zero.
func (t *tx) agentGroups(ctx context.Context, only conv.AgentID) (map[conv.AgentID][]conv.GroupID, error) {
	q := `SELECT agent_id, group_id FROM agent_groups WHERE tenant_id = ?`
	args := []any{t.tenant}
	if !only.IsZero() {
		q += ` AND agent_id = ?`
		args = append(args, only)
	}
	rows, err := t.query(ctx, q+` ORDER BY agent_id, group_id`, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	out := make(map[conv.AgentID][]conv.GroupID)
	for rows.Next() {
		var (
			a conv.AgentID
			g conv.GroupID
		)
		if err := rows.Scan(&a, &g); err != nil {
			return nil, mapErr(err)
		}
		out[a] = append(out[a], g)
	}
	return out, mapErr(rows.Err())
}

func (t *tx) agentWhere(ctx context.Context, op, where string, args ...any) (conv.Agent, error) {
	a, err := t.scanAgent(t.queryRow(ctx, `SELECT `+agentCols+` FROM agents WHERE tenant_id = ? AND `+where,
		append([]any{t.tenant}, args...)...))
	if err != nil {
		return conv.Agent{}, fmt.Errorf("%s: %w", op, mapErr(err))
	}
	groups, err := t.agentGroups(ctx, a.ID)
	if err != nil {
		return conv.Agent{}, fmt.Errorf("%s: %w", op, err)
	}
	a.GroupIDs = groups[a.ID]
	return a, nil
}

func (t *tx) Agent(ctx context.Context, id conv.AgentID) (conv.Agent, error) {
	return t.agentWhere(ctx, "sqlite.Agent "+id.String(), `id = ?`, id)
}

func (t *tx) AgentByEmail(ctx context.Context, email string) (conv.Agent, error) {
	// lower(email) matches the agents_email index expression.
	return t.agentWhere(ctx, "sqlite.AgentByEmail", `lower(email) = lower(?)`, email)
}

func (t *tx) Agents(ctx context.Context) ([]conv.Agent, error) {
	rows, err := t.query(ctx, `SELECT `+agentCols+` FROM agents WHERE tenant_id = ? ORDER BY id`, t.tenant)
	if err != nil {
		return nil, fmt.Errorf("sqlite.Agents: %w", mapErr(err))
	}
	out, err := collect(rows, t.scanAgent)
	if err != nil {
		return nil, fmt.Errorf("sqlite.Agents: %w", mapErr(err))
	}
	groups, err := t.agentGroups(ctx, 0)
	if err != nil {
		return nil, fmt.Errorf("sqlite.Agents: %w", err)
	}
	for i := range out {
		out[i].GroupIDs = groups[out[i].ID]
	}
	return out, nil
}

func (t *tx) CreateGroup(ctx context.Context, g conv.Group) error {
	op := fmt.Sprintf("sqlite.CreateGroup %s", g.ID)
	if g.ID.IsZero() {
		return fmt.Errorf("%s: %w: group needs an id", op, conv.ErrInvalid)
	}
	if g.Skills == nil {
		g.Skills = []string{}
	}
	skills, err := json.Marshal(g.Skills)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if g.CreatedAt.IsZero() {
		g.CreatedAt = time.Now()
	}
	_, err = t.exec(ctx, `INSERT INTO groups (tenant_id, id, name, skills, created_at) VALUES (?, ?, ?, ?, ?)`,
		t.tenant, g.ID, g.Name, string(skills), micros(g.CreatedAt))
	if err != nil {
		return fmt.Errorf("%s: %w", op, mapErr(err))
	}
	return nil
}

func (t *tx) Groups(ctx context.Context) ([]conv.Group, error) {
	rows, err := t.query(ctx, `SELECT id, name, skills, created_at FROM groups WHERE tenant_id = ? ORDER BY id`, t.tenant)
	if err != nil {
		return nil, fmt.Errorf("sqlite.Groups: %w", mapErr(err))
	}
	out, err := collect(rows, func(r scanner) (conv.Group, error) {
		var (
			g       conv.Group
			skills  string
			created int64
		)
		if err := r.Scan(&g.ID, &g.Name, &skills, &created); err != nil {
			return g, err
		}
		if err := json.Unmarshal([]byte(skills), &g.Skills); err != nil {
			return g, fmt.Errorf("group %s skills: %w", g.ID, err)
		}
		if len(g.Skills) == 0 {
			g.Skills = nil
		}
		g.TenantID = t.tenant
		g.CreatedAt = fromMicros(created)
		return g, nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite.Groups: %w", mapErr(err))
	}
	return out, nil
}

// Tokens.

func (t *tx) CreateToken(ctx context.Context, tok conv.Token) error {
	op := fmt.Sprintf("sqlite.CreateToken %s", tok.ID)
	if tok.ID.IsZero() || len(tok.Hash) == 0 {
		return fmt.Errorf("%s: %w: token needs id and hash", op, conv.ErrInvalid)
	}
	if tok.CreatedAt.IsZero() {
		tok.CreatedAt = time.Now()
	}
	_, err := t.exec(ctx, `INSERT INTO tokens (tenant_id, id, agent_id, hash, created_at, expires_at, revoked_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, t.tenant, tok.ID, tok.AgentID, tok.Hash, micros(tok.CreatedAt),
		micros(tok.ExpiresAt), microsPtr(tok.RevokedAt))
	if err != nil {
		return fmt.Errorf("%s: %w", op, mapErr(err))
	}
	return nil
}

func (t *tx) TokenByHash(ctx context.Context, hash []byte) (conv.Token, error) {
	var (
		tok              conv.Token
		created, expires int64
		revoked          sql.NullInt64
	)
	err := t.queryRow(ctx, `SELECT id, agent_id, hash, created_at, expires_at, revoked_at FROM tokens
		WHERE tenant_id = ? AND hash = ?`, t.tenant, hash).Scan(&tok.ID, &tok.AgentID, &tok.Hash, &created, &expires, &revoked)
	if err != nil {
		return conv.Token{}, fmt.Errorf("sqlite.TokenByHash: %w", mapErr(err))
	}
	tok.TenantID = t.tenant
	tok.CreatedAt = fromMicros(created)
	tok.ExpiresAt = fromMicros(expires)
	tok.RevokedAt = fromMicrosPtr(revoked)
	return tok, nil
}

func (t *tx) RevokeToken(ctx context.Context, id conv.TokenID, at time.Time) error {
	// The first revocation time stands.
	err := t.execOne(ctx, `UPDATE tokens SET revoked_at = coalesce(revoked_at, ?) WHERE tenant_id = ? AND id = ?`,
		micros(at), t.tenant, id)
	if err != nil {
		return fmt.Errorf("sqlite.RevokeToken %s: %w", id, err)
	}
	return nil
}
