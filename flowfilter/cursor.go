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

package flowfilter

import (
	"cmp"
	"math"
	"strconv"
	"strings"
	"time"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// Cursor is a position in list order: by time, then node name, then
// resource version. Lists return what comes strictly after it.
type Cursor struct {
	Time time.Time `json:"time"`
	Node string    `json:"node"`
	RV   uint64    `json:"rv"`
}

// Compare returns -1, 0 or +1 as c comes before, at or after d in list
// order. It is the definition of list order: CompareFlows, CompareLocal
// and OnNode say the same for flows, for one node's flows, and for where a
// cursor falls among one node's flows, at the cost their callers need.
func (c Cursor) Compare(d Cursor) int {
	if n := c.Time.Compare(d.Time); n != 0 {
		return n
	}
	if n := strings.Compare(c.Node, d.Node); n != 0 {
		return n
	}
	return cmp.Compare(c.RV, d.RV)
}

// CursorOf returns the position of f in list order.
func CursorOf(f *v1alpha1.Flow) Cursor {
	return Cursor{Time: f.Time.Time, Node: f.NodeName, RV: flowRV(f)}
}

// CompareFlows compares flows as their cursors (CursorOf) compare, but
// reads their resource versions only when time and node are equal:
// parsing a version costs more than the rest of a comparison, and merging
// pages compares each flow several times. It is written out rather than
// built on Compare, which would cost half as much again (4.5 against 6.8
// ns) or more with cursors built on the way; a test holds the two equal.
func CompareFlows(a, b *v1alpha1.Flow) int {
	if n := a.Time.Compare(b.Time.Time); n != 0 {
		return n
	}
	if n := strings.Compare(a.NodeName, b.NodeName); n != 0 {
		return n
	}
	return cmp.Compare(flowRV(a), flowRV(b))
}

// flowRV is f's resource version, 0 when it is not a number (agents
// always set one).
func flowRV(f *v1alpha1.Flow) uint64 {
	rv, _ := strconv.ParseUint(f.ResourceVersion, 10, 64)
	return rv
}

// CompareLocal is Compare for two positions on the same node, whose list
// order is by time, then resource version. It takes times as integers
// (Unix nanoseconds, or any unit that orders as the times do), as a store
// keeps them, so that sorting a node's flows costs neither time.Time
// arithmetic nor a call: it is small enough to be inlined.
func CompareLocal(aTime int64, aRV uint64, bTime int64, bRV uint64) int {
	switch {
	case aTime < bTime:
		return -1
	case aTime > bTime:
		return 1
	case aRV < bRV:
		return -1
	case aRV > bRV:
		return 1
	}
	return 0
}

// OnNode returns where c falls among the flows of node alone: a flow of
// node comes after c in list order exactly when its time is after t, or
// equal to t with a resource version above rv. On c's own node that is
// c's version; at c's time, every flow of a node that sorts after c.Node
// comes after c (rv is 0: versions start at 1), and none of a node that
// sorts before it (rv is math.MaxUint64).
func (c Cursor) OnNode(node string) (t time.Time, rv uint64) {
	switch strings.Compare(node, c.Node) {
	case 0:
		return c.Time, c.RV
	case 1:
		return c.Time, 0
	default:
		return c.Time, math.MaxUint64
	}
}
