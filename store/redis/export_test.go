package redis

import "time"

// SetClock makes l read time from now instead of the Redis server, so the
// window arithmetic in the script can be checked to the microsecond.
func SetClock(l *Limiter, now func() time.Time) { l.now = now }
