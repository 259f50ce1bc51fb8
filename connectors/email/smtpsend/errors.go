package smtpsend

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Stages of a Send, as found in SendError.Stage.
const (
	StageInput    = "input"    // Config, addresses or message refused before dialing
	StageDial     = "dial"     // TCP connection
	StageTLS      = "tls"      // implicit TLS handshake
	StageHello    = "hello"    // greeting and EHLO/HELO
	StageStartTLS = "starttls" // STARTTLS offer, command and handshake
	StageAuth     = "auth"     // AUTH
	StageMail     = "mail"     // MAIL FROM
	StageRcpt     = "rcpt"     // RCPT TO
	StageData     = "data"     // DATA, the message, the final reply
)

// maxMessage caps the server text kept in a SendError or a Result.
const maxMessage = 512

// SendError is why a Send failed, or, with Sent set, which recipients the
// server refused while it accepted the message for the others.
//
// It unwraps to a conv error kind — conv.ErrUnauthorized when the server
// refused the credentials, conv.ErrUnavailable when Temporary,
// conv.ErrInvalid otherwise — and to Err.
type SendError struct {
	// Stage of the session that failed (StageDial, StageRcpt, …).
	Stage string
	// Code, Enhanced and Message are the server's reply ("550", "5.1.1",
	// "<x@y>: Recipient address rejected: User unknown"); Code is 0 when
	// the failure was not a reply (network, timeout, TLS, refused input).
	// With Rejected set they are one refused recipient's reply.
	Code     int
	Enhanced string
	Message  string
	// Temporary: retry later (4xx, network errors, timeouts). Never set
	// with Sent: retrying would deliver twice to the accepted recipients.
	Temporary bool
	// Rejected lists the recipients refused at RCPT, in the caller's order.
	Rejected []string
	// Sent: the server accepted the message for the other recipients; the
	// delivery succeeded and Reason() is a warning to store with it.
	Sent bool
	// Err is the underlying error (an *smtp.SMTPError, a net.Error, a
	// context error, …); nil for a refusal of our own.
	Err error

	kind   error  // conv kind for Unwrap
	reason string // Reason() when Code is 0
}

// Error describes the failure for logs: stage, the server's reply or the
// cause, and the refused recipients. It never holds the password.
func (e *SendError) Error() string {
	var b strings.Builder
	b.WriteString("smtpsend: ")
	b.WriteString(e.Stage)
	b.WriteString(": ")
	switch {
	case e.Code != 0:
		b.WriteString(e.reply())
	case e.reason != "" && e.Err != nil:
		b.WriteString(e.reason + ": " + e.Err.Error())
	case e.reason != "":
		b.WriteString(e.reason)
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	}
	if len(e.Rejected) > 0 {
		fmt.Fprintf(&b, " (refused: %s)", strings.Join(e.Rejected, ", "))
	}
	if e.Sent {
		b.WriteString(" (sent to the other recipients)")
	}
	return b.String()
}

// Reason is one short line for the console and the delivery status: the
// server's reply ("550 5.1.1 <x@y>: Recipient address rejected: User
// unknown"), or what went wrong on our side ("timed out", "server does not
// offer STARTTLS", …).
func (e *SendError) Reason() string {
	r := e.reason
	if e.Code != 0 {
		r = e.reply()
	}
	if r == "" && e.Err != nil {
		r = e.Err.Error()
	}
	if n := len(e.Rejected); n > 1 {
		r += fmt.Sprintf(" (+%d more recipients refused)", n-1)
	}
	return conv.Shorten(r, 300)
}

func (e *SendError) reply() string {
	s := strconv.Itoa(e.Code)
	if e.Enhanced != "" {
		s += " " + e.Enhanced
	}
	if e.Message != "" {
		s += " " + e.Message
	}
	return s
}

// Unwrap gives the conv kind and Err.
func (e *SendError) Unwrap() []error {
	errs := []error{e.kind}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// Temporary reports whether err is worth retrying later: a *SendError
// says so itself (4xx replies, network errors, timeouts); for other
// errors, context ends, net.Error and conv.ErrUnavailable are temporary.
// Permanent (5xx) failures, refused credentials and refused input are not.
func Temporary(err error) bool {
	var se *SendError
	if errors.As(err, &se) {
		return se.Temporary
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, conv.ErrUnavailable) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// refuse is a permanent failure of our own making (no server reply).
func refuse(stage, reason string, err error) *SendError {
	return &SendError{Stage: stage, reason: reason, Err: err, kind: conv.ErrInvalid}
}

// fromReply fills a SendError from a server reply.
func fromReply(stage string, se *smtp.SMTPError) *SendError {
	e := &SendError{
		Stage:   stage,
		Code:    se.Code,
		Message: clean(se.Message),
		Err:     se,
	}
	if c := se.EnhancedCode; c[0] > 0 {
		e.Enhanced = fmt.Sprintf("%d.%d.%d", c[0], c[1], c[2])
	}
	switch {
	case stage == StageAuth && se.Code/100 == 5, se.Code == 530, e.Enhanced == "5.7.8":
		// 535 5.7.8 bad credentials, 530 authentication required, 534
		// mechanism too weak: a human must fix the channel's settings.
		e.kind = conv.ErrUnauthorized
	case se.Code/100 == 5:
		e.kind = conv.ErrInvalid
	default:
		// 4xx, or a reply that makes no sense at this point (a 2xx or
		// 3xx where another was due): the server is confused, try later.
		e.Temporary = true
		e.kind = conv.ErrUnavailable
	}
	return e
}

// classify turns what a step returned into a SendError. ctx ending wins
// over the error it caused (the connection is closed under the client).
func classify(ctx context.Context, stage string, err error) *SendError {
	cerr := ctx.Err()
	if dl, ok := ctx.Deadline(); cerr == nil && ok && !time.Now().Before(dl) {
		// The connection's deadline, set to ctx's, fired before ctx's own
		// timer: the same event.
		cerr = context.DeadlineExceeded
	}
	if cerr != nil {
		reason := "canceled"
		if errors.Is(cerr, context.DeadlineExceeded) {
			reason = "timed out"
		}
		return &SendError{Stage: stage, Temporary: true, Err: cerr, kind: conv.ErrUnavailable, reason: reason}
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return fromReply(stage, se)
	}
	var (
		unknownCA *x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		certErr   x509.CertificateInvalidError
		verifyErr *tls.CertificateVerificationError
	)
	if errors.As(err, &unknownCA) || errors.As(err, &hostErr) || errors.As(err, &certErr) || errors.As(err, &verifyErr) {
		// Retrying will not make the certificate valid: the channel's
		// settings (or the server) need a human.
		return refuse(stage, "TLS certificate not accepted", err)
	}
	reason := "connection failed"
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		reason = "timed out"
	case errors.Is(err, errReplyTooLong):
		reason = "server sent too much"
	case stage != StageDial:
		reason = "connection lost"
	}
	return &SendError{Stage: stage, Temporary: true, Err: err, kind: conv.ErrUnavailable, reason: reason}
}

// clean makes server text one printable line of bounded length.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			return ' '
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError:
			return -1
		}
		return r
	}, s)
	return conv.Shorten(strings.Join(strings.Fields(s), " "), maxMessage)
}

// splitReply splits a reply text into its enhanced status code (RFC 3463,
// "2.0.0") and the rest.
func splitReply(text string) (enhanced, msg string) {
	first, rest, _ := strings.Cut(text, " ")
	parts := strings.Split(first, ".")
	if len(parts) != 3 || len(first) > 11 {
		return "", clean(text)
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || p == "" || p[0] == '+' || (i == 0 && (n < 2 || n > 5)) {
			return "", clean(text)
		}
	}
	return first, clean(rest)
}
