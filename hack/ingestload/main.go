/*
Copyright The Flowscope Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Command ingestload measures the node agent's sustained ingest: the real
// ingest pipeline, store and live hub (the code flowscope-agent runs), fed
// by producers that offer realistic flows as fast as the pipeline takes
// them (keeping its queue half full) or at a set rate, as the capture and
// replay sources do.
//
//	go run ./hack/ingestload -duration 20s            # the most the pipeline takes
//	go run ./hack/ingestload -duration 20s -rate 150000  # paced: drops must stay 0
//
// It reports flows ingested per second, flows dropped (the pipeline drops
// and counts what its queue cannot hold rather than block a source), the
// process's CPU (user+system, in cores and µs per flow) and memory (peak
// RSS, Go heap), batch write latency and the store's size on disk. The
// producers' own cost is measured alone first and reported, since they
// share the process and its 2 cores.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-base/metrics/testutil"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/internal/flowgen"
	"flowscope.io/flowscope/internal/rusage"
	"flowscope.io/flowscope/nodeagent/hub"
	"flowscope.io/flowscope/nodeagent/hubble/parse"
	"flowscope.io/flowscope/nodeagent/ingest"
	"flowscope.io/flowscope/nodeagent/membudget"
	"flowscope.io/flowscope/nodeagent/metrics"
	"flowscope.io/flowscope/nodeagent/store"
)

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "how long to offer flows")
	flag.IntVar(&o.rate, "rate", 0, "flows per second to offer; 0 offers as fast as the producers can")
	flag.IntVar(&o.producers, "producers", 1, "goroutines offering flows")
	flag.IntVar(&o.pool, "pool", 1<<16, "distinct flows the producers cycle through (they live in the process, and are reported apart)")
	flag.IntVar(&o.queue, "queue", 65536, "the pipeline's queue (flowscope-agent --ingest-queue-size)")
	flag.IntVar(&o.batch, "batch", store.MaxBlockFlows, "flows per store write at most (the agent's batch size)")
	flag.IntVar(&o.watchers, "watchers", 1, "watches draining the hub, each for one namespace: subscriptions of one hub listener, as an aggregated server's feed is")
	flag.StringVar(&o.dir, "dir", "", "store directory (default: a new temporary one, removed at exit)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file")
	flag.StringVar(&o.trace, "trace", "", "write an execution trace of the run to this file (go tool trace): where the pipeline waits")
	flag.StringVar(&o.memProfile, "memprofile", "", "write a heap profile to this file when the producers stop, before the queue drains")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "ingestload:", err)
		os.Exit(1)
	}
}

type options struct {
	duration                                      time.Duration
	rate, producers, queue, batch, watchers, pool int
	dir, cpuProfile, memProfile, trace            string
}

func run(o options) error {
	if o.dir == "" {
		d, err := os.MkdirTemp("", "ingestload-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.dir = d
	}
	pool, err := flowPool(o.pool)
	if err != nil {
		return err
	}
	producerNs := producerCost(pool)
	// The producers' flows are not the agent's memory: note them first.
	runtime.GC()
	poolHeap := sample().heap
	// Building the pool peaked higher than the pool: measure the run.
	rusage.ResetPeakRSS()
	rss := watchRSS()

	// As flowscope-agent: its memory budget from GOMEMLIMIT (the
	// DaemonSet's limit), and room for the pool, which an agent does not
	// hold, beyond its soft limit.
	mem := membudget.Plan(membudget.Limit(), 0, 0, o.queue)
	o.queue = mem.Queue
	if mem.Target > 0 {
		debug.SetMemoryLimit(mem.Target + int64(poolHeap))
	}
	st, err := store.Open(store.Options{Dir: filepath.Join(o.dir, "store"), Retention: time.Hour, CacheBytes: mem.StoreCache})
	if err != nil {
		return err
	}
	defer st.Close()
	h := hub.New(4096)
	p, err := ingest.New(st, h, ingest.Options{NodeName: "node-a", QueueSize: o.queue, BatchSize: o.batch,
		SyncInterval: time.Second, ProgressInterval: 100 * time.Millisecond})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	received := drainWatchers(ctx, h, o.watchers)

	if o.cpuProfile != "" {
		out, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer out.Close()
		if err := pprof.StartCPUProfile(out); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if o.trace != "" {
		out, err := os.Create(o.trace)
		if err != nil {
			return err
		}
		defer out.Close()
		if err := trace.Start(out); err != nil {
			return err
		}
		defer trace.Stop()
	}
	before := sample()
	var offered atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(o.duration)
	for i := range o.producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			produce(p, pool, i, o, stop, &offered)
		}()
	}
	wg.Wait()
	// What the agent holds under load: before the queue drains.
	if o.memProfile != "" {
		if err := writeHeapProfile(o.memProfile); err != nil {
			return err
		}
	}
	// Let the queue drain: what was accepted is ingested or dropped.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if counter(metrics.FlowsIngested)+dropped("store_error") >= float64(offered.Load())-dropped("queue_full") {
			break
		}
	}
	after := sample()
	peak := rss.stop()
	cancel()
	if err := <-done; err != nil {
		return err
	}
	disk, _ := st.DiskBytes()
	elapsed := after.at.Sub(before.at).Seconds()
	ingested := counter(metrics.FlowsIngested)
	cpu := (after.cpu - before.cpu).Seconds()
	fmt.Printf("ingestload: %s, rate %s, %d producer(s), batch %d, queue %d, %d watcher(s), GOMAXPROCS %d\n",
		o.duration, rateString(o.rate), o.producers, o.batch, o.queue, o.watchers, runtime.GOMAXPROCS(0))
	fmt.Printf("  offered          %12d flows\n", offered.Load())
	fmt.Printf("  ingested         %12.0f flows   %10.0f flows/s (until the queue drained, %.1f s)\n", ingested, ingested/elapsed, elapsed)
	fmt.Printf("  dropped          %12.0f queue_full, %.0f store_error\n", dropped("queue_full"), dropped("store_error"))
	fmt.Printf("  watchers got     %12d events\n", received.Load())
	fmt.Printf("  CPU              %12.2f cores   %10.2f µs/flow (producers alone: %.2f µs/flow)\n", cpu/elapsed, cpu/ingested*1e6, producerNs/1e3)
	fmt.Printf("  memory           peak RSS %d MiB (anonymous %d MiB, files %d MiB), Go heap in use %d MiB; the producers' pool of flows is %d MiB of it, memory limit %s, Go soft limit %s (the pool's included)\n",
		after.peakRSS>>20, peak.anon>>20, peak.file>>20, after.heap>>20, poolHeap>>20, mib(mem.Limit), memLimitString())
	fmt.Printf("  agent memory     peak RSS without the pool %d MiB (anonymous %d MiB)\n", (after.peakRSS-poolHeap)>>20, (peak.anon-poolHeap)>>20)
	fmt.Printf("  batch write      p50 %s  p99 %s  (%d batches)\n", batchQuantile(0.5), batchQuantile(0.99), batchCount())
	fmt.Printf("  store on disk    %d MiB\n", disk>>20)
	return nil
}

func rateString(r int) string {
	if r == 0 {
		return "max"
	}
	return strconv.Itoa(r) + "/s"
}

// flowPool parses n of flowgen's lines: the shop application's flows. The
// flows share their equal parts (endpoints, addresses, ports, L7 records)
// as a source that enriches from a cache shares them, so that the pool,
// which lives in the agent's process here only, is a small part of the
// memory measured.
func flowPool(n int) ([]v1alpha1.Flow, error) {
	lines, err := flowgen.Generate(n, flowgen.Options{NodeName: "node-a", NodeIndex: -1, Seed: 1})
	if err != nil {
		return nil, err
	}
	pool := make([]v1alpha1.Flow, len(lines))
	for i, line := range lines {
		f, err := parse.ExportLine(line, parse.Options{NodeName: "node-a"})
		if err != nil {
			return nil, err
		}
		pool[i] = *f
	}
	shared := map[string]any{}
	for i := range pool {
		f := &pool[i]
		f.Source = share(shared, "s", f.Source)
		f.Destination = share(shared, "d", f.Destination)
		f.IP = share(shared, "i", f.IP)
		f.L4 = share(shared, "4", f.L4)
		f.L7 = share(shared, "7", f.L7)
		f.Traffic = share(shared, "t", f.Traffic)
		f.EndTime = nil // the producer sets Time only
	}
	// Parsing left the flows scattered among its garbage: copy them into
	// memory of their own, or the pool's pages stay resident half empty.
	c := &compactor{strs: map[string]string{}, refs: map[uintptr]reflect.Value{}}
	compact := make([]v1alpha1.Flow, len(pool))
	for i := range pool {
		c.copy(reflect.ValueOf(&compact[i]).Elem(), reflect.ValueOf(pool[i]))
	}
	return compact, nil
}

// compactor deep-copies values, sharing equal strings and keeping shared
// pointers and maps shared.
type compactor struct {
	strs map[string]string
	refs map[uintptr]reflect.Value
}

func (c *compactor) copy(dst, src reflect.Value) {
	switch src.Kind() {
	case reflect.String:
		s, ok := c.strs[src.String()]
		if !ok {
			s = strings.Clone(src.String())
			c.strs[s] = s
		}
		dst.SetString(s)
	case reflect.Pointer, reflect.Map, reflect.Slice:
		if src.IsNil() {
			return
		}
		if seen, ok := c.refs[src.Pointer()]; ok && src.Kind() != reflect.Slice {
			dst.Set(seen)
			return
		}
		var n reflect.Value
		switch src.Kind() {
		case reflect.Pointer:
			n = reflect.New(src.Elem().Type())
			c.copy(n.Elem(), src.Elem())
		case reflect.Slice:
			n = reflect.MakeSlice(src.Type(), src.Len(), src.Len())
			for i := range src.Len() {
				c.copy(n.Index(i), src.Index(i))
			}
		case reflect.Map:
			n = reflect.MakeMapWithSize(src.Type(), src.Len())
			for it := src.MapRange(); it.Next(); {
				k, v := reflect.New(src.Type().Key()).Elem(), reflect.New(src.Type().Elem()).Elem()
				c.copy(k, it.Key())
				c.copy(v, it.Value())
				n.SetMapIndex(k, v)
			}
		}
		c.refs[src.Pointer()] = n
		dst.Set(n)
	case reflect.Struct:
		dst.Set(src) // unexported fields, such as a time's, as they are
		for i := range src.NumField() {
			if dst.Field(i).CanSet() {
				c.copy(dst.Field(i), src.Field(i))
			}
		}
	default:
		dst.Set(src)
	}
}

// share returns the first value equal to v, as JSON, that it was given.
func share[T any](shared map[string]any, kind string, v *T) *T {
	if v == nil {
		return nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return v
	}
	key := kind + string(raw)
	if s, ok := shared[key]; ok {
		return s.(*T)
	}
	shared[key] = v
	return v
}

// newFlow is what a source hands the pipeline: a fresh flow, now.
func newFlow(pool []v1alpha1.Flow, i int, now time.Time) *v1alpha1.Flow {
	f := pool[i%len(pool)] // shallow: the pipeline sets only top-level fields
	f.Time = metav1.NewMicroTime(now)
	return &f
}

// producerCost returns the ns a producer spends per flow on its own.
func producerCost(pool []v1alpha1.Flow) float64 {
	const n = 1 << 20
	sink := make([]*v1alpha1.Flow, 1024)
	start := time.Now()
	for i := range n {
		sink[i%len(sink)] = newFlow(pool, i, start)
	}
	return float64(time.Since(start).Nanoseconds()) / n
}

func produce(p *ingest.Pipeline, pool []v1alpha1.Flow, id int, o options, stop time.Time, offered *atomic.Int64) {
	i := id * 7919
	if o.rate == 0 {
		// As fast as the pipeline takes them: a producer that offered
		// regardless would measure its own spinning and the drops.
		for time.Now().Before(stop) {
			if p.Queued() > o.queue/2 {
				time.Sleep(50 * time.Microsecond)
				continue
			}
			now := time.Now()
			for range 256 {
				p.Offer(newFlow(pool, i, now))
				i++
			}
			offered.Add(256)
		}
		return
	}
	// Paced: every millisecond, what the rate allows by then.
	perProducer := float64(o.rate) / float64(o.producers)
	start := time.Now()
	sent := 0
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for now := range tick.C {
		if now.After(stop) {
			return
		}
		due := int(perProducer * now.Sub(start).Seconds())
		for ; sent < due; sent++ {
			p.Offer(newFlow(pool, i, now))
			i++
			offered.Add(1)
		}
	}
}

// drainWatchers subscribes n watchers, each to one namespace of the shop
// application, in one hub listener, as the agent serves one aggregated
// server's watches, and counts what they receive: a flow that k of them
// select counts k times.
func drainWatchers(ctx context.Context, h *hub.Hub, n int) *atomic.Int64 {
	var got atomic.Int64
	if n == 0 {
		return &got
	}
	namespaces := []string{"shop", "payments", "monitoring", "kube-system"}
	sess := h.Listen()
	for i := range n {
		f := flowfilter.Filter{Namespace: namespaces[i%len(namespaces)]}
		m, err := f.Compile()
		if err != nil {
			panic(err)
		}
		sess.Add(uint64(i+1), f, m)
	}
	go func() {
		defer sess.Close()
		for {
			select {
			case e := <-sess.Events():
				if e.Flow != nil {
					got.Add(int64(len(e.IDs)))
				}
			case <-sess.Done():
				fmt.Fprintln(os.Stderr, "ingestload: the watchers' listener was cut off:", sess.Err())
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return &got
}

func writeHeapProfile(path string) error {
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	defer out.Close()
	runtime.GC()
	return pprof.Lookup("heap").WriteTo(out, 0)
}

func mib(n int64) string {
	if n <= 0 {
		return "none"
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

func memLimitString() string {
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		return fmt.Sprintf("%d MiB", l>>20)
	}
	return "off"
}

// rssPeaks are the largest anonymous and file-backed resident sizes seen:
// the peak RSS of getrusage is their sum at one moment, and Badger's tables
// are mapped files whose pages the kernel reclaims under pressure, while
// anonymous memory (the Go heap) it cannot.
type rssPeaks struct{ anon, file uint64 }

type rssWatch struct {
	done chan struct{}
	out  chan rssPeaks
}

// watchRSS samples /proc/self/status every 20 ms until stop.
func watchRSS() *rssWatch {
	w := &rssWatch{done: make(chan struct{}), out: make(chan rssPeaks, 1)}
	go func() {
		var peak rssPeaks
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if raw, err := os.ReadFile("/proc/self/status"); err == nil {
				for _, line := range strings.Split(string(raw), "\n") {
					name, value, _ := strings.Cut(line, ":")
					kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
					switch name {
					case "RssAnon":
						peak.anon = max(peak.anon, kb<<10)
					case "RssFile":
						peak.file = max(peak.file, kb<<10)
					}
				}
			}
			select {
			case <-w.done:
				w.out <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func (w *rssWatch) stop() rssPeaks {
	close(w.done)
	return <-w.out
}

type snapshot struct {
	at            time.Time
	cpu           time.Duration
	peakRSS, heap uint64
}

func sample() snapshot {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return snapshot{
		at:      time.Now(),
		cpu:     rusage.CPU(),
		peakRSS: uint64(rusage.PeakRSS()),
		heap:    ms.HeapInuse,
	}
}

func counter(c interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

func dropped(reason string) float64 {
	n, _ := testutil.GetCounterMetricValue(metrics.FlowsDropped.WithLabelValues(reason))
	return n
}

func batchHistogram() *dto.Histogram {
	families, _ := metrics.Registry.Gather()
	for _, mf := range families {
		if mf.GetName() == "flowscope_agent_ingest_batch_seconds" {
			return mf.GetMetric()[0].GetHistogram()
		}
	}
	return &dto.Histogram{}
}

func batchCount() uint64 { return batchHistogram().GetSampleCount() }

// batchQuantile returns the upper bound of the histogram bucket that holds
// quantile q of the batch write times.
func batchQuantile(q float64) string {
	h := batchHistogram()
	want := uint64(q * float64(h.GetSampleCount()))
	buckets := slices.Clone(h.GetBucket())
	for _, b := range buckets {
		if b.GetCumulativeCount() >= want {
			return "≤" + strings.TrimSuffix(time.Duration(b.GetUpperBound()*1e9).String(), "0")
		}
	}
	return "> " + time.Duration(buckets[len(buckets)-1].GetUpperBound()*1e9).String()
}
