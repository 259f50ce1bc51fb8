package email

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/switchboard-hq/switchboard/connectors/email/imapwatch"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// LeaseKey is the lease a node holds while it watches channel's mailbox.
func LeaseKey(channel conv.ChannelID) string { return "email-watch:" + channel.String() }

// supervisor runs one channel: it waits for the channel's lease, watches
// the mailbox while it holds it, and keeps the channel's status. All of
// its fields after start are owned by its goroutine.
type supervisor struct {
	c        *Connector
	ch       conv.Channel
	fp       string
	log      *slog.Logger
	cancel   context.CancelFunc
	done     chan struct{}
	disabled atomic.Bool // set by stop before it cancels

	// The goroutine's own, while it holds the lease:
	chn      *channel
	st       Status
	failures int // consecutive failed watches, for backoff
}

// supervise starts ch's supervisor.
func (c *Connector) supervise(parent context.Context, ch conv.Channel, fp string) *supervisor {
	ctx, cancel := context.WithCancel(parent)
	s := &supervisor{c: c, ch: ch, fp: fp, cancel: cancel, done: make(chan struct{}),
		log: c.log.With("tenant", ch.TenantID, "channel", ch.ID)}
	go func() {
		defer close(s.done)
		s.run(ctx)
	}()
	return s
}

// stop ends the supervisor and waits for it: its watcher has let go of the
// mailbox and the lease when stop returns. disabled says the channel was
// disabled or removed (rather than changed, or the node stopping): its
// status then says stopped even after an auth_failed, so that enabling it
// again tries the credentials again.
func (s *supervisor) stop(disabled bool) {
	s.disabled.Store(disabled)
	s.cancel()
	<-s.done
}

func (s *supervisor) run(ctx context.Context) {
	chn, err := newChannel(s.ch)
	if err != nil {
		// Every node finds the same fault; no lease needed to say so.
		s.log.Warn("email: channel cannot be watched", "err", err)
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s.write(wctx, Status{State: StateStopped, Error: "configuration: " + oneLine(err.Error())})
		cancel()
		<-ctx.Done()
		return
	}
	s.chn = chn
	key := LeaseKey(s.ch.ID)
	ttl := s.c.cfg.LeaseTTL
	for {
		ok, err := s.c.cfg.Lease.Acquire(ctx, key, s.c.cfg.Holder, ttl)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			s.log.Warn("email: lease unavailable", "err", err)
		case ok:
			s.hold(ctx, key)
			if ctx.Err() != nil {
				return
			}
		}
		if !sleep(ctx, ttl/3) {
			return
		}
	}
}

// hold watches the mailbox while the lease is renewed, and returns when ctx
// ends (then the status says stopped and the lease is released) or the
// lease is lost (then the new holder writes the status).
func (s *supervisor) hold(ctx context.Context, key string) {
	s.log.Info("email: watching the mailbox", "holder", s.c.cfg.Holder)
	wctx, stopWatch := context.WithCancel(ctx)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		s.renew(wctx, stopWatch, key)
	}()
	s.watch(wctx)
	stopWatch()
	<-renewed
	if ctx.Err() == nil {
		s.log.Warn("email: lease lost; stopped watching the mailbox")
		return
	}
	// Shutting down, or the channel was disabled or changed. A refusal of
	// the credentials is kept across a restart: it is what stops the next
	// holder from trying them again.
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if s.st.State != StateAuthFailed || s.disabled.Load() {
		s.st.State, s.st.Error, s.st.RetryInMS = StateStopped, "", 0
		s.write(bg, s.st)
	}
	if r, ok := s.c.cfg.Lease.(leaseReleaser); ok {
		if err := r.Release(bg, key, s.c.cfg.Holder); err != nil {
			s.log.Warn("email: releasing the lease failed; another node takes over when it expires", "err", err)
		}
	}
}

// renew renews the lease every ttl/3 until ctx ends. When the lease goes
// to another holder, or cannot be renewed for 2/3 of ttl (past that it may
// expire before we know), it stops the watch at once.
func (s *supervisor) renew(ctx context.Context, stopWatch context.CancelFunc, key string) {
	ttl := s.c.cfg.LeaseTTL
	held := time.Now()
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Bounded, so a slow lease store cannot keep us watching past
		// the expiry it would have told us about.
		actx, cancel := context.WithTimeout(ctx, ttl/3)
		ok, err := s.c.cfg.Lease.Acquire(actx, key, s.c.cfg.Holder, ttl)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err == nil && ok:
			held = time.Now()
			continue
		case err == nil:
			s.log.Warn("email: another node holds the lease")
		case time.Since(held) < 2*ttl/3:
			s.log.Warn("email: renewing the lease failed; retrying", "err", err)
			continue
		default:
			s.log.Warn("email: renewing the lease failed; stopping before it may expire", "err", err)
		}
		stopWatch()
		return
	}
}

// watch runs imapwatch.Watch from the saved position until ctx ends,
// restarting it (with backoff) after a failure to hand a mail over, and
// not at all after the server refused the credentials.
func (s *supervisor) watch(ctx context.Context) {
	s.st = Status{State: StateReconnecting, Holder: s.c.cfg.Holder, Config: s.fp}
	if prev, err := s.readStatus(ctx); err == nil {
		s.st.LastMailAt, s.st.Unreadable, s.st.UIDValidity = prev.LastMailAt, prev.Unreadable, prev.UIDValidity
		if prev.State == StateAuthFailed && prev.Config == s.fp {
			// Refused before with these very settings (on this node or
			// another): trying again only risks locking the account.
			s.log.Warn("email: credentials were refused; waiting for the channel's settings to change")
			s.st.State, s.st.Error = StateAuthFailed, prev.Error
			s.write(ctx, s.st)
			<-ctx.Done()
			return
		}
	}
	s.st.Error = ""
	s.failures = 0
	for {
		var (
			pos   imapwatch.Position
			found bool
		)
		err := s.c.cfg.Store.Read(ctx, s.ch.TenantID, func(tx storage.Tx) error {
			var err error
			pos, found, err = readPosition(ctx, tx, s.ch.ID)
			return err
		})
		if err == nil && !found && !s.chn.cfg.ImportExisting {
			// A new channel that starts from now: mail already in the
			// folder stays there, unread by us.
			pos, err = s.startFromNow(ctx)
		}
		if err == nil {
			err = imapwatch.Watch(ctx, s.imapConfig(), pos, s.handle, s.onStatus)
		}
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, conv.ErrUnauthorized):
			// onStatus has recorded auth_failed.
			<-ctx.Done()
			return
		}
		delay := s.backoff()
		s.log.Warn("email: the watch stopped; restarting", "err", err, "retry_in", delay)
		s.st.State, s.st.Error, s.st.RetryInMS = StateReconnecting, oneLine(err.Error()), delay.Milliseconds()
		s.write(ctx, s.st)
		if !sleep(ctx, delay) {
			return
		}
	}
}

// startFromNow saves the position after the last mail now in the
// mailbox and returns it.
func (s *supervisor) startFromNow(ctx context.Context) (imapwatch.Position, error) {
	pos, err := imapwatch.End(ctx, s.imapConfig())
	if err != nil {
		if errors.Is(err, conv.ErrUnauthorized) {
			s.onStatus(imapwatch.Status{State: imapwatch.StateAuthFailed, Err: err, At: s.c.cfg.Now()})
		}
		return pos, err
	}
	err = s.c.cfg.Store.Tx(ctx, s.ch.TenantID, func(tx storage.Tx) error {
		return SavePosition(ctx, tx, s.ch.ID, pos, s.c.cfg.Now())
	})
	if err == nil {
		s.log.Info("email: new channel starts from now; earlier mail in the folder is not imported", "uid", pos.UID)
	}
	return pos, err
}

func (s *supervisor) imapConfig() imapwatch.Config {
	cfg := s.chn.cfg
	return imapwatch.Config{
		Addr: cfg.IMAPAddr, Security: cfg.IMAPSecurity, Username: cfg.Username, Password: s.chn.password,
		Mailbox: cfg.Mailbox, MaxSize: cfg.MaxSize,
		BackoffMin: s.c.cfg.BackoffMin, BackoffMax: s.c.cfg.BackoffMax,
		TLSConfig: s.c.cfg.TLSConfig, Dial: s.c.cfg.Dial, Logger: s.log, Now: s.c.cfg.Now,
	}
}

// backoff is BackoffMin doubled per consecutive failure up to BackoffMax,
// the upper half jittered.
func (s *supervisor) backoff() time.Duration {
	d := s.c.cfg.BackoffMin
	for i := 0; i < s.failures && d < s.c.cfg.BackoffMax; i++ {
		d *= 2
	}
	s.failures++
	d = min(d, s.c.cfg.BackoffMax)
	if half := d / 2; half > 0 {
		d = half + rand.N(half+1)
	}
	return d
}

// onStatus records the IMAP connection's state changes.
func (s *supervisor) onStatus(st imapwatch.Status) {
	switch st.State {
	case imapwatch.StateConnected:
		s.st.State, s.st.Error, s.st.RetryInMS, s.st.UIDValidity = StateConnected, "", 0, st.UIDValidity
	case imapwatch.StateReconnecting:
		s.st.State, s.st.RetryInMS = StateReconnecting, st.RetryIn.Milliseconds()
		s.st.Error = errText(st.Err)
	case imapwatch.StateAuthFailed:
		s.st.State, s.st.RetryInMS = StateAuthFailed, 0
		s.st.Error = errText(st.Err)
	default:
		return
	}
	// The watcher's context may be ending; the state is still worth keeping.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.write(ctx, s.st)
}

// handle hands one mail to the bus and then saves the position after it,
// with the status, in one transaction. Any error ends the watch; it is
// restarted from the saved position, so the mail comes again (and its
// external id makes the second copy a duplicate).
func (s *supervisor) handle(ctx context.Context, m imapwatch.Mail) error {
	r, err := s.c.receive(ctx, s.chn, m)
	if err != nil {
		return err
	}
	if r.delivery != nil {
		if err := s.c.cfg.Bus.PublishDelivery(ctx, *r.delivery); err != nil {
			return fmt.Errorf("publish bounce of %s: %w", r.delivery.MessageID, err)
		}
	}
	if r.in != nil {
		if err := s.c.cfg.Bus.PublishInbound(ctx, *r.in); err != nil {
			return fmt.Errorf("publish %s: %w", r.in.ExternalID, err)
		}
	}
	now := s.c.cfg.Now().UTC()
	st := s.st
	st.LastMailAt = &now
	if r.unreadable {
		st.Unreadable++
	}
	err = s.c.cfg.Store.Tx(ctx, s.ch.TenantID, func(tx storage.Tx) error {
		if err := SavePosition(ctx, tx, s.ch.ID, m.Position(), now); err != nil {
			return err
		}
		st.At = now
		return tx.SetChannelState(ctx, s.ch.ID, StateKeyStatus, encodeStatus(st), now)
	})
	if err != nil {
		return fmt.Errorf("save position: %w", err)
	}
	s.st = st
	s.failures = 0
	return nil
}

func (s *supervisor) readStatus(ctx context.Context) (Status, error) {
	var st Status
	err := s.c.cfg.Store.Read(ctx, s.ch.TenantID, func(tx storage.Tx) error {
		var err error
		st, err = ReadStatus(ctx, tx, s.ch.ID)
		return err
	})
	return st, err
}

// write saves st as the channel's status; a failure is logged, not fatal:
// the status is for people, the position is what matters.
func (s *supervisor) write(ctx context.Context, st Status) {
	st.At = s.c.cfg.Now().UTC()
	err := s.c.cfg.Store.Tx(ctx, s.ch.TenantID, func(tx storage.Tx) error {
		return tx.SetChannelState(ctx, s.ch.ID, StateKeyStatus, encodeStatus(st), st.At)
	})
	if err != nil && ctx.Err() == nil {
		s.log.Warn("email: saving the channel status failed", "state", st.State, "err", err)
	}
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return oneLine(err.Error())
}
