-- Switchboard schema, version 6: threaded channels and connector state.
--
-- Email keeps one conversation per thread, so a contact may have several
-- open on one channel. A threaded conversation's thread is its own id;
-- channels without threads keep thread '' and, through
-- conversations_one_open (now limited to thread = ''), one open
-- conversation per (channel, contact) as before.
ALTER TABLE conversations ADD COLUMN thread text NOT NULL DEFAULT '';
DROP INDEX conversations_one_open;
CREATE UNIQUE INDEX conversations_one_open ON conversations (tenant_id, channel_id, contact_id)
    WHERE status = 'open' AND thread = '';

-- The keys a threaded conversation's messages are known by (email
-- Message-IDs, the sender + subject fallback): a later message that refers
-- to one joins that conversation.
CREATE TABLE thread_keys (
    tenant_id       bigint      NOT NULL,
    channel_id      bigint      NOT NULL,
    key             text        NOT NULL,
    conversation_id bigint      NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, channel_id, key),
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id) ON DELETE CASCADE
);

-- What a connector keeps per channel: a mailbox position, a status.
CREATE TABLE channel_state (
    tenant_id  bigint      NOT NULL,
    channel_id bigint      NOT NULL,
    key        text        NOT NULL,
    value      text        NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, channel_id, key),
    FOREIGN KEY (tenant_id, channel_id) REFERENCES channels (tenant_id, id) ON DELETE CASCADE
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['thread_keys', 'channel_state']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I
            USING (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), '''')::bigint)
            WITH CHECK (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), '''')::bigint)', t);
    END LOOP;
END
$$;

-- ingest_envelope as in version 4, upserting on the narrowed
-- conversations_one_open. Threaded envelopes do not come here: the store
-- places them with the Tx methods (storage.IngestEach).
CREATE OR REPLACE FUNCTION ingest_envelope(
    p_tenant       bigint,
    p_channel      bigint,
    p_external_id  text,
    p_kind         text,        -- the sender's identity
    p_identity     text,
    p_name         text,        -- the name of a contact it creates
    p_contact      bigint,      -- the id of a contact it creates
    p_conversation bigint,      -- the id of a conversation it opens
    p_message      bigint,      -- the id of the message
    p_scene        text,
    p_system       boolean,     -- a channel event: system sender, no reply window
    p_parts        jsonb,
    p_now          timestamptz,
    p_deadline     timestamptz, -- the reply deadline asked for, or NULL
    -- What it did. For a duplicate, o_message_id and o_seq are the stored
    -- message's (the caller reads the rest) and the conversation is as
    -- stored; otherwise the conversation is as after the append.
    OUT o_duplicate    boolean,
    OUT o_opened       boolean,
    OUT o_message_id   bigint,
    OUT o_seq          bigint,
    OUT o_contact_id   bigint,
    OUT o_contact_name text,
    -- The conversation, in the order of conversationCols in tx.go.
    OUT c_id           bigint,
    OUT c_channel_id   bigint,
    OUT c_contact_id   bigint,
    OUT c_status       text,
    OUT c_assignee_id  bigint,
    OUT c_group_id     bigint,
    OUT c_priority     integer,
    OUT c_scene        text,
    OUT c_reply_deadline timestamptz,
    OUT c_last_seq     bigint,
    OUT c_created_at   timestamptz,
    OUT c_updated_at   timestamptz,
    OUT c_resolved_at  timestamptz
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    ch_group bigint;
    conv_id  bigint;
    c        conversations%ROWTYPE;
BEGIN
    SELECT ch.group_id INTO ch_group FROM channels ch WHERE ch.tenant_id = p_tenant AND ch.id = p_channel;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'channel % not found', p_channel USING ERRCODE = 'no_data_found';
    END IF;

    -- Dedup on (channel, external id).
    SELECT m.id, m.seq, m.conversation_id INTO o_message_id, o_seq, conv_id FROM messages m
        WHERE m.tenant_id = p_tenant AND m.channel_id = p_channel AND m.external_id = p_external_id;
    IF FOUND THEN
        SELECT * INTO c FROM conversations cv WHERE cv.tenant_id = p_tenant AND cv.id = conv_id;
        o_duplicate := true;
        o_opened := o_seq = 1;
    ELSE
        o_duplicate := false;

        -- The contact owning the identity, or a new one. If another
        -- transaction claims the identity first, ON CONFLICT waits for it
        -- and does nothing: drop our orphan contact and read theirs.
        SELECT i.contact_id, ct.name INTO o_contact_id, o_contact_name
            FROM identities i JOIN contacts ct ON ct.tenant_id = i.tenant_id AND ct.id = i.contact_id
            WHERE i.tenant_id = p_tenant AND i.kind = p_kind AND i.external_id = p_identity;
        IF NOT FOUND THEN
            INSERT INTO contacts (tenant_id, id, name, created_at) VALUES (p_tenant, p_contact, p_name, p_now);
            INSERT INTO identities (tenant_id, kind, external_id, contact_id, created_at)
                VALUES (p_tenant, p_kind, p_identity, p_contact, p_now)
                ON CONFLICT (tenant_id, kind, external_id) DO NOTHING;
            IF FOUND THEN
                o_contact_id := p_contact;
                o_contact_name := p_name;
            ELSE
                DELETE FROM contacts ct WHERE ct.tenant_id = p_tenant AND ct.id = p_contact;
                SELECT i.contact_id, ct.name INTO STRICT o_contact_id, o_contact_name
                    FROM identities i JOIN contacts ct ON ct.tenant_id = i.tenant_id AND ct.id = i.contact_id
                    WHERE i.tenant_id = p_tenant AND i.kind = p_kind AND i.external_id = p_identity;
            END IF;
        END IF;

        -- Append to the open conversation of (channel, contact), or open
        -- one holding this first message: one upsert on the partial unique
        -- index conversations_one_open. Appending takes the next seq with
        -- the row lock, which serializes appends to the conversation across
        -- writers until commit and keeps seq gapless, and pushes the reply
        -- deadline, never back. A concurrent open or append is waited for
        -- and then appended to; a conversation resolved meanwhile no longer
        -- conflicts, so a new one opens. (An upsert, rather than a lookup
        -- and then an UPDATE or INSERT, also leaves the planner no choice of
        -- index: before the first ANALYZE, a cached generic plan of the
        -- lookup picks conversations_open_assignee and walks every open
        -- conversation of the tenant.)
        INSERT INTO conversations AS cv (tenant_id, id, channel_id, contact_id, status, group_id, priority, scene,
                reply_deadline, last_seq, created_at, updated_at)
            VALUES (p_tenant, p_conversation, p_channel, o_contact_id, 'open', ch_group, 0, p_scene,
                p_deadline, 1, p_now, p_now)
            ON CONFLICT (tenant_id, channel_id, contact_id) WHERE status = 'open' AND thread = '' DO UPDATE
                SET last_seq = cv.last_seq + 1,
                    updated_at = CASE WHEN cv.updated_at <= p_now - interval '1 second'
                                      THEN p_now ELSE cv.updated_at END,
                    reply_deadline = CASE WHEN p_deadline IS NOT NULL
                                          AND (cv.reply_deadline IS NULL OR p_deadline > cv.reply_deadline)
                                     THEN p_deadline ELSE cv.reply_deadline END
            RETURNING * INTO c;
        o_opened := c.id = p_conversation;
        o_message_id := p_message;
        o_seq := c.last_seq;
        INSERT INTO messages (tenant_id, id, conversation_id, channel_id, seq, direction, sender_type, sender_id,
                sender_name, parts, external_id, status, created_at)
            VALUES (p_tenant, p_message, c.id, p_channel, c.last_seq, 'in',
                CASE WHEN p_system THEN 'system' ELSE 'contact' END,
                CASE WHEN p_system THEN '' ELSE o_contact_id::text END,
                CASE WHEN p_system THEN '' ELSE o_contact_name END,
                p_parts, p_external_id, 'received', p_now);
    END IF;

    c_id := c.id;
    c_channel_id := c.channel_id;
    c_contact_id := c.contact_id;
    c_status := c.status;
    c_assignee_id := COALESCE(c.assignee_id, 0);
    c_group_id := COALESCE(c.group_id, 0);
    c_priority := c.priority;
    c_scene := c.scene;
    c_reply_deadline := c.reply_deadline;
    c_last_seq := c.last_seq;
    c_created_at := c.created_at;
    c_updated_at := c.updated_at;
    c_resolved_at := c.resolved_at;
END
$$;
