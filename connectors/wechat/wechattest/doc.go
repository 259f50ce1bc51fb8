// Package wechattest is a fake WeChat for tests, which cannot reach
// WeChat's servers: an HTTP server speaking the API's wire format (Server)
// and a webhook pusher that signs and encrypts pushes the way WeChat does
// (Pusher), with builders for the pushed XML and mini-program JSON
// (Message).
//
// # Server
//
// Start(t, cfg) runs a Server on httptest with a random port; point the
// connector's api_base at s.URL(). It serves /cgi-bin/token, stable_token,
// message/custom/send and typing (and the mini-program business/ paths),
// media/upload, media/get and user/info, answering with WeChat's JSON and
// errcodes. Apps are registered with AddApp (Official Account) or
// AddMiniProgram, users with AddUser; media users "sent" with PutMedia.
//
// Behaviour modelled, each figure in Config:
//   - tokens: /cgi-bin/token mints a token per call and the previous one
//     dies TokenOverlap later (40001 after that; 42001 once TokenTTL has
//     passed). stable_token returns the current stable token (rolled over
//     in its last TokenOverlap), never invalidating /cgi-bin/token's;
//     force_refresh invalidates at once, is a no-op within
//     ForceRefreshInterval and 45009 past ForceRefreshPerDay.
//   - reply window: a user message grants RepliesPerMessage sends within
//     ReplyWindow (45015 outside, 45047 over the count); subscribe, SCAN
//     and CLICK grant RepliesPerEvent within EventReplyWindow; a mini
//     program's user_enter_tempsession grants RepliesPerSession within
//     SessionReplyWindow. A newer interaction of a kind replaces the grant
//     of that kind. Interactions come from Interact, InteractEvent, or a
//     Pusher whose Server field is set. Unsubscribed users get 43004.
//   - typing needs an open window and a message exchanged within
//     TypingWindow (45080); a second Typing within TypingDuration is 45081.
//   - media: per-type size caps (40009–40012), allowed extensions (40005),
//     lifetime MediaTTL (then 40007). media/get answers bytes with their
//     Content-Type and an attachment filename, or a JSON error body with
//     Content-Type application/json; video answers {"video_url"}.
//   - quotas per app: PerMinuteLimit (45011), DailyQuota and
//     TokenDailyQuota (45009) on WeChat's UTC+8 day; 0 is unlimited.
//   - faults: FailNext (an errcode for the next n calls of a path),
//     FailHTTP (an HTTP status) and Hang (no answer until the client gives
//     up or the server closes).
//
// Every call is recorded: Calls, Sent, Typing, TokenIssued, and WaitSent /
// WaitCalls to wait for asynchronous senders (they wake on each recorded
// call; no polling sleeps). Tokens appear in Sent for assertions but are
// never logged.
//
// # Pusher
//
// Pusher.Verify sends the URL-verification GET, Pusher.Push a message in
// plaintext, compatible or safe mode, XML or JSON. Its signatures are
// computed here (Sign: SHA-1 over the sorted token, timestamp, nonce and,
// for msg_signature, Encrypt) and its ciphertext comes from silenceper's
// util.EncryptMsg, independently of connectors/wechat/wire, so each
// cross-checks the other. PushOptions tamper with one push: bad
// signatures, a stale timestamp, a fixed nonce, another AppID inside the
// ciphertext, a verbatim Encrypt, any query parameter.
//
// # Concurrency and lifecycle
//
// One mutex guards the Server's state and is never held across I/O.
// Hanging requests wait on the request context or Close; Start registers
// Close with t.Cleanup. The package starts no goroutines of its own beyond
// httptest's server.
package wechattest
