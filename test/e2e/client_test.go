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

package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	clientfeatures "k8s.io/client-go/features"
	"k8s.io/client-go/tools/cache"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/generated/informers/externalversions"
)

func TestPaginationMatchesOneList(t *testing.T) {
	seedBase(t)
	cs := clientset(t)
	ctx := context.Background()
	all, err := cs.FlowsV1alpha1().Flows("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var paged []string
	opts := metav1.ListOptions{Limit: 3}
	for pages := 0; ; pages++ {
		l, err := cs.FlowsV1alpha1().Flows("").List(ctx, opts)
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		if len(l.Items) > 3 {
			t.Fatalf("page %d has %d items, limit 3", pages, len(l.Items))
		}
		for _, f := range l.Items {
			paged = append(paged, f.Name)
		}
		if l.Continue == "" {
			break
		}
		opts.Continue = l.Continue
		// Flows arriving between pages belong to a later snapshot.
		replay(t, seed{Node: "node-a", Flow: mkFlow("node-a", int32(40300+pages), 80, "TCP", "Egress", "Forwarded", web1, host("192.0.2.1"))})
	}
	var want []string
	for _, f := range all.Items {
		want = append(want, f.Name)
	}
	if !slices.Equal(paged, want) {
		t.Errorf("paginated list\n%v\ndiffers from one list\n%v", paged, want)
	}
}

func TestWatchFromExpiredResourceVersionIsGone(t *testing.T) {
	cs := clientset(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := cs.FlowsV1alpha1().Flows("").Watch(ctx, metav1.ListOptions{ResourceVersion: "1000"})
	if err != nil {
		if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
			t.Fatalf("watch from rv 1000: %v, want 410", err)
		}
		return
	}
	defer w.Stop()
	e, ok := <-w.ResultChan()
	if !ok || e.Type != watch.Error {
		t.Fatalf("first event = %v %#v, want an error", e.Type, e.Object)
	}
	if err := apierrors.FromObject(e.Object); !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Errorf("error = %v, want 410 Expired", err)
	}
}

// watchListGates overrides client-go's WatchListClient feature.
type watchListGates struct {
	clientfeatures.Gates
	on bool
}

func (g watchListGates) Enabled(f clientfeatures.Feature) bool {
	if f == clientfeatures.WatchListClient {
		return g.on
	}
	return g.Gates.Enabled(f)
}

func TestInformer(t *testing.T) {
	seedBase(t)
	for _, watchList := range []bool{true, false} {
		t.Run(fmt.Sprintf("WatchListClient=%v", watchList), func(t *testing.T) {
			prev := clientfeatures.FeatureGates()
			clientfeatures.ReplaceFeatureGates(watchListGates{prev, watchList})
			defer clientfeatures.ReplaceFeatureGates(prev)
			base := int32(40400)
			if !watchList {
				base = 40500
			}
			testInformer(t, base, watchList)
		})
	}
}

// testInformer runs an informer of egress flows, checks its initial sync
// and live flows, then restarts flowscope-apiserver while flows keep coming
// and checks that none is missing from the cache.
func testInformer(t *testing.T, base int32, restart bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	factory := externalversions.NewSharedInformerFactoryWithOptions(clientset(t), 0,
		externalversions.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "trafficDirection=Egress" }))
	inf := factory.Flows().V1alpha1().Flows()
	informer := inf.Informer()
	factory.Start(ctx.Done())
	syncCtx, syncCancel := context.WithTimeout(ctx, 60*time.Second)
	defer syncCancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), informer.HasSynced) {
		t.Fatal("informer did not sync")
	}
	cached := func() []int32 {
		flows, _ := inf.Lister().List(everything)
		var ports []int32
		for _, f := range flows {
			if f.TrafficDirection != v1alpha1.TrafficDirectionEgress {
				t.Errorf("informer of egress flows holds %s flow %s", f.TrafficDirection, f.Name)
			}
			ports = append(ports, f.L4.SourcePort)
		}
		slices.Sort(ports)
		return ports
	}
	if got := inRange(cached(), 40001, 40099); !slices.Equal(got, []int32{40001, 40003, 40004, 40006, 40007, 40008}) {
		t.Errorf("synced cache holds %v", got)
	}

	want := []int32{base, base + 1}
	replay(t,
		seed{Node: "node-a", Flow: mkFlow("node-a", base, 80, "TCP", "Egress", "Forwarded", web1, api1)},
		seed{Node: "node-b", Flow: mkFlow("node-b", base+1, 80, "TCP", "Egress", "Forwarded", api1, web1)},
		seed{Node: "node-b", Flow: mkFlow("node-b", base+2, 80, "TCP", "Ingress", "Forwarded", web1, api1)})
	waitCached(t, cached, base, want)
	if !restart {
		return
	}

	stopApiserver := sys.Kill(t, "flowscope-apiserver")
	for i := int32(3); i < 13; i++ {
		node := sys.Nodes[i%2]
		replay(t, seed{Node: node, Flow: mkFlow(node, base+i, 80, "TCP", "Egress", "Forwarded", web1, api1)})
		want = append(want, base+i)
		time.Sleep(50 * time.Millisecond)
	}
	stopApiserver()
	for i := int32(13); i < 16; i++ {
		node := sys.Nodes[i%2]
		replay(t, seed{Node: node, Flow: mkFlow(node, base+i, 80, "TCP", "Egress", "Forwarded", web1, api1)})
		want = append(want, base+i)
	}
	waitCached(t, cached, base, want)
}

func waitCached(t *testing.T, cached func() []int32, base int32, want []int32) {
	t.Helper()
	eventually(t, 60*time.Second, fmt.Sprintf("flows %v in the informer cache", want), func() (bool, string) {
		got := inRange(cached(), base, base+99)
		return slices.Equal(got, want), fmt.Sprint(got)
	})
}
