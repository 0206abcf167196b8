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
	"fmt"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
)

// Bounds on the selectors of one filter. A watch's filter is matched against
// every flow its agents ingest, on their single ingest goroutine, by every
// watch at once (nodeagent/hub): the bounds cap what one watch adds to each
// flow's cost, so that the server's cap on watches caps the whole. The
// aggregated server refuses a request over them with 400 before it asks any
// agent (registry/flow), and Compile refuses a filter over them, so an agent
// holds to them whatever its server sends.
const (
	// MaxSelectorTerms bounds the comparisons a filter makes per flow: a
	// field requirement is one term, a label requirement one per value
	// (set-based ones compare with each in turn) and at least one. The
	// selectors people type have a handful; FlowLogPolicies bound their
	// matchExpressions to 32 as well.
	MaxSelectorTerms = 32
	// MaxSelectorValueBytes bounds each value compared: the longest real
	// ones are DNS names and pod names (253 bytes).
	MaxSelectorValueBytes = 1024
	// MaxSelectorBytes bounds the label and field selectors together, as
	// the server sends them to the agents (values escaped): what one
	// filter may compare per flow, and what each agent parses per
	// request.
	MaxSelectorBytes = 8192
)

// CheckBounds returns an error naming the bound the filter's selectors
// exceed, or nil. It parses them, so a selector that does not parse is an
// error too.
func (f Filter) CheckBounds() error {
	_, _, err := f.parse()
	return err
}

// parse checks the size before parsing, then parses the selectors and
// checks their terms and values.
func (f Filter) parse() (labels.Selector, fields.Selector, error) {
	if n := len(f.LabelSelector) + len(f.FieldSelector); n > MaxSelectorBytes {
		return nil, nil, fmt.Errorf("the label and field selectors are %d bytes together, over the limit of %d bytes", n, MaxSelectorBytes)
	}
	label, field := labels.Everything(), fields.Everything()
	terms := 0
	if f.LabelSelector != "" {
		s, err := labels.Parse(f.LabelSelector)
		if err != nil {
			return nil, nil, fmt.Errorf("parse label selector: %w", err)
		}
		reqs, _ := s.Requirements()
		for _, r := range reqs {
			values := r.ValuesUnsorted()
			terms += max(1, len(values))
			for _, v := range values {
				if len(v) > MaxSelectorValueBytes {
					return nil, nil, fmt.Errorf("the value of label selector %s is %d bytes, over the limit of %d bytes", r.Key(), len(v), MaxSelectorValueBytes)
				}
			}
		}
		label = s
	}
	if f.FieldSelector != "" {
		s, err := fields.ParseSelector(f.FieldSelector)
		if err != nil {
			return nil, nil, fmt.Errorf("parse field selector: %w", err)
		}
		reqs := s.Requirements()
		terms += len(reqs)
		for _, r := range reqs {
			if len(r.Value) > MaxSelectorValueBytes {
				return nil, nil, fmt.Errorf("the value of field selector %s is %d bytes, over the limit of %d bytes", r.Field, len(r.Value), MaxSelectorValueBytes)
			}
		}
		field = s
	}
	if terms > MaxSelectorTerms {
		return nil, nil, fmt.Errorf("the label and field selectors have %d terms together, over the limit of %d terms", terms, MaxSelectorTerms)
	}
	return label, field, nil
}
