package testenv

import (
	"testing"
	"time"
)

// WaitFor polls cond until it holds, failing tb when timeout passes first.
// It is the one place tests wait for something to happen elsewhere (a
// server to be ready, a message to be stored): the sleep in it is the
// polling interval, and the deadline, never the sleep, decides.
func WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}
