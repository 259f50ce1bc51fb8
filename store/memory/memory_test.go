package memory_test

import (
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/core/auth"
	"github.com/switchboard-hq/switchboard/store/memory"
	"github.com/switchboard-hq/switchboard/store/statetest"
)

var (
	_ statetest.Leases  = (*memory.Leases)(nil)
	_ statetest.Limiter = (*memory.Limiter)(nil)
	_ auth.Limiter      = (*memory.Limiter)(nil)
)

func TestLeasesConformance(t *testing.T) {
	statetest.RunLeases(t, func(t *testing.T) statetest.Leases {
		return memory.NewLeases(memory.Config{})
	})
}

func TestLimiterConformance(t *testing.T) {
	statetest.RunLimiter(t, func(t *testing.T) statetest.Limiter {
		return memory.NewLimiter(memory.Config{})
	})
}

func TestLimiterSliding(t *testing.T) {
	statetest.RunLimiterSliding(t, func(t *testing.T, now func() time.Time) statetest.Limiter {
		return memory.NewLimiter(memory.Config{Now: now})
	})
}

// The lease boundary to the nanosecond, which real time cannot pin.
func TestLeaseExpiryBoundary(t *testing.T) {
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := &statetest.Clock{}
	l := memory.NewLeases(memory.Config{Now: clock.Now})
	steps := []struct {
		name   string
		at     time.Duration
		holder string
		ttl    time.Duration
		want   bool
	}{
		{"a acquires", 0, "a", 10 * time.Second, true},
		{"b refused just before expiry", 10*time.Second - 1, "b", time.Second, false},
		{"a renews just before expiry", 10*time.Second - 1, "a", 10 * time.Second, true},
		{"b refused at the old expiry", 10 * time.Second, "b", time.Second, false},
		{"b refused just before the new expiry", 20*time.Second - 2, "b", time.Second, false},
		{"b acquires at exactly the new expiry", 20*time.Second - 1, "b", time.Second, true},
		{"a refused", 20*time.Second - 1, "a", time.Second, false},
	}
	for _, st := range steps {
		clock.Set(base.Add(st.at))
		got, err := l.Acquire(t.Context(), "k", st.holder, st.ttl)
		if err != nil || got != st.want {
			t.Fatalf("%s: Acquire = %v, %v; want %v", st.name, got, err, st.want)
		}
	}
}
