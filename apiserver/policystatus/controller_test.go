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

package policystatus

import (
	"context"
	"fmt"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"

	"flowscope.io/flowscope/agentlease"
	configv1alpha1 "flowscope.io/flowscope/apis/config/v1alpha1"
	"flowscope.io/flowscope/generated/clientset/versioned/fake"
)

func clusterPolicy(name string, uid types.UID, generation int64) *configv1alpha1.ClusterFlowLogPolicy {
	return &configv1alpha1.ClusterFlowLogPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: uid, Generation: generation},
		Spec:       configv1alpha1.FlowLogPolicySpec{IncludeFilters: []configv1alpha1.FlowLogFilter{{}}},
	}
}

func namespacedPolicy(namespace, name string, uid types.UID, generation int64) *configv1alpha1.FlowLogPolicy {
	return &configv1alpha1.FlowLogPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, UID: uid, Generation: generation},
		Spec: configv1alpha1.FlowLogPolicySpec{IncludeFilters: []configv1alpha1.FlowLogFilter{{}},
			Outputs: []configv1alpha1.Output{configv1alpha1.OutputOTLP}},
	}
}

// statusWrites counts the status updates made through client.
func statusWrites(client *fake.Clientset) int {
	n := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "update" && a.GetSubresource() == "status" {
			n++
		}
	}
	return n
}

// startController runs a controller until the test ends.
func startController(t *testing.T, client *fake.Clientset, kube *kubefake.Clientset, coalesce, recheck time.Duration) {
	t.Helper()
	c := newController(client, kube, ns)
	c.coalesce, c.recheck = coalesce, recheck
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// waitStatus waits until get's status satisfies cond.
func waitStatus(t *testing.T, what string, get func() (*configv1alpha1.FlowLogPolicyStatus, error), cond func(*configv1alpha1.FlowLogPolicyStatus) bool) {
	t.Helper()
	var last *configv1alpha1.FlowLogPolicyStatus
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		st, err := get()
		if err != nil {
			t.Fatal(err)
		}
		if last = st; cond(st) {
			return
		}
	}
	t.Fatalf("%s: not reached in 10s; last status %+v", what, last)
}

func clusterStatus(client *fake.Clientset, name string) func() (*configv1alpha1.FlowLogPolicyStatus, error) {
	return func() (*configv1alpha1.FlowLogPolicyStatus, error) {
		p, err := client.ConfigV1alpha1().ClusterFlowLogPolicies().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return &p.Status, nil
	}
}

func ready(status metav1.ConditionStatus, reason string, applied, total int32) func(*configv1alpha1.FlowLogPolicyStatus) bool {
	return func(st *configv1alpha1.FlowLogPolicyStatus) bool {
		r := meta.FindStatusCondition(st.Conditions, configv1alpha1.ConditionReady)
		return r != nil && r.Status == status && r.Reason == reason &&
			st.Nodes != nil && *st.Nodes == configv1alpha1.NodeCount{Applied: applied, Total: total}
	}
}

func updateLease(t *testing.T, kube *kubefake.Clientset, l *coordinationv1.Lease) {
	t.Helper()
	if _, err := kube.CoordinationV1().Leases(ns).Update(context.Background(), l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestControllerReadyWhenAgentsApply(t *testing.T) {
	now := time.Now()
	client := fake.NewSimpleClientset(clusterPolicy("all", "u1", 3), namespacedPolicy("shop", "web", "u2", 1))
	noOTLP := agentLease("b", now, map[types.UID]int64{"u1": 2}) // lags
	noOTLP.Annotations[agentlease.OutputsAnnotation] = "Store,File"
	kube := kubefake.NewClientset(
		agentLease("a", now, map[types.UID]int64{"u1": 3, "u2": 1}),
		noOTLP,
	)
	startController(t, client, kube, 100*time.Millisecond, time.Hour)

	waitStatus(t, "one agent lags", clusterStatus(client, "all"), ready("False", "Applying", 1, 2))
	st, _ := clusterStatus(client, "all")()
	if r := meta.FindStatusCondition(st.Conditions, configv1alpha1.ConditionReady); r.Message != "1 of 2 agents apply generation 3" || st.ObservedGeneration != 3 {
		t.Errorf("Ready message %q, observedGeneration %d; want 1 of 2 agents apply generation 3, 3", r.Message, st.ObservedGeneration)
	}
	web := func() (*configv1alpha1.FlowLogPolicyStatus, error) {
		p, err := client.ConfigV1alpha1().FlowLogPolicies("shop").Get(context.Background(), "web", metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return &p.Status, nil
	}
	waitStatus(t, "the namespaced policy", web, ready("False", "Applying", 1, 2))
	st, _ = web()
	if a := meta.FindStatusCondition(st.Conditions, configv1alpha1.ConditionAccepted); a.Status != "True" || a.Reason != configv1alpha1.ReasonOutputUnset {
		t.Errorf("Accepted of an OTLP policy that agent b cannot export %+v; want True, %s", a, configv1alpha1.ReasonOutputUnset)
	}

	// b catches up: the Lease change is seen and both are Ready.
	updateLease(t, kube, agentLease("b", time.Now(), map[types.UID]int64{"u1": 3, "u2": 1}))
	waitStatus(t, "both agents apply", clusterStatus(client, "all"), ready("True", "Applied", 2, 2))
	waitStatus(t, "both agents apply the namespaced policy", web, ready("True", "Applied", 2, 2))

	// A new generation is not Ready until the agents report it.
	p, _ := client.ConfigV1alpha1().ClusterFlowLogPolicies().Get(context.Background(), "all", metav1.GetOptions{})
	p.Generation = 4
	if _, err := client.ConfigV1alpha1().ClusterFlowLogPolicies().Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, "generation 4", clusterStatus(client, "all"), func(st *configv1alpha1.FlowLogPolicyStatus) bool {
		return st.ObservedGeneration == 4 && ready("False", "Applying", 0, 2)(st)
	})
}

func TestControllerNoAgents(t *testing.T) {
	client := fake.NewSimpleClientset(clusterPolicy("all", "u1", 1))
	kube := kubefake.NewClientset(agentLease("gone", time.Now().Add(-time.Minute), map[types.UID]int64{"u1": 1}))
	startController(t, client, kube, 100*time.Millisecond, time.Hour)
	waitStatus(t, "no live agent", clusterStatus(client, "all"), ready("False", "NoAgents", 0, 0))
}

func TestControllerLeaseExpires(t *testing.T) {
	// b's Lease runs out 1.5 s from now, with no event: the recheck sees it.
	client := fake.NewSimpleClientset(clusterPolicy("all", "u1", 1))
	kube := kubefake.NewClientset(
		agentLease("a", time.Now(), map[types.UID]int64{"u1": 1}),
		agentLease("b", time.Now().Add(-28500*time.Millisecond), nil),
	)
	startController(t, client, kube, 100*time.Millisecond, 100*time.Millisecond)
	waitStatus(t, "b does not apply it", clusterStatus(client, "all"), ready("False", "Applying", 1, 2))
	waitStatus(t, "b's Lease expired", clusterStatus(client, "all"), ready("True", "Applied", 1, 1))
}

func TestControllerWritesOnlyChanges(t *testing.T) {
	now := time.Now()
	client := fake.NewSimpleClientset(clusterPolicy("all", "u1", 1), namespacedPolicy("shop", "web", "u2", 1))
	kube := kubefake.NewClientset(
		agentLease("a", now, map[types.UID]int64{"u1": 1, "u2": 1}),
		agentLease("b", now, map[types.UID]int64{"u1": 1, "u2": 1}),
	)
	// Every policy is evaluated every 20 ms.
	startController(t, client, kube, 100*time.Millisecond, 20*time.Millisecond)
	waitStatus(t, "ready", clusterStatus(client, "all"), ready("True", "Applied", 2, 2))
	time.Sleep(200 * time.Millisecond)
	if n := statusWrites(client); n != 2 {
		t.Fatalf("%d status writes for 2 policies; want 2", n)
	}

	// Renewals, and a report that changes nothing for these policies.
	updateLease(t, kube, agentLease("a", time.Now(), map[types.UID]int64{"u1": 1, "u2": 1}))
	updateLease(t, kube, agentLease("b", time.Now(), map[types.UID]int64{"u1": 1, "u2": 1, "u3": 7}))
	time.Sleep(500 * time.Millisecond)
	if n := statusWrites(client); n != 2 {
		t.Errorf("%d status writes after renewals and an unrelated report; want still 2", n)
	}
}

func TestControllerCoalescesReports(t *testing.T) {
	now := time.Now()
	const agentCount = 10
	client := fake.NewSimpleClientset(clusterPolicy("all", "u1", 2))
	var leases []*coordinationv1.Lease
	for i := range agentCount {
		leases = append(leases, agentLease(fmt.Sprint("n", i), now, map[types.UID]int64{"u1": 1}))
	}
	kube := kubefake.NewClientset()
	for _, l := range leases {
		if _, err := kube.CoordinationV1().Leases(ns).Create(context.Background(), l, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	startController(t, client, kube, coalesce, time.Hour)
	waitStatus(t, "none applies generation 2", clusterStatus(client, "all"), ready("False", "Applying", 0, agentCount))
	before := statusWrites(client)

	// Every agent reports generation 2 at once: one write.
	for i := range agentCount {
		updateLease(t, kube, agentLease(fmt.Sprint("n", i), time.Now(), map[types.UID]int64{"u1": 2}))
	}
	waitStatus(t, "all apply generation 2", clusterStatus(client, "all"), ready("True", "Applied", agentCount, agentCount))
	time.Sleep(300 * time.Millisecond)
	if n := statusWrites(client) - before; n != 1 {
		t.Errorf("%d status writes for %d agents reporting together; want 1", n, agentCount)
	}
}

func TestRunOnlyTheLeaderWrites(t *testing.T) {
	now := time.Now()
	// The replicas share the cluster's Leases; each has its own policy
	// client, so that the writes of each are counted apart.
	kube := kubefake.NewClientset(agentLease("a", now, map[types.UID]int64{"u1": 1}))
	clientA := fake.NewSimpleClientset(clusterPolicy("all", "u1", 1))
	clientB := fake.NewSimpleClientset(clusterPolicy("all", "u1", 1))
	timing := Options{Namespace: ns, LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 100 * time.Millisecond}

	run := func(client *fake.Clientset, identity string) (stop func()) {
		o := timing
		o.Identity = identity
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Run(ctx, client, kube, o) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run %s: %v", identity, err)
			}
		}
	}
	stopA := run(clientA, "a")
	waitStatus(t, "a leads and writes", clusterStatus(clientA, "all"), ready("True", "Applied", 1, 1))
	stopB := run(clientB, "b")
	defer stopB()
	time.Sleep(time.Second)
	if n := statusWrites(clientB); n != 0 {
		t.Fatalf("b, not leading, wrote %d statuses", n)
	}
	lock, err := kube.CoordinationV1().Leases(ns).Get(context.Background(), LockName, metav1.GetOptions{})
	if err != nil || lock.Spec.HolderIdentity == nil || *lock.Spec.HolderIdentity != "a" {
		t.Fatalf("lock %+v, %v; want held by a", lock, err)
	}

	// a stops and releases the lock: b takes over and writes.
	stopA()
	waitStatus(t, "b leads and writes", clusterStatus(clientB, "all"), ready("True", "Applied", 1, 1))
}

// TestSyncWritesOnce drives sync by hand against informer caches that are
// filled by the test, never started: a status just written is not written
// again while the cache still holds the policy from before the write.
func TestSyncWritesOnce(t *testing.T) {
	ctx := context.Background()
	p := clusterPolicy("all", "u1", 1)
	p.ResourceVersion = "10"
	client := fake.NewSimpleClientset(p)
	c := newController(client, kubefake.NewClientset(), ns)
	policies := c.policies.Config().V1alpha1().ClusterFlowLogPolicies().Informer().GetIndexer()
	leases := c.kube.Coordination().V1().Leases().Informer().GetIndexer()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(policies.Add(p))
	must(leases.Add(agentLease("a", time.Now(), map[types.UID]int64{"u1": 1})))
	must(leases.Add(agentLease("b", time.Now(), nil)))
	k := key{name: "all"}

	must(c.sync(ctx, k))
	if n := statusWrites(client); n != 1 {
		t.Fatalf("%d writes; want 1", n)
	}
	must(c.sync(ctx, k)) // the cache has not caught up
	if n := statusWrites(client); n != 1 {
		t.Fatalf("%d writes after a sync with the cache from before the write; want still 1", n)
	}

	// The cache catches up with the write.
	got, err := client.ConfigV1alpha1().ClusterFlowLogPolicies().Get(ctx, "all", metav1.GetOptions{})
	must(err)
	got.ResourceVersion = "11"
	must(policies.Update(got))
	must(c.sync(ctx, k))
	if n := statusWrites(client); n != 1 {
		t.Fatalf("%d writes after the cache caught up; want still 1", n)
	}
	if !ready("False", "Applying", 1, 2)(&got.Status) {
		t.Errorf("status %+v; want 1 of 2 applying", got.Status)
	}

	// b applies it: one more write, whichever version the cache holds.
	must(leases.Update(agentLease("b", time.Now(), map[types.UID]int64{"u1": 1})))
	must(c.sync(ctx, k))
	must(c.sync(ctx, k))
	if n := statusWrites(client); n != 2 {
		t.Fatalf("%d writes; want 2", n)
	}
	st, err := clusterStatus(client, "all")()
	must(err)
	if !ready("True", "Applied", 2, 2)(st) {
		t.Errorf("status %+v; want Ready", st)
	}

	// A deleted policy is forgotten.
	must(policies.Delete(got))
	must(c.sync(ctx, k))
	if len(c.written) != 0 {
		t.Errorf("%d written policies remembered after the deletion; want 0", len(c.written))
	}
}
