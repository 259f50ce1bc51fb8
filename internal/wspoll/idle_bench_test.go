//go:build linux

package wspoll

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// BenchmarkIdleConns measures what an idle connection costs the server:
// N clients (WSPOLL_IDLE_N, default 5000) in a child process each upgrade,
// send one message, read its echo and stay connected. The server's heap,
// stacks, RSS and goroutines are compared before and after, per conn.
// Kernel socket buffers are not in any of these. Run it once:
//
//	go test -run XXX -bench IdleConns -benchtime 1x ./internal/wspoll/
//
// The coder case is the current design (github.com/coder/websocket, one
// goroutine per socket blocked in Read), for comparison.
func BenchmarkIdleConns(b *testing.B) {
	n := 5000
	if v, err := strconv.Atoi(os.Getenv("WSPOLL_IDLE_N")); err == nil && v > 0 {
		n = v
	}
	b.Run("epoll", func(b *testing.B) { benchIdle(b, n, wspollServer(PollerConfig{})) })
	b.Run("goroutine-fallback", func(b *testing.B) { benchIdle(b, n, wspollServer(PollerConfig{blocking: true})) })
	b.Run("coder", func(b *testing.B) { benchIdle(b, n, coderServer) })
}

// idleServer starts a server kind; live counts its open websockets.
type idleServer func(b *testing.B) (h http.Handler, live func() int, stop func())

func wspollServer(cfg PollerConfig) idleServer {
	return func(b *testing.B) (http.Handler, func() int, func()) {
		p, err := NewPoller(cfg)
		if err != nil {
			b.Fatal(err)
		}
		h := newHandler(echo)
		h.closed = make(chan closeEvent, 1<<16)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := Upgrade(w, r, Options{})
			if err != nil {
				return
			}
			if err := p.Serve(c, h); err != nil {
				_ = c.CloseNow()
			}
		}), p.Len, func() { _ = p.Close() }
	}
}

func coderServer(b *testing.B) (http.Handler, func() int, func()) {
	var live atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		live.Add(1)
		defer live.Add(-1)
		defer ws.CloseNow()
		for {
			typ, p, err := ws.Read(context.Background())
			if err != nil {
				return
			}
			if err := ws.Write(context.Background(), typ, p); err != nil {
				return
			}
		}
	}), func() int { return int(live.Load()) }, func() {}
}

type memSnap struct {
	heap, stack, rss uint64
	goroutines       int
}

func snapshot(b *testing.B) memSnap {
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSnap{heap: ms.HeapAlloc, stack: ms.StackInuse, rss: rss(b), goroutines: runtime.NumGoroutine()}
}

// rss is this process's resident set size, from /proc.
func rss(b *testing.B) uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

func benchIdle(b *testing.B, n int, start idleServer) {
	h, live, stop := start(b)
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer stop()
	before := snapshot(b)

	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "WSPOLL_IDLE_ADDR="+srv.Listener.Addr().String(), fmt.Sprintf("WSPOLL_IDLE_N=%d", n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = stdin.Close() // the child hangs up and exits
		_ = cmd.Wait()
	}()
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "ready" {
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	if got := live(); got != n {
		b.Fatalf("%d conns open, want %d", got, n)
	}
	// net/http's per-connection goroutines end after the handlers return:
	// measure once the count has held still for 20 polls in a row.
	last, steady := -1, 0
	testenv.WaitFor(b, 30*time.Second, "the goroutine count to settle", func() bool {
		if g := runtime.NumGoroutine(); g == last {
			steady++
		} else {
			last, steady = g, 0
		}
		return steady >= 20
	})
	after := snapshot(b)
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	b.ReportMetric(per(after.heap, before.heap), "heapB/conn")
	b.ReportMetric(per(after.stack, before.stack), "stackB/conn")
	b.ReportMetric(per(after.rss, before.rss), "rssB/conn")
	b.ReportMetric(float64(after.goroutines-before.goroutines)/float64(n), "goroutines/conn")
}

// TestMain runs BenchmarkIdleConns's client instead of the tests when the
// test binary is started as that client (WSPOLL_IDLE_ADDR set): a child
// process, so that its sockets do not count in the server's memory.
func TestMain(m *testing.M) {
	if addr := os.Getenv("WSPOLL_IDLE_ADDR"); addr != "" {
		if err := idleClient(addr); err != nil {
			fmt.Fprintln(os.Stderr, "idle client:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func idleClient(addr string) error {
	n, err := strconv.Atoi(os.Getenv("WSPOLL_IDLE_N"))
	if err != nil {
		return err
	}
	conns := make([]net.Conn, 0, n)
	hello := append([]byte(handshake), text("hi")...)
	for range n {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		if _, err := nc.Write(hello); err != nil {
			return err
		}
		br := bufio.NewReader(nc)
		var head []byte
		for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
			c, err := br.ReadByte()
			if err != nil {
				return err
			}
			head = append(head, c)
		}
		var echo [4]byte
		if _, err := io.ReadFull(br, echo[:]); err != nil || string(echo[2:]) != "hi" {
			return fmt.Errorf("echo %q, %v", echo, err)
		}
		conns = append(conns, nc)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin) // until the benchmark is done
	for _, nc := range conns {
		_ = nc.Close()
	}
	return nil
}
