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

package disruptive

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/hubble/format"
)

// testWatchCutsOffASlowWatcherWhileOthersKeepUp opens two watches through
// kube-apiserver: one that reads, and a raw one that never reads its body.
// Flows are written until the server cuts the slow one off; the other must
// receive every flow, before and after, and the slow one's stream must end
// with a 429 error event. The reader's latency is logged, not asserted.
func testWatchCutsOffASlowWatcherWhileOthersKeepUp(t *testing.T) {
	const dport = 7103
	port := flagValue(t, commandLine(t, "flowscope-apiserver"), "secure-port")
	cutOff := `flowscope_apiserver_watches_ended_total{reason="slow_watcher"}`
	cutBefore := apiserverMetric(t, port, cutOff)
	selector := fmt.Sprintf("l4.destinationPort=%d", dport)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs := clientset(t)
	l, err := cs.FlowsV1alpha1().Flows("").List(ctx, metav1.ListOptions{FieldSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	w, err := cs.FlowsV1alpha1().Flows("").Watch(ctx, metav1.ListOptions{FieldSelector: selector, ResourceVersion: l.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	reader := &arrivals{at: map[int32]time.Time{}}
	go reader.follow(w)
	slow := unreadWatch(ctx, t, selector, l.ResourceVersion)
	defer slow.Close()

	// Big flows fill the slow watcher's buffers (its socket, kube-apiserver's
	// proxy, the watch's buffer) in a few batches.
	big := pod("shop", "web-big", "web", "10.244.0.99")
	for i := range 30 {
		big.Labels[fmt.Sprintf("flowscope.io/padding-%02d", i)] = strings.Repeat("x", 60)
	}
	const batch = 3000
	sport := int32(43000)
	for n := 0; !metricAbove(t, port, cutOff, cutBefore, 8*time.Second); n++ {
		if n == 4 {
			t.Fatalf("the slow watcher was not cut off after %d flows", n*batch)
		}
		var seeds []seed
		var ports []int32
		for i := range batch {
			node := sys.Nodes[i%2]
			seeds = append(seeds, seed{Node: node, Flow: mkFlow(node, sport, dport, "TCP", "Egress", "Forwarded", big, api1)})
			ports = append(ports, sport)
			sport++
		}
		writeBulk(t, seeds)
		reader.wait(t, ports)
	}

	// The reader keeps receiving promptly after the cut-off.
	var latencies []time.Duration
	for range 5 {
		replay(t, seed{Node: "node-b", Flow: mkFlow("node-b", sport, dport, "TCP", "Egress", "Forwarded", web1, api1)})
		written := time.Now()
		reader.wait(t, []int32{sport})
		latencies = append(latencies, reader.arrival(sport).Sub(written))
		sport++
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("after %d flows and the cut-off, the reader received new flows after %v", sport-43000, latencies)
	if err := reader.failure(); err != nil {
		t.Fatal(err)
	}

	last := lastEvent(t, slow)
	if last.Type != string(watch.Error) || !strings.Contains(string(last.Object.Raw), `"code":429`) {
		t.Errorf("the slow watch ended with %s %s, want an error with code 429", last.Type, last.Object.Raw)
	}
}

// metricAbove waits up to timeout for the apiserver's series to exceed was.
func metricAbove(t *testing.T, port, series string, was float64, timeout time.Duration) bool {
	t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if apiserverMetric(t, port, series) > was {
			return true
		}
	}
	return false
}

// arrivals records when a watch delivers each flow, by source port.
type arrivals struct {
	mu  sync.Mutex
	at  map[int32]time.Time
	err error
}

func (a *arrivals) follow(w watch.Interface) {
	for e := range w.ResultChan() {
		a.mu.Lock()
		if f, ok := e.Object.(*v1alpha1.Flow); ok && e.Type == watch.Added {
			a.at[f.L4.SourcePort] = time.Now()
		} else if a.err == nil {
			a.err = fmt.Errorf("the reading watcher got %s %#v", e.Type, e.Object)
		}
		a.mu.Unlock()
	}
}

func (a *arrivals) arrival(port int32) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.at[port]
}

func (a *arrivals) failure() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// wait waits until every port has arrived.
func (a *arrivals) wait(t *testing.T, ports []int32) {
	t.Helper()
	eventually(t, 60*time.Second, fmt.Sprintf("the reading watcher to receive %d flows", len(ports)), func() (bool, string) {
		if err := a.failure(); err != nil {
			t.Fatal(err)
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		missing := slices.DeleteFunc(slices.Clone(ports), func(p int32) bool { return !a.at[p].IsZero() })
		return len(missing) == 0, fmt.Sprintf("%d missing", len(missing))
	})
}

// writeBulk appends seeds to their nodes' replay files, one write per node.
func writeBulk(t *testing.T, seeds []seed) {
	t.Helper()
	lines := map[string][]string{}
	for _, s := range seeds {
		line, err := format.ExportLine(s.Flow)
		if err != nil {
			t.Fatal(err)
		}
		lines[s.Node] = append(lines[s.Node], string(line))
	}
	for node, ls := range lines {
		appendLines(t, node, ls...)
	}
}

// unreadWatch opens a watch through kube-apiserver as admin over HTTP/1.1
// with a small socket receive buffer, and returns its body unread.
func unreadWatch(ctx context.Context, t *testing.T, selector, rv string) io.ReadCloser {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(sys.Out, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	tlsConfig, err := rest.TLSConfigFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tlsConfig = tlsConfig.Clone()
	tlsConfig.NextProtos = []string{"http/1.1"}
	dialer := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	tr := &http.Transport{DialContext: dialer.DialContext, TLSClientConfig: tlsConfig,
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	q := url.Values{"watch": {"true"}, "resourceVersion": {rv}, "fieldSelector": {selector}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Host+"/apis/flows.flowscope.io/v1alpha1/flows?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+cfg.BearerToken)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("raw watch: %s %s", resp.Status, body)
	}
	return resp.Body
}

// lastEvent reads a watch body to its end and returns its last event.
func lastEvent(t *testing.T, body io.Reader) metav1.WatchEvent {
	t.Helper()
	dec := json.NewDecoder(body)
	var last metav1.WatchEvent
	n := 0
	for {
		var e metav1.WatchEvent
		if err := dec.Decode(&e); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("slow watch, after %d events: %v", n, err)
		}
		last = e
		n++
	}
	t.Logf("the slow watch had %d events buffered", n)
	return last
}
