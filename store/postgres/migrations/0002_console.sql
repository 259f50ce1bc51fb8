-- Switchboard schema, version 2: the agent console and the web chat
-- widget. Read positions, visitor sessions, the channel directory, and the
-- indexes the console's lists need.

-- How far each agent has read each conversation. Unread counts the inbound
-- messages after read_seq.
CREATE TABLE conversation_reads (
    tenant_id       bigint NOT NULL,
    agent_id        bigint NOT NULL,
    conversation_id bigint NOT NULL,
    read_seq        bigint NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, conversation_id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id),
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id)
);

-- A web chat visitor session; hash is SHA-256 of the visitor token, which
-- itself is never stored.
CREATE TABLE visitors (
    tenant_id  bigint NOT NULL,
    id         bigint NOT NULL,
    channel_id bigint NOT NULL,
    contact_id bigint NOT NULL,
    hash       bytea NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, hash),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES channels (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id)
);
-- MergeContacts moves a contact's sessions.
CREATE INDEX visitors_contact ON visitors (tenant_id, contact_id);

-- The channel directory: which tenant owns a channel, for
-- Store.ChannelTenant, the one lookup made before the tenant is known (the
-- web chat widget names only its channel).
--
-- Why a table of its own: channels is a tenant table, and Row-Level
-- Security hides all of it from a transaction that has no tenant, which is
-- exactly right for the channel's name, config and secrets. Rather than
-- punch a hole in that wall (a policy exception, or a SECURITY DEFINER
-- function running as a role that bypasses RLS), the directory holds the
-- two ids and nothing else, and may be read by anyone. It cannot drift or
-- lie: the foreign key (checked by Postgres regardless of RLS) means every
-- entry is a real channel of the tenant it names, CreateChannel fills it
-- in the same transaction as the channel, and the primary key makes a
-- channel id unique across tenants so the answer is never ambiguous.
-- Writes are still confined to the transaction's tenant by the policy
-- below, so no tenant can remove or re-point another's entries.
CREATE TABLE channel_directory (
    channel_id bigint PRIMARY KEY,
    tenant_id  bigint NOT NULL,
    FOREIGN KEY (tenant_id, channel_id) REFERENCES channels (tenant_id, id)
);
ALTER TABLE channel_directory ENABLE ROW LEVEL SECURITY;
ALTER TABLE channel_directory FORCE ROW LEVEL SECURITY;
CREATE POLICY directory_read ON channel_directory FOR SELECT USING (true);
CREATE POLICY directory_write ON channel_directory
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::bigint)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::bigint);

-- Backfill from the channels that exist. The migrating user owns the
-- tables, and FORCE ROW LEVEL SECURITY applies to owners too, so unless it
-- is a superuser it sees no channel without a tenant set: go tenant by
-- tenant, as the application does, rather than switch RLS off.
DO $$
DECLARE
    t bigint;
BEGIN
    FOR t IN SELECT id FROM tenants ORDER BY id LOOP
        PERFORM set_config('app.tenant_id', t::text, true);
        INSERT INTO channel_directory (channel_id, tenant_id)
            SELECT id, tenant_id FROM channels WHERE tenant_id = t;
    END LOOP;
    PERFORM set_config('app.tenant_id', '', true);
END
$$;

-- Unread: count(*) of inbound messages after read_seq, from this index alone.
CREATE INDEX messages_inbound ON messages (tenant_id, conversation_id, seq) WHERE direction = 'in';

-- ListConversations orders by (updated_at DESC, id DESC); these match the
-- filter shapes with equality columns first (the same set as SQLite's, whose
-- planner has no statistics to fall back on):
--   any status, any assignee
CREATE INDEX conversations_recent ON conversations (tenant_id, updated_at, id);
--   one status, any assignee
CREATE INDEX conversations_status_recent ON conversations (tenant_id, status, updated_at, id);
--   any or resolved status, one assignee or unassigned
CREATE INDEX conversations_assignee_recent ON conversations (tenant_id, assignee_id, updated_at, id);
--   open, one assignee or unassigned: the small set agents work on; also
--   what OpenLoad counts
CREATE INDEX conversations_open_assignee ON conversations (tenant_id, assignee_id, status, updated_at, id)
    WHERE status = 'open';
-- Queued: open and unassigned, oldest first, all groups or one.
CREATE INDEX conversations_queue ON conversations (tenant_id, created_at, id)
    WHERE status = 'open' AND assignee_id IS NULL;
CREATE INDEX conversations_queue_group ON conversations (tenant_id, group_id, created_at, id)
    WHERE status = 'open' AND assignee_id IS NULL;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['conversation_reads', 'visitors']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I
            USING (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), '''')::bigint)
            WITH CHECK (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), '''')::bigint)', t);
    END LOOP;
END
$$;
