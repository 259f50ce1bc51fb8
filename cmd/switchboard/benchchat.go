package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/switchboard-hq/switchboard/core/conv"
)

// cmdBenchChat is the chat load generator. It starts a server (the embedded
// default, in a temporary data dir) as a child process, so that its memory
// is measured apart from the load generator's, then:
//  1. opens --idle visitor sockets and reports the server's RSS growth per
//     socket;
//  2. logs in --agents agents (one console socket each) and has --visitors
//     visitors send --messages messages at --rate per second, timing each
//     from the visitor's send to the first agent device that receives it.
func cmdBenchChat(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	fs := newFlags("bench chat", &c, stderr)
	idle := fs.Int("idle", 10000, "idle visitor sockets to hold open (memory measurement)")
	visitors := fs.Int("visitors", 0, "visitors sending messages (default: rate/4, so each stays well under the 10 frames/s flood limit)")
	agents := fs.Int("agents", 4, "agents, one console socket each")
	messages := fs.Int("messages", 20000, "messages visitors send in total")
	rate := fs.Int("rate", 2000, "messages offered per second (open loop)")
	warmup := fs.Duration("warmup", 3*time.Second, "send at the rate this long first, not measured: a run's first seconds pay for caches, heap and stacks growing")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *messages <= 0 || *rate <= 0 || *warmup < 0 {
		return fmt.Errorf("%w: --messages and --rate must be positive, --warmup not negative", conv.ErrInvalid)
	}
	// Messages 0..nWarm-1 are the warm-up at the rate; the rest are measured.
	nWarm := int(warmup.Seconds() * float64(*rate))
	total := nWarm + *messages
	if *visitors <= 0 {
		*visitors = max(1, *rate/4)
	}
	dir, err := os.MkdirTemp("", "switchboard-benchchat-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	child := exec.CommandContext(ctx, exe, "serve", "--data", dir, "--addr", addr, "--log-level", "warn")
	child.Env = append(os.Environ(), "SWITCHBOARD_MASTER_KEY=")
	var childErr bytes.Buffer
	var childMu sync.Mutex
	pr, pw := io.Pipe()
	child.Stderr = pw
	if err := child.Start(); err != nil {
		return err
	}
	defer func() {
		child.Process.Signal(os.Interrupt)
		child.Wait()
		pw.Close()
	}()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			childMu.Lock()
			childErr.WriteString(sc.Text() + "\n")
			childMu.Unlock()
		}
	}()
	base := "http://" + addr
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench chat: server not ready: %s", childErr.String())
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	var pw1, ch []string
	for range 100 { // the banner is printed once the listener is up
		childMu.Lock()
		out := childErr.String()
		childMu.Unlock()
		pw1 = regexp.MustCompile(`password (\S+)`).FindStringSubmatch(out)
		ch = regexp.MustCompile(`web chat channel (\d+)`).FindStringSubmatch(out)
		if pw1 != nil && ch != nil {
			break
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	if pw1 == nil || ch == nil {
		return fmt.Errorf("bench chat: no demo tenant in the server's banner")
	}
	channel := ch[1]
	client := &http.Client{Timeout: 30 * time.Second}
	post := func(path, bearer string, body any, out any) error {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(ctx, "POST", base+path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode >= 300 {
			b, _ := io.ReadAll(resp.Body)
			return fmt.Errorf("POST %s: %d %s", path, resp.StatusCode, b)
		}
		return json.NewDecoder(resp.Body).Decode(out)
	}
	dial := func(path string) (*websocket.Conn, error) {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		conn, _, err := websocket.Dial(dctx, "ws://"+addr+path, nil)
		if err == nil {
			conn.SetReadLimit(1 << 20)
		}
		return conn, err
	}
	visitor := func() (*websocket.Conn, error) {
		var s struct {
			Token string `json:"visitor_token"`
		}
		if err := post("/v1/widget/sessions", "", map[string]string{"channel_id": channel}, &s); err != nil {
			return nil, err
		}
		conn, err := dial("/v1/widget/ws?token=" + s.Token)
		if err != nil {
			return nil, err
		}
		_, _, err = conn.Read(ctx) // presence
		return conn, err
	}

	// 1. Idle sockets.
	rss0, err := rssKiB(child.Process.Pid)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "bench chat: opening %d idle visitor sockets\n", *idle)
	idleConns := make([]*websocket.Conn, *idle)
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= *idle || firstErr.Load() != nil {
					return
				}
				conn, err := visitor()
				if err != nil {
					firstErr.Store(err)
					return
				}
				idleConns[i] = conn
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return fmt.Errorf("bench chat: idle socket: %w", err)
	}
	runtimeSettle()
	rss1, err := rssKiB(child.Process.Pid)
	if err != nil {
		return err
	}
	defer func() {
		for _, c := range idleConns {
			if c != nil {
				c.CloseNow()
			}
		}
	}()

	// 2. Agents and active visitors.
	tokens := make([]string, *agents)
	for i := range *agents {
		email := fmt.Sprintf("bench%d@demo.local", i)
		if _, err := runCapture(ctx, "agent", "create", "--tenant", "demo", "--email", email, "--name", "Bench "+strconv.Itoa(i),
			"--password", "bench-password", "--capacity", "100000", "--data", dir); err != nil {
			return err
		}
		var lr struct {
			Token string `json:"token"`
		}
		if err := post("/v1/auth/login", "", map[string]string{"tenant": "demo", "email": email, "password": "bench-password"}, &lr); err != nil {
			return err
		}
		tokens[i] = lr.Token
	}
	sendAt := make([]atomic.Int64, total)
	seen := make([]atomic.Int64, total)
	stored := make([]atomic.Int64, total) // the message's created_at: when ingest committed it
	var delivered atomic.Int64
	allIn := make(chan struct{})
	extRE := regexp.MustCompile(`:m(\d+)$`)
	warmRE := regexp.MustCompile(`:w\d+$`)
	var warmed atomic.Int64
	var agentWG sync.WaitGroup
	agentCtx, stopAgents := context.WithCancel(ctx)
	defer stopAgents()
	for _, tok := range tokens {
		conn, err := dial("/v1/agent/ws?token=" + tok)
		if err != nil {
			return err
		}
		defer conn.CloseNow()
		if _, _, err := conn.Read(ctx); err != nil { // hello
			return err
		}
		b, _ := json.Marshal(map[string]any{"type": "resume", "cursor": 0})
		if err := conn.Write(ctx, websocket.MessageText, b); err != nil {
			return err
		}
		agentWG.Add(1)
		go func() {
			defer agentWG.Done()
			for {
				_, b, err := conn.Read(agentCtx)
				if err != nil {
					return
				}
				now := time.Now().UnixNano()
				var f struct {
					Event struct {
						Type    string `json:"type"`
						Message struct {
							ExternalID string    `json:"external_id"`
							CreatedAt  time.Time `json:"created_at"`
						} `json:"message"`
					} `json:"event"`
				}
				if json.Unmarshal(b, &f) != nil || f.Event.Type != "message.created" {
					continue
				}
				m := extRE.FindStringSubmatch(f.Event.Message.ExternalID)
				if m == nil {
					if warmRE.MatchString(f.Event.Message.ExternalID) {
						warmed.Add(1)
					}
					continue
				}
				i, _ := strconv.Atoi(m[1])
				if i < 0 || i >= total || !seen[i].CompareAndSwap(0, now) {
					continue
				}
				stored[i].Store(f.Event.Message.CreatedAt.UnixNano())
				if delivered.Add(1) == int64(total) {
					close(allIn)
				}
			}
		}()
	}
	fmt.Fprintf(stderr, "bench chat: %d agents online; opening %d active visitors\n", *agents, *visitors)
	active := make([]*websocket.Conn, *visitors)
	var visitorErrors, rateLimited atomic.Int64
	var writeMu = make([]sync.Mutex, *visitors)
	for i := range active {
		if active[i], err = visitor(); err != nil {
			return err
		}
		defer active[i].CloseNow()
		go func(conn *websocket.Conn) { // drain acks and echoes, count errors
			for {
				_, b, err := conn.Read(agentCtx)
				if err != nil {
					return
				}
				if bytes.Contains(b, []byte(`"type":"error"`)) {
					visitorErrors.Add(1)
					if bytes.Contains(b, []byte(`rate_limited`)) {
						rateLimited.Add(1)
					}
				}
			}
		}(active[i])
	}

	// Warm-up: every visitor's first message opens its conversation and
	// gets it dispatched; that one-off cost is not the messaging rate.
	fmt.Fprintf(stderr, "bench chat: warm-up: one message per visitor\n")
	for v := range active {
		b, _ := json.Marshal(map[string]string{"type": "send", "client_id": "w" + strconv.Itoa(v), "text": "hello"})
		if err := active[v].Write(ctx, websocket.MessageText, b); err != nil {
			return err
		}
	}
	warmDeadline := time.Now().Add(60 * time.Second)
	for warmed.Load() < int64(*visitors) {
		if time.Now().After(warmDeadline) {
			return fmt.Errorf("bench chat: warm-up: only %d of %d first messages reached an agent", warmed.Load(), *visitors)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	fmt.Fprintf(stderr, "bench chat: sending %d messages at %d/s (the first %d, %v, not measured)\n", total, *rate, nWarm, *warmup)
	start := time.Now()
	next.Store(0)
	var sendErr atomic.Value
	var senders sync.WaitGroup
	for range 64 {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= total {
					return
				}
				due := start.Add(time.Duration(i) * time.Second / time.Duration(*rate))
				time.Sleep(time.Until(due))
				v := i % *visitors
				b, _ := json.Marshal(map[string]string{"type": "send", "client_id": "m" + strconv.Itoa(i), "text": "load test message " + strconv.Itoa(i)})
				sendAt[i].Store(due.UnixNano())
				writeMu[v].Lock()
				err := active[v].Write(ctx, websocket.MessageText, b)
				writeMu[v].Unlock()
				if err != nil {
					sendErr.Store(err)
					return
				}
			}
		}()
	}
	progress := time.NewTicker(2 * time.Second)
	defer progress.Stop()
	timeout := time.After(time.Duration(total / *rate * int(time.Second)) + 60*time.Second)
wait:
	for {
		select {
		case <-allIn:
			break wait
		case <-progress.C:
			fmt.Fprintf(stderr, "bench chat: %d/%d at an agent\n", delivered.Load(), total)
			if err, _ := sendErr.Load().(error); err != nil {
				return fmt.Errorf("bench chat: send: %w", err)
			}
		case <-timeout:
			return fmt.Errorf("bench chat: only %d of %d messages reached an agent (%d error frames to visitors, %d of them rate_limited)",
				delivered.Load(), total, visitorErrors.Load(), rateLimited.Load())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	elapsed := time.Since(start)
	senders.Wait()
	stopAgents()
	lat := make([]time.Duration, *messages)
	toStore := make([]time.Duration, *messages)
	toAgent := make([]time.Duration, *messages)
	for i := range lat {
		j := nWarm + i
		lat[i] = time.Duration(seen[j].Load() - sendAt[j].Load())
		toStore[i] = time.Duration(stored[j].Load() - sendAt[j].Load())
		toAgent[i] = time.Duration(seen[j].Load() - stored[j].Load())
	}
	for _, d := range [][]time.Duration{lat, toStore, toAgent} {
		slices.Sort(d)
	}
	qq := func(d []time.Duration, p float64) string {
		return d[int(float64(len(d)-1)*p)].Round(10 * time.Microsecond).String()
	}
	q := func(p float64) string { return qq(lat, p) }
	// What the server warned about during the run (it logs at warn): a
	// warning per message would be a cost and a finding of its own.
	childMu.Lock()
	var warnings []string
	for line := range strings.Lines(childErr.String()) {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") ||
			strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) {
			warnings = append(warnings, strings.TrimSpace(line))
		}
	}
	childMu.Unlock()
	for _, w := range warnings[:min(len(warnings), 5)] {
		fmt.Fprintf(stderr, "bench chat: server: %s\n", w)
	}
	return printJSON(stdout, map[string]any{
		"server_warnings":         len(warnings),
		"store":                   "sqlite + embedded nats (server in a child process)",
		"idle_sockets":            *idle,
		"server_rss_before_kib":   rss0,
		"server_rss_after_kib":    rss1,
		"rss_per_idle_socket_kib": float64(rss1-rss0) / float64(max(*idle, 1)),
		"agents":                  *agents,
		"visitors":                *visitors,
		"messages":                *messages,
		"offered_rate":            *rate,
		"visitor_error_frames":    visitorErrors.Load(),
		"seconds":                 elapsed.Seconds(),
		"messages_per_sec":        int(float64(total) / elapsed.Seconds()),
		"warmup_messages":         nWarm,
		"latency_p50":             q(0.50),
		"latency_p99":             q(0.99),
		"latency_max":             lat[len(lat)-1].String(),
		// The two legs: visitor send → committed by ingest (bus, group
		// commit), and committed → on an agent's socket (events, inbox,
		// timeline, fan-out, push).
		"send_to_stored_p50":  qq(toStore, 0.50),
		"send_to_stored_p99":  qq(toStore, 0.99),
		"stored_to_agent_p50": qq(toAgent, 0.50),
		"stored_to_agent_p99": qq(toAgent, 0.99),
		"data_dir":            filepath.Clean(dir),
	})
}

// rssKiB reads a process's resident set size.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read RSS: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// runtimeSettle gives the server a moment to finish the last accepts
// before its memory is read (the measurement, not a synchronization).
func runtimeSettle() { time.Sleep(2 * time.Second) }

// runCapture runs an admin command in-process and returns its output.
func runCapture(ctx context.Context, args ...string) ([]byte, error) {
	var out, errb bytes.Buffer
	if err := run(ctx, args, &out, &errb); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", strings.Join(args[:2], " "), err, errb.String())
	}
	return out.Bytes(), nil
}
