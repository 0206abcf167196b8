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

package otlpexport

import (
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	logpb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"k8s.io/component-base/metrics/testutil"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/internal/flowtest"
	"flowscope.io/flowscope/nodeagent/metrics"
)

// receiver is a real OTLP logs receiver: the protocol's own gRPC service
// (or its HTTP form) served on a loopback port, keeping what it receives.
// The collector's otlpreceiver lives in another module (hack/tools/otelcol);
// the e2e suite test/e2e/otlp runs that one.
type receiver struct {
	mu       sync.Mutex
	records  []*logpb.LogRecord
	resource []*logpb.ResourceLogs
	headers  []map[string]string
	// reject, if set, makes each request answer a partial success that
	// rejects that many records.
	reject int64
	// block, if not nil, holds every request until it is closed.
	block chan struct{}
	// discard counts records instead of keeping them (benchmarks).
	discard bool
	count   int

	collogpb.UnimplementedLogsServiceServer
}

func (r *receiver) Export(ctx context.Context, req *collogpb.ExportLogsServiceRequest) (*collogpb.ExportLogsServiceResponse, error) {
	if r.block != nil {
		select {
		case <-r.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	h := map[string]string{}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		for k, v := range md {
			h[k] = v[0]
		}
	}
	return r.keep(req, h), nil
}

func (r *receiver) keep(req *collogpb.ExportLogsServiceRequest, headers map[string]string) *collogpb.ExportLogsServiceResponse {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.discard {
		for _, rl := range req.ResourceLogs {
			for _, sl := range rl.ScopeLogs {
				r.count += len(sl.LogRecords)
			}
		}
		return &collogpb.ExportLogsServiceResponse{}
	}
	r.headers = append(r.headers, headers)
	for _, rl := range req.ResourceLogs {
		r.resource = append(r.resource, rl)
		for _, sl := range rl.ScopeLogs {
			r.records = append(r.records, sl.LogRecords...)
		}
	}
	resp := &collogpb.ExportLogsServiceResponse{}
	if r.reject > 0 {
		resp.PartialSuccess = &collogpb.ExportLogsPartialSuccess{RejectedLogRecords: r.reject, ErrorMessage: "test rejects"}
	}
	return resp
}

func (r *receiver) received() []*logpb.LogRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*logpb.LogRecord(nil), r.records...)
}

// serveGRPC serves r over gRPC on addr ("127.0.0.1:0" for any port) until
// stop is called or the test ends.
func serveGRPC(tb testing.TB, r *receiver, addr string) (endpoint string, stop func()) {
	tb.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	s := grpc.NewServer()
	collogpb.RegisterLogsServiceServer(s, r)
	go func() { _ = s.Serve(lis) }()
	var once sync.Once
	// GracefulStop answers the requests under way, as a collector
	// shutting down does: Stop would cut off answers to requests already
	// taken, whose records the exporter then retries and delivers twice.
	stop = func() { once.Do(s.GracefulStop) }
	tb.Cleanup(stop)
	return lis.Addr().String(), stop
}

// serveHTTP serves r as OTLP/HTTP (protobuf, gzip or not) on a loopback
// port until the test ends.
func serveHTTP(tb testing.TB, r *receiver) string {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/logs", func(w http.ResponseWriter, req *http.Request) {
		var body io.Reader = req.Body
		if req.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		data, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var msg collogpb.ExportLogsServiceRequest
		if err := proto.Unmarshal(data, &msg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h := map[string]string{"content-encoding": req.Header.Get("Content-Encoding")}
		for k := range req.Header {
			h[k] = req.Header.Get(k)
		}
		out, _ := proto.Marshal(r.keep(&msg, h))
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	tb.Cleanup(func() { _ = srv.Close() })
	return lis.Addr().String()
}

// startExporter runs an Exporter until the test ends.
func startExporter(tb testing.TB, c Config, o Options) (*Exporter, func()) {
	tb.Helper()
	sdk, err := NewSDKExporter(context.Background(), c)
	if err != nil {
		tb.Fatal(err)
	}
	o.Exporter = sdk
	e, err := New(o)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Run(ctx)
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	tb.Cleanup(stop)
	return e, stop
}

// counts are flowscope_agent_otlp_records_total by result.
type counts map[string]float64

var results = []string{ResultDelivered, ResultDroppedQueueFull, ResultDroppedExportFailed,
	ResultDroppedRejected, ResultDroppedEncodeError, ResultDroppedShutdown}

func readCounts(tb testing.TB) counts {
	tb.Helper()
	metrics.RegisterOTLP()
	c := counts{}
	for _, r := range results {
		v, err := testutil.GetCounterMetricValue(metrics.OTLPRecords.WithLabelValues(r))
		if err != nil {
			tb.Fatal(err)
		}
		c[r] = v
	}
	return c
}

func (c counts) sub(d counts) counts {
	out := counts{}
	for _, r := range results {
		out[r] = c[r] - d[r]
	}
	return out
}

func (c counts) total() float64 {
	var n float64
	for _, v := range c {
		n += v
	}
	return n
}

// waitFor polls cond until it holds, or fails the test after 30s.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func realisticFlows(tb testing.TB, n int) []*v1alpha1.Flow {
	tb.Helper()
	flows := flowtest.RealisticFlows(tb, n)
	out := make([]*v1alpha1.Flow, n)
	for i := range flows {
		out[i] = &flows[i]
	}
	return out
}

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}
