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

package agent

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"time"

	"k8s.io/klog/v2"

	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/nodeagent/capture"
	"flowscope.io/flowscope/nodeagent/hub"
	"flowscope.io/flowscope/nodeagent/ingest"
	"flowscope.io/flowscope/nodeagent/metrics"
	"flowscope.io/flowscope/nodeagent/observe"
	"flowscope.io/flowscope/nodeagent/selection"
)

// Capture modes.
const (
	CaptureOff      = "off"
	CaptureAll      = "all"
	CaptureSelected = "selected"
)

// localPods lists the pods of this node, for the capture selection.
type localPods interface {
	LocalPods() []selection.Pod
}

// runCapture loads the datapath, attaches it to the node's interfaces, and
// offers the flows of its events to the pipeline until ctx ends.
func runCapture(ctx context.Context, o *Options, p *ingest.Pipeline, h *hub.Hub, enricher observe.Enricher, pods localPods, policies policyNeeds) error {
	if err := capture.RemoveStaleFilters(); err != nil {
		klog.ErrorS(err, "Failed removing stale tc filters of an earlier agent")
	}
	d, err := capture.Load(capture.Options{ReportInterval: o.CaptureReportInterval, IdleTimeout: o.CaptureIdleTimeout,
		MaxConnectionsPerInterface: uint32(min(o.CaptureMaxConns, math.MaxUint32)), FlowTableSize: uint32(o.CaptureTableSize),
		Selected: o.Capture == CaptureSelected})
	if err != nil {
		return fmt.Errorf("load the eBPF datapath (use --capture=off to run without it): %w", err)
	}
	defer d.Close()
	collector := capture.NewCollector(d)
	metrics.Registry.CustomMustRegister(collector)
	defer metrics.Registry.Unregister(collector)

	if o.Capture == CaptureAll {
		if err := d.SetSelection(capture.Selection{All: true}); err != nil {
			return err
		}
	} else {
		go followSelection(ctx, d, h, pods, policies)
	}
	go func() {
		err := d.WatchInterfaces(ctx, capture.WatchOptions{
			Patterns: o.Interfaces, NoDefaultRoute: !o.AttachDefaultRoute,
			OnError: func(ifname string, err error) {
				klog.ErrorS(err, "Failed attaching to an interface", "interface", ifname)
			},
		})
		if err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "Interface watcher stopped")
		}
	}()

	if o.L7 != L7Off {
		go func() {
			if err := runL7(ctx, o, d, p, h, enricher, pods, policies); err != nil && ctx.Err() == nil {
				klog.ErrorS(err, "L7 sampling stopped")
			}
		}()
	}
	conv := observe.NewConverter(observe.Mapper{Enricher: enricher, AgentNamespace: o.Namespace}, o.AttachDefaultRoute)
	return d.Run(ctx, func(e capture.Event) {
		for _, f := range conv.Flows(e) {
			p.Offer(f)
		}
	})
}

// policyFilters are the flow log policies' needs, as filters.
type policyFilters interface {
	CaptureFilters() []flowfilter.Filter
}

// policyNeeds are the flow log policies' needs of the capture and of L7.
type policyNeeds interface {
	policyFilters
	l7Needs
}

// followSelection keeps the datapath's selection equal to what the active
// watches and the flow log policies need, as watches come and go, and
// policies and pods change.
func followSelection(ctx context.Context, d *capture.Datapath, h *hub.Hub, pods localPods, policies policyFilters) {
	var last *selection.Selection
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		sel := selection.Compute(append(h.Filters(), policies.CaptureFilters()...), pods.LocalPods())
		if last == nil || !sel.Equal(*last) {
			if err := d.SetSelection(toCapture(sel)); err != nil {
				klog.ErrorS(err, "Failed programming the capture selection")
			} else {
				klog.V(2).InfoS("Capture selection changed", "all", sel.All, "ips", len(sel.IPs), "ports", len(sel.Ports))
				last = &sel
			}
		}
		select {
		case <-h.Changed():
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

func toCapture(s selection.Selection) capture.Selection {
	out := capture.Selection{All: s.All}
	for _, ip := range s.IPs {
		out.Prefixes = append(out.Prefixes, netip.PrefixFrom(ip, ip.BitLen()))
	}
	for _, p := range s.Ports {
		out.Ports = append(out.Ports, capture.Port{Port: p.Number, Protocol: observe.ProtocolNumber(p.Protocol)})
	}
	return out
}
