package agentapi_test

import (
	"fmt"
	"testing"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/agentapi"
)

// TestMatchesViewAgreesWithMatches: a view shared by many filters answers
// as each filter does on the flow alone.
func TestMatchesViewAgreesWithMatches(t *testing.T) {
	flows := realisticFlows(t, 200)
	matchers := manyMatchers(t, flows)
	for i := range flows {
		view := agentapi.FlowView{Flow: &flows[i]}
		for j, m := range matchers {
			if got, want := m.MatchesView(&view), m.Matches(&flows[i]); got != want {
				t.Fatalf("flow %d, filter %d: view %v, alone %v", i, j, got, want)
			}
		}
	}
}

// manyMatchers returns 200 field-selector filters, as 200 watches of one
// aggregated server put on an agent's session.
func manyMatchers(tb testing.TB, flows []v1alpha1.Flow) []*agentapi.Matcher {
	tb.Helper()
	var out []*agentapi.Matcher
	for i := range 200 {
		f := flows[i%len(flows)]
		sel := fmt.Sprintf("source.podName=%s,l4.destinationPort=%d", f.Source.PodName, i%3*1000)
		if i%2 == 1 {
			sel = "verdict=Dropped,destination.ip=" + f.Destination.IP
		}
		m, err := agentapi.Filter{FieldSelector: sel}.Compile()
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// BenchmarkMatchMany matches one flow against 200 filters: each filter
// building the flow's field set, against one view shared by all.
func BenchmarkMatchMany(b *testing.B) {
	flows := realisticFlows(b, 256)
	matchers := manyMatchers(b, flows)
	b.Run("per-filter", func(b *testing.B) {
		i := 0
		for b.Loop() {
			f := &flows[i%len(flows)]
			for _, m := range matchers {
				m.Matches(f)
			}
			i++
		}
	})
	b.Run("view", func(b *testing.B) {
		i := 0
		for b.Loop() {
			view := agentapi.FlowView{Flow: &flows[i%len(flows)]}
			for _, m := range matchers {
				m.MatchesView(&view)
			}
			i++
		}
	})
}
