package wxapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

type breakerState int

const (
	closed breakerState = iota
	open
	halfOpen
)

// breaker is one app's circuit breaker: threshold consecutive retryable
// failures open it; after cooldown one probe call goes through (half-open)
// and its outcome closes or reopens it. Answers that prove WeChat reachable
// (success, or a verdict such as 45015) reset the count; a caller's
// cancellation counts for nothing.
type breaker struct {
	threshold int // < 0: disabled
	cooldown  time.Duration
	now       func() time.Time
	log       *slog.Logger

	mu        sync.Mutex
	state     breakerState
	failures  int
	openUntil time.Time
	probing   bool
}

func newBreaker(threshold int, cooldown time.Duration, now func() time.Time, log *slog.Logger) *breaker {
	return &breaker{threshold: threshold, cooldown: cooldown, now: now, log: log}
}

// allow says whether a call may go out; probe is true for the one call let
// through a half-open circuit, which must be reported to done.
func (b *breaker) allow() (probe bool, err error) {
	if b.threshold < 0 {
		return false, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case closed:
		return false, nil
	case open:
		now := b.now()
		if now.Before(b.openUntil) {
			return false, fmt.Errorf("%w after %d consecutive failures, retry in %s: %w",
				ErrCircuitOpen, b.failures, b.openUntil.Sub(now).Round(time.Second), conv.ErrUnavailable)
		}
		b.state = halfOpen
	}
	if b.probing {
		return false, fmt.Errorf("%w: a probe call is in flight: %w", ErrCircuitOpen, conv.ErrUnavailable)
	}
	b.probing = true
	return true, nil
}

// done records a call's outcome.
func (b *breaker) done(probe bool, err error) {
	if b.threshold < 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	switch {
	case err != nil && errors.Is(err, context.Canceled):
		// The caller gave up: says nothing about WeChat.
	case err != nil && Retryable(err):
		b.failures++
		if (b.state == halfOpen && probe) || (b.state == closed && b.failures >= b.threshold) {
			b.state = open
			b.openUntil = b.now().Add(b.cooldown)
			b.log.Warn("wxapi: circuit open", "failures", b.failures, "cooldown", b.cooldown, "err", err)
		}
	default:
		if b.state != closed {
			b.log.Info("wxapi: circuit closed")
		}
		b.state, b.failures = closed, 0
	}
}
