-- Contact() lists a contact's identities ordered by (kind, external_id).
-- With only (tenant_id, contact_id) indexed, SQLite's planner preferred the
-- primary key for the ORDER BY and scanned every identity of the tenant on
-- each lookup. This index answers the query alone, already in order.
DROP INDEX identities_contact;
CREATE INDEX identities_contact ON identities (tenant_id, contact_id, kind, external_id);
