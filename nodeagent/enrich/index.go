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
	"cmp"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// objKey names a namespaced object; its strings are shared with the cache.
type objKey struct{ namespace, name string }

func compareKeys(a, b objKey) int {
	return cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.name, b.name))
}

// index holds what lookups read. Entries are immutable once linked: an
// update replaces them, so lookups may return their fields without copying.
// Every method needs Enricher.mu, held for writing by the set and delete
// methods.
type index struct {
	pods   map[objKey]*podEntry
	podIPs map[netip.Addr][]*podEntry // claimants, the owner (newest) first
	// owners maps a ReplicaSet's or a Job's UID to the workloads of the pods
	// it controls, when it has a controller itself.
	owners     map[types.UID][]v1alpha1.Workload
	services   map[objKey][]netip.Addr
	clusterIPs map[netip.Addr]serviceIP
	slices     map[objKey]*sliceEntry
	backends   map[netip.Addr][]*sliceEntry // sorted by service, then slice
	nodes      map[string][]netip.Addr
	nodeIPs    map[netip.Addr]nodeIP
}

func newIndex() index {
	return index{
		pods:       map[objKey]*podEntry{},
		podIPs:     map[netip.Addr][]*podEntry{},
		owners:     map[types.UID][]v1alpha1.Workload{},
		services:   map[objKey][]netip.Addr{},
		clusterIPs: map[netip.Addr]serviceIP{},
		slices:     map[objKey]*sliceEntry{},
		backends:   map[netip.Addr][]*sliceEntry{},
		nodes:      map[string][]netip.Addr{},
		nodeIPs:    map[netip.Addr]nodeIP{},
	}
}

type podEntry struct {
	info    PodInfo
	ipStrs  []string // info.IPs as text, shared with the cache
	created int64    // creationTimestamp in Unix seconds
	running bool
	// ownerUID is the pod's controller when it is a ReplicaSet or a Job,
	// whose own controller owners may know; own is what to report when it
	// does not.
	ownerUID types.UID
	own      []v1alpha1.Workload
}

func (p *podEntry) ipString(ip netip.Addr) string {
	for i, a := range p.info.IPs {
		if a == ip {
			return p.ipStrs[i]
		}
	}
	return ip.String()
}

// newer reports whether p rather than q owns an address both claim. Two live
// pods never share an address, so the older claimant is a pod whose deletion
// the informer has not seen yet.
func (p *podEntry) newer(q *podEntry) bool {
	if p.created != q.created {
		return p.created > q.created
	}
	if p.running != q.running {
		return p.running
	}
	return p.info.UID > q.info.UID
}

type serviceIP struct {
	service objKey
	ip      string
}

type nodeIP struct {
	node string
	ip   string
}

type sliceEntry struct {
	slice    objKey
	service  objKey
	ips      []netip.Addr
	ports    []uint16
	allPorts bool // a port without a number means every port
}

func (s *sliceEntry) hasPort(port uint16) bool {
	return s.allPorts || slices.Contains(s.ports, port)
}

func compareSlices(a, b *sliceEntry) int {
	return cmp.Or(compareKeys(a.service, b.service), compareKeys(a.slice, b.slice))
}

func (x *index) workloads(p *podEntry) []v1alpha1.Workload {
	if p.ownerUID != "" {
		if w, ok := x.owners[p.ownerUID]; ok {
			return w
		}
	}
	return p.own
}

// backend returns the first slice listing ip with port. With a namespace
// (ip is a pod's), only that namespace's services count, and a slice listing
// ip with other ports is the fallback: a client's ephemeral port matches
// none.
func (x *index) backend(ip netip.Addr, port uint16, namespace string) *sliceEntry {
	var fallback *sliceEntry
	for _, s := range x.backends[ip] {
		if namespace != "" && s.service.namespace != namespace {
			continue
		}
		if s.hasPort(port) {
			return s
		}
		if namespace != "" && fallback == nil {
			fallback = s
		}
	}
	return fallback
}

// setPod replaces the entry of the pod key with p, or removes it if p is nil.
func (x *index) setPod(key objKey, p *podEntry) {
	if old := x.pods[key]; old != nil {
		for _, ip := range old.info.IPs {
			removeFrom(x.podIPs, ip, old)
		}
		delete(x.pods, key)
	}
	if p == nil {
		return
	}
	x.pods[key] = p
	for _, ip := range p.info.IPs {
		claims := x.podIPs[ip]
		i := 0
		for i < len(claims) && claims[i].newer(p) {
			i++
		}
		x.podIPs[ip] = slices.Insert(claims, i, p)
	}
}

func (x *index) setOwner(uid types.UID, w []v1alpha1.Workload) {
	if w == nil {
		delete(x.owners, uid)
		return
	}
	x.owners[uid] = w
}

func (x *index) setService(key objKey, ips []netip.Addr, strs []string) {
	for _, ip := range x.services[key] {
		if x.clusterIPs[ip].service == key {
			delete(x.clusterIPs, ip)
		}
	}
	delete(x.services, key)
	if len(ips) == 0 {
		return
	}
	x.services[key] = ips
	for i, ip := range ips {
		x.clusterIPs[ip] = serviceIP{service: key, ip: strs[i]}
	}
}

func (x *index) setNode(name string, ips []netip.Addr, strs []string) {
	for _, ip := range x.nodes[name] {
		if x.nodeIPs[ip].node == name {
			delete(x.nodeIPs, ip)
		}
	}
	delete(x.nodes, name)
	if len(ips) == 0 {
		return
	}
	x.nodes[name] = ips
	for i, ip := range ips {
		x.nodeIPs[ip] = nodeIP{node: name, ip: strs[i]}
	}
}

// setSlice replaces the entry of the EndpointSlice key with s, or removes it
// if s is nil.
func (x *index) setSlice(key objKey, s *sliceEntry) {
	if old := x.slices[key]; old != nil {
		for _, ip := range old.ips {
			removeFrom(x.backends, ip, old)
		}
		delete(x.slices, key)
	}
	if s == nil {
		return
	}
	x.slices[key] = s
	for _, ip := range s.ips {
		list := x.backends[ip]
		i, _ := slices.BinarySearchFunc(list, s, compareSlices)
		x.backends[ip] = slices.Insert(list, i, s)
	}
}

// parseIP parses an address from the API, which may be in a non-canonical
// form; the canonical text is returned too, shared with s when they agree.
func parseIP(s string) (netip.Addr, string, bool) {
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, "", false
	}
	ip = ip.Unmap()
	if c := ip.String(); c != s {
		s = c
	}
	return ip, s, true
}

// parseIPs parses addresses, skipping invalid ones and duplicates.
func parseIPs(in []string) ([]netip.Addr, []string) {
	var ips []netip.Addr
	var strs []string
	for _, s := range in {
		ip, s, ok := parseIP(s)
		if ok && !slices.Contains(ips, ip) {
			ips = append(ips, ip)
			strs = append(strs, s)
		}
	}
	return ips, strs
}

// newPodEntry returns the entry of p, or nil if p has no address of its own
// to index.
func newPodEntry(p *corev1.Pod) *podEntry {
	if p.Spec.HostNetwork || (p.Status.Phase != corev1.PodPending && p.Status.Phase != corev1.PodRunning) {
		return nil
	}
	in := make([]string, 0, len(p.Status.PodIPs))
	for _, a := range p.Status.PodIPs {
		in = append(in, a.IP)
	}
	if len(in) == 0 && p.Status.PodIP != "" {
		in = append(in, p.Status.PodIP)
	}
	ips, strs := parseIPs(in)
	if len(ips) == 0 {
		return nil
	}
	e := &podEntry{
		info: PodInfo{
			Namespace: p.Namespace,
			Name:      p.Name,
			UID:       p.UID,
			NodeName:  p.Spec.NodeName,
			Labels:    p.Labels,
			IPs:       ips,
		},
		ipStrs:  strs,
		created: p.CreationTimestamp.Unix(),
		running: p.Status.Phase == corev1.PodRunning,
	}
	if ref := metav1.GetControllerOfNoCopy(p); ref != nil {
		switch {
		case ref.Kind == "Node" && ref.APIVersion == "v1":
			// A static pod's mirror: the node is no workload.
		case ref.Kind == "ReplicaSet" || ref.Kind == "Job":
			e.ownerUID = ref.UID
			e.own = []v1alpha1.Workload{{Kind: ref.Kind, Name: ref.Name}}
		default:
			e.own = []v1alpha1.Workload{{Kind: ref.Kind, Name: ref.Name}}
		}
	}
	return e
}

// ownerWorkloads returns the workloads of pods controlled by m, a ReplicaSet
// or a Job (kind), or nil when m has no controller and the pods report m.
func ownerWorkloads(kind string, m metav1.Object) []v1alpha1.Workload {
	ref := metav1.GetControllerOfNoCopy(m)
	if ref == nil {
		return nil
	}
	top := v1alpha1.Workload{Kind: ref.Kind, Name: ref.Name}
	if kind == "ReplicaSet" {
		return []v1alpha1.Workload{top}
	}
	return []v1alpha1.Workload{{Kind: kind, Name: m.GetName()}, top}
}

// newSliceEntry returns the entry of s, or nil if s lists no address of a
// service.
func newSliceEntry(s *discoveryv1.EndpointSlice) *sliceEntry {
	svc := s.Labels[discoveryv1.LabelServiceName]
	if svc == "" {
		return nil
	}
	var in []string
	for _, ep := range s.Endpoints {
		in = append(in, ep.Addresses...)
	}
	ips, _ := parseIPs(in)
	if len(ips) == 0 {
		return nil
	}
	e := &sliceEntry{slice: objKey{s.Namespace, s.Name}, service: objKey{s.Namespace, svc}, ips: ips}
	for _, p := range s.Ports {
		switch {
		case p.Port == nil:
			e.allPorts = true
		case *p.Port > 0 && *p.Port <= 65535 && !slices.Contains(e.ports, uint16(*p.Port)):
			e.ports = append(e.ports, uint16(*p.Port))
		}
	}
	return e
}

// nodeAddresses returns n's internal addresses: the ones host traffic
// between nodes and pods comes from.
func nodeAddresses(n *corev1.Node) ([]netip.Addr, []string) {
	var in []string
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			in = append(in, a.Address)
		}
	}
	return parseIPs(in)
}

// serviceAddresses returns s's cluster IPs; a headless service has none.
func serviceAddresses(s *corev1.Service) ([]netip.Addr, []string) {
	in := s.Spec.ClusterIPs
	if len(in) == 0 && s.Spec.ClusterIP != "" {
		in = []string{s.Spec.ClusterIP}
	}
	return parseIPs(in) // "None" does not parse
}

// removeFrom removes v from the list m[k], and the key with its last entry.
func removeFrom[K comparable, V any](m map[K][]*V, k K, v *V) {
	list := slices.DeleteFunc(m[k], func(e *V) bool { return e == v })
	if len(list) == 0 {
		delete(m, k)
		return
	}
	m[k] = list
}
