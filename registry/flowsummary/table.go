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

package flowsummary

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// The name, a hash, is left to -o wide: the edge's ends say what a row is.
var columns = []metav1.TableColumnDefinition{
	{Name: "Source", Type: "string", Description: "Sending end: namespace/workload (or pod, or svc/service), or an external CIDR."},
	{Name: "Destination", Type: "string", Description: "Receiving end, as the source, with the service addressed when known."},
	{Name: "Port", Type: "string", Description: "Transport protocol and destination port."},
	{Name: "Verdict", Type: "string", Description: "What the datapath did with the flows."},
	{Name: "Direction", Type: "string", Description: "Egress when observed at the source, Ingress at the destination; reply for the edge of reply flows, shown from client to server."},
	{Name: "L7", Type: "string", Description: "Application protocol and status class of L7 records (HTTP 2xx, DNS NXDOMAIN, gRPC NotFound)."},
	{Name: "Flows", Type: "integer", Description: "Flow records counted."},
	{Name: "Bytes", Type: "string", Description: "Bytes in the flows' direction and in reply."},
	{Name: "Errors", Type: "string", Description: "L7 errors out of L7 requests."},
	{Name: "P50", Type: "string", Description: "Median L7 latency."},
	{Name: "P99", Type: "string", Description: "99th percentile of L7 latency."},
	{Name: "Name", Type: "string", Format: "name", Priority: 1, Description: "Name of the edge: a stable hash of its key."},
	{Name: "Packets", Type: "string", Priority: 1, Description: "Packets in the flows' direction and in reply."},
	{Name: "Drops", Type: "string", Priority: 1, Description: "Dropped flows by drop reason."},
	{Name: "P95", Type: "string", Priority: 1, Description: "95th percentile of L7 latency."},
	{Name: "Nodes", Type: "string", Priority: 1, Description: "Nodes whose agents observed the flows."},
	{Name: "Window", Type: "string", Priority: 1, Description: "The time range of the flows counted."},
}

// ConvertToTable implements rest.TableConvertor.
func (r *REST) ConvertToTable(_ context.Context, obj runtime.Object, opts runtime.Object) (*metav1.Table, error) {
	table := &metav1.Table{}
	if o, ok := opts.(*metav1.TableOptions); !ok || !o.NoHeaders {
		table.ColumnDefinitions = columns
	}
	switch o := obj.(type) {
	case *v1alpha1.FlowSummaryList:
		table.ResourceVersion = o.ResourceVersion
		table.Rows = make([]metav1.TableRow, 0, len(o.Items))
		for i := range o.Items {
			table.Rows = append(table.Rows, row(&o.Items[i]))
		}
	case *v1alpha1.FlowSummary:
		table.Rows = []metav1.TableRow{row(o)}
	default:
		m, err := meta.ListAccessor(obj)
		if err != nil {
			return nil, fmt.Errorf("convert %T to a table: %w", obj, err)
		}
		table.ResourceVersion = m.GetResourceVersion()
	}
	return table, nil
}

func row(s *v1alpha1.FlowSummary) metav1.TableRow {
	e := &s.Edge
	port := string(e.Protocol)
	if e.DestinationPort != 0 {
		port += "/" + strconv.Itoa(int(e.DestinationPort))
	}
	var l7, errs, p50, p95, p99 string
	if e.L7Type != "" {
		l7 = string(e.L7Type) + " " + e.L7Status
	}
	if l := s.L7; l != nil {
		errs = fmt.Sprintf("%d/%d", l.Errors, l.Requests)
		if p := l.Latency; p != nil {
			p50, p95, p99 = latency(p.P50.Duration), latency(p.P95.Duration), latency(p.P99.Duration)
		}
	}
	drops := make([]string, len(s.Drops))
	for i, d := range s.Drops {
		drops[i] = fmt.Sprintf("%s=%d", orNone(d.Reason), d.Flows)
	}
	direction := string(e.TrafficDirection)
	if e.Reply {
		direction += " reply"
	}
	t := &s.Traffic
	return metav1.TableRow{
		Object: runtime.RawExtension{Object: s},
		Cells: []any{
			end(&e.Source, ""),
			end(&e.Destination, e.Destination.Service),
			orNone(port),
			string(e.Verdict),
			direction,
			l7,
			t.Flows,
			fmt.Sprintf("%d/%d", t.Bytes, t.BytesReply),
			errs, p50, p99,
			s.Name,
			fmt.Sprintf("%d/%d", t.Packets, t.PacketsReply),
			strings.Join(drops, ","),
			p95,
			strings.Join(s.Nodes, ","),
			s.Window.Start.UTC().Format(time.RFC3339) + "/" + s.Window.End.UTC().Format(time.RFC3339),
		},
	}
}

// end prints an edge's end as kubectl users name things: shop/web for a
// workload (its kind is in -o yaml), shop/pod/x for a bare pod,
// shop/svc/api for a service, the CIDR of an external end.
func end(p *v1alpha1.EdgeEndpoint, service string) string {
	var s string
	switch p.Kind {
	case v1alpha1.EndpointKindExternal:
		s = p.Name
	case v1alpha1.EndpointKindUnknown:
		s = "<unknown>"
	case v1alpha1.EndpointKindOther:
		s = "<other edges>"
	case v1alpha1.EndpointKindPod:
		s = p.Namespace + "/pod/" + p.Name
	case v1alpha1.EndpointKindService:
		return p.Namespace + "/svc/" + p.Name
	default:
		s = p.Namespace + "/" + p.Name
	}
	if service != "" {
		s += " (svc/" + service + ")"
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// latency keeps three significant digits or so.
func latency(d time.Duration) string {
	switch {
	case d >= time.Second:
		d = d.Round(time.Millisecond)
	case d >= time.Millisecond:
		d = d.Round(10 * time.Microsecond)
	default:
		d = d.Round(time.Microsecond)
	}
	return d.String()
}
