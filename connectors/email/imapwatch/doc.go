// Package imapwatch follows one IMAP mailbox and hands every message in it,
// once, in UID order, to a callback. It is the only package of Switchboard
// that imports go-imap (v2, still beta): the email connector sees Config,
// Position, Mail and Status, never an IMAP type.
//
// What it owns: the connection (dial, TLS or STARTTLS, LOGIN, SELECT),
// reconnecting with exponential backoff and jitter, the position in the
// mailbox while Watch runs, the backlog after a saved Position, and waiting
// for new mail with IDLE (re-issued every Config.IdleRestart, under the 29
// minutes after which servers may drop an idle client) or, on servers
// without IDLE, polling every Config.PollEvery.
//
// End connects once and returns the position after the mailbox's last
// message, for a caller that must start from now rather than from the
// mailbox's history (and for tests that share a mailbox).
//
// What it does not own: parsing (Mail.Raw is the message as the server
// stores it), dedup and persistence. The caller saves Mail.Position() once
// a mail is safely handed on, and passes it back to Watch to resume.
// (UIDValidity, UID) is the dedup key while UIDVALIDITY stays the same;
// when it changes, the messages that were already in the mailbox come again
// with Mail.Rescan set, and the caller dedups those by a hash of Raw.
//
// Bounds: RFC822.SIZE is fetched first and a message over Config.MaxSize is
// delivered with TooLarge and no body (never downloaded), only its header
// (BODY.PEEK[HEADER], at most MaxHeaderSize) so the caller can still say who
// sent it; a body whose literal turns out larger than announced is read and
// dropped, never held.
// Every wait for the server is bounded by Config.CommandTimeout (a body
// download by its stalls); a connection that goes silent is dropped and
// re-established. Bodies are fetched with BODY.PEEK[] and the mailbox is
// selected read-only (EXAMINE): flags are left as the humans sharing the
// mailbox set them.
//
// Errors: a refused LOGIN wraps conv.ErrUnauthorized, is reported as
// StateAuthFailed and ends Watch (retrying a wrong password only gets the
// account locked); any other connection failure is StateReconnecting and
// retried forever; an error from the caller's handle ends Watch and is
// returned wrapped.
//
// Goroutines: Watch runs in the caller's goroutine and calls handle and
// onStatus from it, one call at a time. The IMAP client runs a reader
// goroutine per connection, and a timer (the watchdog) may close the
// connection from its own goroutine; both end before Watch returns. Watch
// returns nil when ctx ends; ending ctx closes the connection at once, so
// it does not wait for the server.
package imapwatch
