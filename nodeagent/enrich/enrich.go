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

// Package enrich maps the IP addresses of a flow's two ends to what the
// cluster knows of them: pod, namespace, labels, workloads, service, node.
//
// It watches Pods, Services, EndpointSlices and Nodes through one client-go
// SharedInformerFactory, and ReplicaSets and Jobs through a metadata-only
// factory, since only their owner references matter. Every object is trimmed
// by a cache.TransformFunc before the informers store it, and the event
// handlers maintain the maps that lookups read under one RWMutex, so a lookup
// is a few map accesses and no allocation for known addresses.
//
// Choices, documented here because callers depend on them:
//
//   - Workloads lists a pod's controllers nearest first, and its last entry is
//     always the top-level controller. A ReplicaSet that has a controller is
//     left out: its name is that controller's plus a pod-template hash, so
//     a Deployment pod reports [{Deployment web}] as Hubble does. A Job owned
//     by a CronJob is kept, since its name tells which run it was:
//     [{Job nightly-29012345}, {CronJob nightly}]. StatefulSets, DaemonSets and
//     any other direct controller are reported as they are; a bare pod has
//     none, and a static pod's mirror (owned by its Node) none either. Chains
//     are followed one level above ReplicaSets and Jobs only, which covers
//     every built-in controller.
//   - Host-network pods are not indexed: they share their node's addresses,
//     and an address alone cannot tell which of them, or the kubelet, or any
//     other host process, sent the traffic. Node addresses resolve to the
//     node (KindHost or KindRemoteNode), with the service whose EndpointSlice
//     lists that address and port when there is one (such as the kubernetes
//     service for the API server's port).
//   - When a pod's address is reused while the informer still holds the pod
//     that had it, the most recently created pod wins; removing a pod hands
//     the address back to the next claimant, if any.
//   - Only Pending and Running pods with addresses are indexed.
package enrich

import (
	"context"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// Options configure an Enricher.
type Options struct {
	// NodeName is the node the agent runs on: it decides LocalPod and
	// KindHost. Empty means no pod is local.
	NodeName string
	// Resync is the informers' resync period; zero disables resyncs, which
	// nothing here needs.
	Resync time.Duration
}

// Kind says what an address belongs to, after Hubble's reserved identities.
type Kind uint8

// Kinds of endpoint.
const (
	// KindWorld is an address the cluster does not know.
	KindWorld Kind = iota
	// KindPod is the address of a (non host-network) pod.
	KindPod
	// KindService is a service's cluster IP.
	KindService
	// KindHost is an address of the agent's own node.
	KindHost
	// KindRemoteNode is an address of another node.
	KindRemoteNode
)

var kindNames = [...]string{"world", "pod", "service", "host", "remote-node"}

// String returns the kind's Hubble-style name, such as "remote-node".
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// PodInfo describes an indexed pod. It is immutable once published: an
// update of the pod publishes a new PodInfo, so callers may keep it. Labels
// is shared with the informer's cache and must not be modified.
type PodInfo struct {
	// Namespace and Name name the pod.
	Namespace string
	Name      string
	// UID tells a pod from an earlier one of the same name.
	UID types.UID
	// NodeName is the node the pod is scheduled to.
	NodeName string
	// Labels are the pod's labels; read-only.
	Labels map[string]string
	// IPs are the pod's addresses, in the order of status.podIPs.
	IPs []netip.Addr
}

var (
	replicaSetsResource = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}
	jobsResource        = schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}
)

// podFieldSelector leaves finished pods out on the server side, as
// kube-scheduler does: they hold no address, and batch clusters have many.
// A pod that finishes leaves the watch with a DELETED event.
const podFieldSelector = "status.phase!=" + string(corev1.PodSucceeded) + ",status.phase!=" + string(corev1.PodFailed)

// Enricher resolves addresses from informer caches. Its methods are safe for
// concurrent use.
type Enricher struct {
	nodeName string
	factory  informers.SharedInformerFactory
	meta     metadatainformer.SharedInformerFactory
	synced   []cache.InformerSynced

	mu sync.RWMutex
	x  index
}

// New returns an Enricher watching through client and metadata. Nothing is
// watched until Start.
func New(client kubernetes.Interface, metadata metadata.Interface, opts Options) *Enricher {
	e := &Enricher{
		nodeName: opts.NodeName,
		factory:  informers.NewSharedInformerFactoryWithOptions(client, opts.Resync, informers.WithTransform(trim)),
		meta:     metadatainformer.NewSharedInformerFactoryWithOptions(metadata, opts.Resync, metadatainformer.WithTransform(trim)),
		x:        newIndex(),
	}
	// No indexers: the lookups use the maps the handlers maintain, and a
	// namespace index would cost memory for nothing.
	pods := e.factory.InformerFor(&corev1.Pod{}, func(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		return coreinformers.NewFilteredPodInformer(c, metav1.NamespaceAll, resync, cache.Indexers{},
			func(o *metav1.ListOptions) { o.FieldSelector = podFieldSelector })
	})
	services := e.factory.InformerFor(&corev1.Service{}, func(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		return coreinformers.NewServiceInformer(c, metav1.NamespaceAll, resync, cache.Indexers{})
	})
	slices := e.factory.InformerFor(&discoveryv1.EndpointSlice{}, func(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		return discoveryinformers.NewEndpointSliceInformer(c, metav1.NamespaceAll, resync, cache.Indexers{})
	})
	nodes := e.factory.InformerFor(&corev1.Node{}, func(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		return coreinformers.NewNodeInformer(c, resync, cache.Indexers{})
	})
	e.handle(pods, e.setPod, e.deletePod)
	e.handle(services, e.setService, e.deleteService)
	e.handle(slices, e.setSlice, e.deleteSlice)
	e.handle(nodes, e.setNode, e.deleteNode)
	setRS, deleteRS := e.ownerHandlers("ReplicaSet")
	e.handle(e.meta.ForResource(replicaSetsResource).Informer(), setRS, deleteRS)
	setJob, deleteJob := e.ownerHandlers("Job")
	e.handle(e.meta.ForResource(jobsResource).Informer(), setJob, deleteJob)
	return e
}

// handle registers set for adds and updates and del for deletes.
func (e *Enricher) handle(inf cache.SharedIndexInformer, set, del func(any)) {
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    set,
		UpdateFunc: func(_, obj any) { set(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			del(obj)
		},
	})
	if err != nil {
		// AddEventHandler fails only on a stopped informer, and these were
		// created just above.
		panic("enrich: add event handler: " + err.Error())
	}
	e.synced = append(e.synced, reg.HasSynced)
}

// Start starts the informers; they stop when ctx is done. It does not wait
// for them: use HasSynced, for example with cache.WaitForCacheSync.
func (e *Enricher) Start(ctx context.Context) {
	e.factory.StartWithContext(ctx)
	e.meta.Start(ctx.Done())
}

// HasSynced reports whether every informer has listed its objects and the
// Enricher has indexed them.
func (e *Enricher) HasSynced() bool {
	for _, s := range e.synced {
		if !s() {
			return false
		}
	}
	return true
}

// Endpoint returns what the cluster knows of ip, with port, and the kind of
// thing ip belongs to. For a pod: its namespace, name, labels, workloads and
// the first service (by namespace and name) in the pod's namespace whose
// EndpointSlices list ip with port, or else ip on any port. For a service's
// cluster IP: the service and its namespace. For a node address or an
// unknown address: the service whose EndpointSlices list ip with port, if
// any.
//
// The returned Labels and Workloads are shared with the index and with other
// callers: treat them as read-only (copy before modifying). Endpoint does not
// allocate unless the address is unknown.
func (e *Enricher) Endpoint(ip netip.Addr, port uint16) (v1alpha1.Endpoint, Kind) {
	ep := v1alpha1.Endpoint{Port: int32(port)}
	if !ip.IsValid() {
		return ep, KindWorld
	}
	ip = ip.Unmap().WithZone("")
	e.mu.RLock()
	defer e.mu.RUnlock()
	x := &e.x
	if claims := x.podIPs[ip]; len(claims) > 0 {
		p := claims[0]
		ep.IP = p.ipString(ip)
		ep.Namespace = p.info.Namespace
		ep.PodName = p.info.Name
		ep.Labels = p.info.Labels
		ep.Workloads = x.workloads(p)
		if s := x.backend(ip, port, p.info.Namespace); s != nil {
			ep.Service = s.service.name
		}
		return ep, KindPod
	}
	if s, ok := x.clusterIPs[ip]; ok {
		ep.IP = s.ip
		ep.Namespace = s.service.namespace
		ep.Service = s.service.name
		return ep, KindService
	}
	kind := KindWorld
	if n, ok := x.nodeIPs[ip]; ok {
		ep.IP = n.ip
		kind = KindRemoteNode
		if n.node == e.nodeName && e.nodeName != "" {
			kind = KindHost
		}
	} else {
		ep.IP = ip.String()
	}
	if s := x.backend(ip, port, ""); s != nil {
		ep.Namespace = s.service.namespace
		ep.Service = s.service.name
	}
	return ep, kind
}

// LocalPod returns the pod that has ip if it runs on this node (Options.
// NodeName). Host-network pods are never returned: see the package comment.
func (e *Enricher) LocalPod(ip netip.Addr) (*PodInfo, bool) {
	if e.nodeName == "" {
		return nil, false
	}
	ip = ip.Unmap().WithZone("")
	e.mu.RLock()
	defer e.mu.RUnlock()
	if claims := e.x.podIPs[ip]; len(claims) > 0 && claims[0].info.NodeName == e.nodeName {
		return &claims[0].info, true
	}
	return nil, false
}

// LocalPods returns the pods of this node that own their addresses. The
// returned values share their maps and slices with the cache: read only.
func (e *Enricher) LocalPods() []PodInfo {
	if e.nodeName == "" {
		return nil
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	var out []PodInfo
	for _, p := range e.x.pods {
		if p.info.NodeName != e.nodeName {
			continue
		}
		for _, ip := range p.info.IPs {
			if claims := e.x.podIPs[ip]; len(claims) > 0 && claims[0] == p {
				out = append(out, p.info)
				break
			}
		}
	}
	return out
}
