package agentclient

import (
	"crypto/tls"
	"slices"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"flowscope.io/flowscope/agentlease"
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
	p := NewPool(&tls.Config{}, "", map[string]string{"static": "127.0.0.1:1"})
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
