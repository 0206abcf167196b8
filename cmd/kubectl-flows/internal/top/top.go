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

// Package top is `kubectl flows top`: sorted tables of the FlowSummary
// API, the edges of the flow graph that the agents count from their
// stores, so that no flow travels to the client.
package top

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/cli-runtime/pkg/printers"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/generated/clientset/versioned"
	flowsv1alpha1 "flowscope.io/flowscope/generated/clientset/versioned/typed/flows/v1alpha1"
)

// Views are the tables top prints.
var Views = []string{"edges", "drops", "dns", "http"}

// pageSize is the page top asks for; the server may cap it.
const pageSize = 500

// Options are top's flags.
type Options struct {
	AllNamespaces bool
	Since, Until  string
	LabelSelector string
	FieldSelector string
	Limit         int
	Output        string
}

// NewCommand returns `kubectl flows top`.
func NewCommand(config *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{}
	cmd := &cobra.Command{
		Use:   "top [edges|drops|dns|http]",
		Short: "The busiest edges, drops, DNS and HTTP servers of a window, from FlowSummary",
		Long: `Print sorted tables of the FlowSummary API: per edge of the flow graph
(source and destination workload, service or external CIDR, destination
port, protocol, verdict, direction, L7 status class), the flows, drops and
L7 requests of a window, counted by the agents from their stores.

  edges  every edge, by flows
  drops  dropped flows per edge and drop reason, by flows
  dns    DNS edges (client to server, per response code), by requests
  http   HTTP and gRPC edges (per status class), by requests, with
         error rates and latency percentiles

An edge between two observed pods is counted at both ends, as Egress in the
source's namespace and as Ingress in the destination's. drops, dns and http
keep the Egress edge where both are listed, so that a pair counts once;
edges prints both, with their direction. Where requests and answers are
records of their own, dns and http show the answers (with their status)
and leave out the requests without one between the same ends.`,
		Example: `  # The busiest edges of namespace shop over the server's default window
  kubectl flows top -n shop

  # Drops everywhere you may look over the last hour
  kubectl flows top drops -A --since 1h

  # HTTP servers with their error rates and latencies
  kubectl flows top http -n shop`,
		Args:          cobra.MaximumNArgs(1),
		ValidArgs:     Views,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			view := "edges"
			if len(args) == 1 {
				view = args[0]
			}
			if !slices.Contains(Views, view) {
				return fmt.Errorf("unknown view %q: want one of %s", view, strings.Join(Views, ", "))
			}
			ns, _, err := config.ToRawKubeConfigLoader().Namespace()
			if err != nil {
				return err
			}
			if o.AllNamespaces {
				ns = ""
			}
			rc, err := config.ToRESTConfig()
			if err != nil {
				return err
			}
			cs, err := versioned.NewForConfig(rc)
			if err != nil {
				return err
			}
			items, err := o.list(cmd.Context(), cs.FlowsV1alpha1().FlowSummaries(ns))
			if err != nil {
				return err
			}
			return o.print(streams.Out, view, items)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "Edges observed in every namespace.")
	f.StringVar(&o.Since, "since", "", "Window start: a duration ago (1h) or an RFC 3339 time; the server's default window when empty.")
	f.StringVar(&o.Until, "until", "", "Window end: a duration ago or an RFC 3339 time; now when empty.")
	f.StringVarP(&o.LabelSelector, "selector", "l", "", "Label selector over the observed pods' labels, as for flows.")
	f.StringVar(&o.FieldSelector, "field-selector", "", "Field selector over the flows counted, as for kubectl get flows (verdict=Dropped, l4.destinationPort=443, ...).")
	f.IntVar(&o.Limit, "limit", 20, "Rows to print; 0 prints all.")
	f.StringVarP(&o.Output, "output", "o", "", "Empty for the table, wide for all columns, or json/yaml for the rows' FlowSummary objects.")
	return cmd
}

func (o *Options) fieldSelector() string {
	var terms []string
	if o.FieldSelector != "" {
		terms = append(terms, o.FieldSelector)
	}
	if o.Since != "" {
		terms = append(terms, v1alpha1.FieldSince+"="+o.Since)
	}
	if o.Until != "" {
		terms = append(terms, v1alpha1.FieldUntil+"="+o.Until)
	}
	return strings.Join(terms, ",")
}

// list fetches every edge of the window, page by page.
func (o *Options) list(ctx context.Context, c flowsv1alpha1.FlowSummaryInterface) ([]v1alpha1.FlowSummary, error) {
	opts := metav1.ListOptions{LabelSelector: o.LabelSelector, FieldSelector: o.fieldSelector(), Limit: pageSize}
	var items []v1alpha1.FlowSummary
	for {
		l, err := c.List(ctx, opts)
		if err != nil {
			return nil, err
		}
		items = append(items, l.Items...)
		if l.Continue == "" {
			return items, nil
		}
		opts.Continue = l.Continue
	}
}

func (o *Options) print(w io.Writer, view string, items []v1alpha1.FlowSummary) error {
	t := Table(view, items, o.Limit)
	switch o.Output {
	case "", "wide":
		return printers.NewTablePrinter(printers.PrintOptions{Wide: o.Output == "wide"}).PrintObj(t, w)
	}
	pf := genericclioptions.NewPrintFlags("")
	pf.OutputFormat = &o.Output
	p, err := pf.ToPrinter()
	if err != nil {
		return err
	}
	list := &v1alpha1.FlowSummaryList{}
	list.SetGroupVersionKind(v1alpha1.SchemeGroupVersion.WithKind("FlowSummaryList"))
	for _, r := range t.Rows {
		list.Items = append(list.Items, *r.Object.Object.(*v1alpha1.FlowSummary))
	}
	return p.PrintObj(list, w)
}

// Table builds a view's sorted table of at most limit rows (0: all).
// Each row's Object is the FlowSummary it shows.
func Table(view string, items []v1alpha1.FlowSummary, limit int) *metav1.Table {
	var rows []row
	switch view {
	case "drops":
		rows = dropRows(oncePerPair(items))
	case "dns":
		rows = l7Rows(answered(oncePerPair(items)), v1alpha1.L7TypeDNS)
	case "http":
		rows = l7Rows(answered(oncePerPair(items)), v1alpha1.L7TypeHTTP, v1alpha1.L7TypeGRPC)
	default:
		rows = edgeRows(items)
	}
	slices.SortStableFunc(rows, func(a, b row) int {
		return cmp.Or(cmp.Compare(b.key, a.key), cmp.Compare(a.tie, b.tie))
	})
	if limit > 0 && len(rows) > limit {
		rows = rows[:limit]
	}
	t := &metav1.Table{ColumnDefinitions: columns[view]}
	for _, r := range rows {
		t.Rows = append(t.Rows, r.TableRow)
	}
	return t
}

// row is a table row with what it sorts by: key, largest first, then tie.
type row struct {
	metav1.TableRow
	key int64
	tie string
}

func col(name string, priority int32) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: "string", Priority: priority}
}

var columns = map[string][]metav1.TableColumnDefinition{
	"edges": {col("Namespace", 0), col("Source", 0), col("Destination", 0), col("Port", 0), col("Verdict", 0), col("Direction", 0),
		col("Flows", 0), col("Packets", 1), col("Bytes", 0), col("Drops", 0), col("L7", 0), col("Nodes", 1)},
	"drops": {col("Namespace", 0), col("Source", 0), col("Destination", 0), col("Port", 0), col("Reason", 0), col("Flows", 0),
		col("Packets", 0), col("Nodes", 1)},
	"dns": {col("Namespace", 0), col("Client", 0), col("Server", 0), col("Status", 0), col("Requests", 0), col("Errors", 0),
		col("P50", 0), col("P95", 0), col("P99", 0), col("Max", 1)},
	"http": {col("Namespace", 0), col("Client", 0), col("Server", 0), col("Port", 0), col("Type", 0), col("Status", 0),
		col("Requests", 0), col("Errors", 0), col("Error%", 0), col("P50", 0), col("P95", 0), col("P99", 0), col("Max", 1)},
}

func edgeRows(items []v1alpha1.FlowSummary) []row {
	var rows []row
	for i := range items {
		s := &items[i]
		var drops int64
		for _, d := range s.Drops {
			drops += d.Flows
		}
		direction := string(s.Edge.TrafficDirection)
		if s.Edge.Reply {
			direction += " reply"
		}
		l7 := ""
		if s.Edge.L7Type != "" {
			l7 = string(s.Edge.L7Type) + " " + s.Edge.L7Status
		}
		rows = append(rows, row{
			TableRow: tableRow(s, s.Namespace, end(s.Edge.Source), end(s.Edge.Destination), port(s.Edge),
				string(s.Edge.Verdict), direction, s.Traffic.Flows,
				pair(s.Traffic.Packets, s.Traffic.PacketsReply), byteSize(s.Traffic.Bytes)+"/"+byteSize(s.Traffic.BytesReply),
				drops, l7, strings.Join(s.Nodes, ",")),
			key: s.Traffic.Flows, tie: s.Namespace + "/" + s.Name,
		})
	}
	return rows
}

func dropRows(items []v1alpha1.FlowSummary) []row {
	var rows []row
	for i := range items {
		s := &items[i]
		for _, d := range s.Drops {
			reason := d.Reason
			if reason == "" {
				reason = "<none>"
			}
			rows = append(rows, row{
				TableRow: tableRow(s, s.Namespace, end(s.Edge.Source), end(s.Edge.Destination), port(s.Edge), reason,
					d.Flows, d.Packets, strings.Join(s.Nodes, ",")),
				key: d.Flows, tie: s.Namespace + "/" + s.Name + "/" + d.Reason,
			})
		}
	}
	return rows
}

func l7Rows(items []v1alpha1.FlowSummary, types ...v1alpha1.L7Type) []row {
	var rows []row
	for i := range items {
		s := &items[i]
		if !slices.Contains(types, s.Edge.L7Type) || s.L7 == nil {
			continue
		}
		p50, p95, p99, maxLatency := "", "", "", ""
		if l := s.L7.Latency; l != nil {
			p50, p95, p99, maxLatency = latency(l.P50), latency(l.P95), latency(l.P99), latency(l.Max)
		}
		cells := []any{s.Namespace, end(s.Edge.Source), end(s.Edge.Destination)}
		if s.Edge.L7Type != v1alpha1.L7TypeDNS {
			errRate := "0%"
			if s.L7.Requests > 0 {
				errRate = strconv.FormatFloat(100*float64(s.L7.Errors)/float64(s.L7.Requests), 'f', 1, 64) + "%"
			}
			cells = append(cells, port(s.Edge), string(s.Edge.L7Type), s.Edge.L7Status, s.L7.Requests, s.L7.Errors, errRate)
		} else {
			cells = append(cells, s.Edge.L7Status, s.L7.Requests, s.L7.Errors)
		}
		cells = append(cells, p50, p95, p99, maxLatency)
		rows = append(rows, row{TableRow: tableRow(s, cells...), key: s.L7.Requests, tie: s.Namespace + "/" + s.Name})
	}
	return rows
}

func tableRow(s *v1alpha1.FlowSummary, cells ...any) metav1.TableRow {
	return metav1.TableRow{Cells: cells, Object: runtime.RawExtension{Object: s}}
}

// oncePerPair leaves out the Ingress edge of a pair whose Egress edge is
// listed too: both count the same flows, seen at either end.
func oncePerPair(items []v1alpha1.FlowSummary) []v1alpha1.FlowSummary {
	egress := map[v1alpha1.FlowEdge]bool{}
	for _, s := range items {
		if s.Edge.TrafficDirection == v1alpha1.TrafficDirectionEgress {
			egress[undirected(s.Edge)] = true
		}
	}
	var out []v1alpha1.FlowSummary
	for _, s := range items {
		if s.Edge.TrafficDirection == v1alpha1.TrafficDirectionIngress && egress[undirected(s.Edge)] {
			continue
		}
		out = append(out, s)
	}
	return out
}

// answered leaves out the records of requests where the same ends have
// records of answers: where a request and its answer are records of their
// own, both count the exchange, and the answer has the status and latency.
// A request record is one without a status, or one in the request
// direction (not Reply) where reply records exist.
func answered(items []v1alpha1.FlowSummary) []v1alpha1.FlowSummary {
	exchange := func(e v1alpha1.FlowEdge) v1alpha1.FlowEdge {
		e.Reply, e.L7Status = false, ""
		return e
	}
	unknown := func(e v1alpha1.FlowEdge) bool { return e.L7Status == "" || e.L7Status == "Unknown" }
	withStatus, replied := map[v1alpha1.FlowEdge]bool{}, map[v1alpha1.FlowEdge]bool{}
	for _, s := range items {
		if s.Edge.L7Type == "" {
			continue
		}
		if !unknown(s.Edge) {
			withStatus[exchange(s.Edge)] = true
		}
		if s.Edge.Reply {
			replied[exchange(s.Edge)] = true
		}
	}
	var out []v1alpha1.FlowSummary
	for _, s := range items {
		k := exchange(s.Edge)
		if s.Edge.L7Type != "" && (unknown(s.Edge) && withStatus[k] || !s.Edge.Reply && replied[k]) {
			continue
		}
		out = append(out, s)
	}
	return out
}

func undirected(e v1alpha1.FlowEdge) v1alpha1.FlowEdge {
	e.TrafficDirection = ""
	return e
}

// end writes an edge's end as kubectl get flowsummaries does: ns/name
// for workloads and pods, ns/svc/name for services, the CIDR for external
// ends, with the service the traffic was addressed to.
func end(e v1alpha1.EdgeEndpoint) string {
	var s string
	switch e.Kind {
	case v1alpha1.EndpointKindExternal:
		s = e.Name
	case v1alpha1.EndpointKindUnknown, v1alpha1.EndpointKindOther, "":
		s = "<" + strings.ToLower(cmp.Or(e.Kind, "unknown")) + ">"
	case v1alpha1.EndpointKindService:
		s = e.Namespace + "/svc/" + e.Name
	default:
		s = e.Namespace + "/" + e.Name
	}
	if e.Service != "" && e.Kind != v1alpha1.EndpointKindService {
		s += " (svc/" + e.Service + ")"
	}
	return s
}

func port(e v1alpha1.FlowEdge) string {
	switch {
	case e.Other:
		return ""
	case e.DestinationPort == 0:
		return string(e.Protocol)
	}
	return string(e.Protocol) + "/" + strconv.Itoa(int(e.DestinationPort))
}

func pair(a, b int64) string { return strconv.FormatInt(a, 10) + "/" + strconv.FormatInt(b, 10) }

// byteSize writes a byte count with a binary unit, as kubectl top does for
// memory.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + "B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64) + string("KMGTPE"[exp]) + "i"
}

func latency(d metav1.Duration) string {
	switch {
	case d.Duration >= time.Second:
		return d.Duration.Round(time.Millisecond).String()
	case d.Duration >= time.Millisecond:
		return d.Duration.Round(10 * time.Microsecond).String()
	}
	return d.Duration.Round(time.Microsecond).String()
}
