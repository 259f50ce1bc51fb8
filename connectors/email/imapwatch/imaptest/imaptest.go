package imaptest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/switchboard-hq/switchboard/connectors/email/imapwatch"
)

// Mailbox is where a watcher connects and how mail gets in.
type Mailbox struct {
	Addr               string
	Security           imapwatch.Security
	Username, Password string
	// Name of the mailbox (folder) to watch.
	Name   string
	append func(t testing.TB, raw []byte) uint32
	// onServer is set for a folder on a real server (Folder): AppendAll
	// and Recreate talk to it.
	onServer bool
}

// Append puts raw into the mailbox, as a delivery would, and returns its UID.
func (m Mailbox) Append(t testing.TB, raw []byte) uint32 {
	t.Helper()
	return m.append(t, raw)
}

// AppendAll puts raws into a Folder, in order, over one connection, and
// returns the UID of the last.
func (m Mailbox) AppendAll(t testing.TB, raws [][]byte) uint32 {
	t.Helper()
	if !m.onServer {
		t.Fatal("imaptest: AppendAll is for a Folder")
	}
	c := dial(t, m)
	defer c.Close()
	var last uint32
	for _, raw := range raws {
		last = appendOne(t, c, m.Name, raw)
	}
	return last
}

// Recreate deletes a Folder and creates it again, empty: the server gives
// it a new UIDVALIDITY, as after a restore or a migration of the mailbox.
func (m Mailbox) Recreate(t testing.TB) {
	t.Helper()
	if !m.onServer {
		t.Fatal("imaptest: Recreate is for a Folder")
	}
	c := dial(t, m)
	defer c.Close()
	if err := c.Delete(m.Name).Wait(); err != nil {
		t.Fatalf("imaptest: delete %s: %v", m.Name, err)
	}
	if err := c.Create(m.Name, nil).Wait(); err != nil {
		t.Fatalf("imaptest: create %s: %v", m.Name, err)
	}
}

func appendOne(t testing.TB, c *imapclient.Client, name string, raw []byte) uint32 {
	t.Helper()
	cmd := c.Append(name, int64(len(raw)), nil)
	if _, err := cmd.Write(raw); err != nil {
		t.Fatalf("imaptest: append: %v", err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatalf("imaptest: append: %v", err)
	}
	data, err := cmd.Wait()
	if err != nil {
		t.Fatalf("imaptest: append: %v", err)
	}
	return uint32(data.UID)
}

// Server is an IMAP server in the test process with one user and an INBOX.
// It stops when the test ends.
type Server struct {
	user *imapmemserver.User
	srv  *imapserver.Server
	ln   net.Listener
	name string
	pass string

	mu       sync.Mutex
	wire     bytes.Buffer // what the server read and wrote
	sessions int          // connections open
}

// NewServer starts a server on a random loopback port, plaintext (the
// suites that use it are about what the connector does with mail, not TLS).
func NewServer(t testing.TB, username, password string) *Server {
	t.Helper()
	backend := imapmemserver.New()
	s := &Server{user: imapmemserver.NewUser(username, password), name: username, pass: password}
	if err := s.user.Create("INBOX", nil); err != nil {
		t.Fatalf("imaptest: create INBOX: %v", err)
	}
	backend.AddUser(s.user)
	s.srv = imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			s.mu.Lock()
			s.sessions++
			s.mu.Unlock()
			return idlePoller{SessionIMAP4rev2: backend.NewSession().(imapserver.SessionIMAP4rev2), s: s}, nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		InsecureAuth: true,
		// Not t.Logf: connection goroutines may log after the test ends.
		Logger:      log.New(io.Discard, "", 0),
		DebugWriter: lockedWriter{s},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("imaptest: listen: %v", err)
	}
	s.ln = ln
	go s.srv.Serve(ln)
	t.Cleanup(s.Stop)
	return s
}

// idlePoller counts sessions and fixes a gap of imapmemserver: its IDLE reports only changes
// made after IDLE began, so mail appended between the client's last
// command and its IDLE would wait for the next change. A real server
// reports it at once; so does this, by polling every idlePoll while idling.
type idlePoller struct {
	imapserver.SessionIMAP4rev2
	s *Server
}

func (p idlePoller) Close() error {
	p.s.mu.Lock()
	p.s.sessions--
	p.s.mu.Unlock()
	return p.SessionIMAP4rev2.Close()
}

const idlePoll = 20 * time.Millisecond

func (s idlePoller) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	for {
		if err := s.Poll(w, true); err != nil {
			return err
		}
		pause := make(chan struct{})
		go func() {
			t := time.NewTimer(idlePoll)
			defer t.Stop()
			select {
			case <-stop:
			case <-t.C:
			}
			close(pause)
		}()
		if err := s.SessionIMAP4rev2.Idle(w, pause); err != nil {
			return err
		}
		<-pause
		select {
		case <-stop:
			return nil
		default:
		}
	}
}

type lockedWriter struct{ s *Server }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.wire.Write(p)
}

// Mailbox is the server's INBOX.
func (s *Server) Mailbox() Mailbox {
	return Mailbox{
		Addr: s.ln.Addr().String(), Security: imapwatch.SecurityNone,
		Username: s.name, Password: s.pass, Name: "INBOX",
		append: s.Deliver,
	}
}

// Deliver appends raw to the INBOX and returns its UID.
func (s *Server) Deliver(t testing.TB, raw []byte) uint32 {
	t.Helper()
	data, err := s.user.Append("INBOX", literal{bytes.NewReader(raw), int64(len(raw))}, &imap.AppendOptions{})
	if err != nil {
		t.Fatalf("imaptest: append: %v", err)
	}
	return uint32(data.UID)
}

// Logins counts the LOGIN commands the server has received.
func (s *Server) Logins() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.wire.String(), " LOGIN ")
}

// Sessions counts the connections open now.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

// Stop closes the listener and every connection.
func (s *Server) Stop() { s.srv.Close() }

type literal struct {
	io.Reader
	n int64
}

func (l literal) Size() int64 { return l.n }

// Folder creates a mailbox of its own for the test on the server named by
// rawURL (imap://user:password@host:port, plaintext, or imaps:// for
// implicit TLS, as SWITCHBOARD_TEST_IMAP holds it) and deletes it when the
// test ends.
func Folder(t testing.TB, rawURL string) Mailbox {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" || (u.Scheme != "imap" && u.Scheme != "imaps") {
		t.Fatalf("imaptest: %q is not imap://user:password@host:port", rawURL)
	}
	pass, _ := u.User.Password()
	m := Mailbox{Addr: u.Host, Security: imapwatch.SecurityNone, Username: u.User.Username(), Password: pass}
	if u.Scheme == "imaps" {
		m.Security = imapwatch.SecurityTLS
	}
	b := make([]byte, 6)
	rand.Read(b)
	m.Name = "sbtest-" + hex.EncodeToString(b)

	c := dial(t, m)
	err = c.Create(m.Name, nil).Wait()
	c.Close()
	if err != nil {
		t.Fatalf("imaptest: create %s: %v", m.Name, err)
	}
	t.Cleanup(func() {
		c := dial(t, m)
		defer c.Close()
		if err := c.Delete(m.Name).Wait(); err != nil {
			t.Errorf("imaptest: delete %s: %v", m.Name, err)
		}
	})
	m.onServer = true
	m.append = func(t testing.TB, raw []byte) uint32 {
		t.Helper()
		c := dial(t, m)
		defer c.Close()
		return appendOne(t, c, m.Name, raw)
	}
	return m
}

// dial logs in to m's server; the caller closes the client.
func dial(t testing.TB, m Mailbox) *imapclient.Client {
	t.Helper()
	var c *imapclient.Client
	var err error
	if m.Security == imapwatch.SecurityTLS {
		c, err = imapclient.DialTLS(m.Addr, nil)
	} else {
		c, err = imapclient.DialInsecure(m.Addr, nil)
	}
	if err != nil {
		t.Fatalf("imaptest: dial %s: %v", m.Addr, err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Login(m.Username, m.Password).Wait() }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		c.Close()
		err = <-done
	}
	if err != nil {
		c.Close()
		t.Fatalf("imaptest: login to %s: %v", m.Addr, err)
	}
	return c
}
