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

package agentlease

import (
	"encoding/json"
	"slices"
	"strconv"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/types"
)

const (
	// AppliedAnnotation holds the flow log policies the agent applies: a
	// JSON object from policy UID to the generation applied, keys in
	// ascending order and no spaces, e.g. {"0b6e...":3,"9f1c...":1}, so
	// that the same set is always the same string.
	AppliedAnnotation = "flowscope.io/applied-policies"
	// AppliedTruncatedAnnotation is the number of policies left out of
	// AppliedAnnotation, present only when the report would exceed
	// MaxAppliedBytes: it then holds the first UIDs in ascending order that
	// fit, and the others count as not applied.
	AppliedTruncatedAnnotation = "flowscope.io/applied-policies-truncated"
	// MaxAppliedBytes bounds AppliedAnnotation, below the 256 KiB that an
	// object's annotations may hold in all: about 3,500 policies.
	MaxAppliedBytes = 200 << 10
)

// Applied returns the policies an agent Lease reports as applied, UID to
// generation, and whether it reports any at all: false when the annotation
// is absent (an agent that has not reported yet, or one too old to) or
// malformed. A truncated report (AppliedTruncatedAnnotation) returns the
// policies it holds.
func Applied(l *coordinationv1.Lease) (map[types.UID]int64, bool) {
	s, ok := l.Annotations[AppliedAnnotation]
	if !ok {
		return nil, false
	}
	var m map[types.UID]int64
	if err := json.Unmarshal([]byte(s), &m); err != nil || m == nil {
		return nil, false
	}
	return m, true
}

// encodeApplied returns the AppliedAnnotation value of applied, at most
// limit bytes long, and how many policies were left out to fit.
func encodeApplied(applied map[types.UID]int64, limit int) (string, int) {
	uids := make([]types.UID, 0, len(applied))
	for uid := range applied {
		uids = append(uids, uid)
	}
	slices.Sort(uids)
	b := []byte{'{'}
	for i, uid := range uids {
		key, _ := json.Marshal(string(uid)) // a string always marshals
		gen := strconv.FormatInt(applied[uid], 10)
		sep := 0
		if i > 0 {
			sep = 1
		}
		if len(b)+sep+len(key)+1+len(gen)+1 > limit { // the entry and the closing brace
			return string(append(b, '}')), len(uids) - i
		}
		if sep > 0 {
			b = append(b, ',')
		}
		b = append(b, key...)
		b = append(b, ':')
		b = append(b, gen...)
	}
	return string(append(b, '}')), 0
}
