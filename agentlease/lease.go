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

// Package agentlease announces an agent to the aggregated server through a
// coordination.k8s.io Lease per node that carries the agent's address and
// the flow log policies it applies, and lets the server discover the live
// ones.
package agentlease

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

const (
	// AddressAnnotation holds the agent's gRPC address, host:port.
	AddressAnnotation = "flowscope.io/agent-address"
	// OutputsAnnotation lists the outputs of flow log policies the agent
	// serves, comma-separated (Store,File,OTLP): a policy's status says so
	// when agents lack one it asks for.
	OutputsAnnotation = "flowscope.io/outputs"
	// ComponentLabel marks agent Leases so the server can select them.
	ComponentLabel = "app.kubernetes.io/component"
	// ComponentValue is ComponentLabel's value on agent Leases.
	ComponentValue = "flowscope-agent"
	// Duration is how long a Lease stays valid without renewal.
	Duration   = 30 * time.Second
	renewEvery = 10 * time.Second
	// retryEvery is how soon a failed renewal is tried again.
	retryEvery = 2 * time.Second
	// settle is how long a change of the applied policies waits for more
	// changes before it is written: a burst is one write.
	settle = 200 * time.Millisecond
)

// Name returns the Lease name of node's agent.
func Name(node string) string { return "flowscope-agent-" + node }

// Keeper creates and renews a node's Lease, and reports on it the policies
// the agent applies.
type Keeper struct {
	client                   kubernetes.Interface
	namespace, node, address string
	renewEvery, settle       time.Duration
	// outputs is OutputsAnnotation's value, set before Run.
	outputs string

	mu sync.Mutex
	// applied is the encoded report, "" until SetApplied is first called.
	applied   string
	truncated int
	// changed has room for one signal: bursts of SetApplied coalesce.
	changed chan struct{}
}

// NewKeeper returns a Keeper of node's Lease in namespace announcing the
// agent at address. It writes nothing before Run.
func NewKeeper(client kubernetes.Interface, namespace, node, address string) *Keeper {
	return &Keeper{client: client, namespace: namespace, node: node, address: address,
		renewEvery: renewEvery, settle: settle, changed: make(chan struct{}, 1)}
}

// SetOutputs reports the outputs of flow log policies the agent serves.
// Call it before Run.
func (k *Keeper) SetOutputs(outputs []string) {
	if k != nil {
		k.outputs = strings.Join(outputs, ",")
	}
}

// Outputs returns the outputs an agent Lease reports, and false when it
// reports none (an agent too old to).
func Outputs(l *coordinationv1.Lease) (map[string]bool, bool) {
	s, ok := l.Annotations[OutputsAnnotation]
	if !ok {
		return nil, false
	}
	out := map[string]bool{}
	for o := range strings.SplitSeq(s, ",") {
		out[o] = true
	}
	return out, true
}

// SetApplied reports the policies the agent applies, by UID, each with the
// generation applied. When the set differs from the last one, the Lease is
// renewed within about 200 ms, once for a burst of changes. Until the first
// call the Lease reports no policies (AppliedAnnotation is absent), so a
// restarted agent never claims what its previous run applied. On a nil
// Keeper (an agent without a Kubernetes API) it does nothing.
func (k *Keeper) SetApplied(applied map[types.UID]int64) {
	if k == nil {
		return
	}
	enc, dropped := encodeApplied(applied, MaxAppliedBytes)
	k.mu.Lock()
	same := k.applied == enc && k.truncated == dropped
	k.applied, k.truncated = enc, dropped
	k.mu.Unlock()
	if same {
		return
	}
	if dropped > 0 {
		klog.InfoS("Too many applied policies for the agent lease: reporting part of them",
			"node", k.node, "policies", len(applied), "leftOut", dropped)
	}
	select {
	case k.changed <- struct{}{}:
	default:
	}
}

// Run creates and renews the Lease until ctx ends: every 10 s, within
// about 200 ms of a change of the applied policies, and 2 s after a
// failure.
func (k *Keeper) Run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-k.changed:
			// Let a burst of changes settle; those arriving meanwhile
			// are in this write.
			select {
			case <-ctx.Done():
				return
			case <-time.After(k.settle):
			}
			select {
			case <-k.changed:
			default:
			}
		case <-t.C:
		}
		next := k.renewEvery
		if err := k.renew(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			klog.ErrorS(err, "Failed renewing the agent lease", "namespace", k.namespace, "node", k.node)
			next = retryEvery
		}
		t.Reset(next)
	}
}

func (k *Keeper) renew(ctx context.Context) error {
	k.mu.Lock()
	applied, truncated := k.applied, k.truncated
	k.mu.Unlock()

	leases := k.client.CoordinationV1().Leases(k.namespace)
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Get(ctx, Name(k.node), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		l = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: Name(k.node), Namespace: k.namespace},
			Spec:       coordinationv1.LeaseSpec{AcquireTime: &now},
		}
		k.fill(l, now, applied, truncated)
		if _, err := leases.Create(ctx, l, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create lease: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("get lease: %w", err)
	}
	k.fill(l, now, applied, truncated)
	if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update lease: %w", err)
	}
	return nil
}

// fill sets what the Keeper owns on l: the label, the annotations, the
// holder and the times.
func (k *Keeper) fill(l *coordinationv1.Lease, now metav1.MicroTime, applied string, truncated int) {
	if l.Labels == nil {
		l.Labels = map[string]string{}
	}
	l.Labels[ComponentLabel] = ComponentValue
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Annotations[AddressAnnotation] = k.address
	delete(l.Annotations, OutputsAnnotation)
	if k.outputs != "" {
		l.Annotations[OutputsAnnotation] = k.outputs
	}
	delete(l.Annotations, AppliedAnnotation)
	delete(l.Annotations, AppliedTruncatedAnnotation)
	if applied != "" {
		l.Annotations[AppliedAnnotation] = applied
	}
	if truncated > 0 {
		l.Annotations[AppliedTruncatedAnnotation] = fmt.Sprint(truncated)
	}
	l.Spec.HolderIdentity = ptr.To(k.node)
	l.Spec.LeaseDurationSeconds = ptr.To(int32(Duration / time.Second))
	l.Spec.RenewTime = &now
}

// Live reports the node and address of an agent Lease, and whether it is
// still within its duration at now. A Lease whose name is not Name of its
// holder is not an agent's: each node has one Lease, and admission
// (artifacts/deploy/rbac, flowscope-agent-leases) lets an agent write only
// its own node's.
//
// An address that is not host:port with a port number is not an agent's
// either: the server would dial whatever it says.
func Live(l *coordinationv1.Lease, now time.Time) (node, address string, live bool) {
	if l.Spec.HolderIdentity == nil || !validAddress(l.Annotations[AddressAnnotation]) || l.Spec.RenewTime == nil ||
		l.Name != Name(*l.Spec.HolderIdentity) {
		return "", "", false
	}
	d := Duration
	if l.Spec.LeaseDurationSeconds != nil {
		d = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	return *l.Spec.HolderIdentity, l.Annotations[AddressAnnotation], now.Before(l.Spec.RenewTime.Add(d))
}

// validAddress tells whether a is host:port, with a host and a port from 1
// to 65535.
func validAddress(a string) bool {
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" {
		return false
	}
	n, err := strconv.ParseUint(port, 10, 16)
	return err == nil && n > 0
}
