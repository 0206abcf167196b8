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
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"flowscope.io/flowscope/agentlease"
	configv1alpha1 "flowscope.io/flowscope/apis/config/v1alpha1"
)

const ns = "flowscope-system"

// agentLease is node's agent Lease, renewed at renewed, reporting applied
// (no report when nil).
func agentLease(node string, renewed time.Time, applied map[types.UID]int64) *coordinationv1.Lease {
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: agentlease.Name(node), Namespace: ns,
			Labels:      map[string]string{agentlease.ComponentLabel: agentlease.ComponentValue},
			Annotations: map[string]string{agentlease.AddressAnnotation: node + ":9443"}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(node), LeaseDurationSeconds: ptr.To(int32(30)),
			RenewTime: ptr.To(metav1.NewMicroTime(renewed))},
	}
	if applied != nil {
		b, _ := json.Marshal(applied)
		l.Annotations[agentlease.AppliedAnnotation] = string(b)
	}
	return l
}

func TestLiveAgents(t *testing.T) {
	now := time.Now()
	noAddress := agentLease("d", now, map[types.UID]int64{"u": 1})
	delete(noAddress.Annotations, agentlease.AddressAnnotation)
	live := liveAgents([]*coordinationv1.Lease{
		agentLease("a", now, map[types.UID]int64{"u": 3}),
		agentLease("b", now.Add(-10*time.Second), map[types.UID]int64{"u": 2}),
		agentLease("c", now.Add(-31*time.Second), map[types.UID]int64{"u": 3}), // expired
		noAddress,
		agentLease("e", now, nil), // live, reports nothing
	}, now)
	if len(live) != 3 {
		t.Fatalf("%d live agents; want 3 (a, b, e)", len(live))
	}
	for _, tc := range []struct {
		gen  int64
		want int
	}{{1, 2}, {2, 2}, {3, 1}, {4, 0}} {
		if got := live.applying("u", tc.gen); got != tc.want {
			t.Errorf("applying(u, %d) = %d; want %d", tc.gen, got, tc.want)
		}
	}
	if got := live.applying("other", 1); got != 0 {
		t.Errorf("applying(other, 1) = %d; want 0", got)
	}
}

func TestDesired(t *testing.T) {
	now := time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC)
	spec := &configv1alpha1.FlowLogPolicySpec{IncludeFilters: []configv1alpha1.FlowLogFilter{{}},
		Outputs: []configv1alpha1.Output{configv1alpha1.OutputStore}}
	otlp := &configv1alpha1.FlowLogPolicySpec{IncludeFilters: []configv1alpha1.FlowLogFilter{{}},
		Outputs: []configv1alpha1.Output{configv1alpha1.OutputStore, configv1alpha1.OutputOTLP}}
	both := agents{{applied: map[types.UID]int64{"u": 3}}, {applied: map[types.UID]int64{"u": 4, "v": 1}}}
	lagging := agents{{applied: map[types.UID]int64{"u": 3}}, {applied: map[types.UID]int64{"u": 2}}, {}}
	exporting := map[string]bool{"Store": true, "File": true, "OTLP": true}
	oneExports := agents{{applied: map[types.UID]int64{"u": 3}, outputs: exporting},
		{applied: map[types.UID]int64{"u": 3}, outputs: map[string]bool{"Store": true, "File": true}}}
	bothExport := agents{{applied: map[types.UID]int64{"u": 3}, outputs: exporting}, {applied: map[types.UID]int64{"u": 3}, outputs: exporting}}
	for _, tc := range []struct {
		name                      string
		spec                      *configv1alpha1.FlowLogPolicySpec
		live                      agents
		accepted                  metav1.ConditionStatus
		acceptedReason            string
		ready                     metav1.ConditionStatus
		readyReason, readyMessage string
		applied, total            int32
	}{
		{"every agent applies it", spec, both, "True", "Valid", "True", "Applied", "2 of 2 agents apply generation 3", 2, 2},
		{"one agent lags, one reports nothing", spec, lagging, "True", "Valid", "False", "Applying", "1 of 3 agents apply generation 3", 1, 3},
		{"no agents", spec, nil, "True", "Valid", "False", "NoAgents", "no agent is running", 0, 0},
		{"OTLP, agents that do not report their outputs", otlp, both, "True", "Valid", "True", "Applied", "2 of 2 agents apply generation 3", 2, 2},
		{"OTLP, one agent without an endpoint", otlp, oneExports, "True", "OutputNotConfigured", "True", "Applied", "2 of 2 agents apply generation 3", 2, 2},
		{"OTLP, both agents export", otlp, bothExport, "True", "Valid", "True", "Applied", "2 of 2 agents apply generation 3", 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := policy{uid: "u", generation: 3, spec: tc.spec, status: &configv1alpha1.FlowLogPolicyStatus{}}
			st := desired(p, tc.live, now)
			if st.ObservedGeneration != 3 {
				t.Errorf("observedGeneration %d; want 3", st.ObservedGeneration)
			}
			a := meta.FindStatusCondition(st.Conditions, configv1alpha1.ConditionAccepted)
			if a == nil || a.Status != tc.accepted || a.Reason != tc.acceptedReason || a.ObservedGeneration != 3 || a.Message == "" {
				t.Errorf("Accepted %+v; want %s %s at generation 3 with a message", a, tc.accepted, tc.acceptedReason)
			}
			r := meta.FindStatusCondition(st.Conditions, configv1alpha1.ConditionReady)
			if r == nil || r.Status != tc.ready || r.Reason != tc.readyReason || r.Message != tc.readyMessage ||
				r.ObservedGeneration != 3 || !r.LastTransitionTime.Equal(&metav1.Time{Time: now}) {
				t.Errorf("Ready %+v; want %s %s %q at generation 3 since %v", r, tc.ready, tc.readyReason, tc.readyMessage, now)
			}
			if st.Nodes == nil || *st.Nodes != (configv1alpha1.NodeCount{Applied: tc.applied, Total: tc.total}) {
				t.Errorf("nodes %+v; want %d of %d", st.Nodes, tc.applied, tc.total)
			}
			// The status it computed is what it computes again, later.
			p.status = &st
			if again := desired(p, tc.live, now.Add(time.Minute)); !equality.Semantic.DeepEqual(again, st) {
				t.Errorf("computed again a minute later:\n%+v\nwant\n%+v", again, st)
			}
		})
	}
}

func TestDesiredKeepsTransitionTimes(t *testing.T) {
	t0 := time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC)
	spec := &configv1alpha1.FlowLogPolicySpec{IncludeFilters: []configv1alpha1.FlowLogFilter{{}}}
	other := metav1.Condition{Type: "Other", Status: "True", Reason: "Mine", LastTransitionTime: metav1.NewTime(t0)}
	p := policy{uid: "u", generation: 1, spec: spec, status: &configv1alpha1.FlowLogPolicyStatus{Conditions: []metav1.Condition{other}}}
	st := desired(p, agents{{applied: map[types.UID]int64{"u": 1}}, {}}, t0)

	// Generation 2, still applying: Ready stays False since t0, with
	// a new message and generation.
	t1 := t0.Add(time.Hour)
	p.generation, p.status = 2, &st
	st = desired(p, agents{{applied: map[types.UID]int64{"u": 2}}, {applied: map[types.UID]int64{"u": 1}}}, t1)
	r := meta.FindStatusCondition(st.Conditions, configv1alpha1.ConditionReady)
	if r.Status != "False" || !r.LastTransitionTime.Time.Equal(t0) || r.Message != "1 of 2 agents apply generation 2" || r.ObservedGeneration != 2 {
		t.Errorf("Ready %+v; want False since %v, 1 of 2 at generation 2", r, t0)
	}
	a := meta.FindStatusCondition(st.Conditions, configv1alpha1.ConditionAccepted)
	if !a.LastTransitionTime.Time.Equal(t0) || a.ObservedGeneration != 2 {
		t.Errorf("Accepted %+v; want since %v at generation 2", a, t0)
	}
	if o := meta.FindStatusCondition(st.Conditions, "Other"); o == nil || *o != other {
		t.Errorf("condition Other %+v; want it kept as %+v", o, other)
	}

	// Both apply it: Ready turns True at t2.
	t2 := t1.Add(time.Hour)
	p.status = &st
	st = desired(p, agents{{applied: map[types.UID]int64{"u": 2}}, {applied: map[types.UID]int64{"u": 2}}}, t2)
	if r := meta.FindStatusCondition(st.Conditions, configv1alpha1.ConditionReady); r.Status != "True" || !r.LastTransitionTime.Time.Equal(t2) {
		t.Errorf("Ready %+v; want True since %v", r, t2)
	}
}

func TestAccept(t *testing.T) {
	filter := func(f configv1alpha1.FlowLogFilter, outputs ...configv1alpha1.Output) *configv1alpha1.FlowLogPolicySpec {
		return &configv1alpha1.FlowLogPolicySpec{IncludeFilters: []configv1alpha1.FlowLogFilter{f}, Outputs: outputs}
	}
	icmpPorts := configv1alpha1.FlowLogFilter{Protocol: []configv1alpha1.Protocol{"icmp"}, Ports: []configv1alpha1.PortRange{{Port: 8}}}
	for _, tc := range []struct {
		name      string
		namespace string
		spec      *configv1alpha1.FlowLogPolicySpec
		status    metav1.ConditionStatus
		reason    string
		message   string // a part of it
	}{
		{"defaults", "", filter(configv1alpha1.FlowLogFilter{}), "True", configv1alpha1.ReasonValid, "can apply"}, // the CRD defaults to Store and File
		{"store and file", "shop", filter(configv1alpha1.FlowLogFilter{}, configv1alpha1.OutputStore, configv1alpha1.OutputFile), "True", configv1alpha1.ReasonValid, "can apply"},
		{"OTLP", "", filter(configv1alpha1.FlowLogFilter{}, configv1alpha1.OutputOTLP), "True", configv1alpha1.ReasonValid, "can apply"},
		{"a filter that never matches", "", filter(icmpPorts), "True", configv1alpha1.ReasonNeverMatches, "includefilters[0] never matches: ports are set and protocol [icmp] has no ports"},
		{"a filter that never matches, and OTLP", "shop", filter(icmpPorts, configv1alpha1.OutputOTLP), "True", configv1alpha1.ReasonNeverMatches, "has no ports"},
		{"a bad CIDR", "", filter(configv1alpha1.FlowLogFilter{From: &configv1alpha1.FlowLogEndpoint{IP: []string{"10.0.0.0/33"}}}, configv1alpha1.OutputOTLP),
			"False", configv1alpha1.ReasonInvalid, `includefilters[0].from.ip[0]: "10.0.0.0/33" is not an IP or CIDR`},
		{"no include filter", "", &configv1alpha1.FlowLogPolicySpec{}, "False", configv1alpha1.ReasonInvalid, "includefilters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, reason, message := accept(tc.namespace, ns, tc.spec)
			if status != tc.status || reason != tc.reason || !strings.Contains(message, tc.message) {
				t.Errorf("accept = %s, %s, %q; want %s, %s, a message with %q", status, reason, message, tc.status, tc.reason, tc.message)
			}
		})
	}
}

func TestDesiredNotAccepted(t *testing.T) {
	p := policy{uid: "u", generation: 1, spec: &configv1alpha1.FlowLogPolicySpec{}, status: &configv1alpha1.FlowLogPolicyStatus{}}
	st := desired(p, agents{{applied: map[types.UID]int64{"u": 1}}}, time.Now())
	a := meta.FindStatusCondition(st.Conditions, configv1alpha1.ConditionAccepted)
	r := meta.FindStatusCondition(st.Conditions, configv1alpha1.ConditionReady)
	if a.Status != "False" || r.Status != "False" || r.Reason != configv1alpha1.ReasonInvalid {
		t.Errorf("Accepted %+v, Ready %+v; want both False, Ready %s", a, r, configv1alpha1.ReasonInvalid)
	}
}

func TestTruncate(t *testing.T) {
	if s := truncate("short"); s != "short" {
		t.Errorf("truncate(short) = %q", s)
	}
	long := strings.Repeat("é", maxMessage) // two bytes each
	s := truncate(long)
	if len(s) > maxMessage || !utf8.ValidString(s) || !strings.HasSuffix(s, " (and more)") {
		t.Errorf("truncate: %d bytes, valid UTF-8 %t, ends %q; want at most %d, valid, (and more)", len(s), utf8.ValidString(s), s[len(s)-12:], maxMessage)
	}
}
