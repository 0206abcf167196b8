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

package stored

import (
	"strconv"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	configv1alpha1 "flowscope.io/flowscope/apis/config/v1alpha1"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/nodeagent/store"
	"flowscope.io/flowscope/nodeagent/tiers"
)

type fileSink struct {
	mu    sync.Mutex
	flows []*v1alpha1.Flow
}

func (s *fileSink) Write(flows []*v1alpha1.Flow) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flows = append(s.flows, flows...)
}

func flowAt(ns string, port int32, verdict v1alpha1.Verdict, at time.Time) store.Record {
	rv := uint64(at.UnixMicro())
	return store.Record{RV: rv, Flow: &v1alpha1.Flow{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "n." + strconv.FormatUint(rv, 10), ResourceVersion: strconv.FormatUint(rv, 10)},
		NodeName:   "n", Time: metav1.NewMicroTime(at), Verdict: verdict,
		L4: &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolTCP, DestinationPort: port},
	}}
}

func spec(outputs []configv1alpha1.Output, retention time.Duration, f configv1alpha1.FlowLogFilter) *configv1alpha1.FlowLogPolicySpec {
	return &configv1alpha1.FlowLogPolicySpec{IncludeFilters: []configv1alpha1.FlowLogFilter{f},
		Retention: &metav1.Duration{Duration: retention}, Outputs: outputs}
}

// TestKeepRoutesByOutput: each output gets exactly the flows of the
// policies that name it; the tier keeps a flow for its longest retention;
// an invalid policy is left out and the others apply; what is applied is
// reported by UID and generation.
func TestKeepRoutesByOutput(t *testing.T) {
	tr, err := tiers.Open(tiers.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	file := &fileSink{}
	var reported map[types.UID]int64
	m := New(Options{Tiers: tr, File: file, Applied: func(a map[types.UID]int64) { reported = a }})
	dropped := configv1alpha1.FlowLogFilter{Verdict: []configv1alpha1.Verdict{"dropped"}}
	port80 := configv1alpha1.FlowLogFilter{Ports: []configv1alpha1.PortRange{{Port: 80}}}
	m.Apply([]Source{
		{Kind: "ClusterFlowLogPolicy", Name: "drops", UID: "u1", Generation: 3,
			Spec: spec([]configv1alpha1.Output{configv1alpha1.OutputFile}, time.Hour, dropped)},
		{Kind: "FlowLogPolicy", Namespace: "shop", Name: "web", UID: "u2", Generation: 1,
			Spec: spec([]configv1alpha1.Output{configv1alpha1.OutputStore}, 2*time.Hour, port80)},
		{Kind: "ClusterFlowLogPolicy", Name: "web-long", UID: "u3", Generation: 7,
			Spec: spec(nil, 48*time.Hour, port80)}, // default outputs: Store and File
		{Kind: "ClusterFlowLogPolicy", Name: "broken", UID: "u4", Generation: 1,
			Spec: &configv1alpha1.FlowLogPolicySpec{}},
	})
	if len(reported) != 3 || reported["u1"] != 3 || reported["u3"] != 7 || reported["u4"] != 0 {
		t.Fatalf("reported %v, want u1:3 u2:1 u3:7 and not the invalid u4", reported)
	}
	now := time.Now()
	recs := []store.Record{
		flowAt("shop", 80, v1alpha1.VerdictForwarded, now.Add(-4*time.Millisecond)),     // web, web-long
		flowAt("payments", 80, v1alpha1.VerdictForwarded, now.Add(-3*time.Millisecond)), // web-long
		flowAt("shop", 443, v1alpha1.VerdictDropped, now.Add(-2*time.Millisecond)),      // drops
		flowAt("shop", 443, v1alpha1.VerdictForwarded, now.Add(-1*time.Millisecond)),    // none
	}
	m.Keep(recs)
	if len(file.flows) != 3 || file.flows[0] != recs[0].Flow || file.flows[1] != recs[1].Flow || file.flows[2] != recs[2].Flow {
		t.Errorf("file got %d flows, want the first three", len(file.flows))
	}
	var kept []uint64
	if err := tr.Query(store.TimeScan{}, flowfilter.Filter{}, func(r store.Record) bool {
		kept = append(kept, r.RV)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(kept) != 2 || kept[0] != recs[0].RV || kept[1] != recs[1].RV {
		t.Errorf("tier keeps %v, want the first two", kept)
	}
	// Both in the 48h class, the longest retention that selects them.
	held, err := tr.Holding(0, recs[3].RV)
	if err != nil || len(held) != 2 {
		t.Errorf("Holding = %v, %v", held, err)
	}
	// Deleting every policy turns stored mode off.
	m.Apply(nil)
	m.Keep([]store.Record{flowAt("shop", 80, v1alpha1.VerdictDropped, now)})
	if len(file.flows) != 3 || m.Active() {
		t.Errorf("with no policy: file has %d flows, active %v", len(file.flows), m.Active())
	}
}

// TestCaptureFilters: namespaced policies reduce to their namespace,
// cluster policies to their single addresses, or to everything.
func TestCaptureFilters(t *testing.T) {
	m := New(Options{})
	ips := configv1alpha1.FlowLogFilter{To: &configv1alpha1.FlowLogEndpoint{IP: []string{"10.0.0.7", "fd00::1"}}}
	m.Apply([]Source{
		{Kind: "FlowLogPolicy", Namespace: "shop", Name: "a", Spec: spec(nil, time.Hour, configv1alpha1.FlowLogFilter{})},
		{Kind: "ClusterFlowLogPolicy", Name: "b", Spec: spec(nil, time.Hour, ips)},
	})
	got := m.CaptureFilters()
	if len(got) != 3 || got[0].Namespace != "shop" || got[1].FieldSelector != "source.ip=10.0.0.7" || got[2].FieldSelector != "source.ip=fd00::1" {
		t.Errorf("CaptureFilters = %+v", got)
	}
	cidr := configv1alpha1.FlowLogFilter{To: &configv1alpha1.FlowLogEndpoint{IP: []string{"10.0.0.0/8"}}}
	m.Apply([]Source{{Kind: "ClusterFlowLogPolicy", Name: "c", Spec: spec(nil, time.Hour, cidr)}})
	if got := m.CaptureFilters(); len(got) != 1 || got[0] != (flowfilter.Filter{}) {
		t.Errorf("a CIDR policy: %+v, want everything", got)
	}
}
