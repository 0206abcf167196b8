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

package otlp

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logpb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/protobuf/encoding/protojson"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/hubble/format"
	"flowscope.io/flowscope/nodeagent/otlpexport"
	"flowscope.io/flowscope/test/e2e/framework"
)

// collected is a log record the collector wrote, with its resource.
type collected struct {
	record   *logpb.LogRecord
	resource map[string]string
	attrs    map[string]string
}

// collectorRecords reads the collector's file output (one OTLP JSON
// request a line) and returns its records by flow name, failing on a flow
// received twice.
func collectorRecords(t *testing.T) map[string]collected {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(sys.Out, "otelcol", "logs.json"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	out := map[string]collected{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 1<<20), 256<<20)
	for sc.Scan() {
		var req collogpb.ExportLogsServiceRequest
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(sc.Bytes(), &req); err != nil {
			// The line being written as we read.
			if !bytes.HasSuffix(data, []byte("\n")) && len(sc.Bytes()) > 0 {
				continue
			}
			t.Fatalf("collector output line: %v", err)
		}
		for _, rl := range req.ResourceLogs {
			res := attrMap(rl.GetResource().GetAttributes())
			for _, sl := range rl.ScopeLogs {
				for _, rec := range sl.LogRecords {
					attrs := attrMap(rec.Attributes)
					name := attrs[otlpexport.AttrFlowName]
					if _, dup := out[name]; dup {
						t.Fatalf("the collector received flow %s twice", name)
					}
					out[name] = collected{rec, res, attrs}
				}
			}
		}
	}
	return out
}

func attrMap(kvs []*commonpb.KeyValue) map[string]string {
	out := map[string]string{}
	for _, kv := range kvs {
		out[kv.Key] = anyString(kv.Value)
	}
	return out
}

// anyString prints a value as attribute.Value's String does.
func anyString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_ArrayValue:
		b := []byte("[")
		for i, e := range x.ArrayValue.Values {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendQuote(b, anyString(e))
		}
		return string(append(b, ']'))
	}
	return fmt.Sprint(v)
}

// policy selects the flows to destination port port, for output OTLP only.
func policy(name string, port int) string {
	return fmt.Sprintf(`apiVersion: config.flowscope.io/v1alpha1
kind: ClusterFlowLogPolicy
metadata:
  name: %s
spec:
  includefilters:
    - ports: [{port: %d}]
  outputs: [OTLP]
`, name, port)
}

func apply(t *testing.T, manifest string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := sys.KubectlAs("", "apply", "-f", path); err != nil {
		t.Fatalf("kubectl apply: %v: %s", err, stderr)
	}
}

// waitApplied waits until every agent applies the policy's generation.
func waitApplied(t *testing.T, name string) {
	t.Helper()
	cs := sys.Clientset(t)
	framework.Eventually(t, 30*time.Second, "policy "+name+" applied by every agent", func() (bool, string) {
		p, err := cs.ConfigV1alpha1().ClusterFlowLogPolicies().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		st := p.Status
		ok := st.ObservedGeneration == p.Generation && st.Nodes != nil && st.Nodes.Applied == int32(len(sys.Nodes))
		return ok, fmt.Sprintf("%+v", st)
	})
}

// accounting is one agent's OTLP counters.
type accounting struct {
	selected float64
	results  map[string]float64
}

var results = []string{otlpexport.ResultDelivered, otlpexport.ResultDroppedQueueFull, otlpexport.ResultDroppedExportFailed,
	otlpexport.ResultDroppedRejected, otlpexport.ResultDroppedEncodeError, otlpexport.ResultDroppedShutdown}

func readAccounting(t *testing.T, agent int) accounting {
	t.Helper()
	a := accounting{
		selected: sys.AgentMetric(t, agent, `flowscope_agent_policy_selected_flows_total{output="OTLP"}`),
		results:  map[string]float64{},
	}
	for _, r := range results {
		a.results[r] = sys.AgentMetric(t, agent, fmt.Sprintf(`flowscope_agent_otlp_records_total{result=%q}`, r))
	}
	return a
}

func (a accounting) counted() float64 {
	var n float64
	for _, v := range a.results {
		n += v
	}
	return n
}

func (a accounting) sub(b accounting) accounting {
	out := accounting{selected: a.selected - b.selected, results: map[string]float64{}}
	for _, r := range results {
		out.results[r] = a.results[r] - b.results[r]
	}
	return out
}

// waitSettled waits until every flow an agent selected for OTLP is
// counted, delivered or dropped, and its queue is empty.
func waitSettled(t *testing.T, timeout time.Duration) []accounting {
	t.Helper()
	var out []accounting
	framework.Eventually(t, timeout, "every selected flow counted as delivered or dropped", func() (bool, string) {
		out = out[:0]
		for i := range sys.Nodes {
			a := readAccounting(t, i)
			if a.counted() != a.selected || sys.AgentMetric(t, i, "flowscope_agent_otlp_queued_records") != 0 {
				return false, fmt.Sprintf("agent %d: %+v", i, a)
			}
			out = append(out, a)
		}
		return true, ""
	})
	return out
}

// flowsOf lists the flows of source ports lo to hi through kube-apiserver.
func flowsOf(t *testing.T, lo, hi int32) map[string]v1alpha1.Flow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := framework.ListAll(ctx, sys.Clientset(t), "", metav1.ListOptions{Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]v1alpha1.Flow{}
	for _, f := range l.Items {
		if f.L4 != nil && f.L4.SourcePort >= lo && f.L4.SourcePort <= hi {
			out[f.Name] = f
		}
	}
	return out
}

// mkFlow is the i-th flow of a test: its source port is base+i, and its
// ends, direction, verdict and protocol vary with i.
func mkFlow(base int32, i int, port int32) framework.Seed {
	nodes := []string{"node-a", "node-b"}
	node := nodes[i%2]
	src, dst := framework.Web1, framework.API1
	dir := v1alpha1.TrafficDirectionEgress
	ns := "shop"
	switch i % 4 {
	case 1:
		dir, ns = v1alpha1.TrafficDirectionIngress, "payments"
	case 2:
		src, dst, ns = framework.Cart1, framework.Host("203.0.113.9"), "shop"
	case 3:
		src, dst, dir, ns = framework.Host("198.51.100.7"), framework.DB0, v1alpha1.TrafficDirectionIngress, "shop"
	}
	proto, verdict := v1alpha1.ProtocolTCP, v1alpha1.VerdictForwarded
	if i%3 == 0 {
		proto = v1alpha1.ProtocolUDP
	}
	if i%5 == 0 {
		verdict = v1alpha1.VerdictDropped
	}
	sport := base + int32(i)
	return framework.Seed{Node: node, Sport: sport, Namespace: ns,
		Flow: framework.MkFlow(node, sport, port, proto, dir, verdict, src, dst)}
}

func TestOTLP(t *testing.T) {
	t.Run("EveryFlowReachesTheCollectorOnce", testEveryFlowOnce)
	t.Run("CollectorOutageIsCountedExactly", testOutage)
	t.Run("OverHTTP", testHTTP)
}

// testHTTP: an agent sending OTLP/HTTP (protobuf, gzip) to the collector's
// HTTP port delivers the same records.
func testHTTP(t *testing.T) {
	const port, base, n = 10443, 60000, 100
	sys.Restart(t, "agent-node-a", func(args []string) []string {
		return append(args, "--otlp-protocol=http", fmt.Sprintf("--otlp-endpoint=http://127.0.0.1:%d/v1/logs", sys.PortBase+7))
	})
	apply(t, policy("otlp-http", port))
	waitApplied(t, "otlp-http")
	before := readAccounting(t, 0)
	var seeds []framework.Seed
	for i := 0; i < 2*n; i += 2 { // node-a's
		seeds = append(seeds, mkFlow(base, i, port))
	}
	sys.Replay(t, seeds...)
	framework.Eventually(t, 60*time.Second, "the flows to be listed", func() (bool, string) {
		got := len(flowsOf(t, base, base+2*n))
		return got == n, fmt.Sprintf("%d of %d", got, n)
	})
	waitSettled(t, 60*time.Second)
	if d := readAccounting(t, 0).sub(before); d.selected != n || d.results[otlpexport.ResultDelivered] != n {
		t.Fatalf("agent node-a over HTTP: %+v, want %d selected and delivered", d, n)
	}
	listed := flowsOf(t, base, base+2*n)
	framework.Eventually(t, 10*time.Second, "the collector to write every flow sent over HTTP", func() (bool, string) {
		recs := collectorRecords(t)
		got := 0
		for name := range listed {
			if _, ok := recs[name]; ok {
				got++
			}
		}
		return got == n, fmt.Sprintf("%d of %d", got, n)
	})
	recs := collectorRecords(t)
	for name, f := range listed {
		checkRecord(t, &f, recs[name])
	}
}

// testEveryFlowOnce: the flows the policy selects, and only those, reach
// the collector, each once, with the Flow API's flow as body and the
// documented attributes.
func testEveryFlowOnce(t *testing.T) {
	const port, base, n = 8443, 41000, 300
	apply(t, policy("otlp-once", port))
	waitApplied(t, "otlp-once")
	before := make([]accounting, len(sys.Nodes))
	for i := range sys.Nodes {
		before[i] = readAccounting(t, i)
	}
	var seeds []framework.Seed
	for i := 0; i < n; i++ {
		p := int32(port)
		if i%3 == 2 {
			p = port + 1 // not selected
		}
		seeds = append(seeds, mkFlow(base, i, p))
	}
	sys.Replay(t, seeds...)
	framework.Eventually(t, 60*time.Second, "the flows to be listed", func() (bool, string) {
		got := len(flowsOf(t, base, base+n-1))
		return got == n, fmt.Sprintf("%d of %d", got, n)
	})
	after := waitSettled(t, 60*time.Second)
	listed := flowsOf(t, base, base+n-1)
	selected := map[string]v1alpha1.Flow{}
	for name, f := range listed {
		if f.L4.DestinationPort == port {
			selected[name] = f
		}
	}
	var delivered float64
	for i := range sys.Nodes {
		d := after[i].sub(before[i])
		if d.counted() != d.selected || d.results[otlpexport.ResultDelivered] != d.selected {
			t.Errorf("agent %s: %+v: want every selected flow delivered", sys.Nodes[i], d)
		}
		delivered += d.results[otlpexport.ResultDelivered]
	}
	if delivered != float64(len(selected)) {
		t.Errorf("agents delivered %v flows, the policy selects %d listed flows", delivered, len(selected))
	}
	var got map[string]collected
	framework.Eventually(t, 10*time.Second, "the collector to write every selected flow", func() (bool, string) {
		got = collectorRecords(t)
		n := 0
		for name := range selected {
			if _, ok := got[name]; ok {
				n++
			}
		}
		return n == len(selected), fmt.Sprintf("%d of %d", n, len(selected))
	})
	for name, rec := range got {
		f, ok := listed[name]
		if !ok {
			continue // another test's flow
		}
		if f.L4.DestinationPort != port {
			t.Errorf("flow %s not selected (port %d) reached the collector", name, f.L4.DestinationPort)
			continue
		}
		checkRecord(t, &f, rec)
	}
	t.Logf("%d flows replayed, %d selected: all %d received by the collector once", n, len(selected), len(selected))
}

// checkRecord holds a record to the README's mapping of the listed flow.
func checkRecord(t *testing.T, f *v1alpha1.Flow, c collected) {
	t.Helper()
	line, err := format.ExportLine(f)
	if err != nil {
		t.Fatal(err)
	}
	if body := c.record.GetBody().GetStringValue(); body != string(line) {
		t.Errorf("flow %s: body\n%s\nwant the Hubble export line of the listed flow\n%s", f.Name, body, line)
	}
	if c.record.TimeUnixNano != uint64(f.Time.UnixNano()) || c.record.EventName != otlpexport.EventName {
		t.Errorf("flow %s: time %d event %q, want %d %q", f.Name, c.record.TimeUnixNano, c.record.EventName, f.Time.UnixNano(), otlpexport.EventName)
	}
	if c.resource["service.name"] != "flowscope-agent" || c.resource["k8s.node.name"] != f.NodeName {
		t.Errorf("flow %s: resource %v", f.Name, c.resource)
	}
	// The standard attributes, from the flow's own fields.
	transport := map[v1alpha1.Protocol]string{v1alpha1.ProtocolTCP: "tcp", v1alpha1.ProtocolUDP: "udp"}[f.L4.Protocol]
	for k, v := range map[string]string{
		"source.address": f.IP.Source, "destination.address": f.IP.Destination,
		"source.port": strconv.Itoa(int(f.L4.SourcePort)), "destination.port": strconv.Itoa(int(f.L4.DestinationPort)),
		"network.transport": transport, "network.type": "ipv4", "k8s.node.name": f.NodeName,
		"flowscope.verdict": string(f.Verdict), "flowscope.traffic_direction": string(f.TrafficDirection),
		"flowscope.flow.namespace": f.Namespace,
	} {
		if c.attrs[k] != v {
			t.Errorf("flow %s: %s=%q, want %q", f.Name, k, c.attrs[k], v)
		}
	}
	// And every attribute the mapping documents, no more.
	want := map[string]string{}
	for _, kv := range otlpexport.Attributes(nil, f) {
		want[string(kv.Key)] = kv.Value.String()
	}
	if fmt.Sprint(want) != fmt.Sprint(c.attrs) {
		t.Errorf("flow %s: attributes\n%v\nwant\n%v", f.Name, c.attrs, want)
	}
}

// testOutage: the collector stops for 20 s while selected flows keep
// arriving. Each agent counts every selected flow once, delivered or
// dropped; the collector holds exactly the delivered ones; ingest and
// lists go on meanwhile.
func testOutage(t *testing.T) {
	const port, base = 9443, 50000
	const perSecond = 100 // per node
	apply(t, policy("otlp-outage", port))
	waitApplied(t, "otlp-outage")
	before := make([]accounting, len(sys.Nodes))
	for i := range sys.Nodes {
		before[i] = readAccounting(t, i)
	}

	// The feeder appends 2*perSecond flows a second, alternating nodes.
	ctx, stopFeeding := context.WithCancel(context.Background())
	var fed int
	var fedMu sync.Mutex
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			<-tick.C
			fedMu.Lock()
			var seeds []framework.Seed
			for j := 0; j < 2*perSecond/10; j++ {
				seeds = append(seeds, mkFlow(base, fed, port))
				fed++
			}
			fedMu.Unlock()
			sys.Replay(t, seeds...)
		}
	}()
	fedSoFar := func() int { fedMu.Lock(); defer fedMu.Unlock(); return fed }

	time.Sleep(5 * time.Second)
	restart := sys.Stop(t, "otelcol")
	stopped := time.Now()
	// During the outage: a list answers, with every flow fed until 2 s
	// before it.
	time.Sleep(8 * time.Second)
	upTo := fedSoFar()
	time.Sleep(2 * time.Second)
	listStart := time.Now()
	listed := flowsOf(t, base, base+int32(upTo)-1)
	t.Logf("a list during the outage took %v and returned %d flows of the %d fed until 2 s before it",
		time.Since(listStart).Round(time.Millisecond), len(listed), upTo)
	if len(listed) != upTo {
		t.Errorf("a list during the outage returned %d of the %d flows fed until 2 s before it", len(listed), upTo)
	}
	time.Sleep(20*time.Second - time.Since(stopped))
	restart()
	t.Logf("the collector was down for %v", time.Since(stopped).Round(100*time.Millisecond))
	time.Sleep(10 * time.Second)
	stopFeeding()
	wg.Wait()
	total := fedSoFar()

	framework.Eventually(t, 60*time.Second, "every fed flow to be listed", func() (bool, string) {
		got := len(flowsOf(t, base, base+int32(total)-1))
		return got == total, fmt.Sprintf("%d of %d", got, total)
	})
	after := waitSettled(t, 90*time.Second)
	var selected, delivered, dropped float64
	for i := range sys.Nodes {
		d := after[i].sub(before[i])
		t.Logf("agent %s: selected %v, %v", sys.Nodes[i], d.selected, d.results)
		if d.counted() != d.selected {
			t.Errorf("agent %s: %v counted, %v selected", sys.Nodes[i], d.counted(), d.selected)
		}
		selected += d.selected
		delivered += d.results[otlpexport.ResultDelivered]
		dropped += d.counted() - d.results[otlpexport.ResultDelivered]
	}
	if selected != float64(total) {
		t.Errorf("%v flows selected, %d fed", selected, total)
	}
	var received int
	framework.Eventually(t, 10*time.Second, "the collector to hold every delivered flow", func() (bool, string) {
		recs := collectorRecords(t) // fails on a flow received twice
		received = 0
		for name := range flowsOf(t, base, base+int32(total)-1) {
			if _, ok := recs[name]; ok {
				received++
			}
		}
		return float64(received) == delivered, fmt.Sprintf("%d received, %v delivered", received, delivered)
	})
	t.Logf("collector down 20 s under %d flows/s: %d fed and selected, %v delivered (= %d in the collector's file), %v dropped and counted",
		2*perSecond, total, delivered, received, dropped)
	if dropped == 0 {
		t.Errorf("no flow dropped during a 20 s outage with a queue of 1000 and 5 s of retries: the test did not test loss")
	}
}
