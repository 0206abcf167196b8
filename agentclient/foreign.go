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
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// An agent speaks for its node only. Its certificate proves which node it
// is (tlsutil.VerifyAgent), but not that what it sends is that node's:
// a compromised agent could send flows of other nodes, which would then be
// listed under a name that routes gets elsewhere, or flows of namespaces
// the request did not ask for, which the user may not be allowed to see.
// So every flow an agent returns, to a list, a get or a watch, must carry
// the agent's node (nodeName, and the node part of its name
// <node>.<resourceVersion>) and lie in the request's namespace when it
// names one. A flow that does not is dropped, counted and logged (at most
// every rejectLogInterval per agent); the rest of the answer is kept.
//
// The agent's session is not failed for it: the flows would come again on
// the next session, and an agent that wants to deny service can simply
// not answer. A list's page stays sound without the dropped flows: the
// registry resumes an agent after the last flow it kept, which only asks
// the agent again for what followed.

// Reasons for rejecting a flow.
const (
	rejectNode      = "node"
	rejectNamespace = "namespace"
)

var rejectedFlows = metrics.NewCounterVec(&metrics.CounterOpts{
	Namespace: "flowscope", Subsystem: "apiserver", Name: "agent_rejected_flows_total",
	Help: "Flows an agent sent that it may not send, dropped, by the agent's node and reason: node (the flow's " +
		"nodeName or name is another node's), namespace (outside the namespace the request asked for). " +
		"Anything but 0 means a broken or compromised agent.",
	StabilityLevel: metrics.ALPHA,
}, []string{"node", "reason"})

func init() {
	legacyregistry.MustRegister(rejectedFlows)
}

// rejectLogInterval is the least time between two logs of one agent's
// rejected flows: an agent that sends nothing but foreign flows would
// otherwise log each of them.
const rejectLogInterval = 10 * time.Second

// rejecter checks the flows of one node's agent.
type rejecter struct {
	node string

	mu         sync.Mutex
	logged     time.Time
	suppressed int
}

// foreign returns why f may not come from the agent for a request in
// namespace ("" for all), or "" when it may.
func (r *rejecter) foreign(f *v1alpha1.Flow, namespace string) string {
	if f.NodeName != r.node {
		return rejectNode
	}
	// Names are <node>.<resourceVersion>; node names may hold dots.
	if f.Name != "" {
		if i := strings.LastIndexByte(f.Name, '.'); i < 0 || f.Name[:i] != r.node {
			return rejectNode
		}
	}
	if namespace != "" && f.Namespace != namespace {
		return rejectNamespace
	}
	return ""
}

// reject counts and logs a dropped flow.
func (r *rejecter) reject(f *v1alpha1.Flow, reason, namespace, call string) {
	rejectedFlows.WithLabelValues(r.node, reason).Inc()
	r.mu.Lock()
	now := time.Now()
	if now.Sub(r.logged) < rejectLogInterval {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	suppressed := r.suppressed
	r.logged, r.suppressed = now, 0
	r.mu.Unlock()
	klog.InfoS("Dropped a flow the agent may not send: it is broken or compromised",
		"node", r.node, "call", call, "reason", reason, "flow", f.Name, "flowNode", f.NodeName,
		"flowNamespace", f.Namespace, "requestNamespace", namespace, "alsoDroppedSinceLastLog", suppressed)
}

// List calls the agent's List and drops the flows it may not send.
func (a *Agent) List(ctx context.Context, req *agentwire.ListRequest) (*agentwire.ListResponse, error) {
	resp, err := a.Client.List(ctx, req)
	if err != nil {
		return nil, err
	}
	r, ns := a.sess.rejecter, req.Filter.Namespace
	kept := resp.Flows[:0]
	for i := range resp.Flows {
		f := &resp.Flows[i]
		if reason := r.foreign(f, ns); reason != "" {
			r.reject(f, reason, ns, "List")
			continue
		}
		kept = append(kept, *f)
	}
	clear(resp.Flows[len(kept):])
	resp.Flows = kept
	return resp, nil
}

// Get calls the agent's Get; a flow it may not send, or not the one asked
// for, is not found.
func (a *Agent) Get(ctx context.Context, req *agentwire.GetRequest) (*agentwire.GetResponse, error) {
	resp, err := a.Client.Get(ctx, req)
	if err != nil {
		return nil, err
	}
	r, f := a.sess.rejecter, &resp.Flow
	reason := r.foreign(f, req.Namespace)
	if reason == "" && f.Name != a.node+"."+strconv.FormatUint(req.RV, 10) {
		reason = rejectNode
	}
	if reason != "" {
		r.reject(f, reason, req.Namespace, "Get")
		return nil, status.Errorf(codes.NotFound, "flow %s.%d not found", a.node, req.RV)
	}
	return resp, nil
}
