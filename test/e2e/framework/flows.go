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

package framework

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/generated/clientset/versioned"
	"flowscope.io/flowscope/nodeagent/hubble/format"
)

// Seed is a flow a suite replays into a node's Hubble export file. A
// seeded flow is identified by its source port, unique across a suite.
type Seed struct {
	Node      string
	Sport     int32
	Namespace string // expected metadata.namespace
	Flow      *v1alpha1.Flow
}

// Pod is an endpoint of a Deployment's pod, labelled app=app.
func Pod(ns, name, app, ip string) *v1alpha1.Endpoint {
	return &v1alpha1.Endpoint{Namespace: ns, PodName: name, IP: ip, Labels: map[string]string{"app": app},
		Workloads: []v1alpha1.Workload{{Kind: "Deployment", Name: app}}}
}

// Host is an endpoint outside the cluster's pods.
func Host(ip string) *v1alpha1.Endpoint { return &v1alpha1.Endpoint{IP: ip} }

// MkFlow makes a flow observed now on node.
func MkFlow(node string, sport, dport int32, proto v1alpha1.Protocol, dir v1alpha1.TrafficDirection, verdict v1alpha1.Verdict, src, dst *v1alpha1.Endpoint) *v1alpha1.Flow {
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

// The pods of the seeded flows.
var (
	Web1  = Pod("shop", "web-1", "web", "10.244.0.11")
	Web2  = Pod("shop", "web-2", "web", "10.244.1.12")
	Cart1 = Pod("shop", "cart-1", "cart", "10.244.0.13")
	DB0   = Pod("shop", "db-0", "db", "10.244.0.14")
	API1  = Pod("payments", "api-1", "api", "10.244.1.21")
	Prom0 = Pod("monitoring", "prom-0", "prometheus", "10.244.0.31")
)

// BaseSeeds are the flows every selector test reasons about, source ports
// 40001 to 40008.
func BaseSeeds() []Seed {
	return []Seed{
		{"node-a", 40001, "shop", MkFlow("node-a", 40001, 8080, "TCP", "Egress", "Forwarded", Web1, API1)},
		{"node-b", 40002, "payments", MkFlow("node-b", 40002, 8080, "TCP", "Ingress", "Forwarded", Web1, API1)},
		{"node-a", 40003, "shop", MkFlow("node-a", 40003, 5432, "TCP", "Egress", "Dropped", Cart1, DB0)},
		{"node-a", 40004, "monitoring", MkFlow("node-a", 40004, 9090, "TCP", "Egress", "Forwarded", Prom0, API1)},
		{"node-a", 40005, "shop", MkFlow("node-a", 40005, 443, "TCP", "Ingress", "Forwarded", Host("1.2.3.4"), Web1)},
		{"node-a", 40006, "flowscope-system", MkFlow("node-a", 40006, 22, "TCP", "Egress", "Forwarded", Host("10.0.0.5"), Host("10.0.0.6"))},
		{"node-b", 40007, "payments", MkFlow("node-b", 40007, 53, "UDP", "Egress", "Forwarded", API1, Host("10.96.0.10"))},
		{"node-b", 40008, "shop", MkFlow("node-b", 40008, 8080, "TCP", "Egress", "Forwarded", Web2, API1)},
	}
}

// AppendLines appends raw lines to a node's replay file.
func (s *System) AppendLines(t *testing.T, node string, lines ...string) {
	t.Helper()
	s.replayMu.Lock()
	defer s.replayMu.Unlock()
	f, err := os.OpenFile(filepath.Join(s.Out, "replay", node+".jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(strings.Join(lines, "\n") + "\n"); err != nil {
		t.Fatal(err)
	}
}

// Replay appends seeds as Hubble export lines to their nodes' files.
func (s *System) Replay(t *testing.T, seeds ...Seed) {
	t.Helper()
	for _, sd := range seeds {
		line, err := format.ExportLine(sd.Flow)
		if err != nil {
			t.Fatal(err)
		}
		s.AppendLines(t, sd.Node, string(line))
	}
}

// SeedBase replays the base flows once per system and waits until all are
// listed.
func (s *System) SeedBase(t *testing.T) []Seed {
	t.Helper()
	seeds := BaseSeeds()
	s.seedOnce.Do(func() { s.Replay(t, seeds...) })
	want := Sports(seeds)
	Eventually(t, 30*time.Second, "the seeded flows to be listed", func() (bool, string) {
		got, err := s.ListSports("", "-A")
		return err == nil && slices.Equal(InRange(got, 40001, 40099), want), fmt.Sprint(got, err)
	})
	return seeds
}

// Sports returns the seeds' source ports, sorted.
func Sports(seeds []Seed) []int32 {
	var out []int32
	for _, s := range seeds {
		out = append(out, s.Sport)
	}
	slices.Sort(out)
	return out
}

// InRange returns the ports from lo to hi.
func InRange(ports []int32, lo, hi int32) []int32 {
	var out []int32
	for _, p := range ports {
		if p >= lo && p <= hi {
			out = append(out, p)
		}
	}
	return out
}

// ListSports lists flows with kubectl as user and returns their source
// ports, sorted.
func (s *System) ListSports(user string, args ...string) ([]int32, error) {
	args = append([]string{"get", "flows", "-o", `jsonpath={range .items[*]}{.l4.sourcePort}{"\n"}{end}`}, args...)
	out, stderr, err := s.KubectlAs(user, args...)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, stderr)
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

// Clientset returns a client of the flows API through kube-apiserver, as
// admin.
func (s *System) Clientset(t *testing.T) versioned.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(s.Out, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := versioned.NewForConfig(rest.CopyConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// ListAll lists every flow opts select, page by page: the server caps a
// page (--max-list-page), so a list that wants everything follows the
// continue token. The list's resourceVersion is the first page's.
func ListAll(ctx context.Context, cs versioned.Interface, ns string, opts metav1.ListOptions) (*v1alpha1.FlowList, error) {
	var all *v1alpha1.FlowList
	for {
		l, err := cs.FlowsV1alpha1().Flows(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		if all == nil {
			all = l
		} else {
			all.Items = append(all.Items, l.Items...)
		}
		if l.Continue == "" {
			all.Continue = ""
			return all, nil
		}
		opts.Continue = l.Continue
	}
}
