// Package mail is the byte-level edge of the email connector: it turns one
// RFC 5322 message into a bounded, normalized Message, says whether a mail
// is automatic (loops, lists, bounces), reads delivery status notifications,
// makes and checks the Message-IDs that carry our conversation token, and
// renders outgoing mail. It does no I/O of its own: IMAP and SMTP live in
// sibling packages and hand bytes in and out.
//
// # Parsing
//
// Parse uses github.com/emersion/go-message's textproto layer for headers and
// multipart boundaries, and does transfer decoding, charset conversion and
// part selection itself, so every read can be bounded:
//
//   - Limits.MaxBytes caps the raw input; the reader under everything fails
//     at the first byte past it, so a huge message is never read to the end.
//   - Limits.MaxHeaderBytes caps every header block (the message's and each
//     part's; a multipart preamble counts with its first part's header).
//   - Limits.MaxParts and Limits.MaxDepth cap the MIME tree; the walk stops
//     at the first entity over either, so a 10,000-part or 100-level bomb
//     costs about as much as a 100-part mail.
//   - Limits.MaxAttachmentBytes caps each decoded leaf.
//
// Passing a limit is ErrTooLarge or ErrTooComplex, both wrapping
// conv.ErrInvalid. A malformed multipart structure is not an error: the parts
// read so far are kept and Message.Truncated says so, because a customer's
// mail is worth more than strictness.
//
// ParseHeader reads the top-level header alone, under the same bounds and
// cleaning: the envelope of a mail whose body was not downloaded (over the
// channel's size limit) or that Parse refused.
//
// Body: text/plain is preferred; without it Text is rendered from the HTML.
// Quoted history (Gmail, Outlook, Foxmail/QQ, Chinese attributions, ">"
// blocks) and the signature are folded out of Text into Quoted, never
// dropped. HTML is sanitized with bluemonday's UGC policy (no script, style,
// form, select, option, event handlers, style attributes, javascript: or
// relative URLs); cid: URLs stay for the caller to map to Attachments;
// remote images stay and must be blocked by the renderer (CSP) until the
// agent asks.
//
// Charsets: GBK, GB2312 and GB18030 labels decode as GB18030 (the superset;
// mail labelled gb2312 routinely carries GBK characters), Big5 variants as
// Big5, ISO-2022-JP as such, anything else through go-message's charset
// package (IANA and WHATWG labels). Decoding goes through charsetReader
// explicitly, in bodies and in RFC 2047 words alike; nothing here depends on
// the message.CharsetReader global that importing that package sets. Raw
// 8-bit header bytes are read in the message's own charset when it has one.
//
// # Security decisions
//
//   - Every header value returned (subject, names, addresses, ids, file
//     names, bounce fields) has CR, LF, every other control character and
//     the bidi overrides removed; RFC 2047 can encode CR/LF, so cleaning
//     happens after decoding. Outgoing.Bytes refuses such characters instead
//     of cleaning them: a value that has them is a bug upstream.
//   - File names are reduced to a base name: no directories, no "..".
//   - Our Message-IDs carry an 80-bit HMAC so a sender cannot forge a token
//     into someone else's conversation; ParseToken (and ParseTokenMessage,
//     which also returns the message, for bounces) checks it in constant
//     time and refuses keys shorter than MinKeyLen.
//   - Message ids from outside are never trusted for dedup (the IMAP
//     position is the key); they are only threading hints.
//
// # Automatic mail
//
// Message.Auto is set for mail that must not open an agent conversation and
// must never be answered automatically: our own mail coming back (a Message-ID
// of the shape MessageIDFor makes, under one of our domains),
// Auto-Submitted other than "no", Precedence bulk/list/junk, List-Unsubscribe
// or List-Id, X-Auto-Response-Suppress, X-Loop, a null Return-Path, or a
// role sender (mailer-daemon, postmaster, noreply, no-reply, …). A DSN also
// sets Message.Bounce with the original Message-ID and the failed recipient.
//
// The package has no goroutines and no state: Parse and the helpers are safe
// for concurrent use.
package mail
