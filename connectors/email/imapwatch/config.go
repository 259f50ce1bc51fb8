package imapwatch

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Security says how the connection to the IMAP server is protected.
type Security string

const (
	// SecurityTLS is implicit TLS from the first byte (usually port 993).
	SecurityTLS Security = "tls"
	// SecurityStartTLS upgrades a plaintext connection (usually port 143)
	// before logging in; a server that refuses the upgrade is an error.
	SecurityStartTLS Security = "starttls"
	// SecurityNone sends the password in the clear: loopback and tests only.
	SecurityNone Security = "none"
)

// Defaults for Config.
const (
	DefaultMailbox        = "INBOX"
	DefaultMaxSize        = 25 << 20
	DefaultIdleRestart    = 25 * time.Minute
	DefaultPollEvery      = 30 * time.Second
	DefaultCommandTimeout = 2 * time.Minute
	DefaultBackoffMin     = time.Second
	DefaultBackoffMax     = 5 * time.Minute

	// MaxHeaderSize caps Mail.Header, the header of a mail over MaxSize.
	MaxHeaderSize = 64 << 10

	// maxIdleRestart: RFC 2177 lets servers drop a client idle for 30
	// minutes; re-issue IDLE with a margin.
	maxIdleRestart = 29 * time.Minute
)

// Config says which mailbox to watch and how.
type Config struct {
	// Addr is host:port of the IMAP server. Required.
	Addr string
	// Security of the connection; default SecurityTLS.
	Security Security
	// Username and Password for LOGIN. Required.
	Username, Password string
	// Mailbox to watch; default INBOX.
	Mailbox string
	// MaxSize is the largest message (RFC822.SIZE) whose body is
	// downloaded; larger ones are reported with TooLarge and no body.
	// Default 25 MiB.
	MaxSize int64
	// IdleRestart is how long one IDLE runs before it is re-issued (and the
	// mailbox re-checked). Default 25 minutes; must be under 29 minutes.
	IdleRestart time.Duration
	// PollEvery is the polling interval when the server has no IDLE.
	// Default 30 s.
	PollEvery time.Duration
	// CommandTimeout bounds every wait for the server (greeting, one
	// command, one stretch of a body download without progress); when it
	// passes the connection is dropped and re-established. Default 2 min.
	CommandTimeout time.Duration
	// BackoffMin and BackoffMax bound the delay between reconnects, doubled
	// per consecutive failure, with jitter. Defaults 1 s and 5 min.
	BackoffMin, BackoffMax time.Duration
	// TLSConfig for SecurityTLS and SecurityStartTLS; nil means the system
	// roots and ServerName from Addr. Tests set RootCAs.
	TLSConfig *tls.Config
	// Dial opens the TCP connection; default a net.Dialer with keep-alive.
	// Tests use it to point the watcher at a server that moves.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger; default discards.
	Logger *slog.Logger
	// Now stamps Status.At; default time.Now.
	Now func() time.Time

	// idleHook, when set (tests), is called each time the server has
	// accepted an IDLE command.
	idleHook func()
}

func (c *Config) setDefaults() {
	if c.Security == "" {
		c.Security = SecurityTLS
	}
	if c.Mailbox == "" {
		c.Mailbox = DefaultMailbox
	}
	if c.MaxSize == 0 {
		c.MaxSize = DefaultMaxSize
	}
	if c.IdleRestart == 0 {
		c.IdleRestart = DefaultIdleRestart
	}
	if c.PollEvery == 0 {
		c.PollEvery = DefaultPollEvery
	}
	if c.CommandTimeout == 0 {
		c.CommandTimeout = DefaultCommandTimeout
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = DefaultBackoffMin
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = DefaultBackoffMax
	}
	if c.Dial == nil {
		d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
		c.Dial = d.DialContext
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

func (c *Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: imapwatch.Config: %s", conv.ErrInvalid, fmt.Sprintf(format, args...))
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return bad("Addr %q is not host:port", c.Addr)
	}
	switch c.Security {
	case SecurityTLS, SecurityStartTLS, SecurityNone:
	default:
		return bad("Security %q is not tls, starttls or none", c.Security)
	}
	switch {
	case c.Username == "" || c.Password == "":
		return bad("Username and Password are required")
	case c.MaxSize < 0:
		return bad("MaxSize is negative")
	case c.IdleRestart < 0 || c.IdleRestart >= maxIdleRestart:
		return bad("IdleRestart %s must be positive and under %s", c.IdleRestart, maxIdleRestart)
	case c.PollEvery < 0:
		return bad("PollEvery is negative")
	case c.CommandTimeout < 0:
		return bad("CommandTimeout is negative")
	case c.BackoffMin < 0 || c.BackoffMax < c.BackoffMin:
		return bad("backoff bounds %s..%s are not ordered", c.BackoffMin, c.BackoffMax)
	}
	return nil
}

// Position is where the caller is in the mailbox: the last message it has
// handled. Persist Mail.Position() after handling a mail and pass it back
// to Watch to resume without re-delivery.
type Position struct {
	// UIDValidity of the mailbox the UID belongs to; 0 means never seen:
	// everything in the mailbox is delivered.
	UIDValidity uint32
	// UID of the last message handled; the next delivery has a larger one.
	UID uint32
	// RescanUntil is non-zero during a re-scan after a UIDVALIDITY change:
	// messages with a UID up to it were in the mailbox when the change was
	// seen and are delivered with Mail.Rescan set. Keeping it in the saved
	// position lets a re-scan interrupted by a restart finish as a re-scan.
	RescanUntil uint32
}

// Mail is one message of the mailbox.
type Mail struct {
	UIDValidity, UID uint32
	// Size is the server's RFC822.SIZE.
	Size int64
	// Raw is the whole message (RFC 5322 bytes); nil when TooLarge.
	Raw []byte
	// TooLarge: the message is over Config.MaxSize and was not downloaded.
	TooLarge bool
	// Header is the message's header block (BODY[HEADER]) when TooLarge,
	// so the caller can still tell who sent it; nil when the server did
	// not return it or it was over MaxHeaderSize.
	Header []byte
	// Rescan: the mailbox's UIDVALIDITY changed since the position Watch
	// started from, and this message was already there when the change was
	// seen, so the caller may have ingested it under its old UID. Dedup it
	// by content (a hash of Raw), not by (UIDValidity, UID).
	Rescan bool

	rescanUntil uint32
}

// Position to persist once m is handled.
func (m Mail) Position() Position {
	p := Position{UIDValidity: m.UIDValidity, UID: m.UID}
	if m.UID < m.rescanUntil {
		p.RescanUntil = m.rescanUntil
	}
	return p
}

// State of the connection, for the channel's status display.
type State string

const (
	// StateConnected: logged in and the mailbox is selected.
	StateConnected State = "connected"
	// StateReconnecting: the connection failed (Status.Err says why) and
	// will be retried after Status.RetryIn.
	StateReconnecting State = "reconnecting"
	// StateAuthFailed: the server refused the credentials; Watch has
	// returned an error wrapping conv.ErrUnauthorized and will not retry.
	StateAuthFailed State = "auth_failed"
)

// Status is a change of the connection's state.
type Status struct {
	State State
	// Err is why, for StateReconnecting and StateAuthFailed.
	Err error
	// RetryIn is the delay before the next attempt (StateReconnecting).
	RetryIn time.Duration
	// UIDValidity of the selected mailbox (StateConnected).
	UIDValidity uint32
	At          time.Time
}
