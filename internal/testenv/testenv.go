// Package testenv gates tests that need a real service (Postgres, Redis,
// NATS, Dovecot, Chromium). A test asks for the service's URL by the env var
// that holds it; when the var is empty the test is skipped — unless
// SWITCHBOARD_REQUIRE_SERVICES=1, which CI sets, turns the skip into a
// failure so that a suite can never silently not run.
package testenv

import (
	"os"
	"testing"
)

// Require returns the value of env var name, or skips t (fails it when
// services are required) if the var is unset.
func Require(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v != "" {
		return v
	}
	if os.Getenv("SWITCHBOARD_REQUIRE_SERVICES") == "1" {
		t.Fatalf("%s is not set but SWITCHBOARD_REQUIRE_SERVICES=1: this suite must run", name)
	}
	t.Skipf("%s not set; set it to run this suite against a real service", name)
	return ""
}

// Required reports whether service-gated suites must run.
func Required() bool { return os.Getenv("SWITCHBOARD_REQUIRE_SERVICES") == "1" }
