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

// Command fanout is the load program of the fan-out benchmark
// (hack/bench-fanout.sh, make bench-fanout). Against a running local system
// (hack/local-up.sh) it writes Hubble export lines into every agent's replay
// file, measures lists through kube-apiserver, runs informers and plain
// watches and measures how late and how completely the flows reach them,
// and reads the memory and CPU of the components from /proc. It prints a
// report and writes it as JSON.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/generated/clientset/versioned"
)

type options struct {
	kubeconfig           string
	replayDir            string
	pidDir               string
	nodes                []string
	agentMetricsPortBase int
	apiserverURL         string
	apiserverCAFile      string
	watchers             int
	rate                 float64
	warmup               time.Duration
	duration             time.Duration
	drain                time.Duration
	listRequests         int
	listClients          int
	startConcurrency     int
	reportFile           string
}

func main() {
	if err := fanout(); err != nil {
		fmt.Fprintln(os.Stderr, "fanout:", err)
		os.Exit(1)
	}
}

// fanout parses the flags and runs the benchmark. It is main's body, apart
// so that its deferred Close of the client log runs before main exits.
func fanout() error {
	var o options
	var nodes string
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the local system's admin")
	flag.StringVar(&o.replayDir, "replay-dir", "", "directory of the agents' replay files, <node>.jsonl")
	flag.StringVar(&o.pidDir, "pid-dir", "", "directory of the components' pid files")
	flag.StringVar(&nodes, "nodes", "", "the agents' node names, separated by spaces")
	flag.IntVar(&o.agentMetricsPortBase, "agent-metrics-port-base", 0, "metrics port of the first agent on 127.0.0.1; the others follow")
	flag.StringVar(&o.apiserverURL, "apiserver-url", "", "flowscope-apiserver's own URL, for its /metrics")
	flag.StringVar(&o.apiserverCAFile, "apiserver-ca-file", "", "CA of flowscope-apiserver's serving certificate")
	flag.IntVar(&o.watchers, "watchers", 200, "concurrent watchers, half informers and half plain watches")
	flag.Float64Var(&o.rate, "rate", 2000, "flows per second written across all agents")
	flag.DurationVar(&o.warmup, "warmup", 30*time.Second, "how long flows are written before the lists, so the agents hold full pages")
	flag.DurationVar(&o.duration, "duration", 60*time.Second, "how long the watchers are measured")
	flag.DurationVar(&o.drain, "drain", 15*time.Second, "how long to wait for the last flows after writing stops")
	flag.IntVar(&o.listRequests, "list-requests", 200, "requests of each list benchmark")
	flag.IntVar(&o.listClients, "list-clients", 4, "concurrent clients of each list benchmark")
	flag.IntVar(&o.startConcurrency, "start-concurrency", 10, "watchers starting (initial list, first watch) at once")
	flag.StringVar(&o.reportFile, "report", "", "file to write the report to as JSON")
	clientLog := flag.String("client-log", "", "file for client-go's log (informers under load log a lot); empty is standard error")
	flag.Parse()
	o.nodes = strings.Fields(nodes)
	if *clientLog != "" {
		f, err := os.Create(*clientLog)
		if err != nil {
			return err
		}
		defer f.Close()
		// Errors too: klog copies them to standard error unless told not
		// to.
		fs := flag.NewFlagSet("klog", flag.ExitOnError)
		klog.InitFlags(fs)
		_ = fs.Parse([]string{"-logtostderr=false", "-stderrthreshold=FATAL"})
		klog.SetOutput(f)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	klog.Flush()
	return err
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// warningCounter counts the warnings the server sends, such as the one that
// names agents that did not answer a list.
type warningCounter struct{ count atomic.Int64 }

func (w *warningCounter) HandleWarningHeader(int, string, string) { w.count.Add(1) }

func run(ctx context.Context, o options) error {
	if len(o.nodes) == 0 || o.kubeconfig == "" || o.replayDir == "" || o.pidDir == "" {
		return errors.New("--kubeconfig, --replay-dir, --pid-dir and --nodes are required")
	}
	if slices.Contains(o.nodes, floorNode) {
		return fmt.Errorf("node %s has an agent; the floors need a node without one", floorNode)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return err
	}
	// The harness is the load: no client-side rate limit.
	cfg.QPS = -1
	warnings := &warningCounter{}
	cfg.WarningHandler = warnings
	cs, err := versioned.NewForConfig(cfg)
	if err != nil {
		return err
	}
	comps, err := components(o.pidDir)
	if err != nil {
		return err
	}
	apiserverMetrics, err := newMetricsReader(o, cfg.BearerToken)
	if err != nil {
		return err
	}

	pods := make([]nodePods, len(o.nodes))
	for i, n := range o.nodes {
		if pods[i], err = samplePods(n, i); err != nil {
			return err
		}
	}
	t := newTracker()
	for i := range o.watchers {
		// Consecutive watchers cycle through the kinds; within a kind they
		// take the nodes in turn and alternate informer and plain watch.
		k := i / len(kinds)
		node := k % len(o.nodes)
		t.watchers = append(t.watchers, &watcher{
			id: i, kind: i % len(kinds), informer: k%2 == 0, tracker: t, seen: map[types.UID]int{},
			filter: kinds[i%len(kinds)].filterFor(o.nodes[node], pods[node], k),
		})
	}

	r := &report{Setup: setup{Agents: len(o.nodes), Watchers: o.watchers, Rate: o.rate,
		Warmup: o.warmup.String(), Duration: o.duration.String(), CPUs: runtime.NumCPU(), StartConcurrency: o.startConcurrency}}
	for _, w := range t.watchers {
		if w.informer {
			r.Setup.Informers++
		} else {
			r.Setup.PlainWatches++
		}
	}

	writeCtx, stopWriting := context.WithCancel(ctx)
	defer stopWriting()
	writeErr := make(chan error, 1)
	go func() { writeErr <- writeFlows(writeCtx, o.replayDir, o.nodes, o.rate, t) }()
	logf("writing %.0f flows/s into %d replay files; warming up for %s", o.rate, len(o.nodes), o.warmup)
	warmupDone := time.Now().Add(o.warmup)
	if err := waitForAgents(ctx, cs, o.nodes); err != nil {
		return err
	}
	sleep(ctx, time.Until(warmupDone))

	// The watchers first, then their floor (see measureWatchFloor): the
	// lists' garbage would blur the memory they take.
	if err := measureWatches(ctx, o, cfg, comps, apiserverMetrics, t, writeErr, r); err != nil {
		return err
	}
	if err := measureWatchFloor(ctx, o, cfg, comps, apiserverMetrics, t, r); err != nil {
		return err
	}
	if err := measureLists(ctx, o, cs, comps, apiserverMetrics, warnings, pods[0], r); err != nil {
		return err
	}
	stopWriting()
	if err := <-writeErr; err != nil {
		return fmt.Errorf("writing flows: %w", err)
	}

	r.print(os.Stdout)
	if o.reportFile != "" {
		raw, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.reportFile, append(raw, '\n'), 0o644); err != nil {
			return err
		}
		logf("report written to %s", o.reportFile)
	}
	return nil
}

// measureWatches measures the server's memory without watchers, starts
// them, tracks the flows written for o.duration, waits for the last
// deliveries and stops the watchers.
func measureWatches(ctx context.Context, o options, cfg *rest.Config, comps []component, m *metricsReader, t *tracker, writeErr <-chan error, r *report) error {
	before, err := takeSnapshot(comps)
	if err != nil {
		return err
	}
	r.Memory.before(ctx, m, before)

	watchCtx, stopWatchers := context.WithCancel(ctx)
	defer stopWatchers()
	logf("starting %d watchers", o.watchers)
	start := time.Now()
	if r.Setup.WatchersReady, err = startWatchers(watchCtx, cfg, t.watchers, o.startConcurrency, 5*time.Minute); err != nil {
		return err
	}
	r.Setup.WatchersReadyS = time.Since(start).Seconds()
	logf("%d watchers ready after %.1f s; measuring for %s", r.Setup.WatchersReady, r.Setup.WatchersReadyS, o.duration)

	agentsBefore := scrapeAgents(ctx, o)
	first, err := takeSnapshot(comps)
	if err != nil {
		return err
	}
	t.start = time.Now()
	t.tracking.Store(true)
	last, err := r.Memory.sampleFor(ctx, comps, first, o.duration, func() error {
		select {
		case err := <-writeErr:
			return fmt.Errorf("writing flows: %w", err)
		default:
			return nil
		}
	})
	if err != nil {
		return err
	}
	t.tracking.Store(false)
	r.Memory.watching(ctx, m, last, o.watchers)
	agentsAfter := scrapeAgents(ctx, o)
	r.CPU = append(r.CPU, newPhaseCPU("watches", first, last))

	logf("wrote %d flows while measuring; waiting up to %s for the last deliveries", t.written.Load(), o.drain)
	for deadline := time.Now().Add(o.drain); time.Now().Before(deadline) && t.delivered.Load() < t.expected.Load(); {
		sleep(ctx, 200*time.Millisecond)
	}
	stopWatchers()

	r.Memory.AgentsRSS = last.usage["agents"].rss
	r.Memory.KubeAPIServerRSS = last.usage["kube-apiserver"].rss
	r.Memory.HarnessRSS = last.usage["harness"].rss
	delta := func(series string) float64 { return agentsAfter.sum(series) - agentsBefore.sum(series) }
	r.Agents = agentCounters{
		Ingested: delta("flowscope_agent_flows_ingested_total"),
		Dropped:  delta("flowscope_agent_flows_dropped_total"),
		Streams:  agentsAfter.sum("flowscope_agent_watchers"),
		CutOff:   delta("flowscope_agent_watchers_cut_off_total"),
	}
	if n := delta("flowscope_agent_ingest_batch_seconds_count"); n > 0 {
		r.Agents.MeanBatchMs = 1000 * delta("flowscope_agent_ingest_batch_seconds_sum") / n
	}
	r.Watch = watchResults(t, o.duration)
	return nil
}

// measureLists runs the list benchmarks, with flows being written and no
// watchers.
func measureLists(ctx context.Context, o options, cs versioned.Interface, comps []component, m *metricsReader, warnings *warningCounter, pods nodePods, r *report) error {
	start, err := takeSnapshot(comps)
	if err != nil {
		return err
	}
	// One pod's connections to one port: every agent is asked, one holds
	// the answer.
	selective := filter{namespace: "shop", label: labels.Everything(), field: fields.SelectorFromSet(fields.Set{
		"source.podName": pods.pods["shop/cart"], "l4.destinationPort": "5432"})}
	// The floor crosses the same path but asks no agent (floorNode): what
	// a fan-out list takes above it is the agents, the merge and the items
	// it carries.
	for _, l := range []struct {
		name string
		f    filter
	}{
		{"selective", selective},
		{"first-page", filter{label: labels.Everything(), field: fields.Everything()}},
		{"floor", floorFilter()},
	} {
		logf("list benchmark %s: %d requests by %d clients", l.name, o.listRequests, o.listClients)
		res, err := benchList(ctx, cs, m, warnings, l.name, l.f, o.listRequests, o.listClients)
		if err != nil {
			return err
		}
		r.Lists = append(r.Lists, res)
	}
	floor := r.Lists[len(r.Lists)-1]
	if floor.ItemsPerList != 0 || floor.Warnings != floor.Latency.Count {
		// Items or a missing warning: an agent was asked after all.
		logf("the floor is not one: %.0f items per list, %d warnings for %d lists", floor.ItemsPerList, floor.Warnings, floor.Latency.Count)
	}
	if floor.Latency.P99 > 0 {
		for i := range r.Lists {
			r.Lists[i].P99OverFloor = r.Lists[i].Latency.P99 / floor.Latency.P99
		}
	}
	end, err := takeSnapshot(comps)
	if err != nil {
		return err
	}
	r.CPU = append(r.CPU, newPhaseCPU("lists", start, end))
	return ctx.Err()
}

// waitForAgents waits until flowscope-apiserver serves flows of every node,
// which it does once it has found the agent's Lease and the agent has
// ingested a flow.
func waitForAgents(ctx context.Context, cs versioned.Interface, nodes []string) error {
	pending := map[string]bool{}
	for _, n := range nodes {
		pending[n] = true
	}
	deadline := time.Now().Add(3 * time.Minute)
	for len(pending) > 0 {
		for n := range pending {
			l, err := cs.FlowsV1alpha1().Flows("").List(ctx, metav1.ListOptions{
				FieldSelector: fields.OneTermEqualSelector("nodeName", n).String(), Limit: 1})
			if err == nil && len(l.Items) > 0 {
				delete(pending, n)
			}
		}
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("flowscope-apiserver serves no flows of %d nodes after 3 minutes, e.g. %v", len(pending), firstKey(pending))
		}
		sleep(ctx, time.Second)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	logf("flowscope-apiserver serves flows of all %d nodes", len(nodes))
	return nil
}

func firstKey(m map[string]bool) string {
	for k := range m {
		return k
	}
	return ""
}

// listChunk is kubectl's default --chunk-size: the limit of its first
// page.
const listChunk = 500

// benchList runs requests first pages of f by clients concurrent clients.
func benchList(ctx context.Context, cs versioned.Interface, m *metricsReader, warnings *warningCounter, name string, f filter, requests, clients int) (listResult, error) {
	res := listResult{Name: name, Query: fmt.Sprintf("%s (first page, limit %d)", f, listChunk), Requests: requests, Clients: clients}
	serverBefore, err := m.listDuration(ctx)
	if err != nil {
		return res, err
	}
	warningsBefore := warnings.count.Load()
	var (
		mu        sync.Mutex
		latencies []time.Duration
		items     int
		wg        sync.WaitGroup
	)
	jobs := make(chan struct{})
	for range clients {
		wg.Go(func() {
			for range jobs {
				opts := f.listOptions()
				opts.Limit = listChunk
				lctx, cancel := context.WithTimeout(ctx, time.Minute)
				start := time.Now()
				l, err := cs.FlowsV1alpha1().Flows(f.namespace).List(lctx, opts)
				d := time.Since(start)
				cancel()
				mu.Lock()
				if err != nil {
					res.Errors++
					if res.FirstError == "" {
						res.FirstError = err.Error()
					}
				} else {
					latencies = append(latencies, d)
					items += len(l.Items)
				}
				mu.Unlock()
			}
		})
	}
	for range requests {
		if ctx.Err() != nil {
			break
		}
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	res.Latency = summarize(latencies)
	if len(latencies) > 0 {
		res.ItemsPerList = float64(items) / float64(len(latencies))
	}
	res.Warnings = int(warnings.count.Load() - warningsBefore)
	serverAfter, err := m.listDuration(ctx)
	if err != nil {
		return res, err
	}
	if n := serverAfter.count - serverBefore.count; n > 0 {
		res.ServerMeanMs = 1000 * (serverAfter.sum - serverBefore.sum) / n
	}
	return res, nil
}

// startWatchers starts the watchers, at most concurrency of them starting
// at once, and waits until all are ready or timeout has passed; it returns
// how many are ready. Starting them all at once would measure a herd of
// initial lists instead of the watches.
func startWatchers(ctx context.Context, cfg *rest.Config, watchers []*watcher, concurrency int, timeout time.Duration) (int, error) {
	// The watchers run until ctx ends; waiting for them ends earlier.
	waitCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	slots := make(chan struct{}, concurrency)
	ready := 0
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, w := range watchers {
		select {
		case slots <- struct{}{}:
		case <-waitCtx.Done():
		}
		if waitCtx.Err() != nil {
			break
		}
		c := make(chan struct{})
		if err := w.start(ctx, cfg, c); err != nil {
			return 0, err
		}
		wg.Go(func() {
			defer func() { <-slots }()
			select {
			case <-c:
				mu.Lock()
				ready++
				mu.Unlock()
				w.ready = true
			case <-waitCtx.Done():
				logf("watcher %d (%s) not ready after %s: %s", w.id, w.filter, timeout, w.lastError())
			}
		})
	}
	wg.Wait()
	return ready, nil
}

// latencyWindow is the span of the latency distributions over time, which
// show stalls and warm-up that the whole run's distribution hides.
const latencyWindow = 10 * time.Second

// watchResults counts what each watcher received against what it should
// have. The watchers and the writer have stopped.
func watchResults(t *tracker, d time.Duration) watchResult {
	wr := watchResult{FlowsWritten: t.written.Load(), Expected: t.expected.Load(),
		WriteToIngest: summarize(t.ingestDelays())}
	perKind := make([]kindResult, len(kinds))
	kindExpected := make([]int64, len(kinds))
	kindLatency := make([][]time.Duration, len(kinds))
	var latency, endToEnd []time.Duration
	var windows [][]time.Duration
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, w := range t.watchers {
		if !w.ready {
			continue
		}
		w.mu.Lock()
		perKind[w.kind].Watchers++
		latency = append(latency, w.latency...)
		endToEnd = append(endToEnd, w.endToEnd...)
		kindLatency[w.kind] = append(kindLatency[w.kind], w.latency...)
		for i, at := range w.received {
			n := int(at.Sub(t.start) / latencyWindow)
			for len(windows) <= n {
				windows = append(windows, nil)
			}
			windows[n] = append(windows[n], w.latency[i])
		}
		wr.Untracked += int64(w.untracked)
		wr.InformerUpdates += int64(w.updates)
		wr.Restarts += w.restarts
		wr.Errors += len(w.errors)
		for _, e := range w.errors {
			if len(wr.FirstErrors) < 5 {
				wr.FirstErrors = append(wr.FirstErrors, fmt.Sprintf("watcher %d (%s): %s", w.id, w.filter, e))
			}
		}
		for uid, n := range w.seen {
			if !t.flows[uid].selected(w.id) {
				wr.Unexpected++
			}
			wr.Duplicates += int64(n - 1)
		}
		missing := int64(0)
		for uid, s := range t.flows {
			if s.selected(w.id) {
				kindExpected[w.kind]++
				if w.seen[uid] == 0 {
					missing++
				}
			}
		}
		if missing > 0 {
			wr.WatchersMissing++
		}
		perKind[w.kind].Missing += missing
		wr.Missing += missing
		w.mu.Unlock()
	}
	for i := range perKind {
		k := &perKind[i]
		k.kind = kinds[i]
		if k.Watchers > 0 {
			k.EventsPerSecond = float64(kindExpected[i]) / float64(k.Watchers) / d.Seconds()
		}
		k.IngestToHandler = summarize(kindLatency[i])
	}
	wr.Kinds = perKind
	wr.Delivered = int64(len(latency))
	wr.EventsPerSecond = float64(wr.Delivered) / d.Seconds()
	wr.WrittenPerSecond = float64(wr.FlowsWritten) / d.Seconds()
	wr.IngestToHandler = summarize(latency)
	wr.WriteToHandler = summarize(endToEnd)
	for i, l := range windows {
		wr.Windows = append(wr.Windows, window{StartS: (time.Duration(i) * latencyWindow).Seconds(), IngestToHandler: summarize(l)})
	}
	return wr
}

// metricsReader reads flowscope-apiserver's /metrics.
type metricsReader struct {
	client *http.Client
	url    string
	token  string
}

func newMetricsReader(o options, token string) (*metricsReader, error) {
	if o.apiserverURL == "" {
		return nil, errors.New("--apiserver-url is required")
	}
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(o.apiserverCAFile)
	if err != nil {
		return nil, err
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", o.apiserverCAFile)
	}
	return &metricsReader{
		client: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}},
		url:    strings.TrimSuffix(o.apiserverURL, "/") + "/metrics",
		token:  token,
	}, nil
}

// liveMemory is the server's memory after a garbage collection: the heap
// it holds, its goroutines' stacks, and how many goroutines.
type liveMemory struct{ heap, stacks, goroutines float64 }

// live returns the server's live memory, read just after the collection
// that a heap profile (/debug/pprof/heap?gc=1) runs first; the zero value
// when profiling is off or the server does not answer. Unlike the heap in
// use and the RSS, it leaves out the garbage between collections (as much
// as the live heap, at GOGC=100) and what the runtime has not given back.
func (m *metricsReader) live(ctx context.Context) liveMemory {
	pprofURL := strings.TrimSuffix(m.url, "/metrics") + "/debug/pprof/heap?gc=1"
	if _, err := scrape(ctx, m.client, pprofURL, m.token); err != nil {
		logf("collecting flowscope-apiserver's garbage: %v", err)
		return liveMemory{}
	}
	lines, err := scrape(ctx, m.client, m.url, m.token)
	if err != nil {
		logf("reading flowscope-apiserver's memory: %v", err)
		return liveMemory{}
	}
	return liveMemory{heap: lines.sum("go_memstats_heap_alloc_bytes"), stacks: lines.sum("go_memstats_stack_inuse_bytes"),
		goroutines: lines.sum("go_goroutines")}
}

// gauge returns the value of one of the server's metrics, summed over its
// series.
func (m *metricsReader) gauge(ctx context.Context, name string) (float64, error) {
	lines, err := scrape(ctx, m.client, m.url, m.token)
	if err != nil {
		return 0, err
	}
	return lines.sum(name), nil
}

// heapFree returns the heap the server's runtime holds free and has not
// given back to the system, which the next allocations take without
// growing the RSS; 0 when it cannot be read.
func (m *metricsReader) heapFree(ctx context.Context) float64 {
	lines, err := scrape(ctx, m.client, m.url, m.token)
	if err != nil {
		logf("reading flowscope-apiserver's heap: %v", err)
		return 0
	}
	return lines.sum("go_memstats_heap_idle_bytes") - lines.sum("go_memstats_heap_released_bytes")
}

// heapInuse returns the server's Go heap in use, 0 when it cannot be read.
func (m *metricsReader) heapInuse(ctx context.Context) float64 {
	lines, err := scrape(ctx, m.client, m.url, m.token)
	if err != nil {
		logf("reading flowscope-apiserver's heap: %v", err)
		return 0
	}
	return lines.sum("go_memstats_heap_inuse_bytes")
}

type histogram struct{ sum, count float64 }

// listDuration returns the server's histogram of flow lists.
func (m *metricsReader) listDuration(ctx context.Context) (histogram, error) {
	lines, err := scrape(ctx, m.client, m.url, m.token)
	if err != nil {
		return histogram{}, err
	}
	sel := []string{`verb="LIST"`, `resource="flows"`}
	return histogram{
		sum:   lines.sum("apiserver_request_duration_seconds_sum", sel...),
		count: lines.sum("apiserver_request_duration_seconds_count", sel...),
	}, nil
}

// scrapeAgents reads every agent's /metrics into one exposition; an agent
// that does not answer is left out and logged.
func scrapeAgents(ctx context.Context, o options) metrics {
	var all metrics
	for i := range o.nodes {
		lines, err := scrape(ctx, http.DefaultClient, fmt.Sprintf("http://127.0.0.1:%d/metrics", o.agentMetricsPortBase+i), "")
		if err != nil {
			logf("reading the metrics of agent %s: %v", o.nodes[i], err)
			continue
		}
		all = append(all, lines...)
	}
	return all
}
