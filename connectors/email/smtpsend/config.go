package smtpsend

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"
)

// Security says how the connection to the SMTP server is protected. The
// values are those of imapwatch.Security, so a channel's settings carry
// over.
type Security string

const (
	// SecurityTLS is implicit TLS from the first byte (usually port 465).
	SecurityTLS Security = "tls"
	// SecurityStartTLS upgrades a plaintext connection (usually port 587)
	// before anything else is said; a server that does not offer STARTTLS
	// is an error and nothing is sent.
	SecurityStartTLS Security = "starttls"
	// SecurityNone talks in the clear. AUTH is then refused unless the
	// server is on loopback: loopback and tests only.
	SecurityNone Security = "none"
)

// Defaults for Config.
const (
	DefaultTimeout = 30 * time.Second

	// maxAddrLen is the longest address accepted (RFC 5321 path limit
	// less the angle brackets).
	maxAddrLen = 254
	// maxReplyBytes caps everything read from the server in one Send
	// (greeting, replies, TLS handshake): a real session reads a few KiB;
	// a server streaming an endless multi-line reply is cut off here.
	maxReplyBytes = 1 << 20
)

// Config says which server to send through and how.
type Config struct {
	// Addr is host:port of the SMTP server. Required.
	Addr string
	// Security of the connection; default SecurityTLS.
	Security Security
	// Username and Password for AUTH (PLAIN, else LOGIN); both empty means
	// no AUTH. Never logged, never in an error.
	Username, Password string
	// HeloName is the name given in EHLO/HELO; default the host name
	// when it has a dot, else "localhost". Servers that check HELO want
	// the channel's public host name.
	HeloName string
	// Timeout bounds the dial, the TLS handshake, each wait for a reply
	// and each stretch of writing the message without progress. Default
	// 30 s. The ctx deadline, when earlier, wins.
	Timeout time.Duration
	// TLSConfig for SecurityTLS and SecurityStartTLS; nil means the system
	// roots and ServerName from Addr. Tests set RootCAs.
	TLSConfig *tls.Config
	// Dial opens the TCP connection; default a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger; default discards.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Security == "" {
		c.Security = SecurityTLS
	}
	if c.HeloName == "" {
		c.HeloName = "localhost"
		if h, err := os.Hostname(); err == nil && strings.Contains(h, ".") && validHelo(h) {
			c.HeloName = h
		}
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Dial == nil {
		d := &net.Dialer{KeepAlive: 30 * time.Second}
		c.Dial = d.DialContext
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

func (c *Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("smtpsend.Config: %s", fmt.Sprintf(format, args...))
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
	case (c.Username == "") != (c.Password == ""):
		return bad("Username and Password go together")
	case !validHelo(c.HeloName):
		return bad("HeloName %q is not a host name", c.HeloName)
	case c.Timeout < 0:
		return bad("Timeout is negative")
	}
	return nil
}

// validHelo accepts a host name or an address literal: printable ASCII,
// no space, at most 255 bytes.
func validHelo(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
