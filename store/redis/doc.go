// Package redis holds the shared state of N nodes in Redis (go-redis v9):
// leases and rate limits. It implements the same contract as store/memory,
// pinned by store/statetest.
//
// Every operation is one Lua script, so each is atomic on the server and
// there is no read-then-write race between nodes. Keys are
// <Prefix>lease:<key> and <Prefix>rl:<key> (Prefix defaults to "sb:");
// callers put the tenant into key. Every key carries a TTL, so abandoned
// keys leave on their own. Rate limits read the Redis server's clock, not
// the node's, so nodes with skewed clocks agree on windows. Needs Redis 5 or
// later (scripts that call TIME and then write).
//
// Goroutines: go-redis runs its connection pool; Client.Close stops it.
// This package starts none of its own.
package redis
