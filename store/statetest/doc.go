// Package statetest is the one conformance suite for shared state: every
// implementation of leases and rate limiting (store/memory for the embedded
// node, store/redis for N nodes) runs it, so the two cannot drift apart.
//
// The contract lives on the Leases and Limiter interfaces below; the suite
// pins it, including the edges the doc comments decide (a renewal resets the
// expiry, Release by a non-holder is a no-op, denied attempts do not count).
//
// RunLeases and RunLimiter use real time with short TTLs and poll with a
// deadline, because a Redis TTL cannot be faked. RunLimiterSliding drives a
// fake clock the implementation must read, to pin the window arithmetic to
// the microsecond.
//
// Goroutines: the concurrency tests start goroutines and wait for all of them
// before returning; nothing outlives a test.
package statetest
