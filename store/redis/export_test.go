package redis

import "time"

// SetClock makes l read time from now instead of the Redis server, so the
// window arithmetic in the script can be checked to the microsecond.
func SetClock(l *Limiter, now func() time.Time) { l.now = now }

// HoldConfirmations makes f's router wait for release before it handles
// each SUBSCRIBE confirmation. Call it before f's first Subscribe.
func HoldConfirmations(f *Fanout, release <-chan struct{}) {
	f.confirmHook = func() { <-release }
}
