// Package postgres is the production storage.Store: Postgres through a pgx
// v5 pool, with Row-Level Security as the second wall between tenants.
//
// It owns the schema (embedded numbered migrations in migrations/, applied
// by Open and by `switchboard migrate` under a pg_advisory_lock so that
// nodes starting together apply each once, recorded in schema_migrations)
// and the runtime role (Config.RuntimeRole, default switchboard_app:
// NOLOGIN, not a superuser, no BYPASSRLS, owns nothing, DML on the tables
// only), which Migrate creates when missing.
//
// Tenancy: every tenant table has tenant_id leading its keys, and ENABLE
// plus FORCE ROW LEVEL SECURITY with one policy, USING and WITH CHECK
//
//	tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::bigint
//
// Every transaction, tenant Tx and store-level call alike, starts with one
// statement that sets the role and the tenant transaction-locally
// (set_config(…, true)); store-level calls set no tenant and so see no
// tenant rows. A superuser login therefore still runs every statement as
// the runtime role, and a pooled connection never carries a session SET
// from one transaction into the next. The SQL names tenant_id anyway, for
// the indexes; RLS catches the statement that forgets.
//
// One table is read without a tenant: channel_directory (channel id →
// tenant id and nothing else), which Store.ChannelTenant consults for the
// web chat widget before it knows the tenant. Its RLS lets everyone read
// and only the Tx's tenant write, and a foreign key ties every entry to its
// channel; CreateChannel fills it in the channel's transaction.
//
// Seq: AppendMessage increments conversations.last_seq with UPDATE …
// RETURNING, whose row lock serializes appends to one conversation across
// nodes until commit; a rollback gives the seq back. Concurrent
// EnsureContact and OpenConversation settle on unique indexes with ON
// CONFLICT DO NOTHING and read the winner's row.
//
// Ingest: the Tx is a storage.SetIngester; storage.Ingest stores a batch of inbound
// envelopes set-wise, a statement per step for the whole batch (lookup,
// new contacts, one upsert on conversations_one_open per conversation,
// one insert of the messages) in three round trips when every sender is
// known. The upsert takes the group's next seqs under the conversation's
// row lock, which serializes appends like AppendMessage's UPDATE. Rows are
// locked in storage.IngestOrder so that concurrent writers lock shared rows
// in one order. (The SQL function ingest_envelope of 0003_ingest.sql, one
// call per envelope, is what nodes of the previous release call; a later
// migration drops it.)
//
// Errors: unique violations are conv.ErrConflict, missing rows and foreign
// keys naming nothing of the tenant's are conv.ErrNotFound, connection
// failures are conv.ErrUnavailable. Store.Tx runs fn again on serialization
// failures and deadlocks (a few times, jittered backoff).
//
// Goroutines: none of its own beyond pgxpool's health checker, which
// Close stops (Close waits for connections in use to come back).
package postgres
