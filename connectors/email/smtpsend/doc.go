// Package smtpsend hands one already-built message (mail.Outgoing.Bytes) to
// a channel's SMTP server and says what became of it, in terms the
// delivery status needs: accepted (Result, the server's final reply with
// its queue id), failed for now (retry later), or failed for good (store
// the reason, show it to the agent). It is the only package of Switchboard
// that imports go-smtp; callers see Config, Result and SendError.
//
// What it owns: one connection per Send (dial, implicit TLS or STARTTLS,
// EHLO, AUTH, MAIL, RCPT, DATA, QUIT), the envelope checks, and the
// classification of the outcome. What it does not own: building the
// message, queueing and retrying (the caller decides when to call Send
// again), and bounces that come back later as DSNs (mail.Message.Bounce).
//
// # Security decisions
//
//   - SecurityStartTLS requires the upgrade: a server that does not offer
//     STARTTLS (or a connection on which TLS is not up after it) gets
//     nothing, not even MAIL FROM; the error is permanent, because a
//     server stripped of STARTTLS needs a human either way. go-smtp says
//     EHLO as "localhost" before the upgrade; Config.HeloName is used
//     after it.
//   - Certificates are verified (Config.TLSConfig, else the system roots
//     and the host of Config.Addr). A certificate that does not verify is
//     a permanent error: retrying will not fix it.
//   - AUTH (PLAIN, else LOGIN) is only attempted under TLS, or in the clear
//     when the connected address is loopback (checked on the connection,
//     not on the name in Addr, which DNS may point anywhere). Otherwise
//     Send refuses before the password leaves. The password is never
//     logged and never appears in an error.
//   - Addresses are checked before dialing: no CR, LF or other control
//     character, no space or angle bracket, exactly one @ with text on
//     both sides, at most 254 bytes; HeloName likewise. Recipients are
//     deduplicated (domain compared without case). Non-ASCII addresses
//     need a server offering SMTPUTF8.
//   - Bounds: everything read from the server in one Send is capped at
//     1 MiB; server text kept in errors is made one printable line of at
//     most 512 bytes.
//
// # Time
//
// Config.Timeout (30 s) bounds the dial, the TLS handshake, each wait for a
// reply and each write of the message that makes no progress. ctx bounds
// the whole Send: its deadline caps every connection deadline, and ending
// ctx closes the connection at once, whatever the client is waiting for.
//
// # Outcomes
//
// Every error is a *SendError with the Stage that failed, the server's
// reply (Code, Enhanced, Message) when there was one, and Temporary:
//
//   - 4xx replies, network errors, timeouts and an ended ctx are temporary
//     (conv.ErrUnavailable): call Send again later.
//   - 5xx replies, refused input, TLS that cannot be had are permanent
//     (conv.ErrInvalid): mark the message failed with Reason().
//   - The server refusing the credentials (535, 530, any 5xx to AUTH,
//     5.7.8) is permanent and wraps conv.ErrUnauthorized: the channel's
//     settings need fixing.
//   - A connection lost after the message was written but before the final
//     reply is temporary although the server may have queued it: a retry
//     may deliver twice, which beats losing an agent's reply.
//
// Partial delivery: recipients refused at RCPT are skipped and the message
// goes to the accepted ones. If at least one was accepted and DATA
// succeeds, the message is sent: Send returns its Result together with a
// *SendError that has Sent set, Rejected listing the refused recipients
// and the first refusal's reply; it is never Temporary (a retry would
// deliver twice to the others). The caller marks the message sent and
// stores Reason() as a warning. If every recipient is refused, nothing is
// sent and the error is temporary when any refusal was a 4xx.
//
// Send holds no state and starts no goroutine that outlives it; it is safe
// for concurrent use.
package smtpsend
