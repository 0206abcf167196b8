package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/hubble/format"
)

// A seeded flow is identified by its source port, unique across the suite.
type seed struct {
	node      string
	sport     int32
	namespace string // expected metadata.namespace
	flow      *v1alpha1.Flow
}

func pod(ns, name, app, ip string) *v1alpha1.Endpoint {
	return &v1alpha1.Endpoint{Namespace: ns, PodName: name, IP: ip, Labels: map[string]string{"app": app},
		Workloads: []v1alpha1.Workload{{Kind: "Deployment", Name: app}}}
}

func host(ip string) *v1alpha1.Endpoint { return &v1alpha1.Endpoint{IP: ip} }

func mkFlow(node string, sport, dport int32, proto v1alpha1.Protocol, dir v1alpha1.TrafficDirection, verdict v1alpha1.Verdict, src, dst *v1alpha1.Endpoint) *v1alpha1.Flow {
	f := &v1alpha1.Flow{
		Time:             metav1.NewMicroTime(time.Now()),
		NodeName:         node,
		Verdict:          verdict,
		TrafficDirection: dir,
		IP:               &v1alpha1.IP{Source: src.IP, Destination: dst.IP, IPVersion: v1alpha1.IPv4},
		L4:               &v1alpha1.Layer4{Protocol: proto, SourcePort: sport, DestinationPort: dport},
		Source:           src,
		Destination:      dst,
	}
	if proto == v1alpha1.ProtocolTCP {
		f.L4.TCPFlags = []string{"SYN"}
	}
	if verdict == v1alpha1.VerdictDropped {
		f.DropReason = "POLICY_DENIED"
	}
	return f
}

var (
	web1  = pod("shop", "web-1", "web", "10.244.0.11")
	web2  = pod("shop", "web-2", "web", "10.244.1.12")
	cart1 = pod("shop", "cart-1", "cart", "10.244.0.13")
	db0   = pod("shop", "db-0", "db", "10.244.0.14")
	api1  = pod("payments", "api-1", "api", "10.244.1.21")
	prom0 = pod("monitoring", "prom-0", "prometheus", "10.244.0.31")
)

// baseSeeds are the flows every selector test reasons about.
func baseSeeds() []seed {
	return []seed{
		{"node-a", 40001, "shop", mkFlow("node-a", 40001, 8080, "TCP", "Egress", "Forwarded", web1, api1)},
		{"node-b", 40002, "payments", mkFlow("node-b", 40002, 8080, "TCP", "Ingress", "Forwarded", web1, api1)},
		{"node-a", 40003, "shop", mkFlow("node-a", 40003, 5432, "TCP", "Egress", "Dropped", cart1, db0)},
		{"node-a", 40004, "monitoring", mkFlow("node-a", 40004, 9090, "TCP", "Egress", "Forwarded", prom0, api1)},
		{"node-a", 40005, "shop", mkFlow("node-a", 40005, 443, "TCP", "Ingress", "Forwarded", host("1.2.3.4"), web1)},
		{"node-a", 40006, "flowscope-system", mkFlow("node-a", 40006, 22, "TCP", "Egress", "Forwarded", host("10.0.0.5"), host("10.0.0.6"))},
		{"node-b", 40007, "payments", mkFlow("node-b", 40007, 53, "UDP", "Egress", "Forwarded", api1, host("10.96.0.10"))},
		{"node-b", 40008, "shop", mkFlow("node-b", 40008, 8080, "TCP", "Egress", "Forwarded", web2, api1)},
	}
}

var replayMu sync.Mutex

// appendLines appends raw lines to a node's replay file.
func appendLines(t *testing.T, node string, lines ...string) {
	t.Helper()
	replayMu.Lock()
	defer replayMu.Unlock()
	f, err := os.OpenFile(filepath.Join(sys.Out, "replay", node+".jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(strings.Join(lines, "\n") + "\n"); err != nil {
		t.Fatal(err)
	}
}

// replay appends seeds as Hubble export lines to their nodes' files.
func replay(t *testing.T, seeds ...seed) {
	t.Helper()
	for _, s := range seeds {
		line, err := format.ExportLine(s.flow)
		if err != nil {
			t.Fatal(err)
		}
		appendLines(t, s.node, string(line))
	}
}

var seedOnce sync.Once

// seedBase replays the base flows once and waits until all are listed.
func seedBase(t *testing.T) []seed {
	t.Helper()
	seeds := baseSeeds()
	seedOnce.Do(func() { replay(t, seeds...) })
	want := sports(seeds)
	eventually(t, 30*time.Second, "the seeded flows to be listed", func() (bool, string) {
		got, err := listSports("", "-A")
		return err == nil && slices.Equal(inRange(got, 40001, 40099), want), fmt.Sprint(got, err)
	})
	return seeds
}

func sports(seeds []seed) []int32 {
	var out []int32
	for _, s := range seeds {
		out = append(out, s.sport)
	}
	slices.Sort(out)
	return out
}

func inRange(ports []int32, lo, hi int32) []int32 {
	var out []int32
	for _, p := range ports {
		if p >= lo && p <= hi {
			out = append(out, p)
		}
	}
	return out
}

// listSports lists flows with kubectl as user and returns their source
// ports, sorted.
func listSports(user string, args ...string) ([]int32, error) {
	args = append([]string{"get", "flows", "-o", `jsonpath={range .items[*]}{.l4.sourcePort}{"\n"}{end}`}, args...)
	out, stderr, err := kubectlAs(user, args...)
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, stderr)
	}
	var ports []int32
	for _, l := range strings.Fields(out) {
		p, err := strconv.ParseInt(l, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("bad port %q", l)
		}
		ports = append(ports, int32(p))
	}
	slices.Sort(ports)
	return ports, nil
}
