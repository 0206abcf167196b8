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

// Package agent wires the node agent together: flow sources feed the ingest
// pipeline, which writes the store and the live hub; the gRPC service serves
// them to the aggregated server; a Lease announces the agent.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/agentlease"
	"flowscope.io/flowscope/agentwire"
	configv1alpha1 "flowscope.io/flowscope/apis/config/v1alpha1"
	configinformers "flowscope.io/flowscope/generated/informers/externalversions"
	"flowscope.io/flowscope/internal/tlsutil"
	"flowscope.io/flowscope/nodeagent/agentcerts"
	"flowscope.io/flowscope/nodeagent/capture"
	"flowscope.io/flowscope/nodeagent/flowlog"
	"flowscope.io/flowscope/nodeagent/hub"
	"flowscope.io/flowscope/nodeagent/ingest"
	"flowscope.io/flowscope/nodeagent/membudget"
	"flowscope.io/flowscope/nodeagent/metrics"
	"flowscope.io/flowscope/nodeagent/redact"
	"flowscope.io/flowscope/nodeagent/server"
	"flowscope.io/flowscope/nodeagent/store"
	"flowscope.io/flowscope/nodeagent/stored"
	"flowscope.io/flowscope/nodeagent/tiers"
)

// Options are the agent's flags.
type Options struct {
	NodeName           string
	Namespace          string
	DataDir            string
	Retention          time.Duration
	MaxStoreBytes      resource.QuantityValue
	StoreFairShares    bool
	ListenAddress      string
	AdvertiseAddress   string
	MetricsAddress     string
	Profiling          bool
	TLSCertFile        string
	TLSKeyFile         string
	ClientCAFile       string
	AllowedClientNames []string
	ReplayFile         string
	Kubeconfig         string
	QueueSize          int
	WatchBuffer        int
	ProgressInterval   time.Duration
	MinFreeDisk        resource.QuantityValue
	MinFreeDiskPercent int
	MemoryTarget       resource.QuantityValue
	StoreCacheBytes    resource.QuantityValue

	Capture               string
	Interfaces            []string
	AttachDefaultRoute    bool
	CaptureReportInterval time.Duration
	CaptureIdleTimeout    time.Duration
	CaptureMaxConns       int
	CaptureTableSize      int
	L7                    string
	L7Timeout             time.Duration

	FlowLogFile       string
	FlowLogMaxSize    resource.QuantityValue
	FlowLogMaxBackups int
	StoredMaxBytes    resource.QuantityValue

	L7HeaderAllowlist  []string
	L7KeepQueryStrings bool

	Certs certOptions

	FlowMetrics FlowMetricsOptions

	OTLP OTLPOptions
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{
		Namespace:          "flowscope-system",
		DataDir:            "/var/lib/flowscope",
		Retention:          time.Hour,
		StoreFairShares:    true,
		ListenAddress:      ":9101",
		MetricsAddress:     ":9102",
		AllowedClientNames: []string{"flowscope-apiserver"},
		QueueSize:          1 << 16,
		WatchBuffer:        4096,
		ProgressInterval:   time.Second,
		MinFreeDisk:        resource.QuantityValue{Quantity: resource.MustParse("256Mi")},

		Capture:               CaptureAll,
		Interfaces:            capture.DefaultInterfacePatterns,
		AttachDefaultRoute:    true,
		CaptureReportInterval: 10 * time.Second,
		CaptureIdleTimeout:    time.Minute,
		CaptureMaxConns:       capture.DefaultMaxConnectionsPerInterface,
		CaptureTableSize:      capture.DefaultFlowTableSize,
		L7:                    L7Selected,
		L7Timeout:             10 * time.Second,

		FlowLogFile:       flowlog.DefaultPath,
		FlowLogMaxSize:    resource.QuantityValue{Quantity: resource.MustParse("50Mi")},
		FlowLogMaxBackups: flowlog.DefaultMaxBackups,
		StoredMaxBytes:    resource.QuantityValue{Quantity: resource.MustParse("2Gi")},

		L7HeaderAllowlist: slices.Clone(redact.DefaultHeaderAllowlist),

		FlowMetrics: newFlowMetricsOptions(),

		OTLP: newOTLPOptions(),
	}
}

// AddFlags registers the options on fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.NodeName, "node-name", o.NodeName, "Name of the node this agent observes (required).")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "Namespace of the agent: its Lease lives here, and flows with no pod end are filed here.")
	fs.StringVar(&o.DataDir, "data-dir", o.DataDir, "Directory of the flow store.")
	fs.DurationVar(&o.Retention, "retention", o.Retention, "How long flows are kept (the on-demand tier).")
	fs.Var(&o.MaxStoreBytes, "max-store-bytes", "Disk budget of the flow store, such as 20Gi: beyond it the oldest flows are evicted (watchers get DELETED events). 0 means only --retention bounds it.")
	fs.BoolVar(&o.StoreFairShares, "store-fair-shares", o.StoreFairShares, "Share --max-store-bytes fairly among namespaces: once the flow store is at 90% of it, a namespace holding more than an equal share gets no more flows stored, and they are counted (flowscope_agent_flows_dropped_total{reason=\"over_share\"}), so that one namespace's flood cannot evict the others' flows. Off, a flood evicts the oldest flows of every namespace.")
	fs.StringVar(&o.ListenAddress, "listen-address", o.ListenAddress, "Address of the gRPC API (mutual TLS).")
	fs.StringVar(&o.AdvertiseAddress, "advertise-address", o.AdvertiseAddress, "Address the aggregated server dials, published in the agent's Lease; defaults to --listen-address.")
	fs.StringVar(&o.MetricsAddress, "metrics-bind-address", o.MetricsAddress, "Address of the Prometheus /metrics, /healthz and /readyz endpoint (readyz fails while the serving certificate or CA bundle cannot be used); empty disables it.")
	fs.BoolVar(&o.Profiling, "profiling", o.Profiling, "Serve Go's /debug/pprof on the metrics address. It is unauthenticated: bind that address to localhost when this is on.")
	fs.StringVar(&o.TLSCertFile, "tls-cert-file", o.TLSCertFile, "Serving certificate of the gRPC API (required); it must carry the DNS name <node>.agents.flowscope.io of --node-name, and no other node's, or flowscope-apiserver refuses the agent.")
	fs.StringVar(&o.TLSKeyFile, "tls-private-key-file", o.TLSKeyFile, "Key of the serving certificate (required).")
	fs.StringVar(&o.ClientCAFile, "client-ca-file", o.ClientCAFile, "CA bundle that signs the aggregated server's client certificate (required).")
	fs.StringSliceVar(&o.AllowedClientNames, "allowed-client-names", o.AllowedClientNames, "Client certificate common names allowed to call the agent.")
	fs.StringVar(&o.ReplayFile, "replay-file", o.ReplayFile, "Hubble export file (JSON lines) to follow like tail -F, e.g. /var/log/acns/hubble/events.log.")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Kubeconfig for the Kubernetes API; empty means in-cluster configuration.")
	fs.IntVar(&o.QueueSize, "ingest-queue-size", o.QueueSize, "Flows waiting for the store before new ones are dropped and counted; at most a quarter of --memory-target at 1KiB a flow.")
	fs.Var(&o.MemoryTarget, "memory-target", "The Go runtime's soft memory limit: near it the agent collects harder instead of growing its heap. 0 means a quarter of the memory limit (GOMEMLIMIT, which the DaemonSet sets to the container's limit, else the cgroup's memory.max), at least 96Mi: the rest of the limit is headroom for bursts and for the page cache of the store's files, which the limit counts too.")
	fs.Var(&o.StoreCacheBytes, "store-cache-bytes", "Budget of the flow store's block cache, as Badger counts it: mapped pages of the store's files, which cost the heap about 8Mi per Gi. 0 means the memory limit, at most 1Gi.")
	fs.Var(&o.MinFreeDisk, "min-free-disk", "Free space below which the data directory's filesystem takes no more flows: they are dropped and counted (reason disk_full) until space returns. It must cover a second of ingest, a memtable (16Mi) and compactions; 0 disables the check, and Badger then crashes when the disk fills.")
	fs.IntVar(&o.MinFreeDiskPercent, "min-free-disk-percent", o.MinFreeDiskPercent, "Free space, in percent of the data directory's filesystem, below which it takes no more flows either: the larger of this and --min-free-disk holds. Set it above the kubelet's eviction threshold (nodefs.available, 10% by default), so that the flow store never evicts pods for disk pressure; the chart sets 15. 0 leaves only --min-free-disk.")
	fs.IntVar(&o.WatchBuffer, "watch-buffer", o.WatchBuffer, "Live flows buffered per feed (one per aggregated server), and per watch while it catches up from the store. A watch that overflows it while catching up reads the store again; a feed that overflows it is ended, and its server resumes its watches from the store.")
	fs.DurationVar(&o.ProgressInterval, "progress-interval", o.ProgressInterval, "How often this agent sends its watermark to the aggregated servers unasked, as a heartbeat (a server of more than 1,000 agents asks for less often). A watch that holds flows waiting for this agent asks for the watermark at once (at most every 5 ms), so this bounds only how stale an idle agent's watermark gets, and how soon a silent agent is noticed (--max-agent-lag on the server).")
	fs.StringVar(&o.Capture, "capture", o.Capture, "eBPF capture: all (every packet of the attached interfaces), selected (only what active watches select), or off.")
	fs.StringSliceVar(&o.Interfaces, "interfaces", o.Interfaces, "Glob patterns of the interfaces to attach to, typically the host sides of pod veths.")
	fs.BoolVar(&o.AttachDefaultRoute, "attach-default-route", o.AttachDefaultRoute, "Also attach to the interfaces of the default routes (the node's own traffic).")
	fs.DurationVar(&o.CaptureReportInterval, "capture-report-interval", o.CaptureReportInterval, "How often a long connection yields a record.")
	fs.DurationVar(&o.CaptureIdleTimeout, "capture-idle-timeout", o.CaptureIdleTimeout, "How long a connection without FIN or RST (UDP, ICMP) may be silent before its final record.")
	fs.IntVar(&o.CaptureMaxConns, "capture-max-connections-per-interface", o.CaptureMaxConns, "Connection records one interface (a pod's veth, or a default-route interface) may hold in the connection table (--capture-table-size); its further new connections are not tracked, only counted (flowscope_agent_capture_untracked_packets_total{reason=\"interface_budget\"}), until some of its records end. The default, a quarter of the default table, keeps a pod that opens connections without end from taking the other pods' places. 0 means no budget.")
	fs.IntVar(&o.CaptureTableSize, "capture-table-size", o.CaptureTableSize, "Connection records the kernel holds at once, each about 200 bytes of kernel memory allocated at start. The sweep ends the least recently seen once the table is 90% full, and a packet of a new connection that finds no room is counted (flowscope_agent_capture_untracked_packets_total{reason=\"table_full\"}) and tried again with the connection's next packet.")
	fs.StringVar(&o.L7, "l7", o.L7, "L7 records (DNS, HTTP/1, HTTP/2 and gRPC, Kafka) from the payload the eBPF programs sample, no proxy: all (every captured pod interface), selected (only the pods that active watches naming an l7 field, or policies with an l7 filter, select; with none, no payload is copied at all), or off. The default is selected: with all, make bench-l7 measured 0.90-0.93 of the HTTP/1.1 and 0.98-1.00 of the gRPC requests per second on a 2-core node (README, the L7 section).")
	fs.DurationVar(&o.L7Timeout, "l7-timeout", o.L7Timeout, "How long an L7 request waits for its response before it becomes a record without one.")
	fs.StringVar(&o.FlowLogFile, "flow-log-file", o.FlowLogFile, "File the flows of policies with output File are written to, as Hubble export lines; /var/log/acns/hubble/events.log makes this agent a source for AKS Container Network Logs consumers. Nothing is written while no policy selects anything.")
	fs.Var(&o.FlowLogMaxSize, "flow-log-max-size", "Size at which the flow log file is rotated.")
	fs.IntVar(&o.FlowLogMaxBackups, "flow-log-max-backups", o.FlowLogMaxBackups, "Rotated flow log files kept; older ones are removed.")
	fs.Var(&o.StoredMaxBytes, "stored-max-bytes", "Disk budget of the stored tier, which keeps the flows of policies with output Store for their retention. Each namespace holding stored flows may use an equal share of it; flows beyond their namespace's share stay in the on-demand store only, and are counted. 0 means only the policies' retentions bound it.")
	fs.StringSliceVar(&o.L7HeaderAllowlist, "l7-header-allowlist", o.L7HeaderAllowlist, "HTTP headers whose values L7 records keep (case-insensitive). Every other header keeps its name with the value HUBBLE_REDACTED. Authorization, Proxy-Authorization, Cookie and Set-Cookie are never kept; * keeps every other value; an empty list keeps names only. URL-valued headers (Referer, Location, :path, Host) follow the URL rules.")
	fs.BoolVar(&o.L7KeepQueryStrings, "l7-keep-query-strings", o.L7KeepQueryStrings, "Keep the query strings of URLs in L7 records. Without it a URL keeps its scheme, host and path; user:password@ and #fragments are always removed.")
	o.Certs.addFlags(fs)
	o.FlowMetrics.addFlags(fs)
	o.OTLP.addFlags(fs)
}

// Validate checks the options.
func (o *Options) Validate() []error {
	var errs []error
	if o.NodeName == "" {
		errs = append(errs, errors.New("--node-name is required"))
	}
	if strings.Contains(o.NodeName, "/") {
		errs = append(errs, errors.New("--node-name must not contain '/'"))
	}
	for _, req := range []struct{ flag, value string }{{"--tls-cert-file", o.TLSCertFile}, {"--tls-private-key-file", o.TLSKeyFile}, {"--client-ca-file", o.ClientCAFile}, {"--data-dir", o.DataDir}} {
		if req.value == "" && (!o.Certs.SelfManaged || req.flag == "--data-dir") {
			errs = append(errs, fmt.Errorf("%s is required", req.flag))
		}
	}
	switch o.Capture {
	case CaptureAll, CaptureSelected, CaptureOff:
	default:
		errs = append(errs, fmt.Errorf("--capture must be all, selected or off, not %q", o.Capture))
	}
	switch o.L7 {
	case L7Off, L7Selected, L7All:
	default:
		errs = append(errs, fmt.Errorf("--l7 must be all, selected or off, not %q", o.L7))
	}
	if o.L7Timeout < time.Second {
		errs = append(errs, errors.New("--l7-timeout must be at least 1s"))
	}
	if o.CaptureReportInterval < time.Second {
		errs = append(errs, errors.New("--capture-report-interval must be at least 1s"))
	}
	if o.CaptureMaxConns < 0 {
		errs = append(errs, errors.New("--capture-max-connections-per-interface must not be negative"))
	}
	if o.CaptureTableSize < capture.MinFlowTableSize || o.CaptureTableSize > capture.MaxFlowTableSize {
		errs = append(errs, fmt.Errorf("--capture-table-size must be between %d and %d", capture.MinFlowTableSize, capture.MaxFlowTableSize))
	}
	if o.MinFreeDisk.Sign() < 0 {
		errs = append(errs, errors.New("--min-free-disk must not be negative"))
	}
	if o.MinFreeDiskPercent < 0 || o.MinFreeDiskPercent > 90 {
		errs = append(errs, errors.New("--min-free-disk-percent must be between 0 and 90"))
	}
	if o.ProgressInterval < time.Millisecond {
		errs = append(errs, errors.New("--progress-interval must be at least 1ms"))
	}
	if o.Retention < time.Minute {
		errs = append(errs, errors.New("--retention must be at least 1m"))
	}
	if o.MaxStoreBytes.Sign() < 0 {
		errs = append(errs, errors.New("--max-store-bytes must not be negative"))
	}
	if o.StoredMaxBytes.Sign() < 0 {
		errs = append(errs, errors.New("--stored-max-bytes must not be negative"))
	}
	if o.FlowLogFile == "" {
		errs = append(errs, errors.New("--flow-log-file is required"))
	}
	if o.FlowLogMaxSize.Value() < 64<<10 {
		errs = append(errs, errors.New("--flow-log-max-size must be at least 64Ki"))
	}
	if o.FlowLogMaxBackups < 1 {
		errs = append(errs, errors.New("--flow-log-max-backups must be at least 1"))
	}
	if _, err := o.redactor(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, o.FlowMetrics.validate()...)
	errs = append(errs, o.OTLP.validate()...)
	return errs
}

func (o *Options) redactor() (*redact.Redactor, error) {
	r, err := redact.New(redact.Options{HeaderAllowlist: o.L7HeaderAllowlist, KeepQueryStrings: o.L7KeepQueryStrings})
	if err != nil {
		return nil, fmt.Errorf("--l7-header-allowlist: %w", err)
	}
	return r, nil
}

// Run runs the agent until ctx ends.
func Run(ctx context.Context, o *Options) error {
	storeDir := filepath.Join(o.DataDir, "store")
	mem := membudget.Plan(membudget.Limit(), o.MemoryTarget.Value(), o.StoreCacheBytes.Value(), o.QueueSize)
	mem.Apply()
	klog.InfoS("Memory budget", "limit", mem.Limit, "target", mem.Target, "storeCache", mem.StoreCache, "ingestQueue", mem.Queue)
	st, err := store.Open(store.Options{Dir: storeDir, Retention: o.Retention, MaxBytes: o.MaxStoreBytes.Value(), CacheBytes: mem.StoreCache})
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			klog.ErrorS(err, "Failed closing the flow store")
		}
	}()
	storeSize := metrics.NewStoreBytes(func() float64 {
		n, err := st.DiskBytes()
		if err != nil {
			klog.ErrorS(err, "Failed measuring the flow store")
		}
		return float64(n)
	})
	metrics.Registry.RawMustRegister(storeSize)
	defer metrics.Registry.Unregister(storeSize)
	tr, err := tiers.Open(tiers.Options{Dir: filepath.Join(o.DataDir, "stored"), MaxBytes: o.StoredMaxBytes.Value()})
	if err != nil {
		return err
	}
	defer func() {
		if err := tr.Close(); err != nil {
			klog.ErrorS(err, "Failed closing the stored tier")
		}
	}()
	flowLog, err := flowlog.New(flowlog.Options{Path: o.FlowLogFile, MaxBytes: o.FlowLogMaxSize.Value(),
		MaxBackups: o.FlowLogMaxBackups, Node: o.NodeName})
	if err != nil {
		return err
	}
	// The OTLP exporter outlives the pipeline, which writes to it: this
	// deferred stop runs after the pipeline's.
	otlpExporter, stopOTLP, err := startOTLP(ctx, &o.OTLP, o.NodeName)
	if err != nil {
		return err
	}
	defer stopOTLP()
	storedOpts := stored.Options{Tiers: tr, File: flowLog}
	if otlpExporter != nil {
		storedOpts.OTLP = otlpExporter
	}
	mode := stored.New(storedOpts)
	h := hub.New(o.WatchBuffer)
	flowMetrics, err := startFlowMetrics(&o.FlowMetrics)
	if err != nil {
		return err
	}
	defer flowMetrics.stop()
	var guard *ingest.DiskGuard
	minFree, err := ingest.MinFreeFloor(storeDir, uint64(o.MinFreeDisk.Value()), o.MinFreeDiskPercent)
	if err != nil {
		return err
	}
	if minFree > 0 {
		klog.InfoS("The flow store takes no flows below this much free disk space", "path", storeDir, "minFreeBytes", minFree)
		guard = ingest.NewDiskGuard(storeDir, minFree)
	}
	redactor, err := o.redactor()
	if err != nil {
		return err
	}
	var shares *ingest.FairShare
	if o.StoreFairShares && o.MaxStoreBytes.Value() > 0 {
		shares = ingest.NewFairShare(ingest.FairShareOptions{MaxBytes: o.MaxStoreBytes.Value(), Retention: o.Retention, DiskBytes: st.DiskBytes})
	}
	p, err := ingest.New(st, h, ingest.Options{
		NodeName: o.NodeName, QueueSize: mem.Queue, BatchSize: store.MaxBlockFlows,
		SyncInterval: time.Second, ProgressInterval: o.ProgressInterval,
		DiskGuard: guard, FairShare: shares, Stored: mode, Redact: redactor.Flow, Observe: flowMetrics.observe(),
	})
	if err != nil {
		return err
	}
	// Drawn at every handshake: rotated certificates and CAs need no
	// restart, and without them handshakes fail (never plain text).
	creds, err := o.credentials(ctx)
	if err != nil {
		return err
	}
	tlsConfig := tlsutil.NewServerConfig(creds, o.AllowedClientNames)
	lis, err := net.Listen("tcp", o.ListenAddress)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.ListenAddress, err)
	}
	grpcServer := grpc.NewServer(append(agentwire.ServerOptions(),
		grpc.Creds(agentcerts.ServerCredentials(tlsConfig)),
		grpc.ChainUnaryInterceptor(countUnary), grpc.ChainStreamInterceptor(countStream))...)
	svc := server.New(o.NodeName, st, p, h)
	svc.ListStored(tr)
	agentwire.Register(grpcServer, svc)

	// The flow log file outlives the pipeline, which writes to it: this
	// deferred stop runs after the pipeline's, and the writer then writes
	// what is queued.
	flowLogCtx, stopFlowLog := context.WithCancel(context.WithoutCancel(ctx))
	flowLogDone := make(chan struct{})
	go func() { flowLog.Run(flowLogCtx); close(flowLogDone) }()
	defer func() {
		stopFlowLog()
		<-flowLogDone
		if err := flowLog.Close(); err != nil {
			klog.ErrorS(err, "Failed closing the flow log file")
		}
	}()

	// The pipeline outlives the sources and the API so it can sync last.
	pipelineCtx, stopPipeline := context.WithCancel(context.WithoutCancel(ctx))
	pipelineDone := make(chan error, 1)
	go func() { pipelineDone <- p.Run(pipelineCtx) }()
	defer func() {
		stopPipeline()
		if err := <-pipelineDone; err != nil {
			klog.ErrorS(err, "Failed syncing the flow store on exit")
		}
	}()

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		klog.InfoS("Serving the agent API", "address", lis.Addr().String(), "node", o.NodeName)
		return grpcServer.Serve(lis)
	})
	g.Go(func() error {
		<-ctx.Done()
		grpcServer.Stop()
		return nil
	})
	if o.ReplayFile != "" {
		g.Go(func() error { return runReplay(ctx, o, p) })
	}
	if o.MetricsAddress != "" {
		g.Go(func() error { return serveMetrics(ctx, o.MetricsAddress, o.Profiling, creds.Ready) })
	}
	kube, err := newKubeClients(o.Kubeconfig)
	if err != nil {
		klog.InfoS("No Kubernetes API: flows are not enriched and the agent is not announced by a Lease", "err", err)
	}
	var leaseKeeper *agentlease.Keeper // nil without a Kubernetes API; its SetApplied then does nothing
	if kube != nil {
		addr := o.AdvertiseAddress
		if addr == "" {
			addr = o.ListenAddress
		}
		leaseKeeper = agentlease.NewKeeper(kube.client, o.Namespace, o.NodeName, addr)
		leaseKeeper.SetOutputs(o.outputs())
		g.Go(func() error { leaseKeeper.Run(ctx); return nil })
		mode.ReportApplied(leaseKeeper.SetApplied)
		factory := configinformers.NewSharedInformerFactory(kube.config, 0)
		g.Go(func() error { return mode.Watch(ctx, factory) })
	}
	if o.Capture != CaptureOff {
		e := newEnricher(ctx, kube, o.NodeName)
		flowMetrics.setNodes(e)
		g.Go(func() error { return runCapture(ctx, o, p, h, e, e, mode) })
	}
	return g.Wait()
}

func serveMetrics(ctx context.Context, addr string, profiling bool, ready func() error) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics.Handler())
	if profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", readyz(ready))
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve metrics on %s: %w", addr, err)
	}
	return nil
}

func countUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	metrics.Requests.WithLabelValues(path.Base(info.FullMethod), status.Code(err).String()).Inc()
	return resp, err
}

func countStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	err := handler(srv, ss)
	metrics.Requests.WithLabelValues(path.Base(info.FullMethod), status.Code(err).String()).Inc()
	return err
}

// outputs are the outputs of flow log policies this agent serves: Store
// and File always, OTLP with an endpoint.
func (o *Options) outputs() []string {
	out := []string{string(configv1alpha1.OutputStore), string(configv1alpha1.OutputFile)}
	if o.OTLP.Endpoint != "" {
		out = append(out, string(configv1alpha1.OutputOTLP))
	}
	return out
}
