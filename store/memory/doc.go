// Package memory holds the shared state of a single embedded node in
// process: leases and rate limits. store/redis implements the same contract
// for N nodes; both pass store/statetest.
//
// State lives in maps behind one mutex per object. Expired entries are
// dropped when touched and, at most once per sweep interval, by a scan made
// inline by the call that notices the interval has passed, so there are no
// goroutines to start or stop and nothing to close.
package memory
