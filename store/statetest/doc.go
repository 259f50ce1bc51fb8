// Package statetest is the one conformance suite for shared state: every
// implementation of leases and rate limiting, and of core/live's timelines,
// fan-out and presence (store/memory for the embedded node, store/redis for
// N nodes) runs it, so the two cannot drift apart.
//
// The contract lives on the Leases and Limiter interfaces below and on the
// interfaces of core/live; the suite pins it, including the edges the doc
// comments decide (a renewal resets the expiry, Release by a non-holder is
// a no-op, denied attempts do not count, a cursor right before the oldest
// entry kept still reads) and a few they leave open, listed on RunTimelines,
// RunFanout and RunPresence.
//
// The live suites take two handles on one shared state: two nodes (two
// Redis clients on one prefix) or the same in-process instance twice, so
// that what one node writes or publishes the other must see.
//
// RunLeases, RunLimiter and the live suites use real time with short TTLs
// and poll with a deadline, because a Redis TTL cannot be faked.
// RunLimiterSliding drives a fake clock the implementation must read, to
// pin the window arithmetic to the microsecond.
//
// The suite's own test runs it against small fakes, each with one bug, and
// checks that the subtest meant to catch the bug fails.
//
// Goroutines: the concurrency tests start goroutines and wait for all of them
// before returning; nothing outlives a test.
package statetest
