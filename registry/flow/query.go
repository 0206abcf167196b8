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

package flow

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apiserver/pkg/storage"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
)

// query is a request compiled once: the filter that travels to the agents
// and the agents that can hold an answer.
type query struct {
	filter flowfilter.Filter
	// nodes restricts the agents asked; nil means every agent.
	nodes []string
	// route is what pod routing needs of the selectors (routing.go).
	route podRoute
	// bounded is true when the user gave since or until.
	bounded bool
}

// compileQuery turns a request's namespace and selectors into a query. Its
// errors are 400s that name the problem.
func compileQuery(namespace string, opts *metainternalversion.ListOptions, now time.Time) (*query, error) {
	q := &query{filter: flowfilter.Filter{Namespace: namespace}}
	if opts == nil {
		return q, nil
	}
	if opts.LabelSelector != nil && !opts.LabelSelector.Empty() {
		q.filter.LabelSelector = opts.LabelSelector.String()
	}
	if opts.FieldSelector == nil || opts.FieldSelector.Empty() {
		if err := checkSelectorBounds(q.filter); err != nil {
			return nil, err
		}
		return q, nil
	}
	var pushed []string
	var nodes map[string]bool // nil: unrestricted
	restrict := func(node string) {
		if nodes == nil {
			nodes = map[string]bool{node: true}
			return
		}
		// Two different exact nodes select nothing.
		nodes = map[string]bool{node: nodes[node]}
	}
	for _, r := range opts.FieldSelector.Requirements() {
		equals := r.Operator == selection.Equals || r.Operator == selection.DoubleEquals
		switch r.Field {
		case v1alpha1.FieldSince, v1alpha1.FieldUntil:
			if !equals {
				return nil, apierrors.NewBadRequest(fmt.Sprintf("field selector %s supports only =, not %s", r.Field, r.Operator))
			}
			t, err := v1alpha1.ParseTimeBound(r.Value, now)
			if err != nil {
				return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid value %q for field selector %s: %v", r.Value, r.Field, err))
			}
			// Terms are ANDed: two bounds of a kind keep the tighter.
			if r.Field == v1alpha1.FieldSince {
				if q.filter.Since == nil || t.After(*q.filter.Since) {
					q.filter.Since = &t
				}
			} else if q.filter.Until == nil || t.Before(*q.filter.Until) {
				q.filter.Until = &t
			}
			q.bounded = true
			continue
		case "nodeName":
			if equals {
				restrict(r.Value)
			}
		case "metadata.name":
			if equals {
				node, _, ok := splitName(r.Value)
				if !ok {
					node = "" // a malformed name matches no agent
				}
				restrict(node)
			}
		default:
			// Two different values for one field select nothing, so
			// the last one may route.
			if equals {
				if p := q.route.pin(r.Field); p != nil {
					*p = r.Value
				}
			}
		}
		op := "="
		if r.Operator == selection.NotEquals {
			op = "!="
		}
		pushed = append(pushed, r.Field+op+fields.EscapeValue(r.Value))
	}
	q.filter.FieldSelector = strings.Join(pushed, ",")
	if err := checkSelectorBounds(q.filter); err != nil {
		return nil, err
	}
	if nodes != nil {
		q.nodes = []string{}
		for n, ok := range nodes {
			if ok && n != "" {
				q.nodes = append(q.nodes, n)
			}
		}
	}
	return q, nil
}

// splitName reads "<node>.<rv>". Node names may contain dots; versions not.
func splitName(name string) (node string, rv uint64, ok bool) {
	i := strings.LastIndexByte(name, '.')
	if i <= 0 {
		return "", 0, false
	}
	rv, err := strconv.ParseUint(name[i+1:], 10, 64)
	if err != nil || rv == 0 {
		return "", 0, false
	}
	return name[:i], rv, true
}

// parseRV reads a request's resource version; "" and "0" read as 0.
func parseRV(s string) (uint64, error) {
	if s == "" || s == "0" {
		return 0, nil
	}
	rv, err := strconv.ParseUint(s, 10, 64)
	if err != nil || strings.HasPrefix(s, "0") || strings.HasPrefix(s, "+") {
		return 0, apierrors.NewBadRequest(fmt.Sprintf("invalid resource version %q: flows use positive decimal integers", s))
	}
	return rv, nil
}

// maxClockLead is how far a requested resource version may lie ahead of
// this server's clock: agents' clocks run up to their persisted ceiling
// (10 s) ahead after a restart, and nodes' clocks differ a little.
const maxClockLead = time.Minute

// checkNotTooLarge answers a version from the future the way kube-apiserver
// does (504 with the ResourceVersionTooLarge cause, which clients retry)
// instead of letting it drag every agent's clock forward.
func checkNotTooLarge(rv uint64, now time.Time) error {
	if cur := uint64(now.UnixMicro()); rv > cur+uint64(maxClockLead.Microseconds()) {
		return storage.NewTooLargeResourceVersionError(rv, cur, 1)
	}
	return nil
}
