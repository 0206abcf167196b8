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
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/generated/clientset/versioned"
)

// testWatchReplicasServeInterchangeableResourceVersions starts a second
// flowscope-apiserver with the first one's flags on another port, as a
// second replica behind the Service would run, and talks to it directly
// the way kube-apiserver's aggregator does. A resourceVersion listed on
// either replica starts a watch on the other that replays exactly the
// flows that followed it, in order.
func testWatchReplicasServeInterchangeableResourceVersions(t *testing.T) {
	const dport = 7102
	replica1 := clientset(t) // through kube-apiserver and the APIService
	replica2 := startReplica(t)
	selector := fmt.Sprintf("l4.destinationPort=%d", dport)

	seeds, ports := flowsTo(dport, 42000, 4)
	replay(t, seeds...)
	eventually(t, 30*time.Second, "the first flows to be listed", func() (bool, string) {
		got := sortedValues(destinationPortFlows(t, replica1, dport))
		return slices.Equal(got, ports), fmt.Sprint(got)
	})
	for i, c := range []struct {
		name        string
		list, watch versioned.Interface
	}{
		{"listed on replica 1, watched on replica 2", replica1, replica2},
		{"listed on replica 2, watched on replica 1", replica2, replica1},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			l, err := c.list.FlowsV1alpha1().Flows("").List(ctx, metav1.ListOptions{FieldSelector: selector})
			if err != nil {
				t.Fatal(err)
			}
			after, want := flowsTo(dport, int32(42100+100*i), 6)
			replay(t, after...)
			eventually(t, 30*time.Second, "the new flows to be listed", func() (bool, string) {
				got := sortedValues(destinationPortFlows(t, c.list, dport))
				return containsAll(got, want), fmt.Sprint(got)
			})
			// A flow written once the others are committed closes the
			// replay: everything before it has a smaller version.
			end := int32(42199 + 100*i)
			replay(t, seed{Node: "node-a", Sport: end, Flow: mkFlow("node-a", end, dport, "TCP", "Egress", "Forwarded", web1, api1)})

			w, err := c.watch.FlowsV1alpha1().Flows("").Watch(ctx, metav1.ListOptions{FieldSelector: selector, ResourceVersion: l.ResourceVersion})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			got := replayedUntil(t, w, end)
			if !slices.Equal(got, want) {
				t.Errorf("watch from %s replayed %v, want exactly the flows written after it %v", l.ResourceVersion, got, want)
			}
		})
	}
}

func containsAll(have, want []int32) bool {
	for _, p := range want {
		if !slices.Contains(have, p) {
			return false
		}
	}
	return true
}

// replayedUntil reads flows off w until the one with source port end, and
// returns the source ports before it, sorted; it fails on an error or a
// version that goes back.
func replayedUntil(t *testing.T, w watch.Interface, end int32) []int32 {
	t.Helper()
	var ports []int32
	var last uint64
	for e := range w.ResultChan() {
		f, ok := e.Object.(*v1alpha1.Flow)
		if e.Type != watch.Added || !ok {
			t.Fatalf("event %s %#v", e.Type, e.Object)
		}
		rv, _ := strconv.ParseUint(f.ResourceVersion, 10, 64)
		if rv <= last {
			t.Errorf("flow %s (rv %d) after rv %d", f.Name, rv, last)
		}
		last = rv
		if f.L4.SourcePort == end {
			slices.Sort(ports)
			return ports
		}
		ports = append(ports, f.L4.SourcePort)
	}
	t.Fatalf("watch ended before flow %d; got %v", end, ports)
	return nil
}

// startReplica starts a second flowscope-apiserver with the first one's
// command line on a free port, stops it when the test ends, and returns a
// client of it once it lists flows.
func startReplica(t *testing.T) versioned.Interface {
	t.Helper()
	port := freePort(t)
	args := commandLine(t, "flowscope-apiserver")
	for i, a := range args {
		if strings.HasPrefix(a, "--secure-port=") {
			args[i] = "--secure-port=" + port
		}
	}
	const name = "flowscope-apiserver-replica"
	cmd, exited := sys.Spawn(t, name, args)
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	})
	cfg := frontProxyConfig(port)
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Ready means it has read the agents' Leases.
	eventually(t, 60*time.Second, "the second replica to be ready", func() (bool, string) {
		select {
		case <-exited:
			t.Fatalf("the second replica exited; see %s", filepath.Join(sys.Out, "logs", name+".log"))
		default:
		}
		resp, err := hc.Get(cfg.Host + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	cs, err := versioned.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}
