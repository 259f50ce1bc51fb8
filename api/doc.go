// Package api is Switchboard's HTTP edge: health and readiness probes and
// the /v1 JSON API. It translates conv error kinds to HTTP statuses in one
// place (writeError), bounds every request body, and sets security headers
// (CSP, nosniff, no framing) on every response.
//
// It owns no goroutines; cmd/switchboard runs the http.Server and shuts it
// down gracefully.
package api
