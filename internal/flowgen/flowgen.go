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

// Package flowgen makes up realistic Hubble export lines, for demos and
// tests of everything that reads them: the flows of a small shop
// application on one node, as Cilium's exporter would write them.
//
// The node runs a pod of each of shop/web (Deployment), shop/cart
// (Deployment), shop/db (StatefulSet), payments/api (Deployment) and
// monitoring/prometheus (StatefulSet), with addresses in
// 10.244.<node index>.0/24; another node runs more web, cart and api pods
// and CoreDNS. Traffic: TCP between the pods, seen at both ends when both
// are here (egress at the client, ingress at the server); DNS over UDP to
// kube-dns at 10.96.0.10:53 with L7 records; HTTP with L7 records on
// web:8080; connections to and from the world; and drops by policy
// (monitoring to payments:5432, cart to the world).
package flowgen

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/netip"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/hubble/format"
)

// KubeDNS is the address of the cluster's DNS service.
var KubeDNS = netip.MustParseAddr("10.96.0.10")

// Options shape a Generator.
type Options struct {
	// NodeName is the node the flows are observed on.
	NodeName string
	// NodeIndex is the third octet of the node's pod addresses, 0 to 255;
	// negative means NodeIndexFor(NodeName).
	NodeIndex int
	// Seed makes the sequence of flows repeatable.
	Seed uint64
	// Now is the clock flows are stamped with; time.Now when nil.
	Now func() time.Time
}

// NodeIndexFor derives a node index from a node's name, 1 to 250.
func NodeIndexFor(nodeName string) int {
	h := fnv.New32a()
	h.Write([]byte(nodeName))
	return 1 + int(h.Sum32()%250)
}

// pod is a simulated pod, or a world address when name is empty.
type pod struct {
	namespace, name string
	ip              netip.Addr
	labels          map[string]string
	workload        v1alpha1.Workload
	service         string
	local           bool
}

// endpoint describes the pod as one end of a flow. Only a server end has a
// service: Hubble finds services by address and port.
func (p *pod) endpoint(port int32, server bool) *v1alpha1.Endpoint {
	e := &v1alpha1.Endpoint{IP: p.ip.String(), Port: port, Namespace: p.namespace, PodName: p.name,
		Labels: p.labels}
	if server {
		e.Service = p.service
	}
	if p.workload.Name != "" {
		e.Workloads = []v1alpha1.Workload{p.workload}
	}
	return e
}

// iface is the name Cilium gives a pod's host-side veth.
func (p *pod) iface() string {
	h := fnv.New64a()
	h.Write([]byte(p.namespace + "/" + p.name))
	return fmt.Sprintf("lxc%012x", h.Sum64()&0xffffffffffff)
}

// Generator produces flows one export line at a time. It is not safe for
// concurrent use.
type Generator struct {
	node  string
	now   func() time.Time
	rng   *rand.Rand
	queue [][]byte

	web, cart, db, api, prometheus        *pod
	remoteWeb, remoteCart, remoteAPI, dns *pod
}

// New returns a Generator.
func New(opts Options) *Generator {
	idx := opts.NodeIndex
	if idx < 0 || idx > 255 {
		idx = NodeIndexFor(opts.NodeName)
	}
	remote := idx%250 + 1
	if remote == idx {
		remote++
	}
	g := &Generator{
		node: opts.NodeName,
		now:  opts.Now,
		rng:  rand.New(rand.NewPCG(opts.Seed, 0x666c6f7773636f70)),
	}
	if g.now == nil {
		g.now = time.Now
	}
	addr := func(node, host int) netip.Addr { return netip.AddrFrom4([4]byte{10, 244, byte(node), byte(host)}) }
	deployment := func(node int, ns, app string, host int) *pod {
		hash, suffix := podNameParts(fmt.Sprintf("%s/%s/%d", ns, app, node))
		return &pod{namespace: ns, name: app + "-" + hash + "-" + suffix, ip: addr(node, host),
			labels:   map[string]string{"app": app, "pod-template-hash": hash},
			workload: v1alpha1.Workload{Kind: "Deployment", Name: app}, service: app, local: node == idx}
	}
	statefulSet := func(ns, app string, labels map[string]string, ordinal, host int) *pod {
		name := fmt.Sprintf("%s-%d", app, ordinal)
		labels["statefulset.kubernetes.io/pod-name"] = name
		return &pod{namespace: ns, name: name, ip: addr(idx, host), labels: labels,
			workload: v1alpha1.Workload{Kind: "StatefulSet", Name: app}, service: app, local: true}
	}
	g.web = deployment(idx, "shop", "web", 11)
	g.cart = deployment(idx, "shop", "cart", 12)
	g.db = statefulSet("shop", "db", map[string]string{"app": "db"}, idx%3, 13)
	g.api = deployment(idx, "payments", "api", 14)
	g.prometheus = statefulSet("monitoring", "prometheus",
		map[string]string{"app.kubernetes.io/name": "prometheus"}, idx%2, 15)
	g.remoteWeb = deployment(remote, "shop", "web", 21)
	g.remoteCart = deployment(remote, "shop", "cart", 22)
	g.remoteAPI = deployment(remote, "payments", "api", 24)
	hash, suffix := podNameParts(fmt.Sprintf("kube-system/coredns/%d", remote))
	g.dns = &pod{namespace: "kube-system", name: "coredns-" + hash + "-" + suffix, ip: KubeDNS,
		labels:   map[string]string{"k8s-app": "kube-dns", "pod-template-hash": hash},
		workload: v1alpha1.Workload{Kind: "Deployment", Name: "coredns"}, service: "kube-dns"}
	return g
}

// podNameParts derives a ReplicaSet hash and a pod suffix the way
// Kubernetes spells them, from a seed string.
func podNameParts(seed string) (hash, suffix string) {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	h := fnv.New64a()
	h.Write([]byte(seed))
	n := h.Sum64()
	b := make([]byte, 15)
	for i := range b {
		b[i] = alphabet[n%uint64(len(alphabet))]
		n /= uint64(len(alphabet))
		if n == 0 {
			n = h.Sum64() ^ uint64(i)*0x9e3779b97f4a7c15
		}
	}
	return string(b[:10]), string(b[10:])
}

// Next returns the next export line, without a newline.
func (g *Generator) Next() ([]byte, error) {
	for len(g.queue) == 0 {
		for _, f := range g.scenario() {
			line, err := format.ExportLine(f)
			if err != nil {
				return nil, fmt.Errorf("generate flow: %w", err)
			}
			g.queue = append(g.queue, line)
		}
	}
	line := g.queue[0]
	g.queue = g.queue[1:]
	return line, nil
}

// Generate returns n export lines from a new Generator.
func Generate(n int, opts Options) ([][]byte, error) {
	g := New(opts)
	lines := make([][]byte, 0, n)
	for range n {
		line, err := g.Next()
		if err != nil {
			return nil, err
		}
		lines = append(lines, line)
	}
	return lines, nil
}

// scenario makes up one exchange and returns the flows it is observed as.
func (g *Generator) scenario() []*v1alpha1.Flow {
	switch r := g.rng.IntN(100); {
	case r < 18:
		return g.tcp(g.web, g.pick(g.cart, g.remoteCart), 8080, nil)
	case r < 28:
		return g.tcp(g.cart, g.db, 5432, nil)
	case r < 36:
		return g.tcp(g.pick(g.web, g.cart), g.pick(g.api, g.remoteAPI), 8443, nil)
	case r < 38:
		return g.tcp(g.remoteWeb, g.cart, 8080, nil)
	case r < 58:
		return g.dnsLookup()
	case r < 74:
		return g.httpToWeb()
	case r < 80:
		drop := &drop{reason: "POLICY_DENIED", atServer: true}
		return g.tcp(g.prometheus, g.api, 5432, drop)
	case r < 88:
		return g.tcp(g.pick(g.web, g.api), g.world(), 443, nil)
	case r < 92:
		return g.tcp(g.cart, g.world(), 443, &drop{reason: "POLICY_DENIED"})
	case r < 97:
		return g.tcp(g.world(), g.web, 8080, nil)
	default:
		return g.ping(g.prometheus, g.pick(g.remoteWeb, g.web))
	}
}

func (g *Generator) pick(pods ...*pod) *pod { return pods[g.rng.IntN(len(pods))] }

var worldAddrs = []netip.Addr{
	netip.MustParseAddr("93.184.215.14"), netip.MustParseAddr("151.101.65.140"),
	netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("203.0.113.25"),
	netip.MustParseAddr("203.0.113.80"), netip.MustParseAddr("192.0.2.44"),
}

func (g *Generator) world() *pod { return &pod{ip: worldAddrs[g.rng.IntN(len(worldAddrs))]} }

func (g *Generator) ephemeralPort() int32 { return 32768 + g.rng.Int32N(28232) }

func (g *Generator) uid() types.UID {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], g.rng.Uint64())
	binary.LittleEndian.PutUint64(b[8:], g.rng.Uint64())
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return types.UID(fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]))
}

// drop makes a scenario's packet dropped, at the client's egress or the
// server's ingress: where the denying policy applies.
type drop struct {
	reason   string
	atServer bool
}

// packet is one packet or L7 message between a client and a server.
type packet struct {
	client, server         *pod
	clientPort, serverPort int32
	protocol               v1alpha1.Protocol
	flags                  []string
	icmp                   *v1alpha1.ICMP
	reply                  bool
	l7                     *v1alpha1.Layer7
}

// observe returns the flows a packet is recorded as: at the client's egress
// and at the server's ingress, for those ends on this node.
func (g *Generator) observe(p packet, d *drop) []*v1alpha1.Flow {
	t := g.now()
	var flows []*v1alpha1.Flow
	for _, atClient := range []bool{true, false} {
		local, direction := p.server, v1alpha1.TrafficDirectionIngress
		if atClient {
			local, direction = p.client, v1alpha1.TrafficDirectionEgress
		}
		if !local.local {
			continue
		}
		f := g.flow(p, t, direction)
		if d != nil && d.atServer != atClient {
			f.Verdict, f.DropReason, f.IsReply = v1alpha1.VerdictDropped, d.reason, nil
		}
		f.Interface = local.iface()
		flows = append(flows, f)
		if f.Verdict == v1alpha1.VerdictDropped {
			break // nothing reaches the other end
		}
		// The other end sees the packet a little later.
		t = t.Add(time.Duration(20+g.rng.IntN(380)) * time.Microsecond)
	}
	return flows
}

func (g *Generator) flow(p packet, t time.Time, direction v1alpha1.TrafficDirection) *v1alpha1.Flow {
	src, dst := p.client, p.server
	srcPort, dstPort := p.clientPort, p.serverPort
	if p.reply {
		src, dst, srcPort, dstPort = dst, src, dstPort, srcPort
	}
	ipVersion := v1alpha1.IPv4
	if src.ip.Is6() {
		ipVersion = v1alpha1.IPv6
	}
	f := &v1alpha1.Flow{
		ObjectMeta:       metav1.ObjectMeta{UID: g.uid()},
		Time:             metav1.NewMicroTime(t),
		NodeName:         g.node,
		Verdict:          v1alpha1.VerdictForwarded,
		TrafficDirection: direction,
		IsReply:          &p.reply,
		IP:               &v1alpha1.IP{Source: src.ip.String(), Destination: dst.ip.String(), IPVersion: ipVersion},
		L4:               &v1alpha1.Layer4{Protocol: p.protocol, TCPFlags: p.flags, ICMP: p.icmp},
		Source:           src.endpoint(srcPort, p.reply),
		Destination:      dst.endpoint(dstPort, !p.reply),
		L7:               p.l7,
	}
	if p.icmp == nil {
		f.L4.SourcePort, f.L4.DestinationPort = srcPort, dstPort
	}
	return f
}

// tcp is one packet of a connection, at a random point of its life.
func (g *Generator) tcp(client, server *pod, port int32, d *drop) []*v1alpha1.Flow {
	p := packet{client: client, server: server, clientPort: g.ephemeralPort(), serverPort: port,
		protocol: v1alpha1.ProtocolTCP}
	if d == nil {
		switch g.rng.IntN(5) {
		case 0:
			p.flags = []string{"SYN"}
		case 1:
			p.flags, p.reply = []string{"ACK", "SYN"}, true
		case 2:
			p.flags = []string{"ACK", "PSH"}
		case 3:
			p.flags, p.reply = []string{"ACK", "PSH"}, true
		default:
			p.flags, p.reply = []string{"ACK", "FIN"}, g.rng.IntN(2) == 0
		}
	} else {
		p.flags = []string{"SYN"}
	}
	return g.observe(p, d)
}

func (g *Generator) ping(client, server *pod) []*v1alpha1.Flow {
	p := packet{client: client, server: server, protocol: v1alpha1.ProtocolICMPv4, icmp: &v1alpha1.ICMP{Type: 8}}
	if g.rng.IntN(2) == 0 {
		p.reply, p.icmp = true, &v1alpha1.ICMP{Type: 0}
	}
	return g.observe(p, nil)
}

var dnsQueries = map[string][]string{
	"web":        {"cart.shop.svc.cluster.local.", "api.payments.svc.cluster.local.", "cdn.example.com."},
	"cart":       {"db.shop.svc.cluster.local.", "db-0.db.shop.svc.cluster.local."},
	"api":        {"api.stripe.com.", "db.payments.svc.cluster.local."},
	"prometheus": {"web.shop.svc.cluster.local.", "api.payments.svc.cluster.local."},
}

// dnsLookup is a query to kube-dns and its answer, recorded by Cilium's DNS
// proxy at the client.
func (g *Generator) dnsLookup() []*v1alpha1.Flow {
	client := g.pick(g.web, g.cart, g.db, g.api, g.prometheus)
	app := client.workload.Name
	if app == "db" {
		app = "cart"
	}
	query := dnsQueries[app][g.rng.IntN(len(dnsQueries[app]))]
	qtype := "A"
	if g.rng.IntN(4) == 0 {
		qtype = "AAAA"
	}
	p := packet{client: client, server: g.dns, clientPort: g.ephemeralPort(), serverPort: 53,
		protocol: v1alpha1.ProtocolUDP}
	p.l7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeDNS, DNS: &v1alpha1.DNS{Query: query, QTypes: []string{qtype}}}
	flows := g.observe(p, nil)

	answer := &v1alpha1.DNS{Query: query, QTypes: []string{qtype}}
	switch {
	case query == "db.payments.svc.cluster.local." || g.rng.IntN(20) == 0:
		answer.RCode = 3 // NXDOMAIN
	case qtype == "AAAA":
		// The cluster is IPv4 only: an empty answer.
	default:
		answer.TTL = 30
		answer.IPs = []string{netip.AddrFrom4([4]byte{10, 96, byte(1 + g.rng.IntN(254)), byte(1 + g.rng.IntN(254))}).String()}
		answer.RRTypes = []string{"A"}
		if query == "api.stripe.com." {
			answer.TTL, answer.CNAMEs, answer.IPs = 60, []string{"stripe.map.fastly.net."}, []string{"151.101.65.140"}
			answer.RRTypes = []string{"CNAME", "A"}
		}
	}
	p.reply = true
	p.l7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeDNS, DNS: answer,
		Latency: &metav1.Duration{Duration: time.Duration(200+g.rng.IntN(3000)) * time.Microsecond}}
	return append(flows, g.observe(p, nil)...)
}

var webPaths = []string{"/", "/products", "/products/42", "/cart", "/checkout", "/static/app.js"}

// httpToWeb is an HTTP request to web:8080 and its response, recorded by
// Cilium's proxy at web's ingress.
func (g *Generator) httpToWeb() []*v1alpha1.Flow {
	client, path, agent := g.world(), webPaths[g.rng.IntN(len(webPaths))], "Mozilla/5.0"
	if g.rng.IntN(3) == 0 {
		client, path, agent = g.prometheus, "/metrics", "Prometheus/3.1.0"
	}
	url := fmt.Sprintf("http://%s:8080%s", g.web.ip, path)
	headers := []v1alpha1.HTTPHeader{{Key: ":authority", Value: g.web.ip.String() + ":8080"}, {Key: "user-agent", Value: agent}}
	p := packet{client: client, server: g.web, clientPort: g.ephemeralPort(), serverPort: 8080,
		protocol: v1alpha1.ProtocolTCP}
	request := &v1alpha1.HTTP{Method: "GET", URL: url, Protocol: "HTTP/1.1", Headers: headers}
	p.l7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: request}
	flows := g.observeAtServer(p)

	code := int32(200)
	switch r := g.rng.IntN(20); {
	case r == 0:
		code = 500
	case r < 3 && path != "/metrics":
		code = 404
	}
	response := *request
	response.Code = code
	p.reply = true
	p.l7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: &response,
		Latency: &metav1.Duration{Duration: time.Duration(500+g.rng.IntN(40000)) * time.Microsecond}}
	return append(flows, g.observeAtServer(p)...)
}

// observeAtServer records an L7 message where the proxy enforcing the
// server's ingress policy sees it.
func (g *Generator) observeAtServer(p packet) []*v1alpha1.Flow {
	f := g.flow(p, g.now(), v1alpha1.TrafficDirectionIngress)
	f.Interface = p.server.iface()
	return []*v1alpha1.Flow{f}
}
