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

// Package printer writes flows the ways `kubectl flows observe -o` offers:
// Hubble's compact, dict and table layouts, a wide table, Kubernetes JSON
// and Hubble's jsonpb lines, and through cli-runtime the formats kubectl
// has (yaml, name, jsonpath, go-template).
package printer

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/liggitt/tabwriter"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/hubble/format"
)

// Printer writes flows one at a time. Flush writes what it holds: a table
// aligns the rows printed since the last flush.
type Printer interface {
	Print(f *v1alpha1.Flow) error
	Flush() error
}

// unbuffered printers write each flow as it comes.
type unbuffered struct{}

func (unbuffered) Flush() error { return nil }

// Options choose how flows look.
type Options struct {
	// Output is compact, dict, table, wide, json, jsonpb, or a format of
	// kubectl's PrintFlags (yaml, name, jsonpath=..., go-template=...).
	Output string
	// Color paints verdicts, as Hubble does on a terminal.
	Color bool
	// NodeName adds the node to compact, dict and table, as
	// `hubble observe --print-node-name` does.
	NodeName bool
	// TimeFormat is a Go time layout; times print in TimeZone.
	TimeFormat string
	TimeZone   *time.Location
}

// Formats are the values of -o besides kubectl's PrintFlags formats.
var Formats = []string{"compact", "dict", "json", "jsonpb", "table", "wide"}

// New returns the printer for opts.Output.
func New(w io.Writer, opts Options) (Printer, error) {
	if opts.TimeFormat == "" {
		opts.TimeFormat = time.StampMilli
	}
	if opts.TimeZone == nil {
		opts.TimeZone = time.Local
	}
	switch opts.Output {
	case "", "compact":
		return &compact{w: w, opts: opts}, nil
	case "dict":
		return &dict{w: w, opts: opts}, nil
	case "table", "wide":
		return newTable(w, opts), nil
	case "json":
		return &jsonLines{w: w}, nil
	case "jsonpb":
		return &jsonpb{w: w}, nil
	}
	pf := genericclioptions.NewPrintFlags("")
	pf.OutputFormat = &opts.Output
	p, err := pf.ToPrinter()
	if err != nil {
		return nil, fmt.Errorf("unknown output format %q: want one of %s, or one of kubectl's (%s)", opts.Output,
			strings.Join(Formats, ", "), strings.Join(pf.AllowedFormats(), ", "))
	}
	return &resource{w: w, p: p}, nil
}

var flowKind = v1alpha1.SchemeGroupVersion.WithKind("Flow")

// typed returns the flow with its apiVersion and kind, which items of a
// list and watch events lack.
func typed(f *v1alpha1.Flow) *v1alpha1.Flow {
	if f.Kind != "" {
		return f
	}
	c := *f
	c.SetGroupVersionKind(flowKind)
	return &c
}

// jsonLines writes each flow as one line of Kubernetes JSON.
type jsonLines struct {
	unbuffered
	w io.Writer
}

func (p *jsonLines) Print(f *v1alpha1.Flow) error {
	b, err := json.Marshal(typed(f))
	if err != nil {
		return err
	}
	_, err = p.w.Write(append(b, '\n'))
	return err
}

// jsonpb writes what `hubble observe -o jsonpb` writes: one
// {"flow":{...},"node_name":...,"time":...} object a line.
type jsonpb struct {
	unbuffered
	w io.Writer
}

func (p *jsonpb) Print(f *v1alpha1.Flow) error {
	b, err := format.ExportLine(f)
	if err != nil {
		return err
	}
	_, err = p.w.Write(append(b, '\n'))
	return err
}

// resource delegates to a cli-runtime printer.
type resource struct {
	unbuffered
	w io.Writer
	p printers.ResourcePrinter
}

func (p *resource) Print(f *v1alpha1.Flow) error { return p.p.PrintObj(typed(f), p.w) }

// compact is Hubble's default: one line a flow,
// TIME [NODE]: SOURCE -> DESTINATION TYPE VERDICT (SUMMARY).
type compact struct {
	unbuffered
	w    io.Writer
	opts Options
}

func (p *compact) Print(f *v1alpha1.Flow) error {
	from, arrow, to := ends(f)
	node := ""
	if p.opts.NodeName {
		node = " [" + f.NodeName + "]"
	}
	_, err := fmt.Fprintf(p.w, "%s%s: %s %s %s %s %s %s\n", p.opts.timestamp(f), node, from, arrow, to,
		eventType(f), p.opts.verdict(f), summary(f))
	return err
}

// dict is Hubble's dict: a block of KEY: value lines a flow.
type dict struct {
	unbuffered
	w       io.Writer
	opts    Options
	printed bool
}

func (p *dict) Print(f *v1alpha1.Flow) error {
	var b strings.Builder
	if p.printed {
		b.WriteString("------------\n")
	}
	p.printed = true
	from, arrow, to := ends(f)
	if arrow == "<-" {
		from, to = to, from // dict names the sides, not the arrow
	}
	line := func(k, v string) { fmt.Fprintf(&b, "%12s: %s\n", k, v) }
	line("TIMESTAMP", p.opts.timestamp(f))
	if p.opts.NodeName {
		line("NODE", f.NodeName)
	}
	line("SOURCE", from)
	line("DESTINATION", to)
	line("TYPE", eventType(f))
	line("VERDICT", p.opts.verdict(f))
	line("SUMMARY", summary(f))
	_, err := io.WriteString(p.w, b.String())
	return err
}

// table is Hubble's table, through cli-runtime's table printer; wide adds
// what kubectl's wide table of flows adds.
type table struct {
	tw      *tabwriter.Writer
	opts    Options
	wide    bool
	columns []metav1.TableColumnDefinition
	printer printers.ResourcePrinter
}

func newTable(w io.Writer, opts Options) *table {
	t := &table{tw: printers.GetNewTabWriter(w), opts: opts, wide: opts.Output == "wide"}
	t.columns = append(t.columns, metav1.TableColumnDefinition{Name: "Timestamp", Type: "string"})
	if opts.NodeName || t.wide {
		t.columns = append(t.columns, metav1.TableColumnDefinition{Name: "Node", Type: "string"})
	}
	for _, c := range []string{"Source", "Destination", "Type", "Verdict", "Summary"} {
		t.columns = append(t.columns, metav1.TableColumnDefinition{Name: c, Type: "string"})
	}
	if t.wide {
		for _, c := range []string{"Direction", "Packets", "Bytes", "Name"} {
			t.columns = append(t.columns, metav1.TableColumnDefinition{Name: c, Type: "string"})
		}
	}
	t.printer = printers.NewTablePrinter(printers.PrintOptions{Wide: t.wide})
	return t
}

func (t *table) Print(f *v1alpha1.Flow) error {
	from, arrow, to := ends(f)
	if arrow == "<-" {
		from, to = to, from
	}
	cells := []any{t.opts.timestamp(f)}
	if t.opts.NodeName || t.wide {
		cells = append(cells, f.NodeName)
	}
	cells = append(cells, from, to, eventType(f), t.opts.verdict(f), summary(f))
	if t.wide {
		var packets, bytes string
		if tr := f.Traffic; tr != nil {
			packets = fmt.Sprintf("%d/%d", tr.Packets, tr.PacketsReply)
			bytes = fmt.Sprintf("%d/%d", tr.Bytes, tr.BytesReply)
		}
		cells = append(cells, string(f.TrafficDirection), packets, bytes, f.Name)
	}
	return t.printer.PrintObj(&metav1.Table{ColumnDefinitions: t.columns, Rows: []metav1.TableRow{{Cells: cells}}}, t.tw)
}

func (t *table) Flush() error { return t.tw.Flush() }

func (o Options) timestamp(f *v1alpha1.Flow) string {
	return f.Time.In(o.TimeZone).Format(o.TimeFormat)
}

// ANSI colours of Hubble's printer.
const (
	red    = "\x1b[31m"
	green  = "\x1b[32m"
	yellow = "\x1b[33m"
	reset  = "\x1b[0m"
)

func (o Options) verdict(f *v1alpha1.Flow) string {
	v := strings.ToUpper(string(f.Verdict))
	if !o.Color {
		return v
	}
	switch f.Verdict {
	case v1alpha1.VerdictForwarded, v1alpha1.VerdictRedirected, v1alpha1.VerdictTranslated:
		return green + v + reset
	case v1alpha1.VerdictDropped, v1alpha1.VerdictError:
		return red + v + reset
	case v1alpha1.VerdictAudit:
		return yellow + v + reset
	}
	return v
}

// ends returns the sides and Hubble's arrow between them: "->" for the
// original direction, "<-" with the sides swapped for replies (so that the
// client stays on the left) and "<>" when the direction is unknown.
func ends(f *v1alpha1.Flow) (left, arrow, right string) {
	var sport, dport int32
	if f.L4 != nil {
		sport, dport = f.L4.SourcePort, f.L4.DestinationPort
	}
	from := host(f.Source, ipOf(f, true), sport)
	to := host(f.Destination, ipOf(f, false), dport)
	switch {
	case f.IsReply == nil:
		return from, "<>", to
	case *f.IsReply:
		return to, "<-", from
	}
	return from, "->", to
}

func ipOf(f *v1alpha1.Flow, source bool) string {
	if f.IP == nil {
		return ""
	}
	if source {
		return f.IP.Source
	}
	return f.IP.Destination
}

// host writes an end as Hubble does: ns/pod:port, ns/service:port, or
// ip:port.
func host(e *v1alpha1.Endpoint, ip string, port int32) string {
	name := ""
	switch {
	case e != nil && e.PodName != "":
		name = e.Namespace + "/" + e.PodName
	case e != nil && e.Service != "":
		name = e.Namespace + "/" + e.Service
	case e != nil && e.IP != "":
		name = e.IP
	case ip != "":
		name = ip
	default:
		name = "<unknown>"
	}
	if port == 0 {
		return name
	}
	if strings.Contains(name, ":") { // IPv6
		return net.JoinHostPort(name, strconv.Itoa(int(port)))
	}
	return name + ":" + strconv.Itoa(int(port))
}

// eventType is Hubble's TYPE column: the L7 protocol's response, the drop
// reason, or the trace point (to-endpoint for ingress, to-stack for
// egress).
func eventType(f *v1alpha1.Flow) string {
	switch {
	case f.L7 != nil && f.IsReply != nil && *f.IsReply:
		return strings.ToLower(string(f.L7.Type)) + "-response"
	case f.L7 != nil:
		return strings.ToLower(string(f.L7.Type)) + "-request"
	case f.DropReason != "":
		return f.DropReason
	case f.TrafficDirection == v1alpha1.TrafficDirectionIngress:
		return "to-endpoint"
	case f.TrafficDirection == v1alpha1.TrafficDirectionEgress:
		return "to-stack"
	}
	return "trace"
}

// summary is Hubble's SUMMARY: the L7 exchange, or the L4 header.
func summary(f *v1alpha1.Flow) string {
	if f.L7 != nil {
		return l7Summary(f.L7, f.IsReply != nil && *f.IsReply)
	}
	l4 := f.L4
	switch {
	case l4 == nil:
		return ""
	case l4.Protocol == v1alpha1.ProtocolTCP && len(l4.TCPFlags) > 0:
		return "TCP Flags: " + strings.Join(l4.TCPFlags, ", ")
	case l4.ICMP != nil:
		return fmt.Sprintf("%s Type: %d Code: %d", l4.Protocol, l4.ICMP.Type, l4.ICMP.Code)
	}
	return string(l4.Protocol)
}

var dnsRCodes = []string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"}

func l7Summary(l7 *v1alpha1.Layer7, reply bool) string {
	var s string
	latency := ""
	if l7.Latency != nil {
		latency = " " + l7.Latency.Duration.Round(time.Microsecond).String()
	}
	switch {
	case l7.HTTP != nil:
		h := l7.HTTP
		proto := h.Protocol
		if proto == "" {
			proto = "HTTP"
		}
		if h.Code == 0 { // a request, as Hubble prints one
			s = fmt.Sprintf("%s %s %s", proto, h.Method, h.URL)
		} else {
			s = fmt.Sprintf("%s %d%s (%s %s)", proto, h.Code, latency, h.Method, h.URL)
		}
	case l7.GRPC != nil:
		s = fmt.Sprintf("gRPC /%s/%s status %d%s", l7.GRPC.Service, l7.GRPC.Method, l7.GRPC.StatusCode, latency)
	case l7.DNS != nil:
		d := l7.DNS
		q := d.Query
		if len(d.QTypes) > 0 {
			q += " " + strings.Join(d.QTypes, ",")
		}
		switch {
		case d.RCode < 0 || !reply && d.RCode == 0 && len(d.IPs) == 0 && len(d.CNAMEs) == 0:
			s = fmt.Sprintf("DNS Query %s%s", q, latency)
		case d.RCode > 0:
			code := "RCODE" + strconv.Itoa(int(d.RCode))
			if int(d.RCode) < len(dnsRCodes) {
				code = dnsRCodes[d.RCode]
			}
			s = fmt.Sprintf("DNS Answer RCode: %s%s (Query %s)", code, latency, q)
		default:
			answer := slices.Concat(d.IPs, d.CNAMEs)
			s = fmt.Sprintf("DNS Answer %q TTL: %d%s (Query %s)", strings.Join(answer, ","), d.TTL, latency, q)
		}
	case l7.Kafka != nil:
		k := l7.Kafka
		s = fmt.Sprintf("Kafka %s/v%d topic %q error %d%s", k.APIKey, k.APIVersion, k.Topic, k.ErrorCode, latency)
	default:
		s = string(l7.Type) + latency
	}
	if l7.Partial {
		s += " (partial)"
	}
	return s
}
