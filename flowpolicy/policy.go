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

// Package flowpolicy is the contract for flow log policies that the agents
// and the server share: a ClusterFlowLogPolicy's or FlowLogPolicy's spec
// compiled into a Policy that tells whether it selects a flow, a Set of
// them that answers for one flow at once, and the Warnings that say why a
// valid spec can never select anything.
//
// The semantics are those of AKS ACNS ContainerNetworkLog, extended with
// the fields ACNS's prose mentions and its schema lacks. A flow is selected
// when it matches any include filter and no exclude filter; a
// FlowLogPolicy selects, in addition, only flows whose metadata.namespace
// is its own. Within a filter, and within one of its endpoints, every field
// that is set must match; the values of one field are alternatives. An
// absent or empty field matches anything, flows without that part
// included; a field that is set never matches a flow without the part it
// tests.
package flowpolicy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	configv1alpha1 "flowscope.io/flowscope/apis/config/v1alpha1"
	flowsv1alpha1 "flowscope.io/flowscope/apis/flows/v1alpha1"
)

// Retention bounds, as the CRD's schema has them.
const (
	DefaultRetention = 24 * time.Hour
	MaxRetention     = 8760 * time.Hour
)

// Outputs is a set of the destinations of selected flows.
type Outputs uint8

// The outputs, one bit each.
const (
	OutputStore Outputs = 1 << iota
	OutputFile
	OutputOTLP
)

// DefaultOutputs are the outputs of a policy that names none.
const DefaultOutputs = OutputStore | OutputFile

var outputNames = []struct {
	name configv1alpha1.Output
	bit  Outputs
}{
	{configv1alpha1.OutputStore, OutputStore},
	{configv1alpha1.OutputFile, OutputFile},
	{configv1alpha1.OutputOTLP, OutputOTLP},
}

// Has reports whether o holds every output of x.
func (o Outputs) Has(x Outputs) bool { return o&x == x }

// String lists the outputs as the spec spells them, comma separated.
func (o Outputs) String() string {
	var names []string
	for _, n := range outputNames {
		if o.Has(n.bit) {
			names = append(names, string(n.name))
		}
	}
	return strings.Join(names, ",")
}

// Policy is a compiled FlowLogPolicySpec. It is immutable and safe for
// concurrent use.
type Policy struct {
	namespace        string
	include, exclude []filter
	retention        time.Duration
	outputs          Outputs
}

// Compile compiles a policy's spec. namespace is a FlowLogPolicy's
// namespace, empty for a ClusterFlowLogPolicy.
//
// Compile refuses, with an error naming the field, everything the CRD's
// schema refuses and that would change what the policy means: the agents
// do not trust the API server's validation to stand between them and a
// malformed object. It does not enforce the schema's list lengths.
func Compile(namespace string, spec *configv1alpha1.FlowLogPolicySpec) (*Policy, error) {
	if spec == nil {
		return nil, errors.New("spec: missing")
	}
	if len(spec.IncludeFilters) == 0 {
		return nil, errors.New("includefilters: must hold at least one filter")
	}
	p := &Policy{namespace: namespace, retention: DefaultRetention, outputs: DefaultOutputs}
	var err error
	if p.include, err = compileFilters("includefilters", spec.IncludeFilters); err != nil {
		return nil, err
	}
	if p.exclude, err = compileFilters("excludefilters", spec.ExcludeFilters); err != nil {
		return nil, err
	}
	if spec.Retention != nil {
		switch d := spec.Retention.Duration; {
		case d <= 0:
			return nil, fmt.Errorf("retention: %s is not positive", d)
		case d > MaxRetention:
			return nil, fmt.Errorf("retention: %s is longer than a year (%s)", d, MaxRetention)
		default:
			p.retention = d
		}
	}
	if len(spec.Outputs) > 0 {
		p.outputs = 0
		for i, o := range spec.Outputs {
			bit := outputBit(o)
			if bit == 0 {
				return nil, fmt.Errorf("outputs[%d]: %q is not Store, File or OTLP", i, o)
			}
			p.outputs |= bit
		}
	}
	return p, nil
}

func outputBit(o configv1alpha1.Output) Outputs {
	for _, n := range outputNames {
		if n.name == o {
			return n.bit
		}
	}
	return 0
}

func compileFilters(path string, specs []configv1alpha1.FlowLogFilter) ([]filter, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	out := make([]filter, len(specs))
	for i := range specs {
		if err := out[i].compile(fmt.Sprintf("%s[%d]", path, i), &specs[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Namespace returns the namespace the policy is confined to, empty for a
// cluster policy.
func (p *Policy) Namespace() string { return p.namespace }

// Retention returns how long the Store output keeps the flows the policy
// selects.
func (p *Policy) Retention() time.Duration { return p.retention }

// Outputs returns where the flows the policy selects go.
func (p *Policy) Outputs() Outputs { return p.outputs }

// Matches reports whether the policy selects the flow.
func (p *Policy) Matches(f *flowsv1alpha1.Flow) bool {
	if f == nil {
		return false
	}
	v := newView(f)
	return p.matches(&v)
}

func (p *Policy) matches(v *view) bool {
	if p.namespace != "" && v.f.Namespace != p.namespace {
		return false
	}
	included := false
	for i := range p.include {
		if p.include[i].matches(v) {
			included = true
			break
		}
	}
	if !included {
		return false
	}
	for i := range p.exclude {
		if p.exclude[i].matches(v) {
			return false
		}
	}
	return true
}

// HasL7 reports whether one of the policy's include filters has an l7
// part: what --l7=selected samples the payload for.
func (p *Policy) HasL7() bool {
	return slices.ContainsFunc(p.include, func(f filter) bool { return f.l7 != nil })
}

// CaptureAddresses returns addresses such that every flow the policy
// selects has one of them at an end, and ok: false when there are none
// such, as when an include filter restricts neither end to single
// addresses (a pod prefix or a label selector can name a pod on any node,
// and a CIDR is not a single address). The capture's selection
// (--capture=selected) programs the kernel with them.
func (p *Policy) CaptureAddresses() (addrs []netip.Addr, ok bool) {
	for _, f := range p.include {
		a, ok := f.from.singleAddresses()
		if !ok {
			a, ok = f.to.singleAddresses()
		}
		if !ok {
			return nil, false
		}
		addrs = append(addrs, a...)
	}
	return addrs, true
}
