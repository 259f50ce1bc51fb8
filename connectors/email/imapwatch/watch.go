package imapwatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Watch delivers the mailbox's messages after from, in UID order, to handle,
// then waits for new ones (IDLE, or polling when the server lacks it) until
// ctx ends, when it returns nil.
//
// Connection failures are retried forever with exponential backoff and
// reported to onStatus (StateReconnecting, then StateConnected). Two
// errors end the watch: a refused login (StateAuthFailed is reported and
// the error wraps conv.ErrUnauthorized; a retry would only lock the
// account) and an error from handle (returned wrapped: the caller's own
// retry policy decides, and from its saved position nothing is lost). An
// invalid cfg returns conv.ErrInvalid at once.
//
// handle is called from one goroutine, one mail at a time; the next call
// comes only after it returns nil. onStatus may be nil.
func Watch(ctx context.Context, cfg Config, from Position, handle func(ctx context.Context, m Mail) error, onStatus func(Status)) error {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("imapwatch.Watch: %w", err)
	}
	if handle == nil {
		return fmt.Errorf("imapwatch.Watch: %w: handle is nil", conv.ErrInvalid)
	}
	w := &watcher{
		cfg:    cfg,
		log:    cfg.Logger.With("imap_addr", cfg.Addr, "imap_user", cfg.Username, "mailbox", cfg.Mailbox),
		handle: handle,
		status: onStatus,
		pos:    from,
	}
	return w.run(ctx)
}

// End returns the position after the last message now in cfg's mailbox:
// Watch from it hands over only mail that arrives later. It connects once,
// without retrying: a refused login wraps conv.ErrUnauthorized, any other
// failure conv.ErrUnavailable, an invalid cfg conv.ErrInvalid.
func End(ctx context.Context, cfg Config) (Position, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return Position{}, fmt.Errorf("imapwatch.End: %w", err)
	}
	w := &watcher{cfg: cfg, log: cfg.Logger}
	s, err := w.connect(ctx)
	if s != nil {
		defer s.close()
	}
	var data *imap.SelectData
	if err == nil {
		err = s.step("examine "+cfg.Mailbox, func() error {
			var err error
			data, err = s.c.Select(cfg.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
			return err
		})
	}
	var pos Position
	if err == nil {
		pos.UIDValidity = data.UIDValidity
		if data.UIDNext > 0 {
			pos.UID = uint32(data.UIDNext) - 1
		} else if data.NumMessages > 0 {
			var metas []meta
			if metas, err = s.listAfter(0); err == nil && len(metas) > 0 {
				pos.UID = metas[len(metas)-1].uid
			}
		}
	}
	switch {
	case err == nil:
		return pos, nil
	case errors.Is(err, conv.ErrUnauthorized):
		return Position{}, fmt.Errorf("imapwatch.End %s: %w", cfg.Addr, err)
	default:
		return Position{}, fmt.Errorf("imapwatch.End %s: %w: %w", cfg.Addr, conv.ErrUnavailable, err)
	}
}

// watcher is one Watch call: its position survives reconnects.
type watcher struct {
	cfg    Config
	log    *slog.Logger
	handle func(context.Context, Mail) error
	status func(Status)
	pos    Position
}

// handlerError marks an error of the caller's handle: it stops the watch.
type handlerError struct {
	uid uint32
	err error
}

func (e *handlerError) Error() string { return fmt.Sprintf("handle uid %d: %v", e.uid, e.err) }
func (e *handlerError) Unwrap() error { return e.err }

func (w *watcher) report(s Status) {
	if w.status == nil {
		return
	}
	s.At = w.cfg.Now()
	w.status(s)
}

func (w *watcher) run(ctx context.Context) error {
	failures := 0
	for {
		connected, err := w.session(ctx)
		if ctx.Err() != nil {
			if he := (*handlerError)(nil); errors.As(err, &he) && !errors.Is(he.err, ctx.Err()) {
				return fmt.Errorf("imapwatch.Watch %s: %w", w.cfg.Addr, he)
			}
			return nil
		}
		if he := (*handlerError)(nil); errors.As(err, &he) {
			return fmt.Errorf("imapwatch.Watch %s: %w", w.cfg.Addr, he)
		}
		if errors.Is(err, conv.ErrUnauthorized) {
			err = fmt.Errorf("imapwatch.Watch %s: %w", w.cfg.Addr, err)
			w.log.Error("imapwatch: login refused; not retrying", "err", err)
			w.report(Status{State: StateAuthFailed, Err: err})
			return err
		}
		if connected {
			failures = 0
		}
		delay := w.backoff(failures)
		failures++
		err = fmt.Errorf("imapwatch %s: %w: %w", w.cfg.Addr, conv.ErrUnavailable, err)
		w.log.Warn("imapwatch: connection lost; reconnecting", "err", err, "retry_in", delay)
		w.report(Status{State: StateReconnecting, Err: err, RetryIn: delay})
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// backoff is BackoffMin doubled per consecutive failure, capped at
// BackoffMax, with the upper half jittered so that many channels cut off by
// the same outage do not reconnect in step.
func (w *watcher) backoff(failures int) time.Duration {
	d := w.cfg.BackoffMin
	for i := 0; i < failures && d < w.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, w.cfg.BackoffMax)
	if half := d / 2; half > 0 {
		d = half + rand.N(half+1)
	}
	return d
}
