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
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"flowscope.io/flowscope/agentlease"
	configv1alpha1 "flowscope.io/flowscope/apis/config/v1alpha1"
	"flowscope.io/flowscope/flowpolicy"
)

// agentReport is what a live agent reports on its Lease.
type agentReport struct {
	// applied are the policies it applies, nil when it reports none.
	applied map[types.UID]int64
	// outputs are the outputs it serves, nil when it reports none.
	outputs map[string]bool
}

// agents is what the live agents report.
type agents []agentReport

// liveAgents reads the agent Leases that are live at now, one per node.
func liveAgents(leases []*coordinationv1.Lease, now time.Time) agents {
	byNode := map[string]agentReport{}
	for _, l := range leases {
		node, _, live := agentlease.Live(l, now)
		if !live {
			continue
		}
		applied, _ := agentlease.Applied(l)
		if _, dup := byNode[node]; dup && applied == nil {
			continue // two Leases of one node: one that reports wins
		}
		outputs, _ := agentlease.Outputs(l)
		byNode[node] = agentReport{applied: applied, outputs: outputs}
	}
	out := make(agents, 0, len(byNode))
	for _, r := range byNode {
		out = append(out, r)
	}
	return out
}

// applying counts the agents that apply the policy uid at generation or
// later.
func (a agents) applying(uid types.UID, generation int64) int {
	n := 0
	for _, r := range a {
		if g, ok := r.applied[uid]; ok && g >= generation {
			n++
		}
	}
	return n
}

// lacking counts the agents that report their outputs without output o.
func (a agents) lacking(o configv1alpha1.Output) int {
	n := 0
	for _, r := range a {
		if r.outputs != nil && !r.outputs[string(o)] {
			n++
		}
	}
	return n
}

// policy is what the status of either kind of policy is computed from.
type policy struct {
	namespace string // empty for a ClusterFlowLogPolicy
	// agentNamespace is where the agents file flows with no pod.
	agentNamespace string
	uid            types.UID
	generation     int64
	spec           *configv1alpha1.FlowLogPolicySpec
	status         *configv1alpha1.FlowLogPolicyStatus
}

// desired returns p's status given the live agents, at now. It starts from
// p's status, so a condition keeps its lastTransitionTime while its status
// stays the same and conditions of other types stay as they are: a status
// that is already right comes back deeply equal.
func desired(p policy, live agents, now time.Time) configv1alpha1.FlowLogPolicyStatus {
	st := *p.status.DeepCopy()
	st.ObservedGeneration = p.generation
	ts := metav1.NewTime(now)

	accepted, reason, message := accept(p.namespace, p.agentNamespace, p.spec)
	if accepted == metav1.ConditionTrue && slices.Contains(p.spec.Outputs, configv1alpha1.OutputOTLP) {
		if n := live.lacking(configv1alpha1.OutputOTLP); n > 0 {
			unset := fmt.Sprintf("%d of %d agents export no OTLP (no --otlp-endpoint): their flows go to the other outputs only", n, len(live))
			if reason == configv1alpha1.ReasonValid {
				reason, message = configv1alpha1.ReasonOutputUnset, unset
			} else {
				message = truncate(message + "; " + unset)
			}
		}
	}
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: configv1alpha1.ConditionAccepted,
		Status: accepted, Reason: reason, Message: message, ObservedGeneration: p.generation, LastTransitionTime: ts})

	applied, total := live.applying(p.uid, p.generation), len(live)
	ready := metav1.Condition{Type: configv1alpha1.ConditionReady, ObservedGeneration: p.generation, LastTransitionTime: ts}
	switch {
	case accepted == metav1.ConditionFalse:
		ready.Status, ready.Reason = metav1.ConditionFalse, configv1alpha1.ReasonInvalid
		ready.Message = "the agents do not apply a policy that is not accepted"
	case total == 0:
		ready.Status, ready.Reason = metav1.ConditionFalse, configv1alpha1.ReasonNoAgents
		ready.Message = "no agent is running"
	case applied < total:
		ready.Status, ready.Reason = metav1.ConditionFalse, configv1alpha1.ReasonApplying
		ready.Message = fmt.Sprintf("%d of %d agents apply generation %d", applied, total, p.generation)
	default:
		ready.Status, ready.Reason = metav1.ConditionTrue, configv1alpha1.ReasonApplied
		ready.Message = fmt.Sprintf("%d of %d agents apply generation %d", applied, total, p.generation)
	}
	meta.SetStatusCondition(&st.Conditions, ready)
	st.Nodes = &configv1alpha1.NodeCount{Applied: int32(applied), Total: int32(total)}
	return st
}

// maxMessage bounds a condition's message: warnings come one per filter.
const maxMessage = 4096

// accept decides the Accepted condition of a policy of namespace (empty for
// a ClusterFlowLogPolicy) whose agents file flows without a pod in
// agentNamespace: False with ReasonInvalid when flowpolicy.Compile refuses
// the spec (the agents cannot apply it); True with ReasonNeverMatches when
// flowpolicy.Warnings finds filters that cannot do what they say; True with
// ReasonValid otherwise. Whether the agents serve its outputs is desired's.
// Problems found together are all in the message; the reason is the first.
func accept(namespace, agentNamespace string, spec *configv1alpha1.FlowLogPolicySpec) (status metav1.ConditionStatus, reason, message string) {
	if _, err := flowpolicy.Compile(namespace, spec); err != nil {
		return metav1.ConditionFalse, configv1alpha1.ReasonInvalid, truncate("the agents cannot apply the spec: " + err.Error())
	}
	var reasons, messages []string
	if w := flowpolicy.Warnings(namespace, spec, agentNamespace); len(w) > 0 {
		reasons = append(reasons, configv1alpha1.ReasonNeverMatches)
		messages = append(messages, w...)
	}
	if len(reasons) == 0 {
		return metav1.ConditionTrue, configv1alpha1.ReasonValid, "the agents can apply the policy"
	}
	return metav1.ConditionTrue, reasons[0], truncate(strings.Join(messages, "; "))
}

func truncate(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	const more = " (and more)"
	cut := maxMessage - len(more)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + more
}
