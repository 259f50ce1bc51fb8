-- Switchboard schema, version 1.
--
-- tenants and dead_letters are system tables: the store reads them outside
-- any tenant. Every other table is a tenant table: it has tenant_id, keys
-- and indexes lead with it, and Row-Level Security (enabled and forced)
-- confines every statement to the tenant named by the transaction-local
-- setting app.tenant_id. NULLIF matters: once a transaction that set it
-- ends, the setting reads '' for the rest of the session, and ''::bigint
-- would be an error instead of "no tenant, no rows".
--
-- Foreign keys name (tenant_id, id), so a row can never point at another
-- tenant's row. References that dispatch or admins may set to records the
-- store does not check (assignee, group) are plain columns.

CREATE TABLE tenants (
    id         bigint PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL
);

CREATE TABLE dead_letters (
    id           bigint PRIMARY KEY,
    topic        text NOT NULL,
    handler      text NOT NULL,
    message_uuid text NOT NULL,
    reason       text NOT NULL,
    payload      bytea NOT NULL,
    metadata     jsonb,
    -- NULL when the message's tenant could not be read; no foreign key, so
    -- a letter naming a tenant that does not exist is still kept.
    tenant_id    bigint,
    created_at   timestamptz NOT NULL
);
CREATE INDEX dead_letters_newest ON dead_letters (created_at DESC, id DESC);

CREATE TABLE groups (
    tenant_id  bigint NOT NULL REFERENCES tenants (id),
    id         bigint NOT NULL,
    name       text NOT NULL,
    skills     text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE channels (
    tenant_id  bigint NOT NULL REFERENCES tenants (id),
    id         bigint NOT NULL,
    kind       text NOT NULL,
    name       text NOT NULL,
    config     jsonb,
    group_id   bigint,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- One row per secret, sealed by the application (AES-256-GCM bound to
-- tenant, channel and field): the database never sees plaintext.
CREATE TABLE channel_secrets (
    tenant_id  bigint NOT NULL,
    channel_id bigint NOT NULL,
    field      text NOT NULL,
    sealed     text NOT NULL,
    PRIMARY KEY (tenant_id, channel_id, field),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES channels (tenant_id, id)
);

CREATE TABLE contacts (
    tenant_id  bigint NOT NULL REFERENCES tenants (id),
    id         bigint NOT NULL,
    name       text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- The primary key is the lookup ingest does for every inbound message.
CREATE TABLE identities (
    tenant_id   bigint NOT NULL,
    kind        text NOT NULL,
    external_id text NOT NULL,
    contact_id  bigint NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, kind, external_id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id)
);
CREATE INDEX identities_contact ON identities (tenant_id, contact_id);

CREATE TABLE conversations (
    tenant_id      bigint NOT NULL,
    id             bigint NOT NULL,
    channel_id     bigint NOT NULL,
    contact_id     bigint NOT NULL,
    status         text NOT NULL,
    assignee_id    bigint,
    group_id       bigint,
    priority       integer NOT NULL DEFAULT 0,
    scene          text NOT NULL DEFAULT '',
    reply_deadline timestamptz,
    -- Appends take the next seq with UPDATE ... RETURNING: the row lock
    -- serializes appends to one conversation across nodes.
    last_seq       bigint NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    resolved_at    timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES channels (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id)
);
-- At most one open conversation per (channel, contact); OpenConversation
-- relies on it to settle concurrent opens.
CREATE UNIQUE INDEX conversations_one_open ON conversations (tenant_id, channel_id, contact_id)
    WHERE status = 'open';
CREATE INDEX conversations_contact ON conversations (tenant_id, contact_id);

CREATE TABLE messages (
    tenant_id       bigint NOT NULL,
    id              bigint NOT NULL,
    conversation_id bigint NOT NULL,
    channel_id      bigint NOT NULL,
    seq             bigint NOT NULL,
    direction       text NOT NULL,
    sender_type     text NOT NULL,
    sender_id       text NOT NULL DEFAULT '',
    sender_name     text NOT NULL DEFAULT '',
    parts           jsonb NOT NULL,
    external_id     text,
    client_id       text,
    status          text NOT NULL,
    status_reason   text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL,
    recalled_at     timestamptz,
    published_at    timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id),
    -- Gapless per conversation; also the index Messages pages on.
    UNIQUE (tenant_id, conversation_id, seq)
);
-- The dedup keys: the channel's message id, and the sender's idempotency key.
CREATE UNIQUE INDEX messages_external_id ON messages (tenant_id, channel_id, external_id)
    WHERE external_id IS NOT NULL;
CREATE UNIQUE INDEX messages_client_id ON messages (tenant_id, conversation_id, client_id)
    WHERE client_id IS NOT NULL;
-- The outbox sweep reads only pending, unpublished replies.
CREATE INDEX messages_unpublished ON messages (tenant_id, created_at, id)
    WHERE direction = 'out' AND status = 'pending' AND published_at IS NULL;

CREATE TABLE agents (
    tenant_id     bigint NOT NULL REFERENCES tenants (id),
    id            bigint NOT NULL,
    email         text NOT NULL,
    name          text NOT NULL,
    role          text NOT NULL,
    password_hash text NOT NULL DEFAULT '',
    capacity      integer NOT NULL DEFAULT 0,
    group_ids     bigint[] NOT NULL DEFAULT '{}',
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX agents_email ON agents (tenant_id, lower(email));

-- hash is SHA-256 of the bearer secret; the token itself is never stored.
CREATE TABLE tokens (
    tenant_id  bigint NOT NULL,
    id         bigint NOT NULL,
    agent_id   bigint NOT NULL,
    hash       bytea NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, hash),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['groups', 'channels', 'channel_secrets', 'contacts', 'identities',
                             'conversations', 'messages', 'agents', 'tokens']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I
            USING (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), '''')::bigint)
            WITH CHECK (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), '''')::bigint)', t);
    END LOOP;
END
$$;
