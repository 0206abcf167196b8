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

package store

import (
	"encoding/binary"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/selection"

	"flowscope.io/flowscope/flowfilter"
)

// probeLimit bounds the flows the planner counts per candidate range.
const probeLimit = 1000

// Plan says how Query reads the flows.
type Plan struct {
	// Index is the field selector label of the index scanned, or "time"
	// for the time index.
	Index string
	// Value is the index value scanned ("ns/pod" for the pod indexes;
	// "*/pod" for a pod name without its namespace, whose ranges in every
	// namespace are scanned together).
	Value string
	// Estimate is the number of flows the probe counted in the posting
	// lists of the window's blocks, stopping at the list that reaches
	// probeLimit; -1 for the time index.
	Estimate int

	// prefixes are the ranges scanned: one, or a pod's in each namespace.
	prefixes [][]byte
	// also are the prefixes of the other candidates' ranges: a block's
	// positions are intersected with theirs before any flow is decoded.
	also [][]byte
}

func (p Plan) String() string {
	if p.Value == "" && p.Estimate < 0 {
		return p.Index
	}
	return fmt.Sprintf("%s=%s (~%d)", p.Index, p.Value, p.Estimate)
}

var timePlan = Plan{Index: "time", Estimate: -1, prefixes: [][]byte{{prefixCatalog}}}

// Query calls fn for the flows that match f in list order (time, then
// version), within q as ScanTime reads it, until fn returns false. It
// returns the plan it used.
//
// The planner's rule: every equality requirement on an indexed field with
// a non-empty value (and the filter's namespace) names one index range of
// posting lists; a pod name without its endpoint's namespace names the
// ranges of the pod index's values "ns/pod" of every namespace ns that has
// one in the window (anyNamespace), scanned as one (scanRanges). The
// planner counts the keys of each candidate range within the window,
// bounded by probeLimit and by the smallest count so far, and scans the
// range with the fewest; ties go to the earlier candidate in
// candidateOrder (pods, workloads, port, namespace, l7.type, verdict,
// protocol, direction). With no candidate it scans the time
// index. A range with more than probeLimit keys in the window is ranked
// below every range with fewer, and among such ranges the one whose first
// probeLimit keys reach furthest in list order (the sparsest) wins: the
// rate of a range's keys near the window's start stands for the whole.
// Every index entry is a flow in the time index's window, so an
// index range never reads more flows than the time scan would. Either way
// each flow passes the full matcher: the index narrows, the matcher
// decides.
func (s *Store) Query(q TimeScan, f flowfilter.Filter, fn func(Record) bool) (Plan, error) {
	m, err := f.Compile()
	if err != nil {
		return Plan{}, err
	}
	p := timePlan
	err = s.db.View(func(txn *badger.Txn) error {
		if s.indexUsable() {
			p = s.plan(txn, q, candidates(f))
		}
		return scanBlocks(txn, p.prefixes, p.also, s.window(q), func(r Record) bool {
			if !m.Matches(r.Flow) {
				return true
			}
			return fn(r)
		})
	})
	return p, err
}

// candidate is an index range that holds every flow a filter matches.
type candidate struct {
	field indexField
	value string
	// anyNS: value is a pod name, and the candidate the ranges of
	// "ns/value" for every namespace ns.
	anyNS bool
}

// candidateOrder is the order the planner probes indexes in, which breaks
// ties (and counts that reach probeLimit): likely most selective first.
var candidateOrder = []indexField{idxSourcePod, idxDestinationPod, idxDNSQuery, idxHTTPURL, idxGRPCMethod,
	idxKafkaTopic, idxSourceWorkload, idxDestWorkload, idxDestPort, idxNamespace, idxL7Type, idxVerdict,
	idxProtocol, idxDirection}

// candidates lists the index ranges a filter can be answered from, in
// candidateOrder. The filter is valid (compiled by the caller).
func candidates(f flowfilter.Filter) []candidate {
	eq := map[string]string{}
	if f.FieldSelector != "" {
		sel, err := fields.ParseSelector(f.FieldSelector)
		if err != nil {
			return nil
		}
		for _, r := range sel.Requirements() {
			if r.Operator == selection.Equals || r.Operator == selection.DoubleEquals {
				eq[r.Field] = r.Value
			}
		}
	}
	var cs []candidate
	var anyNS bool
	pod := func(ep string) (string, bool) {
		name, ok := eq[ep+".podName"]
		if !ok || name == "" {
			return "", false
		}
		ns, ok := eq[ep+".namespace"]
		if !ok {
			anyNS = true
			return name, true
		}
		return podValue(ns, name), true
	}
	for _, field := range candidateOrder {
		var v string
		var ok bool
		anyNS = false
		switch field {
		case idxNamespace:
			// The filter's namespace and a metadata.namespace requirement
			// both bound it; either will do.
			v, ok = f.Namespace, f.Namespace != ""
			if !ok {
				v, ok = eq[indexLabels[field]]
			}
		case idxSourcePod:
			v, ok = pod("source")
		case idxDestinationPod:
			v, ok = pod("destination")
		default:
			v, ok = eq[indexLabels[field]]
		}
		if ok && v != "" {
			cs = append(cs, candidate{field, postingValue(field, v), anyNS})
		}
	}
	return cs
}

// plan picks the candidate range with the fewest keys in q's window. A
// range with more than probeLimit keys there is ranked by how far in time
// its first probeLimit keys reach: the sparser range reaches further.
func (s *Store) plan(txn *badger.Txn, q TimeScan, cs []candidate) Plan {
	best := timePlan
	var bestReach []byte // nil while best's count is exact
	for _, c := range cs {
		limit := probeLimit
		if best.Estimate >= 0 && bestReach == nil {
			limit = best.Estimate
		}
		value, prefixes := c.value, [][]byte{indexPrefix(c.field, c.value)}
		if c.anyNS {
			value, prefixes = "*/"+c.value, anyNamespace(txn, c.field, c.value, q)
		}
		n, reach := countRanges(txn, prefixes, q, limit)
		better := best.Estimate < 0 ||
			(reach == nil && (bestReach != nil || n < best.Estimate)) ||
			(reach != nil && bestReach != nil && string(reach) > string(bestReach))
		if better {
			best, bestReach = Plan{Index: c.field.String(), Value: value, Estimate: n, prefixes: prefixes}, reach
		}
		if best.Estimate == 0 {
			break
		}
	}
	// A block's lists of the other exact candidates narrow its positions;
	// a pod in any namespace would take a look-up per namespace.
	for _, c := range cs {
		if c.anyNS {
			continue
		}
		if prefix := indexPrefix(c.field, c.value); len(best.prefixes) != 1 || string(prefix) != string(best.prefixes[0]) {
			best.also = append(best.also, prefix)
		}
	}
	return best
}

// anyNamespace returns the prefixes of the ranges of field's values
// "ns/pod", for every ns, that have a posting list of a block that may
// hold a flow of q's window. It visits each of the index's values once,
// with one seek: the index's keys are ordered by value, then block, and a
// pod's values in different namespaces lie apart. A value is taken when it
// ends in "/pod": a namespace or pod name holding '/' may add a range
// whose flows the matcher then rejects, never leave one out. The cost is a
// seek per value the index holds, in every namespace and the whole store
// (0.5-8 µs each here, with 100 to 5,000 pods), not per flow.
func anyNamespace(txn *badger.Txn, field indexField, pod string, q TimeScan) [][]byte {
	w := newWindow(q)
	start := []byte{prefixPosting, byte(field)}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: start})
	defer it.Close()
	var prefixes [][]byte
	var seek []byte
	for it.Seek(start); it.Valid(); {
		key := it.Item().Key()
		n, l := binary.Uvarint(key[len(start):])
		end := len(start) + l + int(n) // of the value
		if l <= 0 || n > uint64(len(key)) || len(key) != end+positionLen {
			it.Next() // cannot happen: Check reports it
			continue
		}
		prefix, value := key[:end], key[end-int(n):end]
		// Past every key of this value, which have positionLen bytes
		// after it.
		seek = append(append(seek[:0], prefix...), skipPosition...)
		if len(value) > len(pod) && value[len(value)-len(pod)-1] == '/' && string(value[len(value)-len(pod):]) == pod {
			prefix = append([]byte(nil), prefix...)
			if inWindow(it, prefix, w) {
				prefixes = append(prefixes, prefix)
			}
		}
		it.Seek(seek)
	}
	return prefixes
}

// skipPosition follows every list-order position.
var skipPosition = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// inWindow says whether the range of prefix has a list at or after the
// window's first possible block and before its end. It moves it.
func inWindow(it *badger.Iterator, prefix []byte, w window) bool {
	it.Seek(appendPosition(append([]byte(nil), prefix...), w.seekFrom(), 0))
	if !it.Valid() {
		return false
	}
	key := it.Item().Key()
	if len(key) != len(prefix)+positionLen || string(key[:len(prefix)]) != string(prefix) {
		return false
	}
	return w.until == 0 || int64(binary.BigEndian.Uint64(key[len(prefix):])) < w.until
}

// countRanges counts the flows of the ranges' posting lists within q's
// window, in list order over the ranges together, up to limit. When it
// stops at limit it returns the catalog position of the last list counted,
// else nil.
func countRanges(txn *badger.Txn, prefixes [][]byte, q TimeScan, limit int) (n int, reach []byte) {
	w := newWindow(q)
	its := make([]*badger.Iterator, len(prefixes))
	for i, prefix := range prefixes {
		its[i] = txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer its[i].Close()
		its[i].Seek(appendPosition(append([]byte(nil), prefix...), w.seekFrom(), 0))
	}
	for {
		// The range whose next list comes first.
		var it *badger.Iterator
		var pos []byte
		for _, r := range its {
			if !r.Valid() {
				continue
			}
			key := r.Item().Key()
			if p := key[len(key)-positionLen:]; it == nil || string(p) < string(pos) {
				it, pos = r, p
			}
		}
		if it == nil {
			return n, nil
		}
		if w.until != 0 && int64(binary.BigEndian.Uint64(pos)) >= w.until {
			return n, nil
		}
		if n >= limit {
			return n, append([]byte(nil), pos...)
		}
		_ = it.Item().Value(func(v []byte) error {
			c, err := postingCount(v)
			n += c
			return err
		})
		it.Next()
	}
}
