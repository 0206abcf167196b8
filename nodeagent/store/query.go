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
	// Value is the index value scanned ("ns/pod" for the pod indexes).
	Value string
	// Estimate is the number of flows the probe counted in the posting
	// lists of the window's blocks, stopping at the list that reaches
	// probeLimit; -1 for the time index.
	Estimate int

	prefix []byte
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

var timePlan = Plan{Index: "time", Estimate: -1, prefix: []byte{prefixCatalog}}

// Query calls fn for the flows that match f in list order (time, then
// version), within q as ScanTime reads it, until fn returns false. It
// returns the plan it used.
//
// The planner's rule: every equality requirement on an indexed field with
// a non-empty value (and the filter's namespace) names one index range of
// posting lists;
// pod names need their endpoint's namespace in the filter too, as the pod
// indexes hold "ns/pod". The planner counts the keys of each candidate
// range within the window, bounded by probeLimit and by the smallest count
// so far, and scans the range with the fewest; ties go to the earlier
// candidate in candidateOrder (pods, workloads, port, namespace, l7.type,
// verdict, protocol, direction). With no candidate it scans the time
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
		return scanBlocks(txn, p.prefix, p.also, s.window(q), func(r Record) bool {
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
	pod := func(ep string) (string, bool) {
		name, ok := eq[ep+".podName"]
		if !ok || name == "" {
			return "", false
		}
		ns, ok := eq[ep+".namespace"]
		if !ok {
			return "", false
		}
		return podValue(ns, name), true
	}
	for _, field := range candidateOrder {
		var v string
		var ok bool
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
			cs = append(cs, candidate{field, postingValue(field, v)})
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
		prefix := indexPrefix(c.field, c.value)
		n, reach := countRange(txn, prefix, q, limit)
		better := best.Estimate < 0 ||
			(reach == nil && (bestReach != nil || n < best.Estimate)) ||
			(reach != nil && bestReach != nil && string(reach) > string(bestReach))
		if better {
			best, bestReach = Plan{Index: c.field.String(), Value: c.value, Estimate: n, prefix: prefix}, reach
		}
		if best.Estimate == 0 {
			break
		}
	}
	for _, c := range cs {
		if prefix := indexPrefix(c.field, c.value); string(prefix) != string(best.prefix) {
			best.also = append(best.also, prefix)
		}
	}
	return best
}

// countRange counts the flows of one range's posting lists within q's
// window, up to limit. When it stops at limit it returns the catalog
// position of the last list counted, else nil.
func countRange(txn *badger.Txn, prefix []byte, q TimeScan, limit int) (n int, reach []byte) {
	w := newWindow(q)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Seek(appendPosition(append([]byte(nil), prefix...), w.seekFrom(), 0)); it.Valid(); it.Next() {
		key := it.Item().Key()
		pos := key[len(key)-positionLen:]
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
	}
	return n, nil
}
