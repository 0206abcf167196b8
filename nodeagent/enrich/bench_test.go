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

package enrich

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/fake"
	metadatafake "k8s.io/client-go/metadata/fake"
	"k8s.io/client-go/tools/cache"
)

const benchPods = 10000

// benchEnricher returns an Enricher holding benchPods pods, their
// ReplicaSets, a service per 100 pods and 100 nodes, fed through the
// handlers as the informers would.
func benchEnricher(b *testing.B) *Enricher {
	b.Helper()
	e := New(fake.NewClientset(), metadatafake.NewSimpleMetadataClient(metadatafake.NewTestScheme()), Options{NodeName: "node-1"})
	setRS, _ := e.ownerHandlers("ReplicaSet")
	for i := range benchPods {
		p := fullPod(i)
		e.setPod(trimPod(p))
		if i%100 == 0 {
			ref := p.OwnerReferences[0]
			rs := metaObject("apps/v1", "ReplicaSet", p.Namespace, ref.Name, controllerRef("apps/v1", "Deployment", p.Labels["app"]))
			rs.UID = ref.UID
			setRS(rs)
			e.setService(newService(p.Namespace, p.Labels["app"], fmt.Sprintf("10.96.%d.%d", i>>8&0xff, i&0xff)))
		}
		e.setSlice(newSlice(p.Namespace, p.Name, p.Labels["app"], []int32{8080}, p.Status.PodIP))
	}
	for i := range 100 {
		e.setNode(newNode(fmt.Sprintf("node-%d", i), fmt.Sprintf("10.0.%d.1", i)))
	}
	return e
}

// BenchmarkEndpoint measures lookups on the hot path:
//
//	go test ./nodeagent/enrich -run '^$' -bench Endpoint -benchmem
func BenchmarkEndpoint(b *testing.B) {
	e := benchEnricher(b)
	for _, bc := range []struct {
		name string
		ip   netip.Addr
		port uint16
		kind Kind
	}{
		{"pod", netip.MustParseAddr(fullPod(4242).Status.PodIP), 8080, KindPod},
		{"pod-ipv6", netip.MustParseAddr(fullPod(4242).Status.PodIPs[1].IP), 40000, KindPod},
		{"service", netip.MustParseAddr("10.96.0.100"), 80, KindService},
		{"host", netip.MustParseAddr("10.0.1.1"), 10250, KindHost},
		{"remote-node", netip.MustParseAddr("10.0.2.1"), 10250, KindRemoteNode},
		{"world", netip.MustParseAddr("203.0.113.9"), 443, KindWorld},
	} {
		if _, kind := e.Endpoint(bc.ip, bc.port); kind != bc.kind {
			b.Fatalf("%s: kind %v, want %v", bc.name, kind, bc.kind)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				e.Endpoint(bc.ip, bc.port)
			}
		})
		b.Run(bc.name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					e.Endpoint(bc.ip, bc.port)
				}
			})
		})
	}
}

// TestEndpointAllocs pins that lookups of known addresses do not allocate.
func TestEndpointAllocs(t *testing.T) {
	e := New(fake.NewClientset(), metadatafake.NewSimpleMetadataClient(metadatafake.NewTestScheme()), Options{NodeName: localNode})
	for _, o := range clusterObjects() {
		switch o := o.(type) {
		case *corev1.Pod:
			e.setPod(trimPod(o))
		case *corev1.Service:
			e.setService(o)
		case *corev1.Node:
			e.setNode(o)
		}
	}
	for _, ip := range []string{"10.1.0.5", "fd00:1::5", "10.96.0.10", "10.0.0.1", "10.0.0.2"} {
		addr := netip.MustParseAddr(ip)
		if n := testing.AllocsPerRun(100, func() { e.Endpoint(addr, 8080) }); n != 0 {
			t.Errorf("Endpoint(%s) allocates %v times", ip, n)
		}
		if n := testing.AllocsPerRun(100, func() { e.LocalPod(addr) }); n != 0 {
			t.Errorf("LocalPod(%s) allocates %v times", ip, n)
		}
	}
}

// BenchmarkPodMemory measures the heap retained per pod: by an informer
// store of full pods (what an untrimmed informer keeps), and by a store of
// trimmed pods plus the index (what an Enricher keeps):
//
//	go test ./nodeagent/enrich -run '^$' -bench PodMemory -benchtime 3x
func BenchmarkPodMemory(b *testing.B) {
	var full, trimmed float64
	for b.Loop() {
		full += retained(func() any {
			store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
			for i := range benchPods {
				if err := store.Add(fullPod(i)); err != nil {
					b.Fatal(err)
				}
			}
			return store
		})
		trimmed += retained(func() any {
			e := New(fake.NewClientset(), metadatafake.NewSimpleMetadataClient(metadatafake.NewTestScheme()), Options{})
			store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
			for i := range benchPods {
				p, _ := trim(fullPod(i))
				if err := store.Add(p); err != nil {
					b.Fatal(err)
				}
				e.setPod(p)
			}
			return []any{store, e}
		})
	}
	b.ReportMetric(full/float64(b.N)/benchPods, "full-B/pod")
	b.ReportMetric(trimmed/float64(b.N)/benchPods, "trimmed+index-B/pod")
}

// retained returns how many heap bytes what build returns keeps alive.
func retained(build func() any) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v := build()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(v)
	return float64(after.HeapAlloc) - float64(before.HeapAlloc)
}
