// Package wire is the byte-level edge of the WeChat connector, for
// Official Account (wechat_oa) and Mini Program (wechat_mp) customer
// service: it checks signatures and timestamps, decrypts and encrypts
// message bodies, parses pushes (XML, and JSON for mini programs) and
// normalizes them into the conv model. It does no I/O, holds no state
// beyond a Cipher's keys, starts no goroutines and logs nothing; the
// webhook handler, the API client and the token store live elsewhere.
//
// # The path of a push
//
// The handler caps the body at MaxBody (http.MaxBytesReader), then:
//
//	plaintext mode:  Verify(signature, token, timestamp, nonce)
//	encrypted mode:  env := ParseEnvelope(body, f)
//	                 Verify(msg_signature, token, timestamp, nonce, env.Encrypt)
//	                 body, keyIndex := cipher.Decrypt(env.Encrypt)
//	both:            CheckTimestamp(timestamp, now, DefaultSkew)
//	                 push := Parse(body, f); n := Normalize(push)
//
// In compatible mode the outer body carries the plaintext fields next to
// Encrypt. No signature covers those fields (signature covers only token,
// timestamp and nonce; msg_signature adds Encrypt), so the handler must
// use what Encrypt decrypts to and ignore the rest. In plaintext mode no
// signature covers the body at all: that is WeChat's design, and the
// reason to configure safe mode.
//
// # Bounds
//
// Every parser here reads at most MaxBody (64 KiB) and refuses more before
// decoding. XML is read token by token with encoding/xml, which expands no
// external entities; a DOCTYPE, a second root or trailing data is an
// error, unknown elements are skipped. JSON is read token by token so that
// duplicate keys, case-folded keys and trailing data are errors rather
// than silently resolved. A known field given twice is an error in both:
// two parsers must never disagree about which value counts. Decrypt
// accepts at most MaxBody bytes of ciphertext. Normalize truncates text
// to conv.MaxTextRune runes and other display fields to FieldLimit bytes
// at a rune boundary, and rejects identifiers (openid, MsgId, media ids,
// app ids) that are malformed or too long, because a truncated id would
// silently name something else. Dedup keys stay under
// conv.MaxExternalID.
//
// # Security decisions
//
// Constant time. Verify compares the SHA-1 digests with
// crypto/subtle, and Decrypt compares the trailing AppID the same way,
// so timing does not tell a forger how much of a guess was right.
//
// 32-byte padding. WeChat pads with PKCS#7 to 32 bytes (the key size),
// not to the 16-byte AES block, so pad bytes run 1..32. A decoder that
// checks 1..16, as generic PKCS#7 code does, rejects about half of all
// genuine messages. Decrypt checks that the pad byte is 1..32 and that
// every pad byte equals it, that the ciphertext is whole AES blocks,
// and that the 4-byte length field fits in what follows it, all before
// slicing, so no input can panic.
//
// No padding oracle. Decrypt returns distinct errors (ErrBadBase64,
// ErrBadPadding, ErrBadLength, ErrAppIDMismatch) for logs and metrics.
// CBC without a MAC would leak plaintext to anyone who can submit
// ciphertexts and observe which of those errors occurs; the handler
// prevents that by verifying msg_signature (which needs the token) before
// decrypting and by answering every failure identically.
//
// App id mismatch is conv.ErrForbidden, not ErrInvalid: the ciphertext is
// well formed under our key but was made for another app (the same
// EncodingAESKey on two apps, or a push replayed across apps).
//
// Key rotation. A business can regenerate its EncodingAESKey at any time;
// pushes already encrypted under the old key (retries, messages in
// flight) keep arriving for a while. NewCipher takes the current key and
// any previous ones; Decrypt tries them in order and reports which one
// worked, so the operator can see when the old key stops being used and
// drop it. Encrypt always uses the current key.
//
// Freshness. WeChat's samples never check the timestamp, so a captured
// push can be replayed forever. CheckTimestamp rejects one more than the
// allowed skew from now (DefaultSkew, 5 minutes); within the window a
// replay is an exact duplicate and the ExternalID dedup absorbs it.
//
// # Normalization
//
// See Normalize and Normalized: one conv.Part per push; events become a
// system text part with Part.Event "wechat.<event>"; ExternalID is the
// dedup key; OpensWindow says whether WeChat's 48-hour reply window
// (ReplyWindow) restarts.
package wire
