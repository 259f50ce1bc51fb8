package smtpsend

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

const (
	testUser = "agent@example.test"
	testPass = "s3cret-pa55word"
	waitFor  = 10 * time.Second
)

// testMsg has a line starting with a dot (dot-stuffing), 8-bit UTF-8 and
// CRLF line ends; the server must store it byte for byte.
var testMsg = []byte("From: agent@example.test\r\nTo: customer@example.test\r\nSubject: test\r\n\r\nHello,\r\n.a line with a leading dot\r\n..two\r\n.\r\n你好\r\n")

// received is one message the test server accepted, or one session's trace.
type received struct {
	helo   string
	from   string
	to     []string
	data   []byte
	authed string // user name after AUTH
	tls    bool
}

// testServer is an in-process go-smtp server on a random loopback port
// recording what it received. Hooks change its answers.
type testServer struct {
	t           *testing.T
	addr        string
	srv         *smtp.Server
	requireAuth bool
	mechs       []string // AUTH mechanisms offered; nil: none
	smtpUTF8    bool     // advertise SMTPUTF8

	rcpt func(to string) error                 // nil: accept
	data func(c *smtp.Conn, r io.Reader) error // nil: accept

	mu       sync.Mutex
	got      []received
	mails    int // MAIL commands seen
	authSeen int // AUTH commands seen
}

type serverOpt func(*testServer)

func withAuth(mechs ...string) serverOpt {
	return func(s *testServer) { s.requireAuth = true; s.mechs = mechs }
}
func withSMTPUTF8() serverOpt                 { return func(s *testServer) { s.smtpUTF8 = true } }
func withRcpt(f func(string) error) serverOpt { return func(s *testServer) { s.rcpt = f } }
func withData(f func(*smtp.Conn, io.Reader) error) serverOpt {
	return func(s *testServer) { s.data = f }
}

// listen options
type listenMode int

const (
	plainListen    listenMode = iota // no TLS at all
	startTLSListen                   // offers STARTTLS
	tlsListen                        // implicit TLS
)

func startServer(t *testing.T, mode listenMode, cert *tls.Certificate, opts ...serverOpt) *testServer {
	t.Helper()
	s := &testServer{t: t}
	for _, o := range opts {
		o(s)
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, isTLS := c.TLSConnectionState()
		return &session{s: s, c: c, rec: received{helo: c.Hostname(), tls: isTLS}}, nil
	}))
	srv.Domain = "mx.example.test"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	srv.AllowInsecureAuth = mode == plainListen
	srv.MaxMessageBytes = 1 << 20
	srv.EnableSMTPUTF8 = s.smtpUTF8
	srv.ReadTimeout = waitFor
	srv.WriteTimeout = waitFor
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if mode != plainListen {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}}
	}
	if mode == tlsListen {
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	s.srv = srv
	s.addr = ln.Addr().String()
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return s
}

func (s *testServer) received() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.got...)
}

func (s *testServer) counts() (mails, auths int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mails, s.authSeen
}

type session struct {
	s   *testServer
	c   *smtp.Conn
	rec received
}

func (ss *session) AuthMechanisms() []string { return ss.s.mechs }

func (ss *session) Auth(mech string) (sasl.Server, error) {
	ss.s.mu.Lock()
	ss.s.authSeen++
	ss.s.mu.Unlock()
	check := func(user, pass string) error {
		if user != testUser || pass != testPass {
			return smtp.ErrAuthFailed
		}
		ss.rec.authed = user
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(_, user, pass string) error { return check(user, pass) }), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.s.mu.Lock()
	ss.s.mails++
	ss.s.mu.Unlock()
	if ss.s.requireAuth && ss.rec.authed == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	ss.rec.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if ss.s.rcpt != nil {
		if err := ss.s.rcpt(to); err != nil {
			return err
		}
	}
	ss.rec.to = append(ss.rec.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	if ss.s.data != nil {
		if err := ss.s.data(ss.c, r); err != nil {
			return err
		}
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	rec := ss.rec
	rec.data = b
	ss.s.mu.Lock()
	ss.s.got = append(ss.s.got, rec)
	ss.s.mu.Unlock()
	return nil
}

func (ss *session) Reset()        { ss.rec.from, ss.rec.to = "", nil }
func (ss *session) Logout() error { return nil }

// loginServer is the server side of AUTH LOGIN (go-sasl has only the
// client): it asks for the user name unless given as initial response,
// then for the password.
type loginServer struct {
	check    func(user, pass string) error
	user     string
	haveUser bool
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch {
	case !l.haveUser && resp == nil:
		return []byte("Username:"), false, nil
	case !l.haveUser:
		l.user, l.haveUser = string(resp), true
		return []byte("Password:"), false, nil
	default:
		return nil, true, l.check(l.user, string(resp))
	}
}

// hangServer accepts connections and never says anything.
func hangServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// selfSigned makes a certificate for 127.0.0.1 and localhost, and a pool
// that trusts it.
func selfSigned(t *testing.T) (*tls.Certificate, *x509.CertPool) {
	t.Helper()
	server, client := testenv.SelfSignedTLS(t)
	return &server.Certificates[0], client.RootCAs
}

func testLog(t *testing.T) *slog.Logger {
	t.Helper()
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(b, "\n")))
	return len(b), nil
}

// testCtx is bounded so that a bug cannot hang the suite.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

// sendErr asserts err is a *SendError and returns it.
func sendErr(t *testing.T, err error) *SendError {
	t.Helper()
	var se *SendError
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not a *SendError", err, err)
	}
	return se
}

// farConn makes a loopback connection look like one to a distant server.
type farConn struct{ net.Conn }

func (farConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 25} }
