-- Switchboard schema (SQLite), version 5: threaded channels and connector
-- state.
--
-- Email keeps one conversation per thread, so a contact may have several
-- open on one channel: conversations_one_open now includes thread, which is
-- '' for channels without threads (one open conversation per contact, as
-- before) and the conversation's own id for a threaded one.
ALTER TABLE conversations ADD COLUMN thread TEXT NOT NULL DEFAULT '';
DROP INDEX conversations_one_open;
CREATE UNIQUE INDEX conversations_one_open ON conversations (tenant_id, channel_id, contact_id, thread)
    WHERE status = 'open';

-- The keys a threaded conversation's messages are known by (email
-- Message-IDs, the sender + subject fallback): a later message that refers
-- to one joins that conversation.
CREATE TABLE thread_keys (
    tenant_id       INTEGER NOT NULL,
    channel_id      INTEGER NOT NULL,
    key             TEXT    NOT NULL,
    conversation_id INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, channel_id, key),
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id) ON DELETE CASCADE
) WITHOUT ROWID;

-- What a connector keeps per channel: a mailbox position, a status.
CREATE TABLE channel_state (
    tenant_id  INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, channel_id, key),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES channels (tenant_id, id) ON DELETE CASCADE
) WITHOUT ROWID;
