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

// Package stored is stored mode on an agent: it applies the cluster's
// flow log policies, sends the flows they select to the long-retention
// tier (output Store) and to the flow log file (output File), and
// reports on the agent's Lease which policy generations it applies.
//
// Stored mode is off until a policy exists: with none, Keep costs one
// atomic load per batch.
package stored

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	configv1alpha1 "flowscope.io/flowscope/apis/config/v1alpha1"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowpolicy"
	configinformers "flowscope.io/flowscope/generated/informers/externalversions"
	"flowscope.io/flowscope/nodeagent/metrics"
	"flowscope.io/flowscope/nodeagent/store"
	"flowscope.io/flowscope/nodeagent/tiers"
)

// FileWriter is the flow log file; Write must not block.
type FileWriter interface {
	Write(flows []*v1alpha1.Flow)
}

// Options configure stored mode.
type Options struct {
	// Tiers keeps the flows of output Store.
	Tiers *tiers.Tiers
	// File, if not nil, receives the flows of output File.
	File FileWriter
	// OTLP, if not nil, receives the flows of output OTLP (package
	// otlpexport); its Write must not block either.
	OTLP FileWriter
	// Applied, if not nil, is told the policies applied, UID to
	// generation, after every change.
	Applied func(map[types.UID]int64)
	// OnChange, if not nil, is called after the policies change (the
	// capture selection follows them).
	OnChange func()
}

// Mode is stored mode. Keep, Holding, Maintain and Sync are called from
// the ingest pipeline's goroutine.
type Mode struct {
	opts Options
	set  atomic.Pointer[applied]
	// changed wakes the loop that recompiles the policies.
	changed chan struct{}
	// kept, files, otlp: reused by Keep.
	kept  []tiers.Kept
	files []*v1alpha1.Flow
	otlp  []*v1alpha1.Flow
}

// applied is the compiled policies with what they came from.
type applied struct {
	set      *flowpolicy.Set
	policies []Source
	compiled []*flowpolicy.Policy // of policies, in their order
	// retentions are the retentions of the policies with output Store.
	retentions map[time.Duration]bool
}

// Source is a policy as the agent got it.
type Source struct {
	Kind       string
	Namespace  string
	Name       string
	UID        types.UID
	Generation int64
	Spec       *configv1alpha1.FlowLogPolicySpec
}

// ID identifies the source among the policies.
func (s Source) ID() string {
	if s.Namespace == "" {
		return s.Kind + "/" + s.Name
	}
	return s.Kind + "/" + s.Namespace + "/" + s.Name
}

// New returns stored mode with no policy.
func New(o Options) *Mode {
	m := &Mode{opts: o, changed: make(chan struct{}, 1)}
	m.set.Store(&applied{set: flowpolicy.NewSet(nil)})
	return m
}

// Apply compiles policies and makes them the ones applied. A policy that
// does not compile is left out, logged and counted; the others apply.
func (m *Mode) Apply(policies []Source) {
	compiled := map[string]*flowpolicy.Policy{}
	a := &applied{retentions: map[time.Duration]bool{}}
	report := map[types.UID]int64{}
	invalid := 0
	for _, src := range policies {
		p, err := flowpolicy.Compile(src.Namespace, src.Spec)
		if err != nil {
			invalid++
			klog.ErrorS(err, "Not applying an invalid flow log policy", "policy", src.ID(), "generation", src.Generation)
			continue
		}
		compiled[src.ID()] = p
		a.policies = append(a.policies, src)
		a.compiled = append(a.compiled, p)
		report[src.UID] = src.Generation
		if p.Outputs().Has(flowpolicy.OutputStore) {
			a.retentions[p.Retention().Truncate(time.Second)] = true
		}
	}
	a.set = flowpolicy.NewSet(compiled)
	m.set.Store(a)
	metrics.Policies.WithLabelValues("applied").Set(float64(len(compiled)))
	metrics.Policies.WithLabelValues("invalid").Set(float64(invalid))
	klog.V(2).InfoS("Applied flow log policies", "policies", len(compiled), "invalid", invalid)
	if m.opts.Applied != nil {
		m.opts.Applied(report)
	}
	if m.opts.OnChange != nil {
		m.opts.OnChange()
	}
}

// ReportApplied makes Apply tell report the policies it applies, UID to
// generation. Call it before Watch.
func (m *Mode) ReportApplied(report func(map[types.UID]int64)) { m.opts.Applied = report }

// Policies returns the policies applied.
func (m *Mode) Policies() []Source { return m.set.Load().policies }

// Active reports whether any policy applies.
func (m *Mode) Active() bool { return m.set.Load().set.Len() > 0 }

// Keep implements ingest.Stored.
func (m *Mode) Keep(recs []store.Record) {
	a := m.set.Load()
	if a.set.Len() == 0 {
		return
	}
	m.kept, m.files, m.otlp = m.kept[:0], m.files[:0], m.otlp[:0]
	for _, r := range recs {
		sel := a.set.Select(r.Flow)
		if !sel.Selected() {
			continue
		}
		if sel.Outputs.Has(flowpolicy.OutputStore) {
			m.kept = append(m.kept, tiers.Kept{Record: r, Retention: sel.Retention})
		}
		if sel.Outputs.Has(flowpolicy.OutputFile) {
			m.files = append(m.files, r.Flow)
		}
		if sel.Outputs.Has(flowpolicy.OutputOTLP) {
			m.otlp = append(m.otlp, r.Flow)
		}
	}
	metrics.PolicyFlows.WithLabelValues("Store").Add(float64(len(m.kept)))
	metrics.PolicyFlows.WithLabelValues("File").Add(float64(len(m.files)))
	metrics.PolicyFlows.WithLabelValues("OTLP").Add(float64(len(m.otlp)))
	if len(m.files) > 0 && m.opts.File != nil {
		m.opts.File.Write(slices.Clone(m.files))
	}
	if len(m.otlp) > 0 && m.opts.OTLP != nil {
		m.opts.OTLP.Write(m.otlp) // it keeps the flows, not the slice
	}
	if len(m.kept) == 0 {
		return
	}
	rep, err := m.opts.Tiers.Write(m.kept)
	metrics.StoredFlows.WithLabelValues("stored").Add(float64(rep.Stored))
	metrics.StoredFlows.WithLabelValues("over_share").Add(float64(rep.OverShare))
	if err != nil {
		metrics.StoredFlows.WithLabelValues("error").Add(float64(len(m.kept) - rep.Stored - rep.OverShare))
		klog.ErrorS(err, "Failed keeping flows in the stored tier; they stay in the on-demand store only", "flows", len(m.kept)-rep.Stored-rep.OverShare)
	}
}

// Holding implements ingest.Stored.
func (m *Mode) Holding(after, upTo uint64) (map[uint64]struct{}, error) {
	return m.opts.Tiers.Holding(after, upTo)
}

// Maintain implements ingest.Stored.
func (m *Mode) Maintain(stillListed uint64, announce func([]store.Record)) {
	r, err := m.opts.Tiers.Maintain(m.set.Load().retentions, stillListed, announce)
	if err != nil {
		klog.ErrorS(err, "Failed maintaining the stored tier")
	}
	metrics.StoredBytes.Set(float64(r.DiskBytes))
	metrics.StoredEvictions.Add(float64(r.Evicted))
	if r.Evicted > 0 {
		klog.InfoS("Evicted the oldest flows of the stored tier to keep within its budget", "buckets", r.Evicted, "bytes", r.DiskBytes)
	}
}

// Sync implements ingest.Stored.
func (m *Mode) Sync() error { return m.opts.Tiers.Sync() }

// Watch applies the policies of the informers' factory as they change,
// until ctx ends. Bursts of changes are applied once.
func (m *Mode) Watch(ctx context.Context, factory configinformers.SharedInformerFactory) error {
	cluster := factory.Config().V1alpha1().ClusterFlowLogPolicies()
	namespaced := factory.Config().V1alpha1().FlowLogPolicies()
	wake := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { m.poke() },
		UpdateFunc: func(any, any) { m.poke() },
		DeleteFunc: func(any) { m.poke() },
	}
	if _, err := cluster.Informer().AddEventHandler(wake); err != nil {
		return err
	}
	if _, err := namespaced.Informer().AddEventHandler(wake); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("sync the informer of %v", typ)
		}
	}
	m.poke()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.changed:
		}
		// Coalesce a burst (a kubectl apply of many policies).
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(50 * time.Millisecond):
		}
		var srcs []Source
		cps, err := cluster.Lister().List(labels.Everything())
		if err != nil {
			return err
		}
		for _, p := range cps {
			srcs = append(srcs, Source{Kind: "ClusterFlowLogPolicy", Name: p.Name, UID: p.UID, Generation: p.Generation, Spec: &p.Spec})
		}
		nps, err := namespaced.Lister().List(labels.Everything())
		if err != nil {
			return err
		}
		for _, p := range nps {
			srcs = append(srcs, Source{Kind: "FlowLogPolicy", Namespace: p.Namespace, Name: p.Name, UID: p.UID, Generation: p.Generation, Spec: &p.Spec})
		}
		m.Apply(srcs)
	}
}

func (m *Mode) poke() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}
