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

package agentclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"flowscope.io/flowscope/agentlease"
	"flowscope.io/flowscope/agentwire"
)

func agentLease(node, addr string, renewed time.Time) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: agentlease.Name(node), Namespace: "flowscope-system",
			Annotations: map[string]string{agentlease.AddressAnnotation: addr}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(node), RenewTime: &metav1.MicroTime{Time: renewed},
			LeaseDurationSeconds: ptr.To(int32(agentlease.Duration / time.Second))},
	}
}

func leaseStore(t *testing.T, leases ...*coordinationv1.Lease) cache.Store {
	t.Helper()
	s := cache.NewStore(cache.MetaNamespaceKeyFunc)
	for _, l := range leases {
		if err := s.Add(l); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func nodes(p *Pool) []string {
	var out []string
	for _, a := range p.List() {
		out = append(out, a.Node()+"="+a.Address())
	}
	return out
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func TestPoolAnnouncesAgentsThatJoinAndLeave(t *testing.T) {
	p := NewPool(&tls.Config{}, map[string]string{"static": "127.0.0.1:1"})
	defer p.Close()
	now := time.Now()
	steps := []struct {
		name    string
		leases  []*coordinationv1.Lease
		want    []string
		changed bool
	}{
		{"a Lease appears", []*coordinationv1.Lease{agentLease("a", "127.0.0.1:2", now)},
			[]string{"a=127.0.0.1:2", "static=127.0.0.1:1"}, true},
		{"it is renewed", []*coordinationv1.Lease{agentLease("a", "127.0.0.1:2", now.Add(time.Second))},
			[]string{"a=127.0.0.1:2", "static=127.0.0.1:1"}, false},
		{"the agent moves", []*coordinationv1.Lease{agentLease("a", "127.0.0.1:3", now)},
			[]string{"a=127.0.0.1:3", "static=127.0.0.1:1"}, true},
		{"its Lease expires", []*coordinationv1.Lease{agentLease("a", "127.0.0.1:3", now.Add(-time.Hour))},
			[]string{"static=127.0.0.1:1"}, true},
	}
	for _, s := range steps {
		changed := p.Changed()
		p.resync(leaseStore(t, s.leases...))
		if got := nodes(p); !slices.Equal(got, s.want) {
			t.Errorf("%s: agents %v, want %v", s.name, got, s.want)
		}
		if closed(changed) != s.changed {
			t.Errorf("%s: Changed closed = %t, want %t", s.name, closed(changed), s.changed)
		}
	}
}

// tlsAgent serves agent over TLS on a local port, with a self-signed
// certificate that roots trust for the DNS names dnsNames, and returns its
// address.
func tlsAgent(t *testing.T, agent agentwire.Server, roots *x509.CertPool, dnsNames ...string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "agent"}, DNSNames: dnsNames,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots.AddCert(cert)
	creds := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	srv := grpc.NewServer(append(agentwire.ServerOptions(), grpc.Creds(creds))...)
	agentwire.Register(srv, agent)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// TestPoolAgentsFollowTheirLeases: an agent whose Lease appears is dialed
// and serves its subscriptions' Feed; a renewed Lease keeps the same
// Agent, so watches keep their subscriptions; an agent that moves is a new
// Agent at the new address, and the old one's Feed ends, as it does when
// its Lease expires.
func TestPoolAgentsFollowTheirLeases(t *testing.T) {
	roots := x509.NewCertPool()
	here, there := newFakeAgent(), newFakeAgent()
	hereAddr, thereAddr := tlsAgent(t, here, roots, "a.agents.flowscope.io"), tlsAgent(t, there, roots, "a.agents.flowscope.io")
	p := NewPool(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots}, nil)
	defer p.Close()
	now := time.Now()

	p.resync(leaseStore(t, agentLease("a", hereAddr, now)))
	a, ok := p.Get("a")
	if !ok {
		t.Fatal("the agent of a new Lease did not join")
	}
	subscribe(a, all, 10, 100)
	first := here.next(t)
	if req := first.nextSubscribe(t); req.ID != 1 || req.FromRV != 10 {
		t.Errorf("subscribed with %+v", *req)
	}
	first.send(progress(20))
	woken := p.Progressed()
	waitUntil(t, "the watermark", func() bool { return a.Watermark() == 20 })
	select {
	case <-woken:
	case <-time.After(wait):
		t.Error("the pool's watches were not woken by the agent's watermark")
	}

	p.resync(leaseStore(t, agentLease("a", hereAddr, now.Add(time.Second))))
	if renewed, _ := p.Get("a"); renewed != a {
		t.Error("a renewed Lease replaced the agent")
	}

	changed := p.Changed()
	p.resync(leaseStore(t, agentLease("a", thereAddr, now.Add(2*time.Second))))
	moved, _ := p.Get("a")
	if moved == a || moved.Address() != thereAddr || !closed(changed) {
		t.Fatalf("after the move: agent %p at %s (was %p), changed %t", moved, moved.Address(), a, closed(changed))
	}
	select {
	case <-first.ctx.Done():
	case <-time.After(wait):
		t.Error("the Feed of the agent that moved did not end")
	}
	subscribe(moved, shop, 0, 100)
	second := there.next(t)
	if req := second.nextSubscribe(t); req.Filter != shop {
		t.Errorf("subscribed at the new address with %+v", *req)
	}

	p.resync(leaseStore(t, agentLease("a", thereAddr, now.Add(-time.Hour))))
	if _, ok := p.Get("a"); ok {
		t.Fatal("the agent of an expired Lease stayed")
	}
	select {
	case <-second.ctx.Done():
	case <-time.After(wait):
		t.Error("the Feed of the agent that left did not end")
	}
}

// TestPoolDialsOnlyTheNodeOfTheLease: the agent at a Lease's address must
// present a certificate that names the Lease's node, and no other: the
// certificate of another node (a compromised node answering for this one),
// of several nodes, a wildcard, or a certificate that names only the host
// (as agents' certificates did before they named their nodes) is refused
// in the handshake, and the agent's calls fail as unavailable.
func TestPoolDialsOnlyTheNodeOfTheLease(t *testing.T) {
	for _, tc := range []struct {
		name     string
		dnsNames []string
		want     string // in the error of a call; "" means it succeeds
	}{
		{"its own node", []string{"a.agents.flowscope.io", "localhost"}, ""},
		{"its own node, in capitals", []string{"A.Agents.Flowscope.IO"}, ""},
		{"another node", []string{"b.agents.flowscope.io", "localhost"}, "not a.agents.flowscope.io"},
		{"a node whose name ends in its own", []string{"xa.agents.flowscope.io"}, "not a.agents.flowscope.io"},
		{"a name under its own", []string{"x.a.agents.flowscope.io"}, "not a.agents.flowscope.io"},
		{"its own and another node", []string{"a.agents.flowscope.io", "b.agents.flowscope.io"}, "names the agents of several nodes (a, b), not only"},
		{"every node", []string{"*.agents.flowscope.io"}, "names the agent of node"},
		{"the host only", []string{"localhost"}, "not a.agents.flowscope.io"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			roots := x509.NewCertPool()
			addr := tlsAgent(t, &lyingAgent{fakeAgent: newFakeAgent(), page: &agentwire.ListResponse{}}, roots, tc.dnsNames...)
			p := NewPool(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots}, nil)
			defer p.Close()
			p.resync(leaseStore(t, agentLease("a", addr, time.Now())))
			a, ok := p.Get("a")
			if !ok {
				t.Fatal("the agent of the Lease did not join")
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			_, err := a.List(ctx, &agentwire.ListRequest{})
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("List: %v; want the agent answered", err)
			case tc.want == "":
			case err == nil:
				t.Errorf("List succeeded; want the agent refused: %s", tc.want)
			case status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), tc.want):
				t.Errorf("List: %v; want Unavailable, %q", err, tc.want)
			}
		})
	}
}

// TestPoolNamesLapsedAgents: an agent whose Lease expired within a day is
// Lapsed, so that lists name it; one back, or gone longer, is not.
func TestPoolNamesLapsedAgents(t *testing.T) {
	p := NewPool(&tls.Config{}, nil)
	defer p.Close()
	now := time.Now()
	p.resync(leaseStore(t,
		agentLease("a", "127.0.0.1:1", now.Add(-time.Minute)),
		agentLease("b", "127.0.0.1:2", now.Add(-2*lapsedMemory)),
	))
	if got := p.Lapsed(); !slices.Equal(got, []string{"a"}) {
		t.Errorf("Lapsed = %v, want [a]", got)
	}
	p.resync(leaseStore(t, agentLease("a", "127.0.0.1:1", now)))
	if got := p.Lapsed(); len(got) != 0 {
		t.Errorf("Lapsed = %v once a renewed its Lease, want none", got)
	}
}
