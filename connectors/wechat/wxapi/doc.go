// Package wxapi is the WeChat server-API client of the WeChat connector:
// customer-service sends (text, image, link, mini-program page), typing,
// temporary media upload and download, and user/info, for Official
// Accounts (KindOA, channel kind wechat_oa) and mini-program customer
// service (KindMP, wechat_mp). It also owns access tokens: SharedTokens
// keeps one token per app for the whole cluster.
//
// # Calls
//
// A Client is one app (one channel). Every call takes a token from its
// TokenProvider; if WeChat answers 40001, 40014 or 42001 the client
// invalidates exactly that token and retries once with a fresh one, never
// more. Errors are *APIError (errcode, errmsg, path; Reason gives the
// console's English), *HTTPError (a status other than 200) or a network
// error, wrapped with the operation and carrying conv kinds: the reply
// window (45015), reply count (45047), unfollowed (43004), IP allow list
// (40164) and unauthorized API (48001) are conv.ErrForbidden, a bad openid
// or request conv.ErrInvalid, busy (-1), per-minute limit (45011), HTTP
// and network failures conv.ErrUnavailable, a token rejected twice or bad
// credentials conv.ErrUnauthorized, the daily quota (45009)
// conv.ErrRateLimited. Retryable says whether trying again soon can help. The access token and the secret travel in query
// strings and bodies only: error texts carry the API path, never the URL's
// query, and logs carry neither.
//
// Every answer is read through a cap: JSON answers 1 MiB, media the
// caller's max, uploads Config.MaxUploadBytes (held in memory so the
// retry can resend them).
//
// A breaker per Client fails calls fast (ErrCircuitOpen, also
// conv.ErrUnavailable) after BreakerThreshold consecutive retryable
// failures, for BreakerCooldown; then one probe call decides. Each Client
// has its own: one app's outage does not stop another.
//
// # Tokens
//
// SharedTokens keeps the token in a TokenCache under "wechat:token:"+AppID+":"+digest(secret, api base)
// (Redis in production, MemoryCache on one node). One node refreshes at a
// time, elected by a Lease (store/memory.Leases, store/redis.Leases);
// others read the cache, and when it has no valid token they poll it with
// backoff until the refresher has written it. Tokens are refreshed when
// less than RefreshBefore (5 min, minus a per-node jitter) is left, on
// demand in Token and ahead of time by Run. stable_token is the default:
// its tokens do not invalidate each other, and force_refresh (which WeChat
// rate-limits) is used only by Invalidate, and only when the rejected
// token is the one cached. UseClassicToken switches to /cgi-bin/token,
// each call of which kills the previous token after about 5 minutes.
//
// # Why not silenceper/wechat's API clients
//
// Its API host is a constant (we need api_base for an allow-listed egress
// proxy, errcode 40164); every call goes through a process-global HTTP
// client (no per-app timeouts, no way to point one channel at a fake
// without affecting the others); its calls take no context (a hung WeChat
// holds a goroutine until the global timeout); its Redis token cache is
// go-redis v8 while we use v9; and it neither bounds bodies nor keeps the
// token out of its errors. The protocol is small enough to speak directly.
//
// # Concurrency and lifecycle
//
// Client, SharedTokens and MemoryCache are safe for concurrent use. A
// Client starts no goroutines. SharedTokens.Run is an optional background
// refresher that returns nil when its ctx ends; without it Token refreshes
// on demand. Inside one process a semaphore lets one goroutine refresh
// while the others wait for it (or their ctx); the breaker's mutex and the
// token state's mutex are never held across I/O, nor together.
package wxapi
