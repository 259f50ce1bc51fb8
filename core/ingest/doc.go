// Package ingest turns normalized inbound envelopes into stored messages.
//
// For each envelope, in one transaction: dedup on (channel, external id);
// resolve or create the contact by identity; reuse the open conversation
// for (channel, contact) or open one; append the message with the next
// gapless seq. That is storage.Ingest: both stores' transactions are
// storage.SetIngesters and do a whole batch in a few statements
// (storage.IngestSets); a store without that capability would go through
// the Tx methods one envelope at a time (storage.IngestEach). After the commit it publishes conversation.opened (when it
// opened one) and message.created. A redelivered envelope finds its stored
// row and publishes the same events again, so consumers see every event at
// least once and the store holds every message exactly once.
//
// Group commit: Accept may be called from many goroutines (the bus runs
// one per in-flight message). Requests queue to writer goroutines, each of
// which takes everything waiting (up to MaxBatch), groups it by tenant and
// commits each group in one transaction, so throughput is bounded by
// commits per second times batch size rather than by one fsync per
// message. A transaction that lost a race to another writer (ErrConflict:
// the same envelope redelivered to another writer, which committed first)
// runs again and finds the other's rows. If a batch still fails, its
// envelopes are retried one per transaction so that one bad envelope
// cannot fail its neighbours.
//
// Lifecycle: Run(ctx) runs the writers until ctx ends; Accept calls made
// after that fail with conv.ErrUnavailable. Events are published by one
// publisher goroutine after each commit, outside the writers, so a slow
// bus does not hold the database lock. AcceptAll takes a bus batch of
// envelopes in one call.
package ingest
