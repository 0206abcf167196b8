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

package flowfilter_test

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
)

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func TestCursorCompare(t *testing.T) {
	at := func(d time.Duration, node string, rv uint64) flowfilter.Cursor {
		return flowfilter.Cursor{Time: t0.Add(d), Node: node, RV: rv}
	}
	for _, tc := range []struct {
		name string
		a, b flowfilter.Cursor
		want int
	}{
		{"equal", at(0, "a", 5), at(0, "a", 5), 0},
		{"time first", at(0, "b", 9), at(time.Nanosecond, "a", 1), -1},
		{"time first, reversed", at(time.Nanosecond, "a", 1), at(0, "b", 9), 1},
		{"then node", at(0, "a", 9), at(0, "b", 1), -1},
		{"node by bytes", at(0, "node-10", 1), at(0, "node-9", 1), -1},
		{"then version", at(0, "a", 2), at(0, "a", 10), -1},
		{"then version, reversed", at(0, "a", 10), at(0, "a", 2), 1},
		{"the same instant in another location", at(0, "a", 1),
			flowfilter.Cursor{Time: t0.In(time.FixedZone("X", 3600)), Node: "a", RV: 1}, 0},
		{"the zero cursor first", flowfilter.Cursor{}, at(0, "", 0), -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.Compare(tc.b); got != tc.want {
				t.Errorf("%+v.Compare(%+v) = %d, want %d", tc.a, tc.b, got, tc.want)
			}
			if got := tc.b.Compare(tc.a); got != -tc.want {
				t.Errorf("reversed: %d, want %d", got, -tc.want)
			}
		})
	}
}

// tiedFlows returns flows drawn from a few times, nodes and versions, so
// that every key of list order ties often and the next one decides.
func tiedFlows(rng *rand.Rand, n int) []v1alpha1.Flow {
	nodes := []string{"node-a", "node-b", "node-c"}
	flows := make([]v1alpha1.Flow, n)
	for i := range flows {
		f := &flows[i]
		f.Time = metav1.NewMicroTime(t0.Add(time.Duration(rng.IntN(3)) * time.Microsecond))
		f.NodeName = nodes[rng.IntN(len(nodes))]
		f.ResourceVersion = strconv.FormatUint(1+rng.Uint64N(3), 10)
	}
	return flows
}

func TestCompareFlowsAgreesWithCursors(t *testing.T) {
	flows := tiedFlows(rand.New(rand.NewPCG(1, 2)), 60)
	// A version that is not a number orders as 0, before every real one.
	flows = append(flows, v1alpha1.Flow{Time: flows[0].Time, NodeName: flows[0].NodeName, ObjectMeta: metav1.ObjectMeta{ResourceVersion: "x"}})
	for i := range flows {
		for j := range flows {
			a, b := &flows[i], &flows[j]
			if got, want := flowfilter.CompareFlows(a, b), flowfilter.CursorOf(a).Compare(flowfilter.CursorOf(b)); got != want {
				t.Fatalf("CompareFlows(%s %s %s, %s %s %s) = %d, cursors compare %d",
					a.Time, a.NodeName, a.ResourceVersion, b.Time, b.NodeName, b.ResourceVersion, got, want)
			}
		}
	}
	if c := flowfilter.CursorOf(&flows[len(flows)-1]); c.RV != 0 {
		t.Errorf("the cursor of a flow whose version is not a number has version %d, want 0", c.RV)
	}
}

func TestCompareLocalAgreesWithCompare(t *testing.T) {
	flows := tiedFlows(rand.New(rand.NewPCG(3, 4)), 60)
	for i := range flows {
		for j := range flows {
			a, b := flowfilter.CursorOf(&flows[i]), flowfilter.CursorOf(&flows[j])
			b.Node = a.Node
			got := flowfilter.CompareLocal(a.Time.UnixNano(), a.RV, b.Time.UnixNano(), b.RV)
			if want := a.Compare(b); got != want {
				t.Fatalf("CompareLocal(%s %d, %s %d) = %d, Compare %d", a.Time, a.RV, b.Time, b.RV, got, want)
			}
		}
	}
}

// TestOnNode: a flow of a node comes after a cursor exactly when it comes
// after the position OnNode gives on its node, for cursors on that node,
// on nodes before it and after it, and at every time around the flow's.
func TestOnNode(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	flows := tiedFlows(rng, 60)
	cursors := make([]flowfilter.Cursor, 0, 60)
	for i := range cap(cursors) {
		c := flowfilter.CursorOf(&tiedFlows(rng, 1)[0])
		if i%10 == 0 {
			c.RV = 0 // a position before every version
		}
		cursors = append(cursors, c)
	}
	for _, c := range cursors {
		for i := range flows {
			f := flowfilter.CursorOf(&flows[i])
			ft, rv := c.OnNode(f.Node)
			got := f.Time.After(ft) || f.Time.Equal(ft) && f.RV > rv
			if want := f.Compare(c) > 0; got != want {
				t.Fatalf("flow %s %s %d after cursor %s %s %d: OnNode gives (%s, %d), after it %t, Compare says %t",
					f.Time, f.Node, f.RV, c.Time, c.Node, c.RV, ft, rv, got, want)
			}
		}
	}
}
