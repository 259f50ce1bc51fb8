-- Switchboard schema, SQLite dialect. Times are INTEGER microseconds since
-- the Unix epoch, UTC. Every tenant table leads its keys with tenant_id, and
-- child rows reference parents by (tenant_id, id), so a row can never point
-- at another tenant's row.

CREATE TABLE tenants (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE channels (
    tenant_id  INTEGER NOT NULL REFERENCES tenants (id),
    id         INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    config     TEXT,
    group_id   INTEGER,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- One row per secret, sealed with AAD storage.SecretAAD(tenant, channel, field).
CREATE TABLE channel_secrets (
    tenant_id  INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    field      TEXT    NOT NULL,
    sealed     TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, channel_id, field),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES channels (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE contacts (
    tenant_id  INTEGER NOT NULL REFERENCES tenants (id),
    id         INTEGER NOT NULL,
    name       TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE identities (
    tenant_id   INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    external_id TEXT    NOT NULL,
    contact_id  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, kind, external_id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX identities_contact ON identities (tenant_id, contact_id);

CREATE TABLE groups (
    tenant_id  INTEGER NOT NULL REFERENCES tenants (id),
    id         INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    skills     TEXT    NOT NULL DEFAULT '[]',
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE agents (
    tenant_id     INTEGER NOT NULL REFERENCES tenants (id),
    id            INTEGER NOT NULL,
    email         TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    password_hash TEXT    NOT NULL DEFAULT '',
    capacity      INTEGER NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
-- lower() folds ASCII only in SQLite; addresses are matched the same way.
CREATE UNIQUE INDEX agents_email ON agents (tenant_id, lower(email));

CREATE TABLE agent_groups (
    tenant_id INTEGER NOT NULL,
    agent_id  INTEGER NOT NULL,
    group_id  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, group_id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, group_id) REFERENCES groups (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX agent_groups_group ON agent_groups (tenant_id, group_id);

CREATE TABLE conversations (
    tenant_id      INTEGER NOT NULL,
    id             INTEGER NOT NULL,
    channel_id     INTEGER NOT NULL,
    contact_id     INTEGER NOT NULL,
    status         TEXT    NOT NULL,
    assignee_id    INTEGER,
    group_id       INTEGER,
    priority       INTEGER NOT NULL DEFAULT 0,
    scene          TEXT    NOT NULL DEFAULT '',
    reply_deadline INTEGER,
    last_seq       INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    resolved_at    INTEGER,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES channels (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id)
);
-- At most one open conversation per (channel, contact).
CREATE UNIQUE INDEX conversations_one_open ON conversations (tenant_id, channel_id, contact_id)
    WHERE status = 'open';
CREATE INDEX conversations_contact ON conversations (tenant_id, contact_id);
CREATE INDEX conversations_assignee ON conversations (tenant_id, assignee_id) WHERE assignee_id IS NOT NULL;

CREATE TABLE messages (
    tenant_id       INTEGER NOT NULL,
    id              INTEGER NOT NULL,
    conversation_id INTEGER NOT NULL,
    channel_id      INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    direction       TEXT    NOT NULL,
    sender_type     TEXT    NOT NULL,
    sender_id       TEXT    NOT NULL DEFAULT '',
    sender_name     TEXT    NOT NULL DEFAULT '',
    parts           TEXT    NOT NULL,
    external_id     TEXT,
    client_id       TEXT,
    status          TEXT    NOT NULL,
    status_reason   TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    recalled_at     INTEGER,
    published_at    INTEGER,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id)
);
CREATE UNIQUE INDEX messages_seq ON messages (tenant_id, conversation_id, seq);
-- The dedup keys. NULL (no key) never collides.
CREATE UNIQUE INDEX messages_external ON messages (tenant_id, channel_id, external_id)
    WHERE external_id IS NOT NULL;
CREATE UNIQUE INDEX messages_client ON messages (tenant_id, conversation_id, client_id)
    WHERE client_id IS NOT NULL;
-- The outbox: pending outbound messages not yet handed to the bus.
CREATE INDEX messages_outbox ON messages (tenant_id, created_at)
    WHERE direction = 'out' AND status = 'pending' AND published_at IS NULL;

CREATE TABLE tokens (
    tenant_id  INTEGER NOT NULL,
    id         INTEGER NOT NULL,
    agent_id   INTEGER NOT NULL,
    hash       BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX tokens_hash ON tokens (tenant_id, hash);

-- Not tenant-scoped: a message that failed may not have a parsable tenant.
CREATE TABLE dead_letters (
    id           INTEGER PRIMARY KEY,
    topic        TEXT    NOT NULL,
    handler      TEXT    NOT NULL DEFAULT '',
    message_uuid TEXT    NOT NULL DEFAULT '',
    reason       TEXT    NOT NULL DEFAULT '',
    payload      BLOB,
    metadata     TEXT,
    tenant_id    INTEGER,
    created_at   INTEGER NOT NULL
);
CREATE INDEX dead_letters_newest ON dead_letters (created_at DESC, id DESC);
