-- The agent console and the web chat widget: read positions, visitor
-- sessions, the channel → tenant lookup, and the indexes the console's
-- lists need. SQLite keeps no statistics, so each index below matches the
-- WHERE equalities and then the ORDER BY of one query shape exactly; the
-- shapes are pinned by TestQueryPlans.

-- ChannelTenant looks a channel up by id alone (the widget names only its
-- channel). The channels table is the directory: this index makes the
-- lookup one probe and makes channel ids unique across tenants, so the
-- answer is never ambiguous. (Postgres keeps a separate directory table
-- because Row-Level Security hides channels outside a tenant.)
CREATE UNIQUE INDEX channels_id ON channels (id);

-- How far each agent has read each conversation. Unread counts the inbound
-- messages after read_seq.
CREATE TABLE conversation_reads (
    tenant_id       INTEGER NOT NULL,
    agent_id        INTEGER NOT NULL,
    conversation_id INTEGER NOT NULL,
    read_seq        INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, conversation_id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id) ON DELETE CASCADE
);

-- A web chat visitor session; hash is SHA-256 of the visitor token.
CREATE TABLE visitors (
    tenant_id  INTEGER NOT NULL,
    id         INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    contact_id INTEGER NOT NULL,
    hash       BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES channels (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id)
);
CREATE UNIQUE INDEX visitors_hash ON visitors (tenant_id, hash);
-- MergeContacts moves a contact's sessions.
CREATE INDEX visitors_contact ON visitors (tenant_id, contact_id);

-- Unread: count(*) of inbound messages after read_seq, answered from this
-- index alone (no table rows read).
CREATE INDEX messages_inbound ON messages (tenant_id, conversation_id, seq) WHERE direction = 'in';

-- ListConversations orders by (updated_at DESC, id DESC). One index per
-- filter shape, equality columns first, so that no shape sorts or walks
-- other agents' conversations:
--   any status, any assignee
CREATE INDEX conversations_recent ON conversations (tenant_id, updated_at, id);
--   one status, any assignee
CREATE INDEX conversations_status_recent ON conversations (tenant_id, status, updated_at, id);
--   any or resolved status, one assignee or unassigned (IS NULL is an
--   equality here); resolved skips the few open ones
CREATE INDEX conversations_assignee_recent ON conversations (tenant_id, assignee_id, updated_at, id);
--   open, one assignee or unassigned: the small set an agent works on. The
--   redundant status column gives this index one more equality than the
--   one above, which is how SQLite, without statistics, tells them apart.
--   OpenLoad counts its assigned entries.
CREATE INDEX conversations_open_assignee ON conversations (tenant_id, assignee_id, status, updated_at, id)
    WHERE status = 'open';
-- conversations_assignee is a prefix of conversations_assignee_recent.
DROP INDEX conversations_assignee;

-- Queued: open and unassigned, oldest first, all groups or one.
CREATE INDEX conversations_queue ON conversations (tenant_id, created_at, id)
    WHERE status = 'open' AND assignee_id IS NULL;
CREATE INDEX conversations_queue_group ON conversations (tenant_id, group_id, created_at, id)
    WHERE status = 'open' AND assignee_id IS NULL;
