package imapwatch

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// session is one connection: dial, log in, select, deliver the backlog,
// then wait for more. It returns when the connection fails or ctx ends;
// connected says the mailbox was selected, which resets the backoff.
func (w *watcher) session(ctx context.Context) (connected bool, err error) {
	s, err := w.connect(ctx)
	if s != nil {
		defer s.close()
	}
	if err != nil {
		return false, err
	}
	if err := s.selectMailbox(); err != nil {
		return false, err
	}
	w.report(Status{State: StateConnected, UIDValidity: w.pos.UIDValidity})
	w.log.Info("imapwatch: connected", "uidvalidity", w.pos.UIDValidity, "from_uid", w.pos.UID, "idle", s.idle)
	for {
		if err := s.catchUp(ctx); err != nil {
			return true, err
		}
		if err := s.wait(ctx); err != nil {
			return true, err
		}
	}
}

type session struct {
	w       *watcher
	c       *imapclient.Client
	conn    net.Conn
	dog     *watchdog
	stop    func() bool // of the AfterFunc closing conn when ctx ends
	idle    bool
	newMail chan struct{} // EXISTS seen; buffered 1
}

// connect dials and logs in. The session it returns, also with an error,
// must be closed.
func (w *watcher) connect(ctx context.Context) (*session, error) {
	conn, err := w.cfg.Dial(ctx, "tcp", w.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	s := &session{w: w, conn: conn, newMail: make(chan struct{}, 1)}
	s.dog = newWatchdog(conn)
	// Ending ctx closes the connection, which fails whatever is blocked on it.
	s.stop = context.AfterFunc(ctx, func() { conn.Close() })
	if err := s.open(ctx, conn); err != nil {
		return s, err
	}
	return s, s.login()
}

func (s *session) close() {
	// Close waits for the client's reader goroutine.
	if s.c != nil {
		s.c.Close()
	}
	s.conn.Close()
	s.stop()
	s.dog.stop()
}

// step runs one exchange with the server under CommandTimeout.
func (s *session) step(what string, f func() error) error {
	s.dog.arm(s.w.cfg.CommandTimeout)
	err := f()
	if s.dog.disarm() {
		return fmt.Errorf("%s: no answer within %s", what, s.w.cfg.CommandTimeout)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func (s *session) open(ctx context.Context, conn net.Conn) error {
	cfg := s.w.cfg
	opts := &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					select {
					case s.newMail <- struct{}{}:
					default:
					}
				}
			},
		},
	}
	var tlsCfg *tls.Config
	if cfg.Security != SecurityNone {
		tlsCfg = &tls.Config{}
		if cfg.TLSConfig != nil {
			tlsCfg = cfg.TLSConfig.Clone()
		}
		if tlsCfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(cfg.Addr)
			tlsCfg.ServerName = host
		}
		opts.TLSConfig = tlsCfg
	}
	switch cfg.Security {
	case SecurityNone:
		s.c = imapclient.New(conn, opts)
	case SecurityTLS:
		tc := tls.Client(conn, tlsCfg)
		if err := s.step("tls handshake", func() error { return tc.HandshakeContext(ctx) }); err != nil {
			return err
		}
		s.c = imapclient.New(tc, opts)
	case SecurityStartTLS:
		// NewStartTLS reads the greeting, refuses PREAUTH and upgrades.
		if err := s.step("starttls", func() error {
			var err error
			s.c, err = imapclient.NewStartTLS(conn, opts)
			return err
		}); err != nil {
			return err
		}
	}
	return s.step("greeting", s.c.WaitGreeting)
}

func (s *session) login() error {
	var caps imap.CapSet
	if err := s.step("capability", func() error { caps = s.c.Caps(); return nil }); err != nil {
		return err
	}
	if caps.Has(imap.CapLoginDisabled) {
		return fmt.Errorf("login: %w: the server refuses LOGIN on this connection (LOGINDISABLED); use security tls or starttls", conv.ErrUnauthorized)
	}
	err := s.step("login", s.c.Login(s.w.cfg.Username, s.w.cfg.Password).Wait)
	var ierr *imap.Error
	if errors.As(err, &ierr) && ierr.Type == imap.StatusResponseTypeNo && ierr.Code != imap.ResponseCodeUnavailable {
		// A NO to LOGIN is the server's answer about these credentials
		// (AUTHENTICATIONFAILED, EXPIRED, PRIVACYREQUIRED, or no code from
		// older servers); only UNAVAILABLE is worth retrying.
		return fmt.Errorf("login as %s: %w: %w", s.w.cfg.Username, conv.ErrUnauthorized, err)
	}
	if err != nil {
		return err
	}
	// The capabilities may change after login; IDLE is decided on these.
	var hasID bool
	if err := s.step("capability", func() error {
		after := s.c.Caps()
		s.idle, hasID = after.Has(imap.CapIdle), after.Has(imap.CapID) || caps.Has(imap.CapID)
		return nil
	}); err != nil {
		return err
	}
	if hasID {
		// Some servers (NetEase 163/126) refuse SELECT ("Unsafe Login")
		// from a client that has not said who it is (RFC 2971). A server
		// that answers ID with NO still gets the SELECT.
		err := s.step("id", func() error { _, err := s.c.ID(&clientID).Wait(); return err })
		var ierr *imap.Error
		if err != nil && !errors.As(err, &ierr) {
			return err
		}
	}
	return nil
}

// clientID is what the watcher tells servers that ask who it is (IMAP ID).
var clientID = imap.IDData{Name: "Switchboard", Vendor: "Switchboard", SupportURL: "https://github.com/switchboard-hq/switchboard"}

func (s *session) selectMailbox() error {
	var data *imap.SelectData
	if err := s.step("select "+s.w.cfg.Mailbox, func() error {
		var err error
		data, err = s.c.Select(s.w.cfg.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
		return err
	}); err != nil {
		return err
	}
	if data.UIDValidity == 0 {
		return fmt.Errorf("select %s: the server sent no UIDVALIDITY", s.w.cfg.Mailbox)
	}
	pos := &s.w.pos
	if pos.UIDValidity == data.UIDValidity {
		return nil
	}
	if pos.UIDValidity == 0 {
		// First sight of this mailbox: everything after pos.UID is new.
		pos.UIDValidity = data.UIDValidity
		return nil
	}
	// The UIDs the caller saw mean nothing now: start over, and tell the
	// caller which messages it may already hold under their old UIDs.
	var until uint32
	switch {
	case data.UIDNext > 0:
		until = uint32(data.UIDNext) - 1
	case data.NumMessages > 0:
		// No UIDNEXT (optional in RFC 3501): ask for the highest UID.
		metas, err := s.listAfter(0)
		if err != nil {
			return err
		}
		if len(metas) > 0 {
			until = metas[len(metas)-1].uid
		}
	}
	s.w.log.Warn("imapwatch: UIDVALIDITY changed; re-scanning the mailbox",
		"old_uidvalidity", pos.UIDValidity, "new_uidvalidity", data.UIDValidity, "rescan_until_uid", until)
	*pos = Position{UIDValidity: data.UIDValidity, RescanUntil: until}
	return nil
}

type meta struct {
	uid  uint32
	size int64
}

// listAfter returns the UIDs and sizes of the messages with a UID above
// after, in UID order.
func (s *session) listAfter(after uint32) ([]meta, error) {
	if after == math.MaxUint32 {
		return nil, nil
	}
	var set imap.UIDSet
	set.AddRange(imap.UID(after+1), 0) // after+1:*
	var out []meta
	err := s.step("fetch sizes", func() error {
		cmd := s.c.Fetch(set, &imap.FetchOptions{UID: true, RFC822Size: true})
		for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
			var m meta
			for item := msg.Next(); item != nil; item = msg.Next() {
				switch it := item.(type) {
				case imapclient.FetchItemDataUID:
					m.uid = uint32(it.UID)
				case imapclient.FetchItemDataRFC822Size:
					m.size = it.Size
				}
			}
			// "n:*" names the last message even when its UID is below n.
			if m.uid > after {
				out = append(out, m)
			}
		}
		return cmd.Close()
	})
	slices.SortFunc(out, func(a, b meta) int { return cmp.Compare(a.uid, b.uid) })
	return slices.CompactFunc(out, func(a, b meta) bool { return a.uid == b.uid }), err
}

// catchUp delivers every message after the position.
func (s *session) catchUp(ctx context.Context) error {
	if mb := s.c.Mailbox(); mb != nil && mb.NumMessages == 0 {
		return nil
	}
	metas, err := s.listAfter(s.w.pos.UID)
	if err != nil {
		return err
	}
	for _, m := range metas {
		if err := s.deliver(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) deliver(ctx context.Context, m meta) error {
	pos := &s.w.pos
	mail := Mail{
		UIDValidity: pos.UIDValidity,
		UID:         m.uid,
		Size:        m.size,
		Rescan:      m.uid <= pos.RescanUntil,
		rescanUntil: pos.RescanUntil,
	}
	if m.size > s.w.cfg.MaxSize {
		mail.TooLarge = true
	} else {
		raw, over, found, err := s.body(m.uid, &imap.FetchItemBodySection{Peek: true}, s.w.cfg.MaxSize)
		if err != nil {
			return err
		}
		if !found {
			// Expunged between the listing and now: nothing to hand over.
			s.w.log.Info("imapwatch: message vanished before download", "uid", m.uid)
			*pos = mail.Position()
			return nil
		}
		mail.Raw, mail.TooLarge = raw, over
	}
	if mail.TooLarge {
		s.w.log.Warn("imapwatch: message over the size limit; body not downloaded",
			"uid", m.uid, "size", m.size, "max_size", s.w.cfg.MaxSize)
		// The header alone still says who wrote and what it answers. A
		// header the server cannot give (or over MaxHeaderSize) is left
		// out rather than holding the mail back.
		h, over, found, err := s.body(m.uid, &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}, MaxHeaderSize)
		if err != nil {
			return err
		}
		if found && !over {
			mail.Header = h
		}
	}
	if err := s.w.handle(ctx, mail); err != nil {
		return &handlerError{uid: m.uid, err: err}
	}
	*pos = mail.Position()
	return nil
}

// body downloads one section of a message (Peek set: without setting
// \Seen). over is true when the literal turns out larger than limit (for
// the whole message, a server whose RFC822.SIZE was wrong): it is read and
// dropped, never held. found is false when the server returned no such
// message.
func (s *session) body(uid uint32, section *imap.FetchItemBodySection, limit int64) (raw []byte, over, found bool, err error) {
	err = s.step(fmt.Sprintf("fetch body of uid %d", uid), func() error {
		cmd := s.c.Fetch(imap.UIDSetNum(imap.UID(uid)), &imap.FetchOptions{
			UID:         true,
			BodySection: []*imap.FetchItemBodySection{section},
		})
		for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
			var got uint32
			var data []byte
			var hasBody, tooBig bool
			for item := msg.Next(); item != nil; item = msg.Next() {
				switch it := item.(type) {
				case imapclient.FetchItemDataUID:
					got = uint32(it.UID)
				case imapclient.FetchItemDataBodySection:
					if it.Literal == nil {
						continue
					}
					hasBody = true
					if it.Literal.Size() > limit {
						tooBig = true // msg.Next discards the literal
						continue
					}
					b, err := io.ReadAll(io.LimitReader(progress{it.Literal, s}, limit+1))
					if err != nil {
						return err
					}
					if int64(len(b)) > limit {
						tooBig = true
						continue
					}
					data = b
				}
			}
			// Other FETCH responses (flag updates) may come along.
			if got == uid && hasBody {
				raw, over, found = data, tooBig, true
			}
		}
		return cmd.Close()
	})
	if over {
		raw = nil
	}
	return raw, over, found, err
}

// progress re-arms the watchdog while a body streams in, so a large
// download is bounded by stalls, not by its total time.
type progress struct {
	r io.Reader
	s *session
}

func (p progress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.s.dog.arm(p.s.w.cfg.CommandTimeout)
	}
	return n, err
}

// wait returns when the mailbox may have changed: IDLE reported new mail
// or was re-issued, or the poll interval passed.
func (s *session) wait(ctx context.Context) error {
	if !s.idle {
		t := time.NewTimer(s.w.cfg.PollEvery)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.c.Closed():
			return errors.New("connection closed by the server")
		case <-t.C:
		}
		// The listing in catchUp finds new mail by itself; NOOP keeps the
		// session alive and lets the server send what it has queued.
		return s.step("noop", s.c.Noop().Wait)
	}

	var idle *imapclient.IdleCommand
	if err := s.step("idle", func() error {
		var err error
		idle, err = s.c.Idle()
		return err
	}); err != nil {
		return err
	}
	if s.w.cfg.idleHook != nil {
		s.w.cfg.idleHook()
	}
	t := time.NewTimer(s.w.cfg.IdleRestart)
	defer t.Stop()
	var cause error
	select {
	case <-ctx.Done():
		cause = ctx.Err()
	case <-s.c.Closed():
		cause = errors.New("connection closed by the server")
	case <-s.newMail:
	case <-t.C:
	}
	err := s.step("idle done", func() error {
		if err := idle.Close(); err != nil {
			return err
		}
		return idle.Wait()
	})
	if cause != nil {
		return cause
	}
	return err
}

// watchdog closes the connection when the server keeps us waiting longer
// than allowed; the blocked call then fails and the session reconnects.
type watchdog struct {
	t     *time.Timer
	fired atomic.Bool
}

func newWatchdog(c io.Closer) *watchdog {
	d := &watchdog{}
	d.t = time.AfterFunc(time.Hour, func() {
		d.fired.Store(true)
		c.Close()
	})
	d.t.Stop()
	return d
}

func (d *watchdog) arm(timeout time.Duration) { d.t.Reset(timeout) }

// disarm stops the timer and reports whether it had fired.
func (d *watchdog) disarm() bool {
	d.t.Stop()
	return d.fired.Load()
}

func (d *watchdog) stop() { d.t.Stop() }
