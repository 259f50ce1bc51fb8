package wspoll

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-hq/switchboard/core/conv"
)

func TestHandshake(t *testing.T) {
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	tests := []struct {
		name       string
		request    string
		wantStatus int
		wantHeader [2]string // a header the answer must carry
	}{
		{"good", "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n",
			101, [2]string{"Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}},
		{"tokens in lists, any case", "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: WebSocket\r\nConnection: keep-alive, UPGRADE\r\n" +
			"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n",
			101, [2]string{"Upgrade", "websocket"}},
		{"POST", "POST / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 0\r\n" +
			"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n",
			405, [2]string{"Allow", "GET"}},
		{"HTTP/1.0", "GET / HTTP/1.0\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n",
			426, [2]string{}},
		{"no Upgrade", "GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n",
			426, [2]string{"Upgrade", "websocket"}},
		{"Connection without upgrade", "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n" +
			"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n",
			426, [2]string{"Upgrade", "websocket"}},
		{"version 8", "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 8\r\n\r\n",
			426, [2]string{"Sec-WebSocket-Version", "13"}},
		{"no key", "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Version: 13\r\n\r\n",
			400, [2]string{}},
		{"short key", "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n",
			400, [2]string{}},
		{"key not base64", "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!!!\r\nSec-WebSocket-Version: 13\r\n\r\n",
			400, [2]string{}},
	}
	s := startServer(t, modes[0], Options{}, newHandler(echo))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", s.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			_ = nc.SetDeadline(time.Now().Add(wait))
			if _, err := io.WriteString(nc, tt.request); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if h := tt.wantHeader; h[0] != "" && !strings.EqualFold(resp.Header.Get(h[0]), h[1]) {
				t.Errorf("%s: %q, want %q", h[0], resp.Header.Get(h[0]), h[1])
			}
			if tt.wantStatus == 101 {
				s.nextConn(t)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			if !strings.Contains(string(body), "websocket:") {
				t.Errorf("refusal body %q does not say why", body)
			}
			select {
			case err := <-s.errs:
				if !errors.Is(err, conv.ErrInvalid) {
					t.Errorf("Upgrade error %v, want conv.ErrInvalid", err)
				}
			case <-time.After(wait):
				t.Fatal("Upgrade returned no error")
			}
		})
	}
}

func TestEcho(t *testing.T) {
	eachMode(t, func(t *testing.T, m mode) {
		s := startServer(t, m, Options{}, newHandler(echo))
		ctx := ctxWait(t)
		ws, _, err := websocket.Dial(ctx, s.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		ws.SetReadLimit(1 << 20)
		tests := []struct {
			name string
			typ  websocket.MessageType
			data string
		}{
			{"short text", websocket.MessageText, "hello"},
			{"empty text", websocket.MessageText, ""},
			{"unicode", websocket.MessageText, "你好, café ✓"},
			{"binary", websocket.MessageBinary, "\x00\xff\x10"},
			{"16-bit length", websocket.MessageText, strings.Repeat("m", 1000)},
			{"at the limit, many reads", websocket.MessageText, strings.Repeat("L", defaultMaxMessage)},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if err := ws.Write(ctx, tt.typ, []byte(tt.data)); err != nil {
					t.Fatal(err)
				}
				typ, got, err := ws.Read(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if typ != tt.typ || string(got) != tt.data {
					t.Fatalf("echo %v %.40q (%d bytes), want %v %.40q (%d bytes)", typ, got, len(got), tt.typ, tt.data, len(tt.data))
				}
			})
		}
	})
}

func TestFragmented(t *testing.T) {
	eachMode(t, func(t *testing.T, m mode) {
		t.Run("coder writer", func(t *testing.T) {
			s := startServer(t, m, Options{}, newHandler(echo))
			ctx := ctxWait(t)
			ws, _, err := websocket.Dial(ctx, s.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.CloseNow()
			w, err := ws.Writer(ctx, websocket.MessageText)
			if err != nil {
				t.Fatal(err)
			}
			for _, part := range []string{"frag", "ment", "ed ✓"} {
				if _, err := io.WriteString(w, part); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			_, got, err := ws.Read(ctx)
			if err != nil || string(got) != "fragmented ✓" {
				t.Fatalf("echo %q, %v", got, err)
			}
		})
		t.Run("ping between fragments", func(t *testing.T) {
			s := startServer(t, m, Options{}, newHandler(echo))
			c := dialRaw(t, s.addr, nil)
			c.write(frames(
				frameSpec{op: opBinary, payload: []byte("ab")}.build(),
				frameSpec{fin: true, op: opPing, payload: []byte("p1")}.build(),
				frameSpec{op: opContinuation, payload: []byte("cd")}.build(),
				frameSpec{fin: true, op: opContinuation, payload: []byte("ef")}.build()))
			c.expect(opPong, "p1")
			c.expect(opBinary, "abcdef")
		})
	})
}

func TestPingPong(t *testing.T) {
	eachMode(t, func(t *testing.T, m mode) {
		s := startServer(t, m, Options{}, newHandler(echo))
		t.Run("raw", func(t *testing.T) {
			c := dialRaw(t, s.addr, nil)
			c.write(frameSpec{fin: true, op: opPing, payload: []byte("are you there")}.build())
			c.expect(opPong, "are you there")
			c.write(frameSpec{fin: true, op: opPing}.build())
			c.expect(opPong, "")
			c.write(frameSpec{fin: true, op: opPong, payload: []byte("unsolicited")}.build())
			c.write(text("after"))
			c.expect(opText, "after")
		})
		t.Run("coder", func(t *testing.T) {
			ctx := ctxWait(t)
			ws, _, err := websocket.Dial(ctx, s.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.CloseNow()
			go func() { _, _, _ = ws.Read(ctx) }() // pongs are read by a reader
			for range 3 {
				if err := ws.Ping(ctx); err != nil {
					t.Fatal(err)
				}
			}
		})
	})
}

func TestCloseHandshake(t *testing.T) {
	eachMode(t, func(t *testing.T, m mode) {
		// A long CloseTimeout: a handshake that completes shows as OnClose
		// well within the test's wait.
		opts := Options{CloseTimeout: time.Hour}
		onMessage := func(c *Conn, text bool, p []byte) {
			switch string(p) {
			case "close 4001":
				if err := c.Close(4001, "go away"); err != nil {
					panic(err)
				}
			case "close now":
				_ = c.CloseNow()
			default:
				echo(c, text, p)
			}
		}

		t.Run("client closes with 4000", func(t *testing.T) {
			h := newHandler(onMessage)
			s := startServer(t, m, opts, h)
			ctx := ctxWait(t)
			ws, _, err := websocket.Dial(ctx, s.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := ws.Close(4000, "bye"); err != nil {
				t.Fatalf("client Close: %v (the server did not answer the close)", err)
			}
			ev := h.nextClose(t)
			var ce CloseError
			if !errors.As(ev.err, &ce) || ce.Code != 4000 || ce.Reason != "bye" {
				t.Fatalf("OnClose %v, want the peer's 4000 bye", ev.err)
			}
			if errors.Is(ev.err, ErrClosed) {
				t.Errorf("OnClose %v says the server closed", ev.err)
			}
		})
		t.Run("server closes with 4001", func(t *testing.T) {
			h := newHandler(onMessage)
			s := startServer(t, m, opts, h)
			ctx := ctxWait(t)
			ws, _, err := websocket.Dial(ctx, s.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.CloseNow()
			if err := ws.Write(ctx, websocket.MessageText, []byte("close 4001")); err != nil {
				t.Fatal(err)
			}
			_, _, err = ws.Read(ctx)
			var ce websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != "go away" {
				t.Fatalf("client Read: %v, want close 4001 go away", err)
			}
			ev := h.nextClose(t)
			if CloseStatus(ev.err) != 4001 || !errors.Is(ev.err, ErrClosed) {
				t.Fatalf("OnClose %v, want 4001 sent by the server", ev.err)
			}
			if err := ev.c.WriteText(ctx, []byte("late")); !errors.Is(err, ErrClosed) {
				t.Errorf("WriteText after close: %v, want ErrClosed", err)
			}
			if err := ev.c.Close(1000, ""); !errors.Is(err, ErrClosed) {
				t.Errorf("second Close: %v, want ErrClosed", err)
			}
		})
		t.Run("peer close without code", func(t *testing.T) {
			h := newHandler(onMessage)
			s := startServer(t, m, opts, h)
			c := dialRaw(t, s.addr, nil)
			c.write(frameSpec{fin: true, op: opClose}.build())
			if code := c.expectClose(); code != StatusNoStatusRcvd {
				t.Errorf("answer carries %d, want no code", code)
			}
			c.expectEOF()
			if ev := h.nextClose(t); CloseStatus(ev.err) != StatusNoStatusRcvd {
				t.Errorf("OnClose %v, want 1005", ev.err)
			}
		})
		t.Run("CloseNow", func(t *testing.T) {
			h := newHandler(onMessage)
			s := startServer(t, m, opts, h)
			c := dialRaw(t, s.addr, nil)
			c.write(text("close now"))
			c.expectEOF()
			ev := h.nextClose(t)
			if !errors.Is(ev.err, ErrClosed) || CloseStatus(ev.err) != -1 {
				t.Errorf("OnClose %v, want ErrClosed without status", ev.err)
			}
			if err := ev.c.CloseNow(); !errors.Is(err, ErrClosed) {
				t.Errorf("second CloseNow: %v", err)
			}
		})
		t.Run("peer never answers", func(t *testing.T) {
			h := newHandler(onMessage)
			s := startServer(t, m, Options{CloseTimeout: 50 * time.Millisecond}, h)
			c := dialRaw(t, s.addr, nil)
			c.write(text("close 4001"))
			if code := c.expectClose(); code != 4001 {
				t.Errorf("close code %d, want 4001", code)
			}
			c.expectEOF() // the server gave up waiting and closed
			if ev := h.nextClose(t); CloseStatus(ev.err) != 4001 {
				t.Errorf("OnClose %v", ev.err)
			}
		})
		t.Run("codes that cannot be sent", func(t *testing.T) {
			h := newHandler(nil)
			s := startServer(t, m, opts, h)
			dialRaw(t, s.addr, nil)
			c := s.nextConn(t)
			for _, code := range []int{999, 1005, 1006, 1015, 2000, 5000} {
				if err := c.Close(code, ""); !errors.Is(err, conv.ErrInvalid) {
					t.Errorf("Close(%d): %v, want conv.ErrInvalid", code, err)
				}
			}
		})
	})
}

func TestMessageTooBig(t *testing.T) {
	eachMode(t, func(t *testing.T, m mode) {
		const max = 1024
		tests := []struct {
			name  string
			parts []int // fragment sizes; one part is an unfragmented message
		}{
			{"one frame", []int{max + 1}},
			{"far over, one frame", []int{max * 200}},
			{"fragments summed", []int{400, 400, 400}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				h := newHandler(echo)
				s := startServer(t, m, Options{MaxMessage: max, CloseTimeout: time.Hour}, h)
				ctx := ctxWait(t)
				ws, _, err := websocket.Dial(ctx, s.url, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer ws.CloseNow()
				if err := ws.Write(ctx, websocket.MessageText, bytes.Repeat([]byte("a"), max)); err != nil {
					t.Fatal(err)
				}
				if _, got, err := ws.Read(ctx); err != nil || len(got) != max {
					t.Fatalf("message of exactly MaxMessage: %d bytes back, %v", len(got), err)
				}
				go func() { // the server stops reading data at the limit; don't care how the write ends
					if len(tt.parts) == 1 {
						_ = ws.Write(ctx, websocket.MessageBinary, make([]byte, tt.parts[0]))
						return
					}
					w, err := ws.Writer(ctx, websocket.MessageBinary)
					if err != nil {
						return
					}
					for _, n := range tt.parts {
						if _, err := w.Write(make([]byte, n)); err != nil {
							return
						}
					}
					_ = w.Close()
				}()
				_, _, err = ws.Read(ctx)
				if websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
					t.Fatalf("client Read: %v, want 1009", err)
				}
				ev := h.nextClose(t)
				if CloseStatus(ev.err) != StatusMessageTooBig || !errors.Is(ev.err, conv.ErrInvalid) {
					t.Fatalf("OnClose %v, want 1009", ev.err)
				}
			})
		}
	})
}

func TestProtocolErrors(t *testing.T) {
	eachMode(t, func(t *testing.T, m mode) {
		tests := []struct {
			name string
			in   []byte
			want int
		}{
			{"unmasked", frameSpec{fin: true, op: opText, unmasked: true, payload: []byte("hi")}.build(), 1002},
			{"reserved bit", frameSpec{fin: true, rsv: 0x40, op: opText, payload: []byte("hi")}.build(), 1002},
			{"unknown opcode", frameSpec{fin: true, op: 0x5}.build(), 1002},
			{"long ping", frameSpec{fin: true, op: opPing, payload: make([]byte, 126)}.build(), 1002},
			{"fragmented ping", frameSpec{op: opPing}.build(), 1002},
			{"continuation first", frameSpec{fin: true, op: opContinuation, payload: []byte("x")}.build(), 1002},
			{"new message mid-fragments", frames(frameSpec{op: opText, payload: []byte("a")}.build(), text("b")), 1002},
			{"text not UTF-8", text("\xc3\x28"), 1007},
			{"close code 1006", frameSpec{fin: true, op: opClose, payload: []byte{0x03, 0xee}}.build(), 1002},
			{"close 1 byte", frameSpec{fin: true, op: opClose, payload: []byte{1}}.build(), 1002},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				h := newHandler(echo)
				s := startServer(t, m, Options{CloseTimeout: time.Hour}, h)
				c := dialRaw(t, s.addr, nil)
				c.write(text("before"))
				c.expect(opText, "before")
				c.write(tt.in)
				c.write(text("after")) // never echoed
				if code := c.expectClose(); code != tt.want {
					t.Fatalf("close code %d, want %d", code, tt.want)
				}
				c.nc.Close() // the server waits for the peer to hang up
				ev := h.nextClose(t)
				if CloseStatus(ev.err) != tt.want || !errors.Is(ev.err, conv.ErrInvalid) {
					t.Fatalf("OnClose %v, want %d", ev.err, tt.want)
				}
			})
		}
	})
}

func TestPipelinedFirstFrame(t *testing.T) {
	eachMode(t, func(t *testing.T, m mode) {
		s := startServer(t, m, Options{}, newHandler(echo))
		second := text("second")
		// The request, one whole frame and the start of another in one write:
		// net/http's reader takes all of it with the request.
		c := dialRaw(t, s.addr, frames(text("first"), second[:3]))
		c.write(second[3:])
		c.expect(opText, "first")
		c.expect(opText, "second")
	})
}

func TestConcurrentWrites(t *testing.T) {
	eachMode(t, func(t *testing.T, m mode) {
		const writers, each = 32, 40
		// padLen crosses the 7-bit, 16-bit and 64-bit length forms.
		padLen := func(w, i int) int {
			if k := w*each + i; k%8 == 0 {
				return k * 53 % 70000
			}
			return (w + i) % 300
		}
		h := newHandler(func(c *Conn, _ bool, p []byte) {
			if string(p) != "go" {
				return
			}
			for w := range writers {
				go func() {
					for i := range each {
						b := fmt.Appendf(nil, "%d %d|%s", w, i, strings.Repeat("p", padLen(w, i)))
						if err := c.WriteText(context.Background(), b); err != nil {
							t.Errorf("WriteText: %v", err)
							return
						}
					}
				}()
			}
		})
		s := startServer(t, m, Options{}, h)
		ctx := ctxWait(t)
		ws, _, err := websocket.Dial(ctx, s.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		ws.SetReadLimit(1 << 20)
		if err := ws.Write(ctx, websocket.MessageText, []byte("go")); err != nil {
			t.Fatal(err)
		}
		next := make([]int, writers)
		for range writers * each {
			_, b, err := ws.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			head, pad, _ := strings.Cut(string(b), "|")
			ws, is, _ := strings.Cut(head, " ")
			w, err1 := strconv.Atoi(ws)
			i, err2 := strconv.Atoi(is)
			if err1 != nil || err2 != nil || w < 0 || w >= writers {
				t.Fatalf("garbled message %.60q", b)
			}
			if i != next[w] || len(pad) != padLen(w, i) || strings.Trim(pad, "p") != "" {
				t.Fatalf("message %d %d with %d bytes of padding, want %d from writer %d", w, i, len(pad), next[w], w)
			}
			next[w]++
		}
	})
}

func TestManyConns(t *testing.T) {
	eachMode(t, func(t *testing.T, m mode) {
		const conns, msgs = 1000, 10
		h := newHandler(echo)
		s := startServer(t, m, Options{}, h)
		ctx := ctxWait(t)
		var wg sync.WaitGroup
		errs := make(chan error, conns)
		for n := range conns {
			wg.Go(func() {
				ws, _, err := websocket.Dial(ctx, s.url, nil)
				if err != nil {
					errs <- err
					return
				}
				defer ws.CloseNow()
				for i := range msgs {
					if err := ws.Write(ctx, websocket.MessageText, []byte(msg(n, i))); err != nil {
						errs <- err
						return
					}
				}
				for i := range msgs {
					_, b, err := ws.Read(ctx)
					if err != nil {
						errs <- err
						return
					}
					if string(b) != msg(n, i) {
						errs <- fmt.Errorf("got %q, want %q", b, msg(n, i))
						return
					}
				}
				errs <- ws.Close(websocket.StatusNormalClosure, "")
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		for range conns {
			if ev := h.nextClose(t); CloseStatus(ev.err) != StatusNormalClosure {
				t.Fatalf("OnClose %v", ev.err)
			}
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		for c, n := range h.closes {
			if n != 1 {
				t.Fatalf("OnClose called %d times for %v", n, c.RemoteAddr())
			}
		}
	})
}

func TestOnCloseExactlyOnce(t *testing.T) {
	eachMode(t, func(t *testing.T, m mode) {
		const conns = 100
		var inMessage sync.Map // *Conn → *atomic.Int32: OnMessage calls running
		running := func(c *Conn) *atomic.Int32 {
			v, _ := inMessage.LoadOrStore(c, new(atomic.Int32))
			return v.(*atomic.Int32)
		}
		h := newHandler(func(c *Conn, text bool, p []byte) {
			if running(c).Add(1) != 1 {
				t.Errorf("OnMessage calls of one conn overlap")
			}
			defer running(c).Add(-1)
			echo(c, text, p)
		})
		h.onClose = func(c *Conn, _ error) {
			if running(c).Load() != 0 {
				t.Errorf("OnClose while an OnMessage of the conn runs")
			}
		}
		s := startServer(t, m, Options{CloseTimeout: 20 * time.Millisecond}, h)
		clients := make([]*rawClient, conns)
		served := make([]*Conn, conns)
		for i := range clients {
			clients[i] = dialRaw(t, s.addr, nil)
			served[i] = s.nextConn(t)
		}
		var wg sync.WaitGroup
		for i := range conns {
			c, sc := clients[i], served[i]
			// Every way to end a connection, at once.
			wg.Go(func() { _, _ = c.nc.Write(frames(text("x"), closeFrameBytes(1000, ""))) })
			wg.Go(func() { _ = sc.Close(4000, "") })
			wg.Go(func() { _ = sc.CloseNow() })
			wg.Go(func() { _ = sc.CloseNow() })
			wg.Go(func() { _ = c.nc.Close() })
		}
		wg.Go(func() { _ = s.p.Close() })
		wg.Wait()
		for range conns {
			h.nextClose(t)
		}
		_ = s.p.Close() // waits for every OnClose to return
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.closes) != conns {
			t.Fatalf("OnClose for %d conns, want %d", len(h.closes), conns)
		}
		for c, n := range h.closes {
			if n != 1 {
				t.Fatalf("OnClose called %d times for %v", n, c.RemoteAddr())
			}
		}
	})
}

func TestPollerClose(t *testing.T) {
	eachMode(t, func(t *testing.T, m mode) {
		const conns = 20
		h := newHandler(echo)
		s := startServer(t, m, Options{}, h)
		ctx := ctxWait(t)
		var clients []*websocket.Conn
		for range conns {
			ws, _, err := websocket.Dial(ctx, s.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.CloseNow()
			clients = append(clients, ws)
			s.nextConn(t)
		}
		if err := s.p.Close(); err != nil {
			t.Fatal(err)
		}
		for _, ws := range clients {
			if _, _, err := ws.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
				t.Errorf("client Read: %v, want 1001", err)
			}
		}
		for range conns {
			if ev := h.nextClose(t); !errors.Is(ev.err, ErrPollerClosed) || CloseStatus(ev.err) != StatusGoingAway {
				t.Errorf("OnClose %v, want ErrPollerClosed 1001", ev.err)
			}
		}
		if s.p.Len() != 0 {
			t.Errorf("Len %d after Close", s.p.Len())
		}
		// A late upgrade is refused by Serve (the test server reports it).
		c := newConn(nopConn{}, Options{MaxMessage: 10}, nil)
		if err := s.p.Serve(c, h); !errors.Is(err, ErrPollerClosed) {
			t.Errorf("Serve after Close: %v", err)
		}
		if err := s.p.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

// nopConn is a net.Conn that does nothing.
type nopConn struct{ net.Conn }

func (nopConn) Close() error { return nil }

func TestWriteDeadline(t *testing.T) {
	eachMode(t, func(t *testing.T, m mode) {
		h := newHandler(nil)
		s := startServer(t, m, Options{}, h)
		dialRaw(t, s.addr, nil) // never reads
		c := s.nextConn(t)
		big := make([]byte, 256<<10)
		var err error
		for range 1000 { // the socket buffers fill up long before
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			err = c.WriteText(ctx, big)
			cancel()
			if err != nil {
				break
			}
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WriteText to a peer that never reads: %v, want deadline exceeded", err)
		}
		if ev := h.nextClose(t); !errors.Is(ev.err, ErrClosed) {
			t.Errorf("OnClose %v, want ErrClosed after the failed write", ev.err)
		}
	})
}

func TestWriteCanceled(t *testing.T) {
	eachMode(t, func(t *testing.T, m mode) {
		h := newHandler(nil)
		s := startServer(t, m, Options{}, h)
		dialRaw(t, s.addr, nil) // never reads
		c := s.nextConn(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() {
			big := make([]byte, 256<<10)
			for {
				if err := c.WriteText(ctx, big); err != nil {
					done <- err
					return
				}
			}
		}()
		waitFor(t, "the writer to block", func() bool { // the lock is held by a blocked write
			if c.wmu.TryLock() {
				c.wmu.Unlock()
				return false
			}
			return true
		})
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("WriteText: %v, want canceled", err)
			}
		case <-time.After(wait):
			t.Fatal("canceling ctx did not end the blocked write")
		}
	})
}

func TestHandlerPanic(t *testing.T) {
	eachMode(t, func(t *testing.T, m mode) {
		h := newHandler(func(c *Conn, text bool, p []byte) {
			if string(p) == "panic" {
				panic("handler bug")
			}
			echo(c, text, p)
		})
		s := startServer(t, m, Options{}, h)
		c := dialRaw(t, s.addr, nil)
		c.write(text("panic"))
		if code := c.expectClose(); code != StatusInternalError {
			t.Fatalf("close code %d, want 1011", code)
		}
		c.nc.Close()
		h.nextClose(t)
		other := dialRaw(t, s.addr, nil)
		other.write(text("still serving"))
		other.expect(opText, "still serving")
	})
}

func TestFallbackForConnWithoutDescriptor(t *testing.T) {
	// A conn that is not a syscall.Conn (TLS, a test pipe) is served by a
	// goroutine even when epoll is available.
	p, err := NewPoller(PollerConfig{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	server, client := net.Pipe()
	defer client.Close()
	c := newConn(server, Options{MaxMessage: 100, CloseTimeout: time.Hour, WriteTimeout: wait}, nil)
	h := newHandler(echo)
	if err := p.Serve(c, h); err != nil {
		t.Fatal(err)
	}
	if c.evented {
		t.Fatal("a pipe was given to epoll")
	}
	go func() { _, _ = client.Write(text("over a pipe")) }()
	_ = client.SetDeadline(time.Now().Add(wait))
	rc := &rawClient{t: t, nc: client, br: bufio.NewReader(client)}
	rc.expect(opText, "over a pipe")
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"negative workers", PollerConfig{Workers: -1}.Validate()},
		{"tiny read buffer", PollerConfig{ReadBuffer: 10}.Validate()},
		{"huge MaxMessage", Options{MaxMessage: 1 << 30}.Validate()},
		{"negative timeout", Options{CloseTimeout: -1}.Validate()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, conv.ErrInvalid) {
				t.Errorf("Validate: %v, want conv.ErrInvalid", tt.err)
			}
		})
	}
	if _, err := NewPoller(PollerConfig{Workers: -1}); !errors.Is(err, conv.ErrInvalid) {
		t.Errorf("NewPoller: %v", err)
	}
}
