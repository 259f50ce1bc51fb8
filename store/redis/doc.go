// Package redis holds the shared state of N nodes in Redis (go-redis v9):
// leases and rate limits, and the live state of core/live — agents' inbox
// timelines (Client.Timelines), the fan-out to the node holding a socket
// (Client.Fanout) and agent presence (Client.Presence). It implements the
// same contracts as store/memory, pinned by store/statetest.
//
// Every operation on stored state is one Lua script, so each is atomic on
// the server and there is no read-then-write race between nodes. Keys
// start with Prefix (default "sb:"):
//
//	<Prefix>lease:<key>        lease holder
//	<Prefix>rl:<key>           rate-limit log
//	<Prefix>tl:{<t>:<a>}:n     timeline head (cursor counter)
//	<Prefix>tl:{<t>:<a>}:e     timeline entries, scored by cursor
//	<Prefix>tl:{<t>:<a>}:k     timeline dedup map, key → cursor
//	<Prefix>pr:{<t>}:exp       tenant's sessions, scored by expiry
//	<Prefix>pr:{<t>}:st        tenant's sessions' statuses
//
// and fan-out channels are <Prefix>fo:<topic>. Lease and rate-limit callers
// put the tenant into key; the live state names tenant and agent itself,
// inside a {hash tag} so that one script's keys share a Cluster slot. Every
// key carries a TTL, so abandoned keys leave on their own — except a
// timeline's head, which must outlive its entries so that cursors are never
// reused (see Timelines); it is one small string per agent. Rate limits and
// presence read the Redis server's clock, not the node's, so nodes with
// skewed clocks agree. Needs Redis 5 or later (scripts that call TIME and
// then write).
//
// Goroutines: go-redis runs its connection pool, and, from the first
// Fanout.Subscribe, one PubSub connection with a receiving and a
// health-check goroutine; the fan-out adds one router goroutine that hands
// messages to local subscriptions. Client.Close stops them all, closes
// every subscription's channel, and waits for the router.
package redis
