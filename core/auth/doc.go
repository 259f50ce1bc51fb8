// Package auth logs agents in and authenticates their bearer tokens. It owns
// the password hash format (argon2id in the PHC string format, password.go)
// and the bearer token format (token.go); storage and rate limiting come in
// through consumer-side interfaces (storage.Store, Limiter).
//
// Goroutines: none. Argon2id runs on the caller's goroutine, but at most
// argonSlots hashes run at once process-wide: each takes argonMemory of RAM,
// so a burst of logins would otherwise turn into a burst of allocations large
// enough to kill the node. Beyond the core count extra parallel hashes add
// memory, not throughput; callers over the cap wait.
package auth
