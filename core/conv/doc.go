// Package conv is Switchboard's conversation model: the types every other
// package speaks, with no dependency beyond the standard library.
//
// Records. A Tenant owns everything else. A Channel is one configured
// endpoint (a WeChat app, a mailbox, a web widget) of a ChannelKind. A
// Contact is a customer, known on channels by Identities (kind + external
// id). A Conversation is the thread between one contact and the business on
// one channel; a Message is one entry in it, made of Parts. Agents answer
// conversations and belong to Groups.
//
// Invariants the stores and core uphold:
//   - Every record belongs to exactly one tenant, and every store operation
//     names its tenant explicitly. An id of another tenant is "not found".
//   - Ids are 64-bit, time-ordered snowflakes made in-process (IDGen); in
//     JSON they are decimal strings, because JavaScript numbers and Redis
//     sorted-set scores hold only 53 bits.
//   - Message.Seq is per conversation, starts at 1 and has no gaps; it is
//     assigned in the transaction that stores the message, so a client that
//     sees a hole asks for exactly the missing range.
//   - (channel, external id) identifies an inbound message: storing it twice
//     is impossible, so every consumer of the bus can be at-least-once.
//   - At most one conversation per (channel, contact) is open.
//   - A message's status only moves forward (Advances).
//   - Channel secrets exist in plaintext only in memory; stores seal them.
//
// Errors: a handful of kinds (ErrNotFound, ErrConflict, ErrInvalid,
// ErrForbidden, ErrUnauthorized, ErrUnavailable) that every layer wraps with
// its operation and every edge translates in one place.
package conv
