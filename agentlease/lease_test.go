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

package agentlease

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

const ns = "flowscope-system"

func TestEncodeApplied(t *testing.T) {
	for _, tc := range []struct {
		in   map[types.UID]int64
		want string
	}{
		{nil, `{}`},
		{map[types.UID]int64{}, `{}`},
		{map[types.UID]int64{"b": 2, "a": 1, "c": 30}, `{"a":1,"b":2,"c":30}`},
		{map[types.UID]int64{`q"u`: 1}, `{"q\"u":1}`},
	} {
		got, dropped := encodeApplied(tc.in, MaxAppliedBytes)
		if got != tc.want || dropped != 0 {
			t.Errorf("encodeApplied(%v) = %s, %d; want %s, 0", tc.in, got, dropped, tc.want)
		}
		back, ok := Applied(lease(got))
		if !ok || !maps.Equal(back, tc.in) {
			t.Errorf("Applied(%s) = %v, %t; want %v", got, back, ok, tc.in)
		}
	}
}

func TestEncodeAppliedTruncates(t *testing.T) {
	in := map[types.UID]int64{"a": 1, "b": 2, "c": 3}
	// {"a":1,"b":2} is 13 bytes; the "c" entry would make it 19.
	for limit, want := range map[int]struct {
		enc     string
		dropped int
	}{
		19: {`{"a":1,"b":2,"c":3}`, 0},
		18: {`{"a":1,"b":2}`, 1},
		13: {`{"a":1,"b":2}`, 1},
		12: {`{"a":1}`, 2},
		1:  {`{}`, 3},
	} {
		enc, dropped := encodeApplied(in, limit)
		if enc != want.enc || dropped != want.dropped {
			t.Errorf("limit %d: got %s, %d; want %s, %d", limit, enc, dropped, want.enc, want.dropped)
		}
	}

	many := map[types.UID]int64{}
	for i := range 5000 {
		many[types.UID(fmt.Sprintf("%08d-0000-4000-8000-000000000000", i))] = int64(i)
	}
	enc, dropped := encodeApplied(many, MaxAppliedBytes)
	if len(enc) > MaxAppliedBytes || dropped == 0 {
		t.Fatalf("5,000 policies: %d bytes, %d left out; want at most %d bytes and some left out", len(enc), dropped, MaxAppliedBytes)
	}
	got, ok := Applied(lease(enc))
	if !ok || len(got) != len(many)-dropped {
		t.Fatalf("Applied: %d policies, %t; want %d", len(got), ok, len(many)-dropped)
	}
	for i := range len(got) { // the first UIDs in order are kept
		uid := types.UID(fmt.Sprintf("%08d-0000-4000-8000-000000000000", i))
		if got[uid] != int64(i) {
			t.Fatalf("policy %s: generation %d; want %d", uid, got[uid], i)
		}
	}
}

func TestAppliedAbsentOrMalformed(t *testing.T) {
	for _, l := range []*coordinationv1.Lease{{}, lease(""), lease("null"), lease("[1]"), lease(`{"a":"x"}`)} {
		if m, ok := Applied(l); ok || m != nil {
			t.Errorf("Applied(%v) = %v, %t; want nil, false", l.Annotations, m, ok)
		}
	}
}

func TestLive(t *testing.T) {
	now := time.Now()
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: Name("n1"), Annotations: map[string]string{AddressAnnotation: "10.0.0.1:9443"}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("n1"), LeaseDurationSeconds: ptr.To(int32(30)),
			RenewTime: ptr.To(metav1.NewMicroTime(now.Add(-20 * time.Second)))},
	}
	if node, addr, live := Live(l, now); node != "n1" || addr != "10.0.0.1:9443" || !live {
		t.Errorf("Live = %s, %s, %t; want n1, 10.0.0.1:9443, true", node, addr, live)
	}
	if _, _, live := Live(l, now.Add(11*time.Second)); live {
		t.Error("Live after its duration = true")
	}
	l.Name = Name("n2")
	if _, _, live := Live(l, now); live {
		t.Error("Live of a Lease named for another node than its holder = true")
	}
	l.Name = Name("n1")
	l.Annotations = nil
	if _, _, live := Live(l, now); live {
		t.Error("Live without an address = true")
	}
}

func TestKeeperReportsApplied(t *testing.T) {
	client := fake.NewClientset()
	k := NewKeeper(client, ns, "n1", "10.0.0.1:9443")
	k.renewEvery = time.Hour // only the first renewal and changes write
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { k.Run(ctx); close(done) }()

	l := waitLease(t, client, func(l *coordinationv1.Lease) bool { return true })
	if l.Labels[ComponentLabel] != ComponentValue {
		t.Errorf("labels %v; want %s=%s", l.Labels, ComponentLabel, ComponentValue)
	}
	if node, addr, live := Live(l, time.Now()); node != "n1" || addr != "10.0.0.1:9443" || !live {
		t.Errorf("Live = %s, %s, %t; want n1, 10.0.0.1:9443, true", node, addr, live)
	}
	if m, ok := Applied(l); ok {
		t.Errorf("Applied before SetApplied = %v; want none", m)
	}

	// A burst of changes is one write, within about settle.
	start := time.Now()
	before := updates(client)
	for g := int64(1); g <= 20; g++ {
		k.SetApplied(map[types.UID]int64{"u1": g, "u2": 1})
	}
	l = waitLease(t, client, func(l *coordinationv1.Lease) bool {
		m, _ := Applied(l)
		return m["u1"] == 20
	})
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the report took %v; want about %v", took, settle)
	}
	if m, ok := Applied(l); !ok || !maps.Equal(m, map[types.UID]int64{"u1": 20, "u2": 1}) {
		t.Errorf("Applied = %v, %t; want u1:20 u2:1", m, ok)
	}
	time.Sleep(3 * settle)
	if n := updates(client) - before; n != 1 {
		t.Errorf("%d updates for a burst of 20 changes; want 1", n)
	}

	// The same set again writes nothing.
	before = updates(client)
	k.SetApplied(map[types.UID]int64{"u2": 1, "u1": 20})
	time.Sleep(3 * settle)
	if n := updates(client) - before; n != 0 {
		t.Errorf("%d updates for an unchanged set; want 0", n)
	}

	// The empty set is a report too.
	k.SetApplied(map[types.UID]int64{})
	waitLease(t, client, func(l *coordinationv1.Lease) bool {
		m, ok := Applied(l)
		return ok && len(m) == 0
	})
	cancel()
	<-done
}

func TestKeeperRenews(t *testing.T) {
	client := fake.NewClientset()
	k := NewKeeper(client, ns, "n1", "10.0.0.1:9443")
	k.renewEvery = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { k.Run(ctx); close(done) }()
	first := waitLease(t, client, func(l *coordinationv1.Lease) bool { return true }).Spec.RenewTime.Time
	waitLease(t, client, func(l *coordinationv1.Lease) bool { return l.Spec.RenewTime.After(first) })
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestKeeperOwnsTheReport(t *testing.T) {
	// A Lease left by a previous run of the agent, which applied u1.
	old := lease(`{"u1":3}`)
	old.Name, old.Namespace = Name("n1"), ns
	old.Annotations[AppliedTruncatedAnnotation] = "7"
	old.Annotations["other"] = "kept"
	client := fake.NewClientset(old)
	k := NewKeeper(client, ns, "n1", "10.0.0.2:9443")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go k.Run(ctx)
	l := waitLease(t, client, func(l *coordinationv1.Lease) bool {
		return l.Annotations[AddressAnnotation] == "10.0.0.2:9443"
	})
	if m, ok := Applied(l); ok {
		t.Errorf("a new run reports %v before SetApplied; want nothing", m)
	}
	if _, ok := l.Annotations[AppliedTruncatedAnnotation]; ok || l.Annotations["other"] != "kept" {
		t.Errorf("annotations %v; want no truncation mark and other=kept", l.Annotations)
	}
}

func TestSetAppliedOnNilKeeper(_ *testing.T) {
	var k *Keeper
	k.SetApplied(map[types.UID]int64{"u": 1})
}

func lease(applied string) *coordinationv1.Lease {
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{AppliedAnnotation: applied}}}
}

func updates(client *fake.Clientset) int {
	n := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "update" && a.GetResource().Resource == "leases" {
			n++
		}
	}
	return n
}

func waitLease(t *testing.T, client *fake.Clientset, cond func(*coordinationv1.Lease) bool) *coordinationv1.Lease {
	t.Helper()
	var last *coordinationv1.Lease
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		l, err := client.CoordinationV1().Leases(ns).Get(context.Background(), Name("n1"), metav1.GetOptions{})
		if err == nil {
			last = l
			if cond(l) {
				return l
			}
		} else if !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the lease did not get there in 5s; last: %+v", last)
	return nil
}
