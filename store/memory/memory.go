package memory

import (
	"fmt"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Config configures the in-process state.
type Config struct {
	// Now is the clock (default time.Now); tests pass a fake.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
}

// sweepEvery bounds how long stale keys of callers that never return (one
// key per client address) stay in memory, against the cost of a full scan.
const sweepEvery = time.Minute

// Input bounds, the same as store/redis enforces (see store/statetest).
const (
	maxKeyLen    = 1024
	maxHolderLen = 256
	maxLimit     = 10000
	// maxEventLen bounds a timeline event and a fan-out payload: room for
	// a message of conv.MaxTextRune characters, encoded, with its parts.
	maxEventLen   = 1 << 20
	maxSessionLen = 256
)

func checkKey(op, key string) error {
	if key == "" || len(key) > maxKeyLen {
		return fmt.Errorf("%s: %w: key must be 1 to %d bytes", op, conv.ErrInvalid, maxKeyLen)
	}
	return nil
}

// checkIDs rejects the zero tenant and agent: they are always a caller's
// bug, and storing under them would mix unrelated callers' state.
func checkIDs(op string, tenant conv.TenantID, agent conv.AgentID) error {
	if tenant.IsZero() || agent.IsZero() {
		return fmt.Errorf("%s %s/%s: %w: tenant and agent are required", op, tenant, agent, conv.ErrInvalid)
	}
	return nil
}
