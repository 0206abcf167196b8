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
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

var columns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: "Name of the flow: <node>.<sequence>."},
	{Name: "Time", Type: "string", Format: "date-time", Description: "When the interval of the record started (UTC)."},
	{Name: "Source", Type: "string", Description: "Sending end: namespace/pod, or the IP address."},
	{Name: "Destination", Type: "string", Description: "Receiving end: namespace/pod or namespace/service, or the IP address."},
	{Name: "Protocol", Type: "string", Description: "Transport protocol and destination port, or ICMP type/code."},
	{Name: "Verdict", Type: "string", Description: "What the datapath did, with the drop reason for drops."},
	{Name: "Direction", Type: "string", Description: "Ingress or Egress, seen from the observed pod."},
	{Name: "Node", Type: "string", Priority: 1, Description: "Node whose agent observed the flow."},
	{Name: "Packets", Type: "integer", Priority: 1, Description: "Packets in the flow's direction, and in reply."},
	{Name: "Bytes", Type: "integer", Priority: 1, Description: "Bytes in the flow's direction, and in reply."},
	{Name: "L7", Type: "string", Description: "The application-layer exchange: GET /api/orders 200 3ms, A? db.shop.svc. NOERROR 10.0.0.4, /shop.Cart/Add NotFound, produce/v9 orders."},
}

// ConvertToTable implements rest.TableConvertor. It handles a list, a single
// flow, and the empty flows that carry watch bookmarks.
func (r *REST) ConvertToTable(_ context.Context, obj runtime.Object, opts runtime.Object) (*metav1.Table, error) {
	table := &metav1.Table{}
	if o, ok := opts.(*metav1.TableOptions); !ok || !o.NoHeaders {
		table.ColumnDefinitions = columns
	}
	switch o := obj.(type) {
	case *v1alpha1.FlowList:
		table.ResourceVersion = o.ResourceVersion
		table.Continue = o.Continue
		table.RemainingItemCount = o.RemainingItemCount
		table.Rows = make([]metav1.TableRow, 0, len(o.Items))
		for i := range o.Items {
			table.Rows = append(table.Rows, row(&o.Items[i]))
		}
	case *v1alpha1.Flow:
		table.ResourceVersion = o.ResourceVersion
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

func row(f *v1alpha1.Flow) metav1.TableRow {
	var packets, bytes string
	if t := f.Traffic; t != nil {
		packets = fmt.Sprintf("%d/%d", t.Packets, t.PacketsReply)
		bytes = fmt.Sprintf("%d/%d", t.Bytes, t.BytesReply)
	}
	return metav1.TableRow{
		Object: runtime.RawExtension{Object: f},
		Cells: []any{
			f.Name,
			f.Time.UTC().Format("2006-01-02T15:04:05.000Z"),
			endpoint(f.Source, f.IP, true),
			endpoint(f.Destination, f.IP, false),
			protocol(f.L4),
			verdict(f),
			string(f.TrafficDirection),
			f.NodeName,
			packets,
			bytes,
			l7Summary(f.L7),
		},
	}
}

func endpoint(e *v1alpha1.Endpoint, ip *v1alpha1.IP, source bool) string {
	if e != nil && e.PodName != "" {
		return e.Namespace + "/" + e.PodName
	}
	if e != nil && e.Service != "" && e.Namespace != "" {
		return e.Namespace + "/svc/" + e.Service
	}
	if e != nil && e.IP != "" {
		return e.IP
	}
	if ip != nil {
		if source {
			return ip.Source
		}
		return ip.Destination
	}
	return "<unknown>"
}

func protocol(l4 *v1alpha1.Layer4) string {
	switch {
	case l4 == nil:
		return "<none>"
	case l4.ICMP != nil:
		return fmt.Sprintf("%s %d/%d", l4.Protocol, l4.ICMP.Type, l4.ICMP.Code)
	case l4.DestinationPort != 0:
		s := string(l4.Protocol) + "/" + strconv.Itoa(int(l4.DestinationPort))
		if len(l4.TCPFlags) > 0 {
			s += " " + strings.Join(l4.TCPFlags, ",")
		}
		return s
	}
	return string(l4.Protocol)
}

func verdict(f *v1alpha1.Flow) string {
	if f.DropReason != "" {
		return string(f.Verdict) + " (" + f.DropReason + ")"
	}
	return string(f.Verdict)
}

func l7Summary(l7 *v1alpha1.Layer7) string {
	if l7 == nil {
		return ""
	}
	var parts []string
	switch {
	case l7.HTTP != nil:
		parts = append(parts, l7.HTTP.Method, l7.HTTP.URL)
		if l7.HTTP.Code != 0 {
			parts = append(parts, strconv.Itoa(int(l7.HTTP.Code)))
		}
	case l7.GRPC != nil:
		parts = append(parts, "/"+l7.GRPC.Service+"/"+l7.GRPC.Method, codes.Code(uint32(l7.GRPC.StatusCode)).String())
	case l7.DNS != nil:
		q := l7.DNS.Query
		if len(l7.DNS.QTypes) > 0 {
			q = strings.Join(l7.DNS.QTypes, ",") + "? " + q
		}
		parts = append(parts, q)
		if l7.DNS.RCode >= 0 {
			parts = append(parts, dnsRCode(l7.DNS.RCode))
		}
		if len(l7.DNS.IPs) > 0 {
			parts = append(parts, strings.Join(l7.DNS.IPs, ","))
		}
	case l7.Kafka != nil:
		parts = append(parts, l7.Kafka.APIKey+"/v"+strconv.Itoa(int(l7.Kafka.APIVersion)))
		if l7.Kafka.Topic != "" {
			parts = append(parts, l7.Kafka.Topic)
		}
		if l7.Kafka.ErrorCode != 0 {
			parts = append(parts, "error="+strconv.Itoa(int(l7.Kafka.ErrorCode)))
		}
	default:
		parts = append(parts, string(l7.Type))
	}
	if l7.Latency != nil {
		parts = append(parts, l7.Latency.Duration.Round(latencyPrecision(l7.Latency.Duration)).String())
	}
	if l7.Partial {
		parts = append(parts, "(partial)")
	}
	return strings.Join(parts, " ")
}

// latencyPrecision keeps three significant digits or so.
func latencyPrecision(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return time.Millisecond
	case d >= time.Millisecond:
		return 10 * time.Microsecond
	}
	return time.Microsecond
}

var dnsRCodes = []string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"}

func dnsRCode(c int32) string {
	if int(c) < len(dnsRCodes) {
		return dnsRCodes[c]
	}
	return "RCODE" + strconv.Itoa(int(c))
}
