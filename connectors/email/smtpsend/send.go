package smtpsend

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Result is the server's final reply to the message (after DATA), e.g.
// 250 "2.0.0" "Ok: queued as 4ZxY1". The queue id in Message is what a
// postmaster asks for.
type Result struct {
	Code     int
	Enhanced string
	Message  string
}

// Send delivers msg (RFC 5322 bytes with CRLF line ends, as
// mail.Outgoing.Bytes makes them) through cfg's server, from envelope
// sender from ("" is the null sender <>) to rcpts.
//
// Recipients are deduplicated (the domain compared without case) and each
// checked before dialing: no CR, LF or other control character, no space
// or angle bracket, exactly one @ with text on both sides, at most 254
// bytes. Non-ASCII addresses need a server with SMTPUTF8.
//
// On failure the error is a *SendError. When the server refuses some
// recipients at RCPT and accepts the message for the others, Send returns
// the Result and a *SendError with Sent set and Rejected listing the
// refused: the message counts as sent, the error is the reason to store.
func Send(ctx context.Context, cfg Config, from string, rcpts []string, msg []byte) (Result, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return Result{}, refuse(StageInput, "bad configuration", err)
	}
	if from != "" {
		if err := checkAddress(from); err != nil {
			return Result{}, refuse(StageInput, "bad sender", err)
		}
	}
	rcpts, err := dedup(rcpts)
	if err != nil {
		return Result{}, refuse(StageInput, "bad recipient", err)
	}
	if len(msg) == 0 {
		return Result{}, refuse(StageInput, "empty message", nil)
	}
	log := cfg.Logger.With("addr", cfg.Addr, "security", string(cfg.Security))
	res, serr := send(ctx, cfg, from, rcpts, msg)
	switch {
	case serr == nil:
		log.Info("smtpsend: accepted", "recipients", len(rcpts), "reply", res.Message)
		return res, nil
	case serr.Sent:
		log.Warn("smtpsend: accepted for some recipients", "recipients", len(rcpts), "refused", len(serr.Rejected), "reply", res.Message, "reason", serr.Reason())
		return res, serr
	default:
		log.Warn("smtpsend: failed", "stage", serr.Stage, "temporary", serr.Temporary, "reason", serr.Reason())
		return Result{}, serr
	}
}

func send(ctx context.Context, cfg Config, from string, rcpts []string, msg []byte) (Result, *SendError) {
	if err := ctx.Err(); err != nil {
		return Result{}, classify(ctx, StageDial, err)
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	raw, err := cfg.Dial(dctx, "tcp", cfg.Addr)
	cancel()
	if err != nil {
		return Result{}, classify(ctx, StageDial, err)
	}
	defer raw.Close()
	// Ending ctx closes the connection under the client, whatever it is
	// waiting for; the deadlines below only make it fail sooner.
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()

	conn := newTimedConn(ctx, raw, cfg.Timeout)
	host, _, _ := net.SplitHostPort(cfg.Addr)
	tlsCfg := &tls.Config{}
	if cfg.TLSConfig != nil {
		tlsCfg = cfg.TLSConfig.Clone()
	}
	if tlsCfg.ServerName == "" {
		tlsCfg.ServerName = host
	}

	var c *smtp.Client
	switch cfg.Security {
	case SecurityTLS:
		tc := tls.Client(conn, tlsCfg)
		hctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			return Result{}, classify(ctx, StageTLS, err)
		}
		c = newClient(tc, cfg.Timeout)
	case SecurityStartTLS:
		// go-smtp's STARTTLS runs its own EHLO (as "localhost") before
		// the upgrade; the configured name is given after it.
		c, err = smtp.NewClientStartTLS(conn, tlsCfg)
		if err != nil {
			var se *smtp.SMTPError
			if !errors.As(err, &se) && ctx.Err() == nil && strings.Contains(err.Error(), "STARTTLS") {
				return Result{}, refuse(StageStartTLS, "server does not offer STARTTLS; refusing to send in the clear", nil)
			}
			return Result{}, classify(ctx, StageStartTLS, err)
		}
		setTimeouts(c, cfg.Timeout)
	default:
		c = newClient(conn, cfg.Timeout)
	}
	defer c.Close()

	stage := StageHello
	if cfg.Security == SecurityStartTLS {
		stage = StageStartTLS // the handshake happens with this EHLO
	}
	if err := c.Hello(cfg.HeloName); err != nil {
		return Result{}, classify(ctx, stage, err)
	}
	_, isTLS := c.TLSConnectionState()
	if cfg.Security != SecurityNone && !isTLS {
		return Result{}, refuse(stage, "TLS was not established; refusing to send in the clear", nil)
	}

	if cfg.Username != "" {
		if serr := authenticate(ctx, c, cfg, isTLS || loopback(raw.RemoteAddr())); serr != nil {
			return Result{}, serr
		}
	}

	opts := &smtp.MailOptions{Size: int64(len(msg))}
	if !ascii(from) || !allASCII(rcpts) {
		if ok, _ := c.Extension("SMTPUTF8"); !ok {
			return Result{}, refuse(StageMail, "server does not accept non-ASCII addresses (no SMTPUTF8)", nil)
		}
		opts.UTF8 = true
	}
	if err := c.Mail(from, opts); err != nil {
		return Result{}, classify(ctx, StageMail, err)
	}

	var rejected []*SendError
	var rejectedAddrs []string
	for _, r := range rcpts {
		err := c.Rcpt(r, nil)
		if err == nil {
			continue
		}
		serr := classify(ctx, StageRcpt, err)
		if serr.Code == 0 {
			// Not a reply: the connection is gone.
			serr.Rejected = rejectedAddrs
			return Result{}, serr
		}
		rejected = append(rejected, serr)
		rejectedAddrs = append(rejectedAddrs, r)
	}
	if len(rejected) == len(rcpts) {
		return Result{}, allRejected(rejected, rejectedAddrs)
	}

	w, err := c.Data()
	if err != nil {
		return Result{}, withRejected(classify(ctx, StageData, err), rejectedAddrs)
	}
	if _, err := w.Write(msg); err != nil {
		return Result{}, withRejected(classify(ctx, StageData, err), rejectedAddrs)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		// A connection lost after the final dot is ambiguous: the server
		// may have queued the message. It is reported as temporary; a
		// retry may deliver twice, which beats losing the reply.
		return Result{}, withRejected(classify(ctx, StageData, err), rejectedAddrs)
	}
	enh, text := splitReply(resp.StatusText)
	res := Result{Code: 250, Enhanced: enh, Message: text}
	// The message is accepted: QUIT is a courtesy, its failure changes
	// nothing.
	_ = c.Quit()

	if len(rejected) > 0 {
		serr := rejected[0]
		serr.Rejected = rejectedAddrs
		serr.Sent = true
		serr.Temporary = false
		return res, serr
	}
	return res, nil
}

func newClient(conn net.Conn, timeout time.Duration) *smtp.Client {
	c := smtp.NewClient(conn)
	setTimeouts(c, timeout)
	return c
}

func setTimeouts(c *smtp.Client, timeout time.Duration) {
	c.CommandTimeout = timeout
	c.SubmissionTimeout = timeout
}

// authenticate runs AUTH PLAIN, else LOGIN. The password goes over the
// wire only when safe: under TLS, or to a loopback server.
func authenticate(ctx context.Context, c *smtp.Client, cfg Config, safe bool) *SendError {
	if !safe {
		return refuse(StageAuth, "refusing to send the password in the clear to a server that is not on loopback", nil)
	}
	var mech sasl.Client
	switch {
	case c.SupportsAuth(sasl.Plain):
		mech = sasl.NewPlainClient("", cfg.Username, cfg.Password)
	case c.SupportsAuth(sasl.Login):
		mech = sasl.NewLoginClient(cfg.Username, cfg.Password)
	default:
		if ok, _ := c.Extension("AUTH"); !ok {
			return refuse(StageAuth, "server does not offer AUTH", nil)
		}
		return refuse(StageAuth, "server offers neither AUTH PLAIN nor LOGIN", nil)
	}
	if err := c.Auth(mech); err != nil {
		if errors.Is(err, sasl.ErrUnexpectedServerChallenge) {
			return refuse(StageAuth, "unexpected AUTH LOGIN challenge", err)
		}
		return classify(ctx, StageAuth, err)
	}
	return nil
}

// allRejected is the error when no recipient was accepted: temporary if
// any refusal was (the others will be refused again, nothing is sent
// twice), represented by the first refusal of the verdict's class.
func allRejected(rejected []*SendError, addrs []string) *SendError {
	pick := rejected[0]
	for _, r := range rejected {
		if r.Temporary {
			pick = r
			break
		}
	}
	pick.Rejected = addrs
	return pick
}

func withRejected(e *SendError, addrs []string) *SendError {
	e.Rejected = addrs
	return e
}

// loopback reports whether the server's address is a loopback one; it
// looks at the connected address, not at the name in Config.Addr, which
// DNS may point anywhere.
func loopback(a net.Addr) bool {
	if a == nil {
		return false
	}
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.IsLoopback()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func allASCII(ss []string) bool {
	for _, s := range ss {
		if !ascii(s) {
			return false
		}
	}
	return true
}
