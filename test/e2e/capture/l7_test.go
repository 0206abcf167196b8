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

package capture

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/grpc/codes"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/test/e2e/framework"
)

// The L7 records of real HTTP/1.1, gRPC, DNS and Kafka traffic (the
// agents run with --l7=all, as make run gives them), compared with what
// flowscope-traffic's clients counted (internal/traffic: Stats.Results).
//
// An exchange between two pods gets one record per observation point with
// a local pod: the client's veth (Egress, the client's namespace and node)
// and the server's (Ingress, the server's). A client counts each of its
// exchanges under an outcome such as "GET /api/orders 200"; outcome() reads
// the same key from a record.

// l7Result and l7Stat are flowscope-traffic's Result and Stats.
type l7Result struct {
	Count        uint64
	MaxRoundTrip time.Duration
}

type l7Stat struct {
	Role, Spec                  string
	Conns, Sent, Recv, Timeouts uint64
	Refused, Errors             uint64
	LastError                   string
	Results                     map[string]l7Result
}

// l7Report is a stats file.
type l7Report struct {
	Name  string
	Time  time.Time
	Stats []l7Stat
}

func (r l7Report) client(spec string) (l7Stat, bool) {
	for _, s := range r.Stats {
		if s.Role == "client" && s.Spec == spec {
			return s, true
		}
	}
	return l7Stat{}, false
}

func readReport(t *testing.T, file string) l7Report {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var r l7Report
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return r
}

// trafficInPod is inPod for the L7 specs: it runs flowscope-traffic in a
// pod's network namespace for d (d == 0: until the test ends) and returns
// its final report.
func trafficInPod(t *testing.T, netns string, d time.Duration, args ...string) l7Report {
	t.Helper()
	dir := t.TempDir()
	statsFile := filepath.Join(dir, "stats.json")
	args = append([]string{"netns", "exec", netns, filepath.Join(sys.Root, "_output/bin/flowscope-traffic"),
		"--start-delay=0", "--report-interval=100ms", "--stats-file=" + statsFile,
		"--dns-table=" + filepath.Join(sys.Out, "pods", "dns-hosts")}, args...)
	cmd := exec.Command("ip", args...)
	out, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if d == 0 {
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return l7Report{}
	}
	time.Sleep(d)
	_ = cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		log, _ := os.ReadFile(out.Name())
		t.Fatalf("flowscope-traffic %v: %v\n%s", args, err, log)
	}
	return readReport(t, statsFile)
}

// outcome is the key under which a client counted a record's exchange,
// e.g. "GET /api/orders 200", "/grpc.health.v1.Health/Check NotFound",
// "udp A web.shop.svc.cluster.local. NOERROR", "produce".
func outcome(f v1alpha1.Flow) string {
	l7 := f.L7
	switch {
	case l7 == nil:
		return ""
	case l7.HTTP != nil:
		return fmt.Sprintf("%s %s %d", l7.HTTP.Method, l7.HTTP.URL, l7.HTTP.Code)
	case l7.GRPC != nil:
		return fmt.Sprintf("/%s/%s %s", l7.GRPC.Service, l7.GRPC.Method, codes.Code(l7.GRPC.StatusCode))
	case l7.DNS != nil:
		proto := "udp"
		if f.L4 != nil && f.L4.Protocol == v1alpha1.ProtocolTCP {
			proto = "tcp"
		}
		rcode, ok := dns.RcodeToString[int(l7.DNS.RCode)]
		if !ok {
			rcode = strconv.Itoa(int(l7.DNS.RCode))
		}
		return fmt.Sprintf("%s %s %s %s", proto, strings.Join(l7.DNS.QTypes, ","), l7.DNS.Query, rcode)
	case l7.Kafka != nil:
		if l7.Kafka.APIKey == "offsets" { // Cilium's name of ListOffsets
			return "listoffsets"
		}
		return l7.Kafka.APIKey
	}
	return string(l7.Type) + " without a body"
}

// tally counts records by outcome.
func tally(fs []v1alpha1.Flow) map[string]uint64 {
	out := map[string]uint64{}
	for _, f := range fs {
		out[outcome(f)]++
	}
	return out
}

// matches compares records counted by outcome with a client's results:
// equal for every outcome, but that failed exchanges ("<outcome> error":
// a Kafka client's long poll cut by its closing) may or may not have
// become records.
func matches(got map[string]uint64, c l7Stat) (bool, string) {
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(got)) {
		want, failed := c.Results[k].Count, c.Results[k+" error"].Count
		if got[k] < want || got[k] > want+failed {
			diffs = append(diffs, fmt.Sprintf("%q: %d records, client %d (+%d failed)", k, got[k], want, failed))
		}
	}
	for k, r := range c.Results {
		if _, ok := got[k]; !ok && !strings.HasSuffix(k, " error") && r.Count > 0 {
			diffs = append(diffs, fmt.Sprintf("%q: no record, client %d", k, r.Count))
		}
	}
	return len(diffs) == 0, strings.Join(diffs, "; ")
}

// checkLatencies verifies every record's latency: set (unless the client
// counts failures of its outcome, which have no response) and no longer
// than the client's longest round trip of that outcome, which it
// measured from before sending the request to after reading the response.
func checkLatencies(t *testing.T, fs []v1alpha1.Flow, c l7Stat) {
	t.Helper()
	for _, f := range fs {
		k := outcome(f)
		r, ok := c.Results[k]
		switch {
		case f.L7.Latency == nil:
			if c.Results[k+" error"].Count == 0 {
				t.Errorf("flow %s (%s): no latency", f.Name, k)
			}
		case !ok:
		case f.L7.Latency.Duration <= 0 || f.L7.Latency.Duration > r.MaxRoundTrip:
			t.Errorf("flow %s (%s): latency %v, the client's longest round trip %v", f.Name, k, f.L7.Latency.Duration, r.MaxRoundTrip)
		}
	}
}

// awaitL7 waits until the L7 records of a destination port, at the
// client's (web-0, node-a) and at the server's (api-0, node-b) veth, each
// count what the client did, checks their ends and latencies, and returns
// them: client side, server side.
func awaitL7(t *testing.T, c l7Stat, port string, proto v1alpha1.Protocol) (client, server []v1alpha1.Flow) {
	t.Helper()
	sides := []struct {
		ns   string
		dir  v1alpha1.TrafficDirection
		node string
	}{{"shop", "Egress", "node-a"}, {"payments", "Ingress", "node-b"}}
	var got [2][]v1alpha1.Flow
	for i, side := range sides {
		framework.Eventually(t, 40*time.Second, fmt.Sprintf("the L7 records of port %s in %s to count the client's %s", port, side.ns, c.Spec), func() (bool, string) {
			got[i] = slices.DeleteFunc(flows(t, "-n", side.ns, "--field-selector", "l4.destinationPort="+port),
				func(f v1alpha1.Flow) bool { return f.L7 == nil })
			ok, diff := matches(tally(got[i]), c)
			return ok, fmt.Sprintf("%d records: %s", len(got[i]), diff)
		})
		checkEnds(t, got[i], side.ns, side.dir, side.node, proto)
		checkLatencies(t, got[i], c)
		for _, f := range got[i] {
			if f.L7.Partial {
				t.Errorf("flow %s (%s) is partial, though its connection was seen whole", f.Name, outcome(f))
			}
		}
	}
	return got[0], got[1]
}

// mustClient returns the one client's stats of a report, with every
// exchange answered.
func mustClient(t *testing.T, r l7Report) l7Stat {
	t.Helper()
	if len(r.Stats) != 1 || r.Stats[0].Role != "client" || r.Stats[0].Sent == 0 || r.Stats[0].Errors+r.Stats[0].Timeouts > 0 {
		t.Fatalf("client stats %+v", r.Stats)
	}
	return r.Stats[0]
}

func count(c l7Stat, k string) int { return int(c.Results[k].Count) }

// awaitL7Ready waits until the agents make L7 records at web-0's veth
// (node-a) and api-0's (node-b) again, from the demo pods' HTTP between
// them: an agent that has just started (an earlier test restarts them)
// serves before it has attached to every veth and opened the L7 gate on
// it, and a connection it joins late makes partial records.
func awaitL7Ready(t *testing.T) {
	t.Helper()
	since := time.Now()
	framework.Eventually(t, 30*time.Second, "L7 records at web-0's and api-0's veths", func() (bool, string) {
		seen := map[string]bool{}
		for _, f := range flows(t, "-A", "--field-selector", "l7.type=HTTP,l4.destinationPort=80,since="+since.Format(time.RFC3339Nano)) {
			if f.Time.After(since) && f.Destination != nil && f.Destination.PodName == "api-0" {
				seen[f.NodeName+" "+string(f.TrafficDirection)] = true
			}
		}
		return seen["node-a Egress"] && seen["node-b Ingress"], fmt.Sprint(seen)
	})
}

func TestL7HTTP(t *testing.T) {
	awaitL7Ready(t)
	trafficInPod(t, framework.DemoAPINetns, 0, "--listen=http:18081")
	time.Sleep(300 * time.Millisecond)
	c := mustClient(t, trafficInPod(t, framework.DemoWebNetns, 3*time.Second, "--connect=http:"+framework.DemoAPIIPv4+":18081", "--interval=100ms"))
	if count(c, "GET /api/orders 200") == 0 || count(c, "POST /api/fail 500") == 0 || count(c, "GET /api/missing 404") == 0 || c.Conns != 1 {
		t.Fatalf("client stats %+v", c)
	}
	client, _ := awaitL7(t, c, "18081", v1alpha1.ProtocolTCP)
	for _, f := range client {
		h := f.L7.HTTP
		if f.L7.Type != v1alpha1.L7TypeHTTP || h == nil || h.Protocol != "HTTP/1.1" || !hasHeader(h.Headers, "User-Agent", "flowscope-traffic") {
			t.Errorf("flow %s: %+v", f.Name, f.L7)
		}
	}
	post := flows(t, "-n", "payments", "--field-selector", "l7.http.method=POST,l4.destinationPort=18081")
	if len(post) != count(c, "POST /api/fail 500") {
		t.Errorf("l7.http.method=POST: %d flows, want %d", len(post), count(c, "POST /api/fail 500"))
	}
	for _, f := range post {
		if outcome(f) != "POST /api/fail 500" {
			t.Errorf("l7.http.method=POST: flow %s is %s", f.Name, outcome(f))
		}
	}
	missing := flows(t, "-n", "shop", "--field-selector", "l7.http.code=404,l4.destinationPort=18081")
	if len(missing) != count(c, "GET /api/missing 404") {
		t.Errorf("l7.http.code=404: %d flows, want %d", len(missing), count(c, "GET /api/missing 404"))
	}
}

func hasHeader(hs []v1alpha1.HTTPHeader, key, value string) bool {
	return slices.ContainsFunc(hs, func(h v1alpha1.HTTPHeader) bool { return strings.EqualFold(h.Key, key) && h.Value == value })
}

func TestL7GRPC(t *testing.T) {
	awaitL7Ready(t)
	trafficInPod(t, framework.DemoAPINetns, 0, "--listen=grpc:15051")
	time.Sleep(300 * time.Millisecond)
	c := mustClient(t, trafficInPod(t, framework.DemoWebNetns, 3*time.Second, "--connect=grpc:"+framework.DemoAPIIPv4+":15051", "--interval=200ms"))
	const check, watch = "/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"
	if n := count(c, check+" OK"); n == 0 || count(c, check+" NotFound") != n || count(c, watch+" Canceled") != n {
		t.Fatalf("client stats %+v", c)
	}
	client, server := awaitL7(t, c, "15051", v1alpha1.ProtocolTCP)
	for _, f := range append(client, server...) {
		if f.L7.Type != v1alpha1.L7TypeGRPC || f.L7.GRPC.Service != "grpc.health.v1.Health" {
			t.Errorf("flow %s: %+v", f.Name, f.L7)
		}
	}
	got := flows(t, "-n", "shop", "--field-selector", "l7.grpc.method=grpc.health.v1.Health/Check,l4.destinationPort=15051")
	if len(got) != 2*count(c, check+" OK") {
		t.Errorf("l7.grpc.method=grpc.health.v1.Health/Check: %d flows, want %d", len(got), 2*count(c, check+" OK"))
	}
}

// dnsHosts reads the demo DNS's names (hack/lib/pods.sh).
func dnsHosts(t *testing.T) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(sys.Out, "pods", "dns-hosts"))
	if err != nil {
		t.Fatal(err)
	}
	h := map[string][]string{}
	for _, l := range strings.Split(string(raw), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && !strings.HasPrefix(f[0], "#") {
			h[f[1]+"."] = append(h[f[1]+"."], f[0])
		}
	}
	return h
}

// checkAnswers verifies that every answered DNS record holds the table's
// addresses of its query and type, and that every NXDOMAIN and SERVFAIL
// is the generators' name for it.
func checkAnswers(t *testing.T, fs []v1alpha1.Flow, hosts map[string][]string) {
	t.Helper()
	for _, f := range fs {
		d := f.L7.DNS
		if f.L7.Type != v1alpha1.L7TypeDNS || d == nil || len(d.QTypes) != 1 {
			t.Errorf("flow %s: %+v", f.Name, f.L7)
			continue
		}
		switch d.RCode {
		case dns.RcodeSuccess:
			var want []string
			for _, ip := range hosts[d.Query] {
				if a := netip.MustParseAddr(ip); a.Is4() == (d.QTypes[0] == "A") {
					want = append(want, a.String())
				}
			}
			if got := slices.Sorted(slices.Values(d.IPs)); len(want) == 0 || !slices.Equal(got, slices.Sorted(slices.Values(want))) || d.TTL != 30 {
				t.Errorf("flow %s: %s %s answered %v (ttl %d), want %v", f.Name, d.QTypes[0], d.Query, d.IPs, d.TTL, want)
			}
		case dns.RcodeNameError, dns.RcodeServerFailure:
			want := map[int32]string{dns.RcodeNameError: "nonexistent.cluster.local.", dns.RcodeServerFailure: "fail.example."}[d.RCode]
			if d.Query != want || len(d.IPs) > 0 {
				t.Errorf("flow %s: %s for %s %v", f.Name, dns.RcodeToString[int(d.RCode)], d.Query, d.IPs)
			}
		default:
			t.Errorf("flow %s: rcode %d for %s", f.Name, d.RCode, d.Query)
		}
	}
}

func TestL7DNS(t *testing.T) {
	awaitL7Ready(t)
	trafficInPod(t, framework.DemoAPINetns, 0, "--listen=dns:15300")
	time.Sleep(300 * time.Millisecond)
	c := mustClient(t, trafficInPod(t, framework.DemoWebNetns, 3*time.Second, "--connect=dns:"+framework.DemoAPIIPv4+":15300", "--interval=100ms"))
	var tcp uint64
	for k, r := range c.Results {
		if strings.HasPrefix(k, "tcp ") {
			tcp += r.Count
		}
	}
	if count(c, "udp A nonexistent.cluster.local. NXDOMAIN") == 0 || count(c, "udp A fail.example. SERVFAIL") == 0 || tcp == 0 {
		t.Fatalf("client stats %+v", c)
	}
	hosts := dnsHosts(t)
	// UDP and TCP records alike: awaitL7 checks l4.protocol through
	// checkEnds, so the two transports are checked apart.
	var all []v1alpha1.Flow
	for _, transport := range []struct {
		prefix string
		proto  v1alpha1.Protocol
	}{{"udp ", v1alpha1.ProtocolUDP}, {"tcp ", v1alpha1.ProtocolTCP}} {
		part := c
		part.Results = maps.Clone(c.Results)
		maps.DeleteFunc(part.Results, func(k string, _ l7Result) bool { return !strings.HasPrefix(k, transport.prefix) })
		client, server := awaitL7Proto(t, part, "15300", transport.proto)
		all = append(all, client...)
		all = append(all, server...)
	}
	checkAnswers(t, all, hosts)
	nx := flows(t, "-n", "shop", "--field-selector", "l7.dns.rcode=3,l4.destinationPort=15300")
	want := count(c, "udp A nonexistent.cluster.local. NXDOMAIN") + count(c, "tcp A nonexistent.cluster.local. NXDOMAIN")
	if len(nx) != want {
		t.Errorf("l7.dns.rcode=3: %d flows, want %d", len(nx), want)
	}
}

// awaitL7Proto is awaitL7 for the records of one transport.
func awaitL7Proto(t *testing.T, c l7Stat, port string, proto v1alpha1.Protocol) (client, server []v1alpha1.Flow) {
	t.Helper()
	sel := "l4.protocol=" + string(proto) + ",l4.destinationPort=" + port
	sides := []struct {
		ns   string
		dir  v1alpha1.TrafficDirection
		node string
	}{{"shop", "Egress", "node-a"}, {"payments", "Ingress", "node-b"}}
	var got [2][]v1alpha1.Flow
	for i, side := range sides {
		framework.Eventually(t, 40*time.Second, fmt.Sprintf("the %s L7 records of port %s in %s to count the client's", proto, port, side.ns), func() (bool, string) {
			got[i] = slices.DeleteFunc(flows(t, "-n", side.ns, "--field-selector", sel),
				func(f v1alpha1.Flow) bool { return f.L7 == nil })
			ok, diff := matches(tally(got[i]), c)
			return ok, fmt.Sprintf("%d records: %s", len(got[i]), diff)
		})
		checkEnds(t, got[i], side.ns, side.dir, side.node, proto)
		checkLatencies(t, got[i], c)
	}
	return got[0], got[1]
}

func TestL7Kafka(t *testing.T) {
	awaitL7Ready(t)
	trafficInPod(t, framework.DemoAPINetns, 0, "--listen=kafka:19092")
	time.Sleep(300 * time.Millisecond)
	c := mustClient(t, trafficInPod(t, framework.DemoWebNetns, 5*time.Second, "--connect=kafka:"+framework.DemoAPIIPv4+":19092", "--interval=200ms"))
	if count(c, "produce") == 0 || count(c, "fetch") == 0 || count(c, "metadata") == 0 || c.Recv == 0 {
		t.Fatalf("client stats %+v", c)
	}
	client, server := awaitL7(t, c, "19092", v1alpha1.ProtocolTCP)
	fetches := 0
	for _, f := range append(client, server...) {
		k := f.L7.Kafka
		if f.L7.Type != v1alpha1.L7TypeKafka || k == nil || k.ClientID != "flowscope-traffic" {
			t.Errorf("flow %s: %+v", f.Name, f.L7)
			continue
		}
		// A fetch in an incremental fetch session names the topics whose
		// partitions changed, in its request or response: often none.
		if (k.APIKey == "produce" || k.APIKey == "metadata" || k.Topic != "") && k.Topic != "orders" {
			t.Errorf("flow %s: %s of topic %q, want orders", f.Name, k.APIKey, k.Topic)
		}
		if k.APIKey == "fetch" && k.Topic == "orders" {
			fetches++
		}
		if k.ErrorCode != 0 && slices.Contains([]string{"produce", "fetch", "metadata"}, k.APIKey) {
			t.Errorf("flow %s: %s error code %d", f.Name, k.APIKey, k.ErrorCode)
		}
	}
	if fetches == 0 {
		t.Error("no fetch of topic orders")
	}
	orders := flows(t, "-n", "payments", "--field-selector", "l7.kafka.topic=orders,l4.destinationPort=19092")
	produce := 0
	for _, f := range orders {
		if f.L7.Kafka.Topic != "orders" {
			t.Errorf("l7.kafka.topic=orders: flow %s of topic %q", f.Name, f.L7.Kafka.Topic)
		}
		if f.L7.Kafka.APIKey == "produce" {
			produce++
		}
	}
	if produce != count(c, "produce") {
		t.Errorf("l7.kafka.topic=orders: %d produce flows, want %d", produce, count(c, "produce"))
	}
}

// TestL7DemoPods checks the L7 records of the demo pods' own traffic
// (hack/lib/pods.sh), what `kubectl get flows -A` shows right after `make
// run`: every protocol is there with the outcomes the generators count,
// and over one report interval of the generators each client's records
// at each end add up to what it counted, within the exchanges in flight
// at the interval's ends.
func TestL7DemoPods(t *testing.T) {
	hosts := dnsHosts(t)
	type want struct {
		sel  string
		desc string
		ok   func(fs []v1alpha1.Flow) bool
	}
	has := func(fs []v1alpha1.Flow, k string) bool {
		return slices.ContainsFunc(fs, func(f v1alpha1.Flow) bool { return outcome(f) == k })
	}
	all := func(fs []v1alpha1.Flow, pred func(v1alpha1.Flow) bool) bool {
		return len(fs) > 0 && !slices.ContainsFunc(fs, func(f v1alpha1.Flow) bool { return !pred(f) })
	}
	for _, w := range []want{
		{"l7.type=HTTP,l7.http.url=/api/orders", "GET /api/orders 200", func(fs []v1alpha1.Flow) bool { return has(fs, "GET /api/orders 200") }},
		{"l7.http.method=POST", "only POSTs, of /api/fail 500", func(fs []v1alpha1.Flow) bool {
			return all(fs, func(f v1alpha1.Flow) bool { return f.L7.HTTP.Method == "POST" }) && has(fs, "POST /api/fail 500")
		}},
		{"l7.http.code=404", "GET /api/missing 404", func(fs []v1alpha1.Flow) bool { return has(fs, "GET /api/missing 404") }},
		{"l7.type=GRPC", "health Check OK and NotFound, Watch", func(fs []v1alpha1.Flow) bool {
			return has(fs, "/grpc.health.v1.Health/Check OK") && has(fs, "/grpc.health.v1.Health/Check NotFound") &&
				slices.ContainsFunc(fs, func(f v1alpha1.Flow) bool { return f.L7.GRPC.Method == "Watch" })
		}},
		{"l7.type=DNS,l7.dns.rcode=0", "NOERROR A and AAAA", func(fs []v1alpha1.Flow) bool {
			return slices.ContainsFunc(fs, func(f v1alpha1.Flow) bool { return slices.Equal(f.L7.DNS.QTypes, []string{"A"}) }) &&
				slices.ContainsFunc(fs, func(f v1alpha1.Flow) bool { return slices.Equal(f.L7.DNS.QTypes, []string{"AAAA"}) })
		}},
		{"l7.dns.rcode=3", "only NXDOMAIN", func(fs []v1alpha1.Flow) bool {
			return all(fs, func(f v1alpha1.Flow) bool { return f.L7.DNS.RCode == dns.RcodeNameError })
		}},
		{"l7.type=DNS,l7.dns.rcode=2", "SERVFAIL", func(fs []v1alpha1.Flow) bool { return len(fs) > 0 }},
		{"l7.kafka.topic=orders", "only topic orders: produce, fetch, metadata", func(fs []v1alpha1.Flow) bool {
			return all(fs, func(f v1alpha1.Flow) bool { return f.L7.Kafka.Topic == "orders" }) &&
				has(fs, "produce") && has(fs, "fetch") && has(fs, "metadata")
		}},
	} {
		var got []v1alpha1.Flow
		framework.Eventually(t, 90*time.Second, fmt.Sprintf("--field-selector %s: %s", w.sel, w.desc), func() (bool, string) {
			got = flows(t, "-A", "--field-selector", w.sel+",since=1m")
			return w.ok(got), fmt.Sprint(tally(got))
		})
		if strings.Contains(w.sel, "DNS") || strings.Contains(w.sel, "dns") {
			checkAnswers(t, got, hosts)
		}
	}

	// One report interval of every demo generator.
	// Each generator writes its first report an interval after it starts,
	// which may be after this test does when it runs first.
	var files []string
	framework.Eventually(t, 60*time.Second, "a report of every demo generator", func() (bool, string) {
		files, _ = filepath.Glob(filepath.Join(sys.Out, "pods", "traffic-*.json"))
		gens, _ := filepath.Glob(filepath.Join(sys.Out, "pids", "traffic-*.pid"))
		return len(files) > 0 && len(files) == len(gens), fmt.Sprintf("%d reports of %d generators", len(files), len(gens))
	})
	var before, after []l7Report
	for _, f := range files {
		before = append(before, readReport(t, f))
	}
	for i, f := range files {
		framework.Eventually(t, 30*time.Second, "the next report of "+f, func() (bool, string) {
			r := readReport(t, f)
			return r.Time.After(before[i].Time), r.Time.String()
		})
		after = append(after, readReport(t, f))
	}
	from := slices.MinFunc(before, func(a, b l7Report) int { return a.Time.Compare(b.Time) }).Time
	to := slices.MaxFunc(after, func(a, b l7Report) int { return a.Time.Compare(b.Time) }).Time
	time.Sleep(3 * time.Second) // the records of the last exchanges

	// The records in the window, by observation point and client spec.
	type key struct {
		dir    v1alpha1.TrafficDirection
		client string // ns/pod
		server string // IP:port as in a spec
	}
	var recs []v1alpha1.Flow
	for _, typ := range v1alpha1.L7Types {
		recs = append(recs, flows(t, "-A", "--field-selector",
			fmt.Sprintf("l7.type=%s,since=%s", typ, from.Add(-10*time.Second).Format(time.RFC3339Nano)))...)
	}
	by := map[key][]v1alpha1.Flow{}
	for _, f := range recs {
		if f.Source == nil || f.L4 == nil || f.IP == nil {
			continue
		}
		server := netip.AddrPortFrom(netip.MustParseAddr(f.IP.Destination), uint16(f.L4.DestinationPort)).String()
		k := key{f.TrafficDirection, f.Source.Namespace + "/" + f.Source.PodName, server}
		by[k] = append(by[k], f)
	}
	checked := 0
	for i, r := range after {
		for _, s := range r.Stats {
			proto, server, _ := strings.Cut(s.Spec, ":")
			if s.Role != "client" || !slices.Contains([]string{"http", "grpc", "dns", "kafka"}, proto) {
				continue
			}
			prev, _ := before[i].client(s.Spec)
			var delta, inFlight uint64
			for k, res := range s.Results {
				if strings.HasSuffix(k, " error") {
					inFlight += res.Count - prev.Results[k].Count
				} else {
					delta += res.Count - prev.Results[k].Count
				}
			}
			// Exchanges in flight at either end of the window, per
			// connection that may have one: one (HTTP, DNS), three calls
			// (gRPC), a request on each of a Kafka client's connections.
			slack := map[string]uint64{"http": 2, "dns": 2, "grpc": 6, "kafka": 8}[proto] + inFlight
			for _, dir := range []v1alpha1.TrafficDirection{"Egress", "Ingress"} {
				var n uint64
				for _, f := range by[key{dir, r.Name, server}] {
					if !f.Time.Time.Before(before[i].Time) && f.Time.Time.Before(r.Time) {
						n++
					}
				}
				if n+slack < delta || n > delta+slack {
					t.Errorf("%s %s: %d %s records from %s to %s, the client counted %d (±%d)", r.Name, s.Spec, n, dir,
						before[i].Time.Format(time.StampMicro), r.Time.Format(time.StampMicro), delta, slack)
				}
				checked++
			}
			// Latencies against the longest round trips up to the end of
			// the window: only the records of the window.
			var window []v1alpha1.Flow
			for _, dir := range []v1alpha1.TrafficDirection{"Egress", "Ingress"} {
				for _, f := range by[key{dir, r.Name, server}] {
					if f.Time.Time.Before(r.Time) && f.L7.Latency != nil && !f.L7.Partial {
						window = append(window, f)
					}
				}
			}
			checkLatencies(t, window, s)
		}
	}
	if checked < 16 {
		t.Errorf("compared %d clients' records at their ends, want the 8 L7 destinations of hack/lib/pods.sh at 2 ends each", checked)
	}
	t.Logf("window %s to %s: %d L7 records, by type %v", from.Format(time.StampMicro), to.Format(time.StampMicro), len(recs), typesOf(recs))
	for i, node := range sys.Nodes {
		var b strings.Builder
		for _, m := range []string{"flowscope_agent_l7_events_total", "flowscope_agent_l7_segments_total", "flowscope_agent_l7_records_total",
			"flowscope_agent_l7_gaps_total", "flowscope_agent_l7_retransmits_total", "flowscope_agent_l7_undetected_connections_total"} {
			fmt.Fprintf(&b, " %s=%v", strings.TrimPrefix(m, "flowscope_agent_"), sys.AgentMetric(t, i, m))
		}
		t.Logf("agent %s:%s", node, b.String())
	}
}

func typesOf(fs []v1alpha1.Flow) map[v1alpha1.L7Type]int {
	out := map[v1alpha1.L7Type]int{}
	for _, f := range fs {
		out[f.L7.Type]++
	}
	return out
}
