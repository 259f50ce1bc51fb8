package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/hub"
)

// cmdBenchIngest measures the ingest path end to end on the configured
// store: connectors publish envelopes to the bus (ack = durably on the
// bus), core ingests them, and the bench watches message.created come out.
// SQLite runs in a fresh temporary data dir; Postgres uses --postgres with
// a fresh tenant.
func cmdBenchIngest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	fs := newFlags("bench ingest", &c, stderr)
	n := fs.Int("n", 20000, "envelopes to ingest")
	conc := fs.Int("concurrency", 64, "concurrent publishers (connector requests in flight)")
	contacts := fs.Int("contacts", 1000, "distinct contacts (conversations)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	memProfile := fs.String("memprofile", "", "write a heap profile at the end of the run to this file (-sample_index=alloc_space shows what the run allocated)")
	traceFile := fs.String("trace", "", "write an execution trace of the run to this file (go tool trace; -pprof=sched shows scheduling waits)")
	rate := fs.Int("rate", 0, "offer envelopes at this rate per second (open loop; latency counts from each envelope's scheduled time); 0 = as fast as acks allow")
	if err := parse(fs, args); err != nil {
		return err
	}
	if c.embedded() {
		dir, err := os.MkdirTemp("", "switchboard-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		c.Data = dir
		os.Setenv("SWITCHBOARD_MASTER_KEY", "") // a throwaway key in the temp dir
	}
	c.NodeID = 0
	c.LogLevel = "warn"
	node, _, err := wire(ctx, c, c.logger(stderr))
	if err != nil {
		return err
	}
	defer node.close()

	ids, _ := conv.NewIDGen(1)
	tenant := conv.Tenant{ID: conv.NewID[conv.TenantID](ids), Name: fmt.Sprintf("bench-%d", time.Now().UnixNano()), CreatedAt: time.Now()}
	ch := conv.Channel{ID: conv.NewID[conv.ChannelID](ids), TenantID: tenant.ID, Kind: conv.KindTest, Name: "bench", CreatedAt: time.Now()}
	if err := node.store.CreateTenant(ctx, tenant); err != nil {
		return err
	}
	if err := node.store.Tx(ctx, tenant.ID, func(tx storage.Tx) error { return tx.CreateChannel(ctx, ch) }); err != nil {
		return err
	}

	// Watch message.created to time end-to-end latency.
	published := make([]atomic.Int64, *n) // unix nanos at publish start
	storedAt := make([]int64, *n)
	var storedN atomic.Int64
	allStored := make(chan struct{})
	var mu sync.Mutex
	sub, err := node.bus.Subscriber(fmt.Sprintf("bench-%d", tenant.ID))
	if err != nil {
		return err
	}
	node.router.AddConsumerHandler("bench-events", hub.TopicEvents, sub, func(m *message.Message) error {
		if m.Metadata.Get(hub.MetaTenant) != tenant.ID.String() || !hub.EventsOf(m, conv.EventMessageCreated) {
			return nil
		}
		// The watcher is measurement, not product: it finds the external
		// ids in the payload without decoding it, so that it costs the
		// node next to nothing (a consumer decoding every batch costs as
		// much as ingest itself). Only message.created events carry a
		// message in this run, and only a message has an external_id.
		now := time.Now().UnixNano()
		const marker = `"external_id":"bench-`
		for rest := m.Payload; ; {
			at := bytes.Index(rest, []byte(marker))
			if at < 0 {
				break
			}
			rest = rest[at+len(marker):]
			end := bytes.IndexByte(rest, '"')
			if end < 0 {
				break
			}
			i, err := strconv.Atoi(string(rest[:end]))
			if err != nil || i < 0 || i >= *n {
				continue
			}
			mu.Lock()
			first := storedAt[i] == 0
			if first {
				storedAt[i] = now
			}
			mu.Unlock()
			if first && storedN.Add(1) == int64(*n) {
				close(allStored)
			}
		}
		return nil
	})
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- node.serveWorkers(runCtx) }()
	select {
	case <-node.router.Running():
	case err := <-errc:
		return err
	}

	fmt.Fprintf(stderr, "bench: %d envelopes, %d publishers, %d contacts, store %s\n", *n, *conc, *contacts, node.storeName())
	acks := make([]time.Duration, *n)
	var next atomic.Int64
	for _, r := range []struct {
		path  string
		start func(io.Writer) error
		stop  func()
	}{{*cpuProfile, pprof.StartCPUProfile, pprof.StopCPUProfile}, {*traceFile, trace.Start, trace.Stop}} {
		if r.path == "" {
			continue
		}
		f, err := os.Create(r.path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := r.start(f); err != nil {
			return err
		}
		defer r.stop()
	}
	start := time.Now()
	var wg sync.WaitGroup
	var pubErr atomic.Value
	for range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= *n {
					return
				}
				if *rate > 0 {
					// Open loop: envelope i is due at start + i/rate,
					// whether or not earlier ones were acked.
					due := start.Add(time.Duration(i) * time.Second / time.Duration(*rate))
					time.Sleep(time.Until(due))
				}
				in := conv.Inbound{TenantID: tenant.ID, ChannelID: ch.ID, ExternalID: "bench-" + strconv.Itoa(i),
					From:  conv.Identity{Kind: "visitor", ExternalID: "bench-visitor-" + strconv.Itoa(i%*contacts)},
					Parts: []conv.Part{{Type: conv.PartText, Text: "benchmark message body of a typical short length"}}, SentAt: time.Now()}
				t0 := time.Now()
				if *rate > 0 {
					t0 = start.Add(time.Duration(i) * time.Second / time.Duration(*rate))
				}
				published[i].Store(t0.UnixNano())
				if err := node.pub.PublishInbound(ctx, in); err != nil {
					pubErr.Store(err)
					return
				}
				acks[i] = time.Since(t0)
			}
		}()
	}
	progress := time.NewTicker(2 * time.Second)
	defer progress.Stop()
wait:
	for {
		select {
		case <-allStored:
			break wait
		case <-progress.C:
			fmt.Fprintf(stderr, "bench: %d/%d stored\n", storedN.Load(), *n)
			if err, _ := pubErr.Load().(error); err != nil {
				return fmt.Errorf("publish: %w", err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	elapsed := time.Since(start)
	if *memProfile != "" {
		f, err := os.Create(*memProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			return err
		}
	}
	wg.Wait()
	stop()
	<-errc

	e2e := make([]time.Duration, *n)
	for i := range e2e {
		e2e[i] = time.Duration(storedAt[i] - published[i].Load())
	}
	slices.Sort(acks)
	slices.Sort(e2e)
	q := func(d []time.Duration, p float64) string {
		return d[int(float64(len(d)-1)*p)].Round(10 * time.Microsecond).String()
	}
	return printJSON(stdout, map[string]any{
		"store":             node.storeName(),
		"bus":               node.busName(),
		"envelopes":         *n,
		"publishers":        *conc,
		"offered_rate":      *rate,
		"contacts":          *contacts,
		"seconds":           elapsed.Seconds(),
		"envelopes_per_sec": int(float64(*n) / elapsed.Seconds()),
		"publish_ack_p50":   q(acks, 0.50),
		"publish_ack_p99":   q(acks, 0.99),
		"stored_p50":        q(e2e, 0.50),
		"stored_p99":        q(e2e, 0.99),
		"data_dir":          filepath.Clean(c.Data),
	})
}
