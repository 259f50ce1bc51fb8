// Package outbound sends agent replies out through the conversation's
// channel, with an outbox so that no reply is lost.
//
// Reply stores the message first (status pending, direction out) and
// commits; then it publishes an conv.Outbound to the bus topic
// "outbound.<channel kind>" and marks the message published. If the process
// dies between the commit and the mark, the message stays unpublished; the
// sweeper (Sweep, run by one node at a time under a lease) finds pending
// unpublished messages older than a grace period and publishes them again.
// The bus drops a republish of the same message inside its dedup window,
// and connectors treat the message id as an idempotency key, so the
// customer receives one reply.
//
// ApplyDelivery records a connector's delivery report: status only moves
// forward, so redelivered or reordered reports change nothing.
//
// Goroutines: RunSweeper loops until its context ends; everything else runs
// on the caller's goroutine.
package outbound
