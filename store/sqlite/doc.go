// Package sqlite is the embedded storage.Store: one SQLite file
// (modernc.org/sqlite, no cgo) holding Switchboard's source of truth on a
// single node.
//
// It owns the file's schema (numbered migrations embedded in the binary,
// recorded in schema_migrations and applied by Open and Migrate) and the
// mapping between conv records and rows. Channel ids are unique across
// tenants (the channels_id index), so ChannelTenant, the one lookup made
// before the tenant is known, has a single answer.
//
// Durability and concurrency: the database runs in WAL mode with
// synchronous=FULL, so a committed transaction survives a power cut, which
// the bus relies on when it acknowledges a message after ingest commits.
// Every Tx is a write transaction begun with BEGIN IMMEDIATE, so it takes
// the write lock up front and two transactions never deadlock upgrading a
// read lock. Inside one process a semaphore lets one transaction at a time
// ask for that lock, so goroutines queue in Go instead of in SQLite's busy
// handler; another process on the same file (the CLI while the server runs)
// waits up to Config.BusyTimeout, after which the call fails with
// conv.ErrUnavailable. Tx must not be called from inside another Tx's fn:
// it would wait for the semaphore its caller holds. Reads outside Tx (Tenant, Tenants, DeadLetters) run
// concurrently on the pool's other connections.
//
// Ingest: the Tx is a storage.SetIngester; storage.Ingest (IngestSets)
// runs each step of a batch as one statement, its rows passed as one JSON
// array read with json_each and joined to the unique indexes first
// (TestQueryPlans pins those plans). With one writer no other transaction
// can claim a new sender's identity meanwhile.
//
// Goroutines: none of its own; database/sql manages the connection pool.
// Close closes the pool; it is safe to call twice.
package sqlite
