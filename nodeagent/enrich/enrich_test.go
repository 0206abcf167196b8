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
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	metadatafake "k8s.io/client-go/metadata/fake"
	"k8s.io/utils/ptr"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

const localNode = "node-a"

var t0 = metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))

type podOpt func(*corev1.Pod)

func newPod(ns, name, node string, ips []string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "/" + name), CreationTimestamp: t0},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "registry.example/c:1"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(ips) > 0 {
		p.Status.PodIP = ips[0]
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func ownedBy(apiVersion, kind, name string) podOpt {
	return func(p *corev1.Pod) {
		p.OwnerReferences = append(p.OwnerReferences, *controllerRef(apiVersion, kind, name))
	}
}

func withLabels(kv ...string) podOpt {
	return func(p *corev1.Pod) {
		p.Labels = map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}

func withPhase(phase corev1.PodPhase) podOpt {
	return func(p *corev1.Pod) { p.Status.Phase = phase }
}

func hostNetwork(p *corev1.Pod) { p.Spec.HostNetwork = true }

func createdAt(d time.Duration) podOpt {
	return func(p *corev1.Pod) { p.CreationTimestamp = metav1.NewTime(t0.Add(d)) }
}

func withUID(uid string) podOpt {
	return func(p *corev1.Pod) { p.UID = types.UID(uid) }
}

// controllerRef refers to the controller kind/name, whose UID is uidOf(name).
func controllerRef(apiVersion, kind, name string) *metav1.OwnerReference {
	return &metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: uidOf(kind, name), Controller: ptr.To(true)}
}

func uidOf(kind, name string) types.UID { return types.UID("uid-" + kind + "-" + name) }

func metaObject(apiVersion, kind, ns, name string, owner *metav1.OwnerReference) *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: apiVersion, Kind: kind},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: uidOf(kind, name)},
	}
	if owner != nil {
		m.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	return m
}

func newService(ns, name string, clusterIPs ...string) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{ClusterIPs: clusterIPs}}
	if len(clusterIPs) > 0 {
		s.Spec.ClusterIP = clusterIPs[0]
	}
	return s
}

// newSlice lists ips for service with ports; a port 0 stands for a port
// without a number (all ports).
func newSlice(ns, name, service string, ports []int32, ips ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, ip := range ips {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, NodeName: ptr.To(localNode)})
	}
	for _, p := range ports {
		ep := discoveryv1.EndpointPort{Name: ptr.To(fmt.Sprint("p", p)), Protocol: ptr.To(corev1.ProtocolTCP)}
		if p != 0 {
			ep.Port = ptr.To(p)
		}
		s.Ports = append(s.Ports, ep)
	}
	return s
}

func newNode(name string, ips ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, ip := range ips {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
	}
	n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: name})
	return n
}

type fixture struct {
	e    *Enricher
	kube *fake.Clientset
	meta *metadatafake.FakeMetadataClient
}

// start runs an Enricher on fake clients holding objs and waits until it
// has synced and every informer watches, so that later changes reach it.
func start(t *testing.T, objs ...runtime.Object) *fixture {
	t.Helper()
	var kubeObjs, metaObjs []runtime.Object
	for _, o := range objs {
		if _, ok := o.(*metav1.PartialObjectMetadata); ok {
			metaObjs = append(metaObjs, o)
		} else {
			kubeObjs = append(kubeObjs, o)
		}
	}
	scheme := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	f := &fixture{kube: fake.NewClientset(kubeObjs...), meta: metadatafake.NewSimpleMetadataClient(scheme, metaObjs...)}
	f.e = New(f.kube, f.meta, Options{NodeName: localNode})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f.e.Start(ctx)
	eventually(t, "synced and watching", func() bool {
		return f.e.HasSynced() && countWatches(f.kube.Actions()) == 4 && countWatches(f.meta.Actions()) == 2
	})
	return f
}

func countWatches[A interface{ GetVerb() string }](actions []A) int {
	n := 0
	for _, a := range actions {
		if a.GetVerb() == "watch" {
			n++
		}
	}
	return n
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type lookup struct {
	ip   string
	port uint16
	want v1alpha1.Endpoint
	kind Kind
}

// check compares a lookup's result now.
func (f *fixture) check(l lookup) error {
	var ip netip.Addr
	if l.ip != "" {
		ip = netip.MustParseAddr(l.ip)
	}
	got, kind := f.e.Endpoint(ip, l.port)
	if kind != l.kind || !reflect.DeepEqual(got, l.want) {
		return fmt.Errorf("Endpoint(%s, %d) = %+v, %v; want %+v, %v", l.ip, l.port, got, kind, l.want, l.kind)
	}
	return nil
}

// expect waits until a lookup gives the wanted result, as informers deliver
// changes asynchronously.
func (f *fixture) expect(t *testing.T, l lookup) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f.check(l)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func clusterObjects() []runtime.Object {
	return []runtime.Object{
		newNode("node-a", "10.0.0.1", "fd00::1"),
		newNode("node-b", "10.0.0.2"),

		metaObject("apps/v1", "ReplicaSet", "shop", "web-7d9f", controllerRef("apps/v1", "Deployment", "web")),
		newPod("shop", "web-7d9f-abcde", "node-a", []string{"10.1.0.5", "fd00:1::5"},
			ownedBy("apps/v1", "ReplicaSet", "web-7d9f"), withLabels("app", "web", "pod-template-hash", "7d9f")),
		newPod("shop", "db-0", "node-b", []string{"10.1.0.6"}, ownedBy("apps/v1", "StatefulSet", "db"), withLabels("app", "db")),
		newPod("kube-system", "agent-x1", "node-a", []string{"10.1.0.7"}, ownedBy("apps/v1", "DaemonSet", "agent")),
		metaObject("batch/v1", "Job", "ops", "nightly-29012345", controllerRef("batch/v1", "CronJob", "nightly")),
		newPod("ops", "nightly-29012345-q7x", "node-b", []string{"10.1.0.8"}, ownedBy("batch/v1", "Job", "nightly-29012345")),
		metaObject("batch/v1", "Job", "ops", "migrate", nil),
		newPod("ops", "migrate-z9", "node-b", []string{"10.1.0.9"}, ownedBy("batch/v1", "Job", "migrate")),
		newPod("shop", "debug", "node-a", []string{"10.1.0.10"}),
		metaObject("apps/v1", "ReplicaSet", "shop", "orphan", nil),
		newPod("shop", "orphan-1", "node-a", []string{"10.1.0.11"}, ownedBy("apps/v1", "ReplicaSet", "orphan")),
		// Its ReplicaSet is not (yet) known: the pod reports the ReplicaSet.
		newPod("shop", "early-1", "node-a", []string{"10.1.0.12"}, ownedBy("apps/v1", "ReplicaSet", "early")),
		newPod("kube-system", "kube-apiserver-node-a", "node-a", []string{"10.0.0.1"},
			hostNetwork, ownedBy("v1", "Node", "node-a"), withLabels("component", "kube-apiserver")),
		newPod("kube-system", "etcd-node-a", "node-a", nil, hostNetwork),
		newPod("shop", "done", "node-a", []string{"10.1.0.20"}, withPhase(corev1.PodSucceeded)),
		newPod("shop", "failed", "node-a", []string{"10.1.0.21"}, withPhase(corev1.PodFailed)),
		newPod("shop", "starting", "node-b", []string{"10.1.0.22"}, withPhase(corev1.PodPending)),
		newPod("shop", "unscheduled", "", nil, withPhase(corev1.PodPending)),
		newPod("shop", "long-form", "node-b", []string{"fd00:1:0:0::23"}),

		newService("shop", "web", "10.96.0.10", "fd00:96::10"),
		newService("shop", "web-headless", "None"),
		newService("default", "kubernetes", "10.96.0.1"),
		newSlice("shop", "web-abc12", "web", []int32{8080}, "10.1.0.5"),
		newSlice("shop", "web-headless-xyz", "web-headless", []int32{8080}, "10.1.0.5"),
		newSlice("shop", "metrics-q1", "metrics", []int32{9090}, "10.1.0.5"),
		// A slice of another namespace naming a shop pod is not the pod's.
		newSlice("other", "steal-1", "steal", []int32{8080}, "10.1.0.6"),
		newSlice("shop", "db-1", "db", nil, "10.1.0.6"),
		newSlice("default", "kubernetes", "kubernetes", []int32{6443}, "10.0.0.1"),
		newSlice("shop", "external-db", "external-db", []int32{5432}, "192.0.2.7"),
		newSlice("shop", "any-port", "any-port", []int32{0}, "192.0.2.8"),
	}
}

func TestEndpoint(t *testing.T) {
	f := start(t, clusterObjects()...)
	webLabels := map[string]string{"app": "web", "pod-template-hash": "7d9f"}
	deployment := []v1alpha1.Workload{{Kind: "Deployment", Name: "web"}}
	for _, tc := range []struct {
		name string
		lookup
	}{
		{"deployment pod by service port", lookup{"10.1.0.5", 8080, v1alpha1.Endpoint{IP: "10.1.0.5", Port: 8080, Namespace: "shop",
			PodName: "web-7d9f-abcde", Labels: webLabels, Workloads: deployment, Service: "web"}, KindPod}},
		{"deployment pod by its other service's port", lookup{"10.1.0.5", 9090, v1alpha1.Endpoint{IP: "10.1.0.5", Port: 9090, Namespace: "shop",
			PodName: "web-7d9f-abcde", Labels: webLabels, Workloads: deployment, Service: "metrics"}, KindPod}},
		{"deployment pod from an ephemeral port: first service by name", lookup{"10.1.0.5", 41234, v1alpha1.Endpoint{IP: "10.1.0.5", Port: 41234,
			Namespace: "shop", PodName: "web-7d9f-abcde", Labels: webLabels, Workloads: deployment, Service: "metrics"}, KindPod}},
		{"dual-stack pod by its IPv6 address", lookup{"fd00:1::5", 8080, v1alpha1.Endpoint{IP: "fd00:1::5", Port: 8080, Namespace: "shop",
			PodName: "web-7d9f-abcde", Labels: webLabels, Workloads: deployment}, KindPod}},
		{"IPv4-mapped address", lookup{"::ffff:10.1.0.5", 8080, v1alpha1.Endpoint{IP: "10.1.0.5", Port: 8080, Namespace: "shop",
			PodName: "web-7d9f-abcde", Labels: webLabels, Workloads: deployment, Service: "web"}, KindPod}},
		{"statefulset pod, service from a slice without ports", lookup{"10.1.0.6", 5432, v1alpha1.Endpoint{IP: "10.1.0.6", Port: 5432,
			Namespace: "shop", PodName: "db-0", Labels: map[string]string{"app": "db"},
			Workloads: []v1alpha1.Workload{{Kind: "StatefulSet", Name: "db"}}, Service: "db"}, KindPod}},
		{"daemonset pod", lookup{"10.1.0.7", 0, v1alpha1.Endpoint{IP: "10.1.0.7", Namespace: "kube-system", PodName: "agent-x1",
			Workloads: []v1alpha1.Workload{{Kind: "DaemonSet", Name: "agent"}}}, KindPod}},
		{"cronjob pod", lookup{"10.1.0.8", 0, v1alpha1.Endpoint{IP: "10.1.0.8", Namespace: "ops", PodName: "nightly-29012345-q7x",
			Workloads: []v1alpha1.Workload{{Kind: "Job", Name: "nightly-29012345"}, {Kind: "CronJob", Name: "nightly"}}}, KindPod}},
		{"job pod", lookup{"10.1.0.9", 0, v1alpha1.Endpoint{IP: "10.1.0.9", Namespace: "ops", PodName: "migrate-z9",
			Workloads: []v1alpha1.Workload{{Kind: "Job", Name: "migrate"}}}, KindPod}},
		{"bare pod", lookup{"10.1.0.10", 80, v1alpha1.Endpoint{IP: "10.1.0.10", Port: 80, Namespace: "shop", PodName: "debug"}, KindPod}},
		{"pod of an orphaned replicaset", lookup{"10.1.0.11", 0, v1alpha1.Endpoint{IP: "10.1.0.11", Namespace: "shop", PodName: "orphan-1",
			Workloads: []v1alpha1.Workload{{Kind: "ReplicaSet", Name: "orphan"}}}, KindPod}},
		{"pod of an unknown replicaset", lookup{"10.1.0.12", 0, v1alpha1.Endpoint{IP: "10.1.0.12", Namespace: "shop", PodName: "early-1",
			Workloads: []v1alpha1.Workload{{Kind: "ReplicaSet", Name: "early"}}}, KindPod}},
		{"pending pod with an address", lookup{"10.1.0.22", 0, v1alpha1.Endpoint{IP: "10.1.0.22", Namespace: "shop", PodName: "starting"}, KindPod}},
		{"non-canonical pod address", lookup{"fd00:1::23", 0, v1alpha1.Endpoint{IP: "fd00:1::23", Namespace: "shop", PodName: "long-form"}, KindPod}},
		{"succeeded pod's address", lookup{"10.1.0.20", 0, v1alpha1.Endpoint{IP: "10.1.0.20"}, KindWorld}},
		{"failed pod's address", lookup{"10.1.0.21", 0, v1alpha1.Endpoint{IP: "10.1.0.21"}, KindWorld}},
		{"cluster IP", lookup{"10.96.0.10", 80, v1alpha1.Endpoint{IP: "10.96.0.10", Port: 80, Namespace: "shop", Service: "web"}, KindService}},
		{"IPv6 cluster IP", lookup{"fd00:96::10", 80, v1alpha1.Endpoint{IP: "fd00:96::10", Port: 80, Namespace: "shop", Service: "web"}, KindService}},
		{"this node, not its host-network pod", lookup{"10.0.0.1", 22, v1alpha1.Endpoint{IP: "10.0.0.1", Port: 22}, KindHost}},
		{"this node's IPv6 address", lookup{"fd00::1", 0, v1alpha1.Endpoint{IP: "fd00::1"}, KindHost}},
		{"this node's API server port", lookup{"10.0.0.1", 6443, v1alpha1.Endpoint{IP: "10.0.0.1", Port: 6443,
			Namespace: "default", Service: "kubernetes"}, KindHost}},
		{"another node", lookup{"10.0.0.2", 10250, v1alpha1.Endpoint{IP: "10.0.0.2", Port: 10250}, KindRemoteNode}},
		{"world", lookup{"8.8.8.8", 53, v1alpha1.Endpoint{IP: "8.8.8.8", Port: 53}, KindWorld}},
		{"invalid address", lookup{"", 443, v1alpha1.Endpoint{Port: 443}, KindWorld}},
		{"world IPv6", lookup{"2001:db8::1", 443, v1alpha1.Endpoint{IP: "2001:db8::1", Port: 443}, KindWorld}},
		{"external backend of a service", lookup{"192.0.2.7", 5432, v1alpha1.Endpoint{IP: "192.0.2.7", Port: 5432,
			Namespace: "shop", Service: "external-db"}, KindWorld}},
		{"external backend on another port", lookup{"192.0.2.7", 22, v1alpha1.Endpoint{IP: "192.0.2.7", Port: 22}, KindWorld}},
		{"external backend of a service on every port", lookup{"192.0.2.8", 22, v1alpha1.Endpoint{IP: "192.0.2.8", Port: 22,
			Namespace: "shop", Service: "any-port"}, KindWorld}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := f.check(tc.lookup); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestLocalPod(t *testing.T) {
	f := start(t, clusterObjects()...)
	for _, tc := range []struct {
		ip   string
		want string // namespace/name, or empty when not a local pod
	}{
		{"10.1.0.5", "shop/web-7d9f-abcde"},
		{"fd00:1::5", "shop/web-7d9f-abcde"},
		{"10.1.0.10", "shop/debug"},
		{"10.1.0.6", ""},  // on node-b
		{"10.0.0.1", ""},  // the node, shared by host-network pods
		{"10.1.0.20", ""}, // succeeded
		{"8.8.8.8", ""},
	} {
		t.Run(tc.ip, func(t *testing.T) {
			p, ok := f.e.LocalPod(netip.MustParseAddr(tc.ip))
			got := ""
			if ok {
				got = p.Namespace + "/" + p.Name
				if p.NodeName != localNode {
					t.Errorf("NodeName = %q", p.NodeName)
				}
			}
			if got != tc.want || ok != (p != nil) {
				t.Errorf("LocalPod(%s) = %v, %v; want %q", tc.ip, p, ok, tc.want)
			}
		})
	}
	p, _ := f.e.LocalPod(netip.MustParseAddr("10.1.0.5"))
	if want := []netip.Addr{netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("fd00:1::5")}; !reflect.DeepEqual(p.IPs, want) {
		t.Errorf("IPs = %v, want %v", p.IPs, want)
	}
	if p.UID != "shop/web-7d9f-abcde" || p.Labels["app"] != "web" {
		t.Errorf("PodInfo = %+v", p)
	}
}

func TestLocalPodWithoutNodeName(t *testing.T) {
	e := New(fake.NewClientset(), metadatafake.NewSimpleMetadataClient(metadatafake.NewTestScheme()), Options{})
	e.setPod(trimPod(newPod("shop", "a", "", []string{"10.1.0.1"})))
	if _, ok := e.LocalPod(netip.MustParseAddr("10.1.0.1")); ok {
		t.Error("LocalPod found a pod with no NodeName")
	}
	if _, kind := e.Endpoint(netip.MustParseAddr("10.1.0.1"), 0); kind != KindPod {
		t.Errorf("kind = %v, want pod", kind)
	}
}

// TestIPReuse adds two pods claiming one address in either order, then
// removes them: the newest pod owns the address while it exists.
func TestIPReuse(t *testing.T) {
	oldPod := func() *corev1.Pod {
		return newPod("shop", "old", "node-a", []string{"10.1.0.5"}, withUID("u-old"))
	}
	newerPod := func() *corev1.Pod {
		return newPod("shop", "new", "node-a", []string{"10.1.0.5"}, withUID("u-new"), createdAt(time.Minute), withPhase(corev1.PodPending))
	}
	owner := func(name string) lookup {
		if name == "" {
			return lookup{"10.1.0.5", 0, v1alpha1.Endpoint{IP: "10.1.0.5"}, KindWorld}
		}
		return lookup{"10.1.0.5", 0, v1alpha1.Endpoint{IP: "10.1.0.5", Namespace: "shop", PodName: name}, KindPod}
	}
	for _, tc := range []struct {
		name   string
		first  *corev1.Pod
		second *corev1.Pod
		// deleting the pod named first leaves the owner after, then deleting
		// the other leaves the address free.
		deleteFirst string
		after       string
	}{
		{"new pod added last, old deleted first", oldPod(), newerPod(), "old", "new"},
		{"new pod added first, old deleted first", newerPod(), oldPod(), "old", "new"},
		{"new pod deleted first hands back to old", oldPod(), newerPod(), "new", "old"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := start(t, tc.first)
			ctx := context.Background()
			pods := f.kube.CoreV1().Pods("shop")
			f.expect(t, owner(tc.first.Name))
			if _, err := pods.Create(ctx, tc.second, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			f.expect(t, owner("new"))
			if err := pods.Delete(ctx, tc.deleteFirst, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			f.expect(t, owner(tc.after))
			if err := pods.Delete(ctx, tc.after, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			f.expect(t, owner(""))
			f.e.mu.RLock()
			defer f.e.mu.RUnlock()
			if len(f.e.x.pods) != 0 || len(f.e.x.podIPs) != 0 {
				t.Errorf("index not empty: %d pods, %d addresses", len(f.e.x.pods), len(f.e.x.podIPs))
			}
		})
	}
}

// TestUpdates changes objects after the informers have synced.
func TestUpdates(t *testing.T) {
	f := start(t,
		newNode("node-b", "10.0.0.2"),
		newPod("shop", "web-1", "node-a", []string{"10.1.0.5", "fd00:1::5"}, ownedBy("apps/v1", "ReplicaSet", "web-1a")),
		newService("shop", "web", "10.96.0.10"),
		newSlice("shop", "web-x", "web", []int32{8080}, "10.1.0.5"),
		newSlice("shop", "admin-x", "admin", []int32{9090}, "10.1.0.5"),
	)
	ctx := context.Background()
	web := v1alpha1.Endpoint{IP: "10.1.0.5", Port: 8080, Namespace: "shop", PodName: "web-1", Service: "web",
		Workloads: []v1alpha1.Workload{{Kind: "ReplicaSet", Name: "web-1a"}}}
	f.expect(t, lookup{"10.1.0.5", 8080, web, KindPod})

	steps := []struct {
		name   string
		change func() error
		want   []lookup
	}{
		{"replicaset appears after its pod", func() error {
			_, err := f.meta.Resource(replicaSetsResource).Namespace("shop").(metadatafake.MetadataClient).CreateFake(
				metaObject("apps/v1", "ReplicaSet", "shop", "web-1a", controllerRef("apps/v1", "Deployment", "web")), metav1.CreateOptions{})
			return err
		}, []lookup{{"10.1.0.5", 8080, withWorkloads(web, v1alpha1.Workload{Kind: "Deployment", Name: "web"}), KindPod}}},
		{"endpoint slice deleted", func() error {
			return f.kube.DiscoveryV1().EndpointSlices("shop").Delete(ctx, "admin-x", metav1.DeleteOptions{})
		}, []lookup{{"10.1.0.5", 9090, withWorkloads(withPort(web, 9090), v1alpha1.Workload{Kind: "Deployment", Name: "web"}), KindPod}}},
		{"endpoint slice drops the pod", func() error {
			_, err := f.kube.DiscoveryV1().EndpointSlices("shop").Update(ctx, newSlice("shop", "web-x", "web", []int32{8080}), metav1.UpdateOptions{})
			return err
		}, []lookup{{"10.1.0.5", 8080, withService(withWorkloads(web, v1alpha1.Workload{Kind: "Deployment", Name: "web"}), ""), KindPod}}},
		{"service changes its cluster IP", func() error {
			_, err := f.kube.CoreV1().Services("shop").Update(ctx, newService("shop", "web", "10.96.0.11"), metav1.UpdateOptions{})
			return err
		}, []lookup{
			{"10.96.0.10", 80, v1alpha1.Endpoint{IP: "10.96.0.10", Port: 80}, KindWorld},
			{"10.96.0.11", 80, v1alpha1.Endpoint{IP: "10.96.0.11", Port: 80, Namespace: "shop", Service: "web"}, KindService},
		}},
		{"service deleted", func() error {
			return f.kube.CoreV1().Services("shop").Delete(ctx, "web", metav1.DeleteOptions{})
		}, []lookup{{"10.96.0.11", 80, v1alpha1.Endpoint{IP: "10.96.0.11", Port: 80}, KindWorld}}},
		{"replicaset deleted", func() error {
			return f.meta.Resource(replicaSetsResource).Namespace("shop").Delete(ctx, "web-1a", metav1.DeleteOptions{})
		}, []lookup{{"10.1.0.5", 8080, withService(web, ""), KindPod}}},
		{"pod succeeds", func() error {
			_, err := f.kube.CoreV1().Pods("shop").UpdateStatus(ctx, newPod("shop", "web-1", "node-a", []string{"10.1.0.5", "fd00:1::5"},
				withPhase(corev1.PodSucceeded)), metav1.UpdateOptions{})
			return err
		}, []lookup{
			{"10.1.0.5", 0, v1alpha1.Endpoint{IP: "10.1.0.5"}, KindWorld},
			{"fd00:1::5", 0, v1alpha1.Endpoint{IP: "fd00:1::5"}, KindWorld},
		}},
		{"pod address reused by a pod on another node", func() error {
			_, err := f.kube.CoreV1().Pods("shop").Create(ctx, newPod("shop", "web-2", "node-b", []string{"10.1.0.5"}, createdAt(time.Hour)), metav1.CreateOptions{})
			return err
		}, []lookup{{"10.1.0.5", 0, v1alpha1.Endpoint{IP: "10.1.0.5", Namespace: "shop", PodName: "web-2"}, KindPod}}},
		{"node gets a new address", func() error {
			_, err := f.kube.CoreV1().Nodes().Update(ctx, newNode("node-b", "10.0.0.3"), metav1.UpdateOptions{})
			return err
		}, []lookup{
			{"10.0.0.2", 0, v1alpha1.Endpoint{IP: "10.0.0.2"}, KindWorld},
			{"10.0.0.3", 0, v1alpha1.Endpoint{IP: "10.0.0.3"}, KindRemoteNode},
		}},
		{"node deleted", func() error {
			return f.kube.CoreV1().Nodes().Delete(ctx, "node-b", metav1.DeleteOptions{})
		}, []lookup{{"10.0.0.3", 0, v1alpha1.Endpoint{IP: "10.0.0.3"}, KindWorld}}},
		{"pod deleted", func() error {
			return f.kube.CoreV1().Pods("shop").Delete(ctx, "web-2", metav1.DeleteOptions{})
		}, []lookup{{"10.1.0.5", 0, v1alpha1.Endpoint{IP: "10.1.0.5"}, KindWorld}}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if err := s.change(); err != nil {
				t.Fatal(err)
			}
			for _, l := range s.want {
				f.expect(t, l)
			}
		})
	}
}

func withWorkloads(ep v1alpha1.Endpoint, w ...v1alpha1.Workload) v1alpha1.Endpoint {
	ep.Workloads = w
	return ep
}

func withPort(ep v1alpha1.Endpoint, port int32) v1alpha1.Endpoint {
	ep.Port = port
	return ep
}

func withService(ep v1alpha1.Endpoint, s string) v1alpha1.Endpoint {
	ep.Service = s
	if s == "" && ep.PodName == "" {
		ep.Namespace = ""
	}
	return ep
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{KindWorld: "world", KindPod: "pod", KindService: "service",
		KindHost: "host", KindRemoteNode: "remote-node", Kind(42): "unknown"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
}

func TestLocalPods(t *testing.T) {
	f := start(t, clusterObjects()...)
	var got []string
	for _, p := range f.e.LocalPods() {
		if p.NodeName != localNode {
			t.Errorf("LocalPods returned %s/%s of node %s", p.Namespace, p.Name, p.NodeName)
		}
		got = append(got, p.Namespace+"/"+p.Name)
	}
	slices.Sort(got)
	for _, want := range []string{"shop/debug", "shop/web-7d9f-abcde"} {
		if !slices.Contains(got, want) {
			t.Errorf("LocalPods = %v, missing %s", got, want)
		}
	}
}
