package smtpsend

import (
	"context"
	"errors"
	"net"
	"time"
)

var errReplyTooLong = errors.New("server sent more than the session allows")

// timedConn is the TCP connection under go-smtp (and under TLS). go-smtp
// sets a deadline per command and clears it afterwards, and writes the
// message body with no deadline at all; timedConn keeps every deadline
// within ctx's, gives each write Timeout to make progress, and caps the
// bytes read in the session at maxReplyBytes.
type timedConn struct {
	net.Conn
	timeout time.Duration
	limit   time.Time // ctx's deadline; zero: none
	read    int64
}

func newTimedConn(ctx context.Context, c net.Conn, timeout time.Duration) *timedConn {
	t := &timedConn{Conn: c, timeout: timeout}
	t.limit, _ = ctx.Deadline()
	c.SetDeadline(t.limit)
	return t
}

// bound turns a deadline go-smtp sets into ours. go-smtp sets one before
// each command (5 minutes unless told otherwise, and it cannot be told
// before its STARTTLS): it is cut to Timeout from now and to ctx's
// deadline. A cleared deadline (zero, between commands) becomes ctx's.
func (c *timedConn) bound(t time.Time) time.Time {
	if t.IsZero() {
		return c.limit
	}
	if max := time.Now().Add(c.timeout); t.After(max) {
		t = max
	}
	if !c.limit.IsZero() && t.After(c.limit) {
		t = c.limit
	}
	return t
}

func (c *timedConn) SetDeadline(t time.Time) error      { return c.Conn.SetDeadline(c.bound(t)) }
func (c *timedConn) SetReadDeadline(t time.Time) error  { return c.Conn.SetReadDeadline(c.bound(t)) }
func (c *timedConn) SetWriteDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(c.bound(t)) }

// Write gives each write Timeout to make progress: the message body is
// written outside any go-smtp command deadline.
func (c *timedConn) Write(b []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(c.bound(time.Now().Add(c.timeout))); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

func (c *timedConn) Read(b []byte) (int, error) {
	left := maxReplyBytes - c.read
	if left <= 0 {
		return 0, errReplyTooLong
	}
	if int64(len(b)) > left {
		b = b[:left]
	}
	n, err := c.Conn.Read(b)
	c.read += int64(n)
	return n, err
}
