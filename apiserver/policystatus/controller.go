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

// Package policystatus writes the status of ClusterFlowLogPolicies and
// FlowLogPolicies: whether the spec is accepted, and how many of the live
// agents apply its generation, as their Leases report it. The agents only
// report; one replica of the server, elected with a Lease, writes, once per
// change of a policy's status, however many agents report at once.
package policystatus

import (
	"context"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	coordinationlisters "k8s.io/client-go/listers/coordination/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/agentlease"
	configv1alpha1 "flowscope.io/flowscope/apis/config/v1alpha1"
	"flowscope.io/flowscope/generated/clientset/versioned"
	"flowscope.io/flowscope/generated/informers/externalversions"
	configlisters "flowscope.io/flowscope/generated/listers/config/v1alpha1"
)

const (
	// coalesce is how long a change of the agents' Leases waits before the
	// policies are evaluated, so that agents applying a new generation one
	// after the other make one status write, not one each.
	coalesce = time.Second
	// recheck is how often every policy is evaluated, for the Leases that
	// expire without an event.
	recheck = 5 * time.Second
	workers = 2
)

// key names a policy; namespace is empty for a ClusterFlowLogPolicy.
type key struct{ namespace, name string }

// controller writes policy statuses while this replica leads: a new one
// for every term, with its own informers and queue.
type controller struct {
	client     versioned.Interface
	namespace  string
	leases     coordinationlisters.LeaseNamespaceLister
	cluster    configlisters.ClusterFlowLogPolicyLister
	namespaced configlisters.FlowLogPolicyLister
	queue      workqueue.TypedRateLimitingInterface[key]
	synced     []cache.InformerSynced
	now        func() time.Time
	// coalesce and recheck are the constants of the same names; tests
	// shorten them.
	coalesce, recheck time.Duration

	mu      sync.Mutex
	written map[key]written

	policies externalversions.SharedInformerFactory
	kube     informers.SharedInformerFactory
}

func newController(client versioned.Interface, kube kubernetes.Interface, namespace string) *controller {
	policies := externalversions.NewSharedInformerFactory(client, 0)
	leaseFactory := informers.NewSharedInformerFactoryWithOptions(kube, 0,
		informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = agentlease.ComponentLabel + "=" + agentlease.ComponentValue
		}))
	cpi := policies.Config().V1alpha1().ClusterFlowLogPolicies()
	npi := policies.Config().V1alpha1().FlowLogPolicies()
	li := leaseFactory.Coordination().V1().Leases()
	c := &controller{
		client:     client,
		namespace:  namespace,
		leases:     li.Lister().Leases(namespace),
		cluster:    cpi.Lister(),
		namespaced: npi.Lister(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[key](),
			workqueue.TypedRateLimitingQueueConfig[key]{Name: "flowscope_policy_status"}),
		synced:   []cache.InformerSynced{cpi.Informer().HasSynced, npi.Informer().HasSynced, li.Informer().HasSynced},
		now:      time.Now,
		coalesce: coalesce,
		recheck:  recheck,
		written:  map[key]written{},
		policies: policies,
		kube:     leaseFactory,
	}
	onPolicy := cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		// A deleted policy has no status to write.
	}
	_, _ = cpi.Informer().AddEventHandler(onPolicy)
	_, _ = npi.Informer().AddEventHandler(onPolicy)
	_, _ = li.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { c.enqueueAll(c.coalesce) },
		UpdateFunc: func(old, obj any) {
			if reportChanged(old, obj, c.now()) {
				c.enqueueAll(c.coalesce)
			}
		},
		DeleteFunc: func(any) { c.enqueueAll(c.coalesce) },
	})
	return c
}

// reportChanged tells whether a Lease update can change a policy's
// status: a renewal alone, every 10 s per agent, cannot.
func reportChanged(old, obj any, now time.Time) bool {
	o, ok1 := old.(*coordinationv1.Lease)
	n, ok2 := obj.(*coordinationv1.Lease)
	if !ok1 || !ok2 {
		return true
	}
	oNode, _, oLive := agentlease.Live(o, now)
	nNode, _, nLive := agentlease.Live(n, now)
	return oNode != nNode || oLive != nLive ||
		o.Annotations[agentlease.AppliedAnnotation] != n.Annotations[agentlease.AppliedAnnotation]
}

func (c *controller) enqueue(obj any) {
	k, err := cache.MetaNamespaceKeyFunc(obj)
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	ns, name, err := cache.SplitMetaNamespaceKey(k)
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	c.queue.Add(key{namespace: ns, name: name})
}

// enqueueAll queues every policy after delay: the queue holds a key once,
// so reports arriving meanwhile are read by the same evaluation.
func (c *controller) enqueueAll(delay time.Duration) {
	cps, _ := c.cluster.List(labels.Everything())
	for _, p := range cps {
		c.queue.AddAfter(key{name: p.Name}, delay)
	}
	nps, _ := c.namespaced.List(labels.Everything())
	for _, p := range nps {
		c.queue.AddAfter(key{namespace: p.Namespace, name: p.Name}, delay)
	}
}

// run writes statuses until ctx ends, and returns once nothing more is
// written.
func (c *controller) run(ctx context.Context) {
	defer c.kube.Shutdown()
	defer c.policies.Shutdown()
	defer c.queue.ShutDown()
	c.policies.Start(ctx.Done())
	c.kube.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return
	}
	done := make(chan struct{})
	for range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for c.processNext(ctx) {
			}
		}()
	}
	wait.UntilWithContext(ctx, func(context.Context) { c.enqueueAll(0) }, c.recheck)
	c.queue.ShutDown()
	for range workers {
		<-done
	}
}

func (c *controller) processNext(ctx context.Context) bool {
	k, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(k)
	if ctx.Err() != nil {
		return false
	}
	if err := c.sync(ctx, k); err != nil {
		if apierrors.IsConflict(err) { // the informer brings the newer object
			klog.V(2).InfoS("Policy changed while its status was written, retrying", "namespace", k.namespace, "name", k.name)
		} else {
			klog.ErrorS(err, "Failed writing policy status", "namespace", k.namespace, "name", k.name)
		}
		c.queue.AddRateLimited(k)
		return true
	}
	c.queue.Forget(k)
	return true
}

// sync writes a policy's status if it is not what it should be.
func (c *controller) sync(ctx context.Context, k key) error {
	leases, err := c.leases.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("list leases: %w", err)
	}
	now := c.now()
	live := liveAgents(leases, now)

	var listed object
	if k.namespace == "" {
		p, err := c.cluster.Get(k.name)
		if err != nil {
			return c.gone(k, err)
		}
		listed = p
	} else {
		p, err := c.namespaced.FlowLogPolicies(k.namespace).Get(k.name)
		if err != nil {
			return c.gone(k, err)
		}
		listed = p
	}
	cur := c.latest(k, listed)
	var p policy
	switch o := cur.(type) {
	case *configv1alpha1.ClusterFlowLogPolicy:
		p = policy{uid: o.UID, generation: o.Generation, spec: &o.Spec, status: &o.Status}
	case *configv1alpha1.FlowLogPolicy:
		p = policy{namespace: o.Namespace, uid: o.UID, generation: o.Generation, spec: &o.Spec, status: &o.Status}
	}
	p.agentNamespace = c.namespace
	st := desired(p, live, now)
	if equality.Semantic.DeepEqual(st, *p.status) {
		return nil
	}

	var out object
	switch o := cur.DeepCopyObject().(type) {
	case *configv1alpha1.ClusterFlowLogPolicy:
		o.Status = st
		out, err = c.client.ConfigV1alpha1().ClusterFlowLogPolicies().UpdateStatus(ctx, o, metav1.UpdateOptions{})
	case *configv1alpha1.FlowLogPolicy:
		o.Status = st
		out, err = c.client.ConfigV1alpha1().FlowLogPolicies(o.Namespace).UpdateStatus(ctx, o, metav1.UpdateOptions{})
	}
	if err != nil {
		if apierrors.IsNotFound(err) {
			return c.gone(k, err)
		}
		return fmt.Errorf("update status: %w", err)
	}
	c.mu.Lock()
	c.written[k] = written{over: listed.GetResourceVersion(), obj: out}
	c.mu.Unlock()
	return nil
}

// object is a ClusterFlowLogPolicy or a FlowLogPolicy.
type object interface {
	metav1.Object
	runtime.Object
}

// written is what a status write returned, and the resourceVersion of the
// listed policy it was computed from.
type written struct {
	over string
	obj  object
}

// latest returns the newest known version of the policy listed: the one
// its last status write returned while the informer has not brought it
// yet, so that the status just written is not written again, or listed.
func (c *controller) latest(k key, listed object) object {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.written[k]
	if !ok {
		return listed
	}
	// The generation and UID also tell a stale listing from a new one where
	// resourceVersions are not set (client-go's fake clientsets).
	if listed.GetResourceVersion() == w.over && listed.GetUID() == w.obj.GetUID() && listed.GetGeneration() == w.obj.GetGeneration() {
		return w.obj
	}
	delete(c.written, k)
	return listed
}

// gone forgets a policy that is not found, and returns other errors.
func (c *controller) gone(k key, err error) error {
	if !apierrors.IsNotFound(err) {
		return err
	}
	c.mu.Lock()
	delete(c.written, k)
	c.mu.Unlock()
	return nil
}
