// Package bus is the durable message bus: Watermill over NATS JetStream
// (watermill-nats, nats.go's JetStream API), with the NATS server embedded
// in the process by default. It owns the streams, the durable consumers,
// the publisher, the router middleware that decides between retry,
// redelivery and the poison topic, and the handler that moves poison
// messages into a DeadLetterSink. Topic names and payloads are package
// hub's business.
//
// # Servers
//
// Config.URL empty: a nats-server runs in the process with JetStream on,
// its file store under DataDir/nats, no listening port (clients connect
// through in-process pipes, so it cannot collide with a NATS already on
// the machine) and sync always: every write is fsynced before the
// publish is acknowledged, so an acknowledged message survives a power
// cut. Config.URL set: a NATS server or cluster, reconnected forever.
//
// Production fsync: JetStream's default sync_interval is 2 minutes, so on
// a single server (R1) a power cut can lose up to 2 minutes of
// acknowledged messages. Run a cluster with Config.Replicas = 3 across
// failure domains (zones, racks with separate power): a publish is then
// acknowledged once a majority of replicas hold it, and only a
// simultaneous power loss of that majority loses data. Where replicas
// share a failure domain, or with one server, set
// `jetstream { sync_interval: always }` in the server config and accept
// the lower throughput.
//
// # Streams
//
// Provisioned at Open, created or updated to this configuration (the bus
// owns it; change it through Config, not with the nats CLI):
//
//	topic             stream     subjects
//	inbound           INBOUND    inbound
//	events            EVENTS     events
//	outbound.<kind>   OUTBOUND   outbound.>
//	delivery          DELIVERY   delivery
//	poison            POISON     poison
//
// File storage, limits retention (messages stay after they are acked),
// MaxAge (7 days by default), discard old. Dedup window 2 minutes on
// Nats-Msg-Id, which the bus sets to topic and watermill UUID: a message
// republished to the same topic with the same UUID within the window is
// stored once and Publish reports success. hub derives UUIDs from natural
// keys, so a connector or core republishing after a crash stores nothing
// twice.
//
// # Consumers
//
// Subscriber(group).Subscribe(topic) uses one durable push consumer per
// (group, topic), created by the bus (nats.go would delete a consumer it
// created when the subscriber closes, replaying the stream at the next
// start), named from group and topic by durableName (JetStream names
// cannot hold '.'), with DeliverAll, AckExplicit, Config.AckWait and a
// deliver group of the same name (deliver subject _INBOX.bus.<name>,
// which NATS permissions must allow). Each Subscribe opens its own
// connection and Config.Subscribers queue subscriptions bound to the
// consumer: that many messages are in flight at once per handler and node
// (ingest gathers them into one commit; across nodes JetStream's
// Config.MaxAckPending, 256 by default, bounds the group), and order is not
// kept. A group that is new starts from the oldest message the stream
// keeps (up to MaxAge of history); consumers of retired groups stay on the
// server until removed (`nats consumer rm`).
//
// # Delivery semantics: at least once
//
// Publish returns once JetStream stored the message. A handler that
// returns nil has its message acked. A handler error is, in the router
// from NewRouter:
//   - permanent (conv.Permanent: ErrInvalid, ErrNotFound, ErrForbidden):
//     published to "poison" at once, no retries, then acked;
//   - transient: retried in-process (Config.Retry, exponential); if it
//     still fails the message is nacked and JetStream redelivers it after
//     Config.Redelivery (exponential per delivery), so it never vanishes;
//     when the Config.MaxDeliver-th delivery fails too, it goes to
//     "poison" with "gave up after delivery N of N: <error>".
//
// A panic in a handler is a transient error. A handler that hangs past
// AckWait returns no error; JetStream redelivers, and the delivery after
// MaxDeliver goes to "poison" without calling the handler ("earlier
// deliveries were not acknowledged"). JetStream's own MaxDeliver is
// unlimited: its limit would stop deliveries silently.
//
// A poison message is a copy with its own UUID (so that the failure of one
// message in two handlers is kept twice) and metadata reason_poisoned,
// topic_poisoned, handler_poisoned, subscriber_poisoned (watermill's),
// uuid_poisoned and time_poisoned. AddDeadLetterSink consumes "poison"
// into a sink (the store), redelivering until the sink accepts; the
// poison topic's handler is exempt from poisoning, so it cannot feed
// itself. Consumers must be idempotent: a message can arrive again after
// a lost ack, a crash, or a shutdown.
//
// # Goroutines
//
// The embedded server's (until Close). Per connection, nats.go's reader,
// flusher and callback goroutines. Per Subscribe: Config.Subscribers
// nats.go dispatchers, each running watermill-nats's processMessage for
// one message at a time, and as many watermill-nats goroutines waiting to
// unsubscribe; one forwarder; one goroutine per message in flight, which
// hands it to the consumer and waits for its ack; one watching the
// Subscribe context. The router runs one goroutine per message.
//
// # Shutdown
//
// Cancelling Router.Run's context stops the handlers' subscriptions (the
// router also closes their subscribers). Stopping a subscription lets no
// new message in, nacks those received but not yet handed out, waits (at
// most AckWait) for those handed out to be acked or nacked, then
// unsubscribes and drains the connection, which flushes the acks. Only
// then may watermill-nats close its output channel: it would otherwise
// race its own callbacks. Bus.Close closes any subscriber still open, the
// publisher's connection and the embedded server. Messages JetStream had
// pushed to a stopping subscription and everything unacked after a crash
// are redelivered once AckWait has passed.
package bus
