package smtpsend

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/switchboard-hq/switchboard/core/conv"
)

func plainConfig(t *testing.T, addr string) Config {
	t.Helper()
	return Config{Addr: addr, Security: SecurityNone, HeloName: "sb.example.test", Timeout: waitFor, Logger: testLog(t)}
}

func TestSendDelivers(t *testing.T) {
	srv := startServer(t, plainListen, nil)
	cfg := plainConfig(t, srv.addr)
	res, err := Send(testCtx(t), cfg, "agent@example.test",
		[]string{"customer@example.test", "other@Example.TEST", "customer@EXAMPLE.test", "other@example.test"}, testMsg)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if res != (Result{Code: 250, Enhanced: "2.0.0", Message: "OK: queued"}) {
		t.Errorf("Result = %+v", res)
	}
	got := srv.received()
	if len(got) != 1 {
		t.Fatalf("server got %d messages, want 1", len(got))
	}
	r := got[0]
	if !bytes.Equal(r.data, testMsg) {
		t.Errorf("server got\n%q\nwant\n%q", r.data, testMsg)
	}
	if r.from != "agent@example.test" || r.helo != "sb.example.test" {
		t.Errorf("from %q helo %q", r.from, r.helo)
	}
	if want := []string{"customer@example.test", "other@Example.TEST"}; !slices.Equal(r.to, want) {
		t.Errorf("recipients %q, want %q (deduplicated, first spelling kept)", r.to, want)
	}
}

func TestSendNullSender(t *testing.T) {
	srv := startServer(t, plainListen, nil)
	if _, err := Send(testCtx(t), plainConfig(t, srv.addr), "", []string{"customer@example.test"}, testMsg); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := srv.received(); len(got) != 1 || got[0].from != "" {
		t.Fatalf("server got %+v, want one message from <>", got)
	}
}

func TestSendAuth(t *testing.T) {
	tests := []struct {
		name      string
		mechs     []string
		user, pwd string
		wantCode  int
		wantKind  error
	}{
		{name: "plain", mechs: []string{sasl.Plain, sasl.Login}, user: testUser, pwd: testPass},
		{name: "login only", mechs: []string{sasl.Login}, user: testUser, pwd: testPass},
		{name: "wrong password", mechs: []string{sasl.Plain}, user: testUser, pwd: "wrong-" + testPass, wantCode: 535, wantKind: conv.ErrUnauthorized},
		{name: "wrong password login", mechs: []string{sasl.Login}, user: testUser, pwd: "wrong-" + testPass, wantCode: 535, wantKind: conv.ErrUnauthorized},
		{name: "required but no credentials", mechs: []string{sasl.Plain}, wantCode: 530, wantKind: conv.ErrUnauthorized},
		{name: "no usable mechanism", mechs: []string{"CRAM-MD5"}, user: testUser, pwd: testPass, wantKind: conv.ErrInvalid},
		{name: "server without AUTH", user: testUser, pwd: testPass, wantKind: conv.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []serverOpt
			if tt.mechs != nil {
				opts = append(opts, withAuth(tt.mechs...))
			}
			srv := startServer(t, plainListen, nil, opts...)
			cfg := plainConfig(t, srv.addr)
			cfg.Username, cfg.Password = tt.user, tt.pwd
			_, err := Send(testCtx(t), cfg, testUser, []string{"customer@example.test"}, testMsg)
			if tt.wantKind == nil {
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				if got := srv.received(); len(got) != 1 || got[0].authed != testUser {
					t.Fatalf("server got %+v, want one message after AUTH", got)
				}
				return
			}
			se := sendErr(t, err)
			if se.Code != tt.wantCode || !errors.Is(err, tt.wantKind) || se.Temporary || Temporary(err) {
				t.Fatalf("error %v: code %d temporary %v; want code %d, %v, permanent", err, se.Code, se.Temporary, tt.wantCode, tt.wantKind)
			}
			if strings.Contains(err.Error(), tt.pwd) && tt.pwd != "" || strings.Contains(se.Reason(), testPass) {
				t.Fatalf("the password leaks into %q / %q", err.Error(), se.Reason())
			}
			if got := srv.received(); len(got) != 0 {
				t.Fatalf("server got %d messages", len(got))
			}
		})
	}
}

func TestSendServerReplies(t *testing.T) {
	tempData := func(*smtp.Conn, io.Reader) error {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try again later"}
	}
	tooLargeData := func(*smtp.Conn, io.Reader) error { return smtp.ErrDataTooLarge }
	closeMidData := func(c *smtp.Conn, r io.Reader) error {
		io.ReadFull(r, make([]byte, 16))
		c.Conn().Close()
		return errors.New("gone")
	}
	unknown := func(to string) error {
		if strings.HasPrefix(to, "ghost") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<" + to + ">: Recipient address rejected: User unknown"}
		}
		return nil
	}
	busy := func(string) error {
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full"}
	}
	big := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n"), 20000) // ~1.3 MB > 1 MiB
	tests := []struct {
		name      string
		opts      []serverOpt
		rcpts     []string
		msg       []byte
		stage     string
		code      int
		enhanced  string
		temporary bool
		kind      error
		rejected  []string
		reason    string
	}{
		{name: "451 at DATA", opts: []serverOpt{withData(tempData)}, stage: StageData, code: 451, enhanced: "4.3.0", temporary: true, kind: conv.ErrUnavailable, reason: "451 4.3.0 Try again later"},
		{name: "552 at DATA", opts: []serverOpt{withData(tooLargeData)}, stage: StageData, code: 552, enhanced: "5.3.4", kind: conv.ErrInvalid},
		{name: "552 by SIZE at MAIL", msg: big, stage: StageMail, code: 552, enhanced: "5.3.4", kind: conv.ErrInvalid},
		{name: "closed mid-DATA", opts: []serverOpt{withData(closeMidData)}, msg: big[:200000], stage: StageData, temporary: true, kind: conv.ErrUnavailable},
		{name: "550 for the only recipient", opts: []serverOpt{withRcpt(unknown)}, rcpts: []string{"ghost@example.test"}, stage: StageRcpt, code: 550, enhanced: "5.1.1", kind: conv.ErrInvalid,
			rejected: []string{"ghost@example.test"}, reason: "550 5.1.1 <ghost@example.test>: Recipient address rejected: User unknown"},
		{name: "550 for every recipient", opts: []serverOpt{withRcpt(unknown)}, rcpts: []string{"ghost@example.test", "ghost2@example.test"}, stage: StageRcpt, code: 550, kind: conv.ErrInvalid, enhanced: "5.1.1",
			rejected: []string{"ghost@example.test", "ghost2@example.test"}, reason: "550 5.1.1 <ghost@example.test>: Recipient address rejected: User unknown (+1 more recipients refused)"},
		{name: "452 at RCPT", opts: []serverOpt{withRcpt(busy)}, stage: StageRcpt, code: 452, enhanced: "4.2.2", temporary: true, kind: conv.ErrUnavailable, rejected: []string{"customer@example.test"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, plainListen, nil, tt.opts...)
			rcpts, msg := tt.rcpts, tt.msg
			if rcpts == nil {
				rcpts = []string{"customer@example.test"}
			}
			if msg == nil {
				msg = testMsg
			}
			res, err := Send(testCtx(t), plainConfig(t, srv.addr), "agent@example.test", rcpts, msg)
			se := sendErr(t, err)
			if res != (Result{}) {
				t.Errorf("Result = %+v on failure", res)
			}
			if se.Stage != tt.stage || se.Code != tt.code || se.Enhanced != tt.enhanced || se.Temporary != tt.temporary || Temporary(err) != tt.temporary || se.Sent {
				t.Errorf("error %v = %+v; want stage %s code %d %s temporary %v", err, se, tt.stage, tt.code, tt.enhanced, tt.temporary)
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("error %v does not wrap %v", err, tt.kind)
			}
			if !slices.Equal(se.Rejected, tt.rejected) {
				t.Errorf("Rejected = %q, want %q", se.Rejected, tt.rejected)
			}
			if tt.reason != "" && se.Reason() != tt.reason {
				t.Errorf("Reason() = %q, want %q", se.Reason(), tt.reason)
			}
			if got := srv.received(); len(got) != 0 {
				t.Errorf("server stored %d messages", len(got))
			}
		})
	}
}

func TestSendPartialRejection(t *testing.T) {
	srv := startServer(t, plainListen, nil, withRcpt(func(to string) error {
		if to == "ghost@example.test" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<ghost@example.test>: Recipient address rejected: User unknown"}
		}
		return nil
	}))
	res, err := Send(testCtx(t), plainConfig(t, srv.addr), "agent@example.test", []string{"ghost@example.test", "customer@example.test"}, testMsg)
	if res.Code != 250 {
		t.Fatalf("Result = %+v, want the 250 of the accepted message", res)
	}
	se := sendErr(t, err)
	if !se.Sent || se.Temporary || Temporary(err) || se.Code != 550 || !slices.Equal(se.Rejected, []string{"ghost@example.test"}) {
		t.Fatalf("error %v = %+v; want Sent, permanent 550 for ghost", err, se)
	}
	if want := "550 5.1.1 <ghost@example.test>: Recipient address rejected: User unknown"; se.Reason() != want {
		t.Errorf("Reason() = %q, want %q", se.Reason(), want)
	}
	got := srv.received()
	if len(got) != 1 || !slices.Equal(got[0].to, []string{"customer@example.test"}) || !bytes.Equal(got[0].data, testMsg) {
		t.Fatalf("server got %+v, want the message for customer only", got)
	}
}

func TestSendTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	trusted := &tls.Config{RootCAs: pool}
	tests := []struct {
		name     string
		mode     listenMode
		security Security
		tls      *tls.Config
		auth     bool
		wantErr  string // stage; "" for success
		temp     bool
	}{
		{name: "starttls with auth", mode: startTLSListen, security: SecurityStartTLS, tls: trusted, auth: true},
		{name: "implicit tls with auth", mode: tlsListen, security: SecurityTLS, tls: trusted, auth: true},
		{name: "starttls not offered", mode: plainListen, security: SecurityStartTLS, tls: trusted, wantErr: StageStartTLS},
		{name: "starttls untrusted certificate", mode: startTLSListen, security: SecurityStartTLS, tls: &tls.Config{RootCAs: x509.NewCertPool()}, wantErr: StageStartTLS},
		{name: "implicit tls untrusted certificate", mode: tlsListen, security: SecurityTLS, tls: &tls.Config{RootCAs: x509.NewCertPool()}, wantErr: StageTLS},
		{name: "implicit tls against plaintext", mode: plainListen, security: SecurityTLS, tls: trusted, wantErr: StageTLS, temp: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []serverOpt
			if tt.auth {
				opts = append(opts, withAuth(sasl.Plain))
			}
			srv := startServer(t, tt.mode, cert, opts...)
			cfg := Config{Addr: srv.addr, Security: tt.security, TLSConfig: tt.tls, Timeout: 2 * time.Second, Logger: testLog(t)}
			if tt.auth {
				cfg.Username, cfg.Password = testUser, testPass
			}
			_, err := Send(testCtx(t), cfg, testUser, []string{"customer@example.test"}, testMsg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				got := srv.received()
				if len(got) != 1 || !got[0].tls || !bytes.Equal(got[0].data, testMsg) {
					t.Fatalf("server got %+v, want one message over TLS", got)
				}
				return
			}
			se := sendErr(t, err)
			if se.Stage != tt.wantErr || se.Temporary != tt.temp {
				t.Fatalf("error %v: stage %s temporary %v, want %s %v", err, se.Stage, se.Temporary, tt.wantErr, tt.temp)
			}
			if mails, _ := srv.counts(); mails != 0 {
				t.Fatalf("the server saw %d MAIL commands; nothing may be sent", mails)
			}
		})
	}
}

func TestSendRefusesAuthInClear(t *testing.T) {
	srv := startServer(t, plainListen, nil, withAuth(sasl.Plain))
	cfg := plainConfig(t, srv.addr)
	cfg.Username, cfg.Password = testUser, testPass
	cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return farConn{c}, nil
	}
	_, err := Send(testCtx(t), cfg, testUser, []string{"customer@example.test"}, testMsg)
	se := sendErr(t, err)
	if se.Stage != StageAuth || se.Temporary || !errors.Is(err, conv.ErrInvalid) {
		t.Fatalf("error %v = %+v; want a permanent refusal at auth", err, se)
	}
	if mails, auths := srv.counts(); mails != 0 || auths != 0 {
		t.Fatalf("server saw %d AUTH and %d MAIL; the password must not go out in the clear", auths, mails)
	}
}

func TestSendTimeouts(t *testing.T) {
	release := make(chan struct{})
	hangData := startServer(t, plainListen, nil, withData(func(_ *smtp.Conn, r io.Reader) error {
		io.Copy(io.Discard, r)
		<-release
		return nil
	}))
	t.Cleanup(func() { close(release) }) // runs before the server's cleanup
	silent := hangServer(t)

	tests := []struct {
		name    string
		addr    string
		ctx     time.Duration // 0: no deadline
		timeout time.Duration
		wantCtx bool
	}{
		{name: "ctx deadline, silent server", addr: silent, ctx: 200 * time.Millisecond, timeout: waitFor, wantCtx: true},
		{name: "ctx deadline, no reply to DATA", addr: hangData.addr, ctx: 300 * time.Millisecond, timeout: waitFor, wantCtx: true},
		{name: "Timeout, silent server", addr: silent, timeout: 200 * time.Millisecond},
		{name: "Timeout, no reply to DATA", addr: hangData.addr, timeout: 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.ctx > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.ctx)
				defer cancel()
			}
			cfg := plainConfig(t, tt.addr)
			cfg.Timeout = tt.timeout
			start := time.Now()
			_, err := Send(ctx, cfg, testUser, []string{"customer@example.test"}, testMsg)
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("Send took %s", el)
			}
			se := sendErr(t, err)
			if !se.Temporary || !Temporary(err) || !errors.Is(err, conv.ErrUnavailable) || se.Reason() != "timed out" {
				t.Fatalf("error %v = %+v; want temporary, timed out", err, se)
			}
			if tt.wantCtx && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("error %v does not wrap context.DeadlineExceeded", err)
			}
		})
	}
}

func TestSendCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dialed := false
	cfg := plainConfig(t, "127.0.0.1:25")
	cfg.Dial = func(context.Context, string, string) (net.Conn, error) {
		dialed = true
		return nil, errors.New("dialed")
	}
	_, err := Send(ctx, cfg, testUser, []string{"customer@example.test"}, testMsg)
	if !Temporary(err) || !errors.Is(err, context.Canceled) || dialed {
		t.Fatalf("Send on a canceled ctx = %v (dialed %v); want temporary, context.Canceled, no dial", err, dialed)
	}
}

func TestSendRefusesBadInput(t *testing.T) {
	ok := "customer@example.test"
	good := plainConfig(t, "127.0.0.1:25")
	tests := []struct {
		name  string
		cfg   func(*Config)
		from  string
		rcpts []string
		msg   []byte
	}{
		{name: "CRLF in recipient", rcpts: []string{"customer@example.test\r\nRCPT TO:<victim@example.test>"}},
		{name: "LF in recipient", rcpts: []string{ok, "a@b\n"}},
		{name: "CR in sender", from: "agent@example.test\r"},
		{name: "no recipient", rcpts: []string{}},
		{name: "no @", rcpts: []string{"customer.example.test"}},
		{name: "two @", rcpts: []string{"a@b@example.test"}},
		{name: "empty local part", rcpts: []string{"@example.test"}},
		{name: "empty domain", rcpts: []string{"a@"}},
		{name: "too long", rcpts: []string{strings.Repeat("a", 250) + "@b.cd"}},
		{name: "space", rcpts: []string{"a b@example.test"}},
		{name: "angle bracket", rcpts: []string{"a>@example.test"}},
		{name: "not UTF-8", rcpts: []string{"a\xff@example.test"}},
		{name: "empty message", msg: []byte{}},
		{name: "bad security", cfg: func(c *Config) { c.Security = "ssl" }},
		{name: "addr without port", cfg: func(c *Config) { c.Addr = "mail.example.test" }},
		{name: "user without password", cfg: func(c *Config) { c.Username = testUser }},
		{name: "helo with CRLF", cfg: func(c *Config) { c.HeloName = "a\r\nMAIL FROM:<x@y>" }},
		{name: "negative timeout", cfg: func(c *Config) { c.Timeout = -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			cfg.Dial = func(context.Context, string, string) (net.Conn, error) {
				t.Error("dialed despite bad input")
				return nil, errors.New("no")
			}
			from, rcpts, msg := tt.from, tt.rcpts, tt.msg
			if from == "" {
				from = testUser
			}
			if rcpts == nil {
				rcpts = []string{ok}
			}
			if msg == nil {
				msg = testMsg
			}
			_, err := Send(testCtx(t), cfg, from, rcpts, msg)
			se := sendErr(t, err)
			if se.Stage != StageInput || se.Temporary || Temporary(err) || !errors.Is(err, conv.ErrInvalid) {
				t.Fatalf("error %v = %+v; want a permanent input refusal", err, se)
			}
		})
	}
}

func TestSendRefusesUTF8WithoutSMTPUTF8(t *testing.T) {
	srv := startServer(t, plainListen, nil)
	_, err := Send(testCtx(t), plainConfig(t, srv.addr), testUser, []string{"客户@example.test"}, testMsg)
	se := sendErr(t, err)
	if se.Stage != StageMail || se.Temporary {
		t.Fatalf("error %v = %+v; want a permanent refusal at mail", err, se)
	}
	if mails, _ := srv.counts(); mails != 0 {
		t.Fatalf("server saw %d MAIL commands", mails)
	}
	srv2 := startServer(t, plainListen, nil, withSMTPUTF8())
	if _, err := Send(testCtx(t), plainConfig(t, srv2.addr), testUser, []string{"客户@example.test"}, testMsg); err != nil {
		t.Fatalf("Send with SMTPUTF8: %v", err)
	}
	if got := srv2.received(); len(got) != 1 || got[0].to[0] != "客户@example.test" {
		t.Fatalf("server got %+v", got)
	}
}

func TestTemporary(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"deadline", context.DeadlineExceeded, true},
		{"canceled", context.Canceled, true},
		{"net error", &net.OpError{Op: "dial", Err: errors.New("refused")}, true},
		{"unavailable", conv.ErrUnavailable, true},
		{"invalid", conv.ErrInvalid, false},
		{"temporary SendError", &SendError{Temporary: true, kind: conv.ErrUnavailable}, true},
		{"permanent SendError wrapping a net error", &SendError{Err: &net.OpError{}, kind: conv.ErrInvalid}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Temporary(tt.err); got != tt.want {
				t.Fatalf("Temporary(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestSendErrorText(t *testing.T) {
	e := fromReply(StageRcpt, &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<x@y>: Recipient address rejected:\nUser unknown\x1b[31m"})
	e.Rejected = []string{"x@y"}
	if want := "550 5.1.1 <x@y>: Recipient address rejected: User unknown[31m"; e.Reason() != want {
		t.Errorf("Reason() = %q, want %q", e.Reason(), want)
	}
	if want := "smtpsend: rcpt: 550 5.1.1 <x@y>: Recipient address rejected: User unknown[31m (refused: x@y)"; e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
	long := fromReply(StageData, &smtp.SMTPError{Code: 554, Message: strings.Repeat("é", 1000)})
	if len(long.Message) > maxMessage+len("…") || len(long.Reason()) > 300+len("…") {
		t.Errorf("server text not bounded: %d / %d bytes", len(long.Message), len(long.Reason()))
	}
}

func TestSplitReply(t *testing.T) {
	tests := []struct{ in, enh, msg string }{
		{"2.0.0 Ok: queued as 4ZxY1", "2.0.0", "Ok: queued as 4ZxY1"},
		{"Ok: queued as 4ZxY1", "", "Ok: queued as 4ZxY1"},
		{"2.0 Ok", "", "2.0 Ok"},
		{"9.0.0 odd", "", "9.0.0 odd"},
		{"2.-1.0 odd", "", "2.-1.0 odd"},
		{"2.0.0 multi\nline", "2.0.0", "multi line"},
		{"", "", ""},
	}
	for _, tt := range tests {
		enh, msg := splitReply(tt.in)
		if enh != tt.enh || msg != tt.msg {
			t.Errorf("splitReply(%q) = %q, %q; want %q, %q", tt.in, enh, msg, tt.enh, tt.msg)
		}
	}
}

func FuzzSplitReply(f *testing.F) {
	f.Add("2.0.0 Ok: queued as 4ZxY1")
	f.Add("250 ok")
	f.Add("5.1.1 <a@b>: bad\n5.1.1 more")
	f.Fuzz(func(t *testing.T, in string) {
		enh, msg := splitReply(in)
		if strings.ContainsAny(msg+enh, "\r\n") || len(msg) > maxMessage+len("…") {
			t.Fatalf("splitReply(%q) = %q, %q", in, enh, msg)
		}
	})
}
