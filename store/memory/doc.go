// Package memory holds the shared state of a single embedded node in
// process: leases and rate limits, and the live state of core/live —
// agents' inbox timelines (NewTimelines), the fan-out to sockets
// (NewFanout) and agent presence (NewPresence). store/redis implements the
// same contracts for N nodes; both pass store/statetest.
//
// State lives in maps behind one mutex per object. Expired entries are
// dropped when touched and, at most once per sweep interval, by a scan made
// inline by the call that notices the interval has passed, so there are no
// goroutines to start or stop and nothing to close. Timelines behave as in
// Redis: each keeps its newest MaxEntries, and one without appends for
// Retention drops its entries and dedup keys but keeps its head, so
// cursors are never reused.
//
// Fanout delivers to buffered channels (SubscriptionBuffer each) without
// ever blocking Publish: a full subscriber drops the message and counts it
// (Subscription.Dropped). Publish holds a read lock while it sends and
// Subscription.Close the write lock while it closes, so a channel is never
// sent to once closed. Fanout has no goroutines either; a Subscription
// nobody closes stays registered, as a socket handler must close its own.
package memory
