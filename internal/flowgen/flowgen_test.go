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

package flowgen

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/follow"
	"flowscope.io/flowscope/nodeagent/hubble/parse"
)

// clock returns a fake clock that advances a millisecond a reading.
func clock() func() time.Time {
	t := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	return func() time.Time {
		t = t.Add(time.Millisecond)
		return t
	}
}

func TestGenerateDeterministic(t *testing.T) {
	a, err := Generate(300, Options{NodeName: "node-a", NodeIndex: -1, Seed: 7, Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Generate(300, Options{NodeName: "node-a", NodeIndex: -1, Seed: 7, Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Generate(300, Options{NodeName: "node-a", NodeIndex: -1, Seed: 8, Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 300 {
		t.Fatalf("%d lines, want 300", len(a))
	}
	if !slices.EqualFunc(a, b, bytes.Equal) {
		t.Error("the same seed gave different lines")
	}
	if slices.EqualFunc(a, c, bytes.Equal) {
		t.Error("different seeds gave the same lines")
	}
	for i, line := range a {
		if bytes.ContainsAny(line, "\r\n") {
			t.Fatalf("line %d holds a newline: %s", i, line)
		}
	}
}

func TestNodeIndex(t *testing.T) {
	for _, name := range []string{"", "node-a", "aks-nodepool1-12345678-vmss000000", strings.Repeat("x", 300)} {
		i := NodeIndexFor(name)
		if i < 1 || i > 250 || i != NodeIndexFor(name) {
			t.Errorf("NodeIndexFor(%q) = %d", name, i)
		}
	}
	tests := []struct {
		opts   Options
		prefix string
	}{
		{Options{NodeName: "n", NodeIndex: 0}, "10.244.0.0/24"},
		{Options{NodeName: "n", NodeIndex: 255}, "10.244.255.0/24"},
		{Options{NodeName: "node-a", NodeIndex: -1}, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(NodeIndexFor("node-a")), 0}), 24).String()},
	}
	for _, tt := range tests {
		g := New(tt.opts)
		for _, p := range []*pod{g.web, g.cart, g.db, g.api, g.prometheus} {
			if prefix := netip.MustParsePrefix(tt.prefix); !prefix.Contains(p.ip) {
				t.Errorf("%+v: pod %s/%s at %s, want in %s", tt.opts, p.namespace, p.name, p.ip, prefix)
			}
		}
		for _, p := range []*pod{g.remoteWeb, g.remoteCart, g.remoteAPI} {
			if p.ip.As4()[2] == g.web.ip.As4()[2] {
				t.Errorf("%+v: remote pod %s on the local node", tt.opts, p.name)
			}
		}
	}
}

// TestGenerateRealistic parses a long run of generated lines and checks
// the traffic the package documents is there, as Flowscope sees it.
func TestGenerateRealistic(t *testing.T) {
	const node, index = "node-a", 7
	lines, err := Generate(3000, Options{NodeName: node, NodeIndex: index, Seed: 1, Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	local := netip.MustParsePrefix("10.244.7.0/24")
	seen := map[string]int{}
	var flows []*v1alpha1.Flow
	for i, line := range lines {
		f, err := parse.ExportLine(line, parse.Options{AgentNamespace: "flowscope"})
		if err != nil {
			t.Fatalf("line %d: %v\n%s", i, err, line)
		}
		flows = append(flows, f)
		if f.NodeName != node {
			t.Errorf("line %d: node %q", i, f.NodeName)
		}
		switch f.Namespace {
		case "shop", "payments", "monitoring":
			// The observed pod is on this node.
			var e *v1alpha1.Endpoint
			for _, end := range []*v1alpha1.Endpoint{f.Source, f.Destination} {
				if end != nil && end.Namespace == f.Namespace && end.PodName != "" && local.Contains(netip.MustParseAddr(end.IP)) {
					e = end
				}
			}
			if e == nil {
				t.Errorf("line %d: no local pod in namespace %s: %s", i, f.Namespace, line)
			}
		case "flowscope":
		default:
			t.Errorf("line %d: namespace %q", i, f.Namespace)
		}
		for _, end := range []*v1alpha1.Endpoint{f.Source, f.Destination} {
			if end.PodName != "" && len(end.Workloads) != 1 {
				t.Errorf("line %d: pod %s with workloads %v", i, end.PodName, end.Workloads)
			}
		}

		switch {
		case f.Verdict == v1alpha1.VerdictDropped && f.DropReason == "POLICY_DENIED" &&
			f.Source.Namespace == "monitoring" && f.Destination.Namespace == "payments" && f.L4.DestinationPort == 5432:
			seen["monitoring to payments:5432 dropped"]++
			if f.Namespace != "payments" || f.TrafficDirection != v1alpha1.TrafficDirectionIngress || f.IsReply != nil {
				t.Errorf("line %d: policy drop seen as %s %s", i, f.Namespace, f.TrafficDirection)
			}
		case f.Verdict == v1alpha1.VerdictDropped && f.Destination.PodName == "":
			seen["drop to the world"]++
		case f.L7 != nil && f.L7.Type == v1alpha1.L7TypeDNS:
			if f.L4.Protocol != v1alpha1.ProtocolUDP {
				t.Errorf("line %d: DNS over %s", i, f.L4.Protocol)
			}
			server := f.Destination
			if *f.IsReply {
				server = f.Source
				seen["DNS answer"]++
				if f.L7.Latency == nil {
					t.Errorf("line %d: DNS answer without latency", i)
				}
			} else {
				seen["DNS query"]++
			}
			if server.IP != "10.96.0.10" || server.Port != 53 || server.Service != "kube-dns" {
				t.Errorf("line %d: DNS server %+v", i, server)
			}
		case f.L7 != nil && f.L7.Type == v1alpha1.L7TypeHTTP:
			server := f.Destination
			if *f.IsReply {
				server = f.Source
				seen["HTTP response"]++
				if f.L7.HTTP.Code == 0 || f.L7.Latency == nil {
					t.Errorf("line %d: HTTP response without code or latency", i)
				}
			} else {
				seen["HTTP request"]++
			}
			if !strings.HasPrefix(server.PodName, "web-") || server.Port != 8080 || f.Namespace != "shop" {
				t.Errorf("line %d: HTTP server %+v seen in %s", i, server, f.Namespace)
			}
		case f.L4.Protocol == v1alpha1.ProtocolICMPv4:
			seen["ICMP"]++
		case f.Source.PodName == "" || f.Destination.PodName == "":
			seen["world"]++
		default:
			seen["pod to pod"]++
		}
	}
	for _, want := range []string{"monitoring to payments:5432 dropped", "drop to the world", "DNS query", "DNS answer",
		"HTTP request", "HTTP response", "ICMP", "world", "pod to pod"} {
		if seen[want] == 0 {
			t.Errorf("no %s in %d flows: %v", want, len(lines), seen)
		}
	}
	// A packet between two pods here is recorded at the client's egress,
	// then at the server's ingress.
	var both int
	for i := 1; i < len(flows); i++ {
		e, in := flows[i-1], flows[i]
		if e.TrafficDirection != v1alpha1.TrafficDirectionEgress || in.TrafficDirection != v1alpha1.TrafficDirectionIngress ||
			*e.IP != *in.IP || e.L4.SourcePort != in.L4.SourcePort || e.L4.DestinationPort != in.L4.DestinationPort {
			continue
		}
		both++
		client, server := e.Source, e.Destination
		if *e.IsReply {
			client, server = server, client
		}
		if e.Namespace != client.Namespace || in.Namespace != server.Namespace || !slices.Equal(e.L4.TCPFlags, in.L4.TCPFlags) ||
			in.Time.Sub(e.Time.Time).Abs() > time.Millisecond || in.Time.Before(&e.Time) {
			t.Errorf("flows %d and %d: not one packet seen at both ends:\n%s\n%s", i-1, i, lines[i-1], lines[i])
		}
	}
	if both == 0 {
		t.Error("no pod-to-pod flow seen at both ends")
	}
	t.Logf("%v, %d connections seen at both ends", seen, both)
}

// countingWriter records each Write.
type countingWriter struct {
	mu     sync.Mutex
	writes [][]byte
	err    error
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

func (w *countingWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.writes)
}

func TestWriteLines(t *testing.T) {
	t.Run("a line a write", func(t *testing.T) {
		w := &countingWriter{}
		if err := WriteLines(context.Background(), w, New(Options{NodeName: "n", Seed: 1}), 5000, 25); err != nil {
			t.Fatal(err)
		}
		if len(w.writes) != 25 {
			t.Fatalf("%d writes, want 25", len(w.writes))
		}
		for i, b := range w.writes {
			if bytes.IndexByte(b, '\n') != len(b)-1 {
				t.Errorf("write %d is not one line: %q", i, b)
			}
			if _, err := parse.ExportLine(b, parse.Options{}); err != nil {
				t.Errorf("write %d: %v", i, err)
			}
		}
	})
	t.Run("paced", func(t *testing.T) {
		start := time.Now()
		if err := WriteLines(context.Background(), &countingWriter{}, New(Options{NodeName: "n"}), 50, 6); err != nil {
			t.Fatal(err)
		}
		// Lines at 0, 20, ..., 100ms.
		if d := time.Since(start); d < 90*time.Millisecond || d > 2*time.Second {
			t.Errorf("6 lines at 50/s took %v", d)
		}
	})
	t.Run("until cancelled", func(t *testing.T) {
		w := &countingWriter{}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- WriteLines(ctx, w, New(Options{NodeName: "n"}), 1000, 0) }()
		deadline := time.Now().Add(5 * time.Second)
		for w.count() < 50 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("WriteLines returned %v", err)
		}
	})
	t.Run("write error", func(t *testing.T) {
		w := &countingWriter{err: errors.New("disk full")}
		err := WriteLines(context.Background(), w, New(Options{NodeName: "n"}), 10, 1)
		if err == nil || err.Error() != "write flow: disk full" {
			t.Errorf("WriteLines returned %v", err)
		}
	})
	t.Run("bad rate", func(t *testing.T) {
		if err := WriteLines(context.Background(), &countingWriter{}, New(Options{}), 0, 1); err == nil {
			t.Error("rate 0 accepted")
		}
	})
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
		want    Config
	}{
		{
			name: "defaults",
			args: []string{"--node-name=node-a"},
			want: Config{NodeName: "node-a", NodeIndex: -1, Out: "-", Rate: 2},
		},
		{
			name: "all flags",
			args: []string{"--node-name", "node-b", "--node-index", "3", "--out", "/tmp/x.log", "--rate", "0.5",
				"--count", "10", "--seed", "42"},
			want: Config{NodeName: "node-b", NodeIndex: 3, Out: "/tmp/x.log", Rate: 0.5, Count: 10, Seed: 42},
		},
		{
			name: "bad values",
			args: []string{"--node-name=", "--node-index=256", "--rate=0", "--count=-1", "--out="},
			wantErr: "--node-name must not be empty\n--node-index 256 is not between 0 and 255\n" +
				"--rate 0 is not between 0 (excluded) and 1000000\n--count -1 is negative\n--out must not be empty",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			fs := flag.NewFlagSet("flowgen", flag.ContinueOnError)
			c.AddFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Errorf("Validate: %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c != tt.want {
				t.Errorf("config %+v, want %+v", c, tt.want)
			}
		})
	}
}

// TestRunFollowed runs the generator into a file that a follow.Follower
// follows, as the agent does, and parses every line it delivers.
func TestRunFollowed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.log")
	if err := os.WriteFile(path, []byte("{\"lost_events\":{}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var flows, other int
	var parseErrs []error
	follower := follow.New(path, follow.WithPollInterval(2*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	followed := make(chan error, 1)
	// Deferred before the mu.Unlock below, so it runs after it: a line
	// being handled can take mu.
	defer func() {
		cancel()
		if err := <-followed; !errors.Is(err, context.Canceled) {
			t.Errorf("the follower's Run returned %v, want %v", err, context.Canceled)
		}
	}()
	go func() {
		followed <- follower.Run(ctx, func(line []byte) {
			mu.Lock()
			defer mu.Unlock()
			switch _, err := parse.ExportLine(line, parse.Options{}); {
			case err == nil:
				flows++
			case errors.Is(err, parse.ErrNotAFlow):
				other++
			default:
				parseErrs = append(parseErrs, err)
			}
		})
	}()
	if err := Run(ctx, Config{NodeName: "node-a", NodeIndex: -1, Out: path, Rate: 2000, Count: 200, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := flows
		mu.Unlock()
		if n == 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if flows != 200 || other != 1 || len(parseErrs) > 0 {
		t.Errorf("%d flows, %d other lines, errors %v", flows, other, parseErrs)
	}
}

func TestRunErrors(t *testing.T) {
	err := Run(context.Background(), Config{NodeName: "n", Out: filepath.Join(t.TempDir(), "no", "dir"), Rate: 1, Count: 1})
	if err == nil || !strings.Contains(err.Error(), "no such file or directory") {
		t.Errorf("Run: %v", err)
	}
	if err := Run(context.Background(), Config{}); err == nil {
		t.Error("Run accepted an empty config")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Run(ctx, Config{NodeName: "n", Out: filepath.Join(t.TempDir(), "x"), Rate: 1}); err != nil {
		t.Errorf("Run cancelled: %v, want nil", err)
	}
}
