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
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logpb "go.opentelemetry.io/proto/otlp/logs/v1"

	"flowscope.io/flowscope/nodeagent/hubble/format"
)

// The tests share the process's counters: they run one at a time and
// compare differences.

func TestDeliversEveryFlowOnceAsItsExportLine(t *testing.T) {
	for _, tc := range []struct {
		protocol, compression string
	}{
		{ProtocolGRPC, CompressionGzip},
		{ProtocolGRPC, CompressionNone},
		{ProtocolHTTP, CompressionGzip},
		{ProtocolHTTP, CompressionNone},
	} {
		t.Run(tc.protocol+"/"+tc.compression, func(t *testing.T) {
			r := &receiver{}
			var endpoint string
			if tc.protocol == ProtocolGRPC {
				endpoint, _ = serveGRPC(t, r, "127.0.0.1:0")
			} else {
				endpoint = serveHTTP(t, r)
			}
			headers := filepath.Join(t.TempDir(), "headers")
			if err := os.WriteFile(headers, []byte("# from a Secret\nX-Api-Key = s3cret\n\nx-tenant=shop\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			before := readCounts(t)
			e, _ := startExporter(t, Config{Endpoint: endpoint, Protocol: tc.protocol, Insecure: true,
				Compression: tc.compression, HeadersFile: headers}, Options{Node: "node-a", BatchRecords: 100})
			const n = 400
			flows := realisticFlows(t, n)
			for i := 0; i < len(flows); i += 64 {
				e.Write(flows[i:min(i+64, len(flows))])
			}
			waitFor(t, "every record", func() bool { return readCounts(t).sub(before).total() >= n })
			if got := readCounts(t).sub(before); got[ResultDelivered] != n || got.total() != n {
				t.Fatalf("counts %v, want %d delivered", got, n)
			}
			got := r.received()
			if len(got) != n {
				t.Fatalf("received %d records, want %d", len(got), n)
			}
			byName := map[string]*logpb.LogRecord{}
			for _, rec := range got {
				name := attrs(rec)[AttrFlowName]
				if byName[name] != nil {
					t.Fatalf("flow %s received twice", name)
				}
				byName[name] = rec
			}
			for _, f := range flows {
				rec := byName[f.Name]
				if rec == nil {
					t.Fatalf("flow %s not received", f.Name)
				}
				line, err := format.ExportLine(f)
				if err != nil {
					t.Fatal(err)
				}
				if body := rec.Body.GetStringValue(); body != string(line) {
					t.Fatalf("flow %s: body\n%s\nwant its export line\n%s", f.Name, body, line)
				}
				if rec.TimeUnixNano != uint64(f.Time.UnixNano()) {
					t.Fatalf("flow %s: time %d, want %d", f.Name, rec.TimeUnixNano, f.Time.UnixNano())
				}
				if rec.EventName != EventName || rec.SeverityNumber != logpb.SeverityNumber_SEVERITY_NUMBER_INFO || rec.ObservedTimeUnixNano == 0 {
					t.Fatalf("flow %s: event %q severity %v observed %d", f.Name, rec.EventName, rec.SeverityNumber, rec.ObservedTimeUnixNano)
				}
				want := map[string]string{}
				for _, kv := range Attributes(nil, f) {
					want[string(kv.Key)] = kv.Value.String()
				}
				if got := attrs(rec); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("flow %s: attributes\n%v\nwant\n%v", f.Name, got, want)
				}
			}
			res := map[string]string{}
			for _, kv := range r.resource[0].Resource.Attributes {
				res[kv.Key] = kv.Value.GetStringValue()
			}
			if res["service.name"] != "flowscope-agent" || res[AttrNodeName] != "node-a" {
				t.Fatalf("resource %v", res)
			}
			for _, h := range r.headers {
				if h["x-api-key"] != "s3cret" && h["X-Api-Key"] != "s3cret" {
					t.Fatalf("request headers %v lack the headers file's", h)
				}
				if tc.protocol == ProtocolHTTP && (h["content-encoding"] == "gzip") != (tc.compression == CompressionGzip) {
					t.Fatalf("compression %s, request content encoding %q", tc.compression, h["content-encoding"])
				}
			}
		})
	}
}

// attrs returns a record's attributes as Attributes' values print.
func attrs(rec *logpb.LogRecord) map[string]string {
	out := map[string]string{}
	for _, kv := range rec.Attributes {
		out[kv.Key] = anyString(kv.Value)
	}
	return out
}

func anyString(v *commonpb.AnyValue) string {
	switch x := v.Value.(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonpb.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	case *commonpb.AnyValue_DoubleValue:
		return fmt.Sprint(x.DoubleValue)
	case *commonpb.AnyValue_ArrayValue:
		s := []string{}
		for _, e := range x.ArrayValue.Values {
			s = append(s, anyString(e))
		}
		b, _ := json.Marshal(s) // as attribute.Value's String
		return string(b)
	}
	return fmt.Sprintf("%v", v)
}

func TestDeadCollectorDropsAndCountsEveryFlowWithoutBlocking(t *testing.T) {
	// A port nothing listens on: every export fails, is retried for the
	// retry time, then dropped; meanwhile the queue fills and drops.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := lis.Addr().String()
	lis.Close()
	before := readCounts(t)
	e, stop := startExporter(t, Config{Endpoint: endpoint, Protocol: ProtocolGRPC, Insecure: true,
		Compression: CompressionNone, RetryMaxElapsed: 1500 * time.Millisecond},
		Options{Node: "node-a", QueueRecords: 300, BatchRecords: 100})
	flows := realisticFlows(t, 2000)
	written := 0
	for i := 0; i < len(flows); i += 50 {
		e.Write(flows[i : i+50]) // returns at once, whatever the collector does
		written += 50
		time.Sleep(2 * time.Millisecond)
	}
	waitFor(t, "a failed export", func() bool { return readCounts(t).sub(before)[ResultDroppedExportFailed] > 0 })
	stop()
	got := readCounts(t).sub(before)
	if got.total() != float64(written) || got[ResultDelivered] != 0 {
		t.Fatalf("counts %v (total %v), want all %d dropped", got, got.total(), written)
	}
	if got[ResultDroppedQueueFull] == 0 || got[ResultDroppedExportFailed] == 0 {
		t.Fatalf("counts %v: want drops for a full queue and for failed exports", got)
	}
	t.Logf("%d flows, dead collector: %v", written, got)
}

func TestCollectorOutageLosesOnlyWhatItCounts(t *testing.T) {
	r := &receiver{}
	endpoint, stopReceiver := serveGRPC(t, r, "127.0.0.1:0")
	before := readCounts(t)
	e, stop := startExporter(t, Config{Endpoint: endpoint, Protocol: ProtocolGRPC, Insecure: true,
		Compression: CompressionGzip, RetryMaxElapsed: 10 * time.Second},
		Options{Node: "node-a", QueueRecords: 500, BatchRecords: 100})
	flows := realisticFlows(t, 3000)
	write := func(from, to int) {
		for i := from; i < to; i += 20 {
			e.Write(flows[i : i+20])
			time.Sleep(time.Millisecond)
		}
	}
	write(0, 1000)
	waitFor(t, "the first 1000 counted", func() bool { return readCounts(t).sub(before).total() >= 1000 })
	stopReceiver()
	write(1000, 2000) // the collector is down
	var restart func()
	r2 := &receiver{}
	_, restart = serveGRPC(t, r2, endpoint)
	defer restart()
	write(2000, 3000)
	waitFor(t, "every flow counted", func() bool { return readCounts(t).sub(before).total() >= 3000 })
	stop()
	got := readCounts(t).sub(before)
	received := len(r.received()) + len(r2.received())
	if got.total() != 3000 || got[ResultDelivered] != float64(received) {
		t.Fatalf("counts %v (total %v), %d received: want 3000 counted, the delivered ones received", got, got.total(), received)
	}
	seen := map[string]bool{}
	for _, rec := range append(r.received(), r2.received()...) {
		name := attrs(rec)[AttrFlowName]
		if seen[name] {
			t.Fatalf("flow %s received twice", name)
		}
		seen[name] = true
	}
	t.Logf("3000 flows, collector down while 1000 were written: %v", got)
}

func TestPartialSuccessCountsTheRejected(t *testing.T) {
	r := &receiver{reject: 7}
	endpoint, _ := serveGRPC(t, r, "127.0.0.1:0")
	before := readCounts(t)
	e, stop := startExporter(t, Config{Endpoint: endpoint, Protocol: ProtocolGRPC, Insecure: true, Compression: CompressionNone},
		Options{Node: "node-a", BatchRecords: 100})
	e.Write(realisticFlows(t, 100))
	waitFor(t, "100 counted", func() bool { return readCounts(t).sub(before).total() >= 100 })
	stop()
	if got := readCounts(t).sub(before); got[ResultDelivered] != 93 || got[ResultDroppedRejected] != 7 || got.total() != 100 {
		t.Fatalf("counts %v, want 93 delivered and 7 rejected", got)
	}
}

func TestShutdownCountsWhatIsLeft(t *testing.T) {
	r := &receiver{block: make(chan struct{})} // a collector that never answers
	endpoint, _ := serveGRPC(t, r, "127.0.0.1:0")
	defer close(r.block)
	before := readCounts(t)
	sdk, err := NewSDKExporter(t.Context(), Config{Endpoint: endpoint, Protocol: ProtocolGRPC, Insecure: true, Compression: CompressionNone})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Options{Exporter: sdk, Node: "node-a", QueueRecords: 1000, BatchRecords: 100, ShutdownTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := contextWithCancel()
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	e.Write(realisticFlows(t, 1500))
	waitFor(t, "an export under way", func() bool { return e.Queued() == 1000-100 })
	cancel()
	<-done
	got := readCounts(t).sub(before)
	if got.total() != 1500 || got[ResultDroppedQueueFull] != 500 || got[ResultDroppedShutdown] != 900 || got[ResultDroppedExportFailed] != 100 {
		t.Fatalf("counts %v, want 500 queue full, 100 export failed (the batch cut off), 900 left at shutdown", got)
	}
}

func TestRejectedRecords(t *testing.T) {
	for _, tc := range []struct {
		err     error
		n       int
		partial bool
	}{
		{nil, 0, false},
		{errors.New("rpc error: code = Unavailable"), 0, false},
		{errors.New("OTLP partial success: too big (3 logs rejected)"), 3, true},
		{errors.Join(errors.New("OTLP partial success: x (3 logs rejected)"), errors.New("deadline exceeded")), 0, false},
	} {
		n, partial := rejectedRecords(tc.err)
		if n != tc.n || partial != tc.partial {
			t.Errorf("rejectedRecords(%v) = %d, %v; want %d, %v", tc.err, n, partial, tc.n, tc.partial)
		}
	}
}
