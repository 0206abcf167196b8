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

// Package format writes Flows as JSON lines of Hubble's flow exporter, the
// form Cilium's exporter writes and `hubble observe --input-file` reads;
// package parse reads them back.
package format

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/hubble/internal/flowproto"
)

// The types below are the part of ExportEvent and flow.proto that a Flow
// fills, with the names and field order Cilium's exporter writes.

type exportEvent struct {
	Flow     *exportFlow `json:"flow"`
	NodeName string      `json:"node_name,omitempty"`
	Time     string      `json:"time,omitempty"`
}

type exportFlow struct {
	Time               string           `json:"time"`
	UUID               string           `json:"uuid,omitempty"`
	Verdict            string           `json:"verdict,omitempty"`
	DropReason         int64            `json:"drop_reason,omitempty"`
	IP                 *exportIP        `json:"IP,omitempty"`
	L4                 *exportL4        `json:"l4,omitempty"`
	Source             *exportEndpoint  `json:"source,omitempty"`
	Destination        *exportEndpoint  `json:"destination,omitempty"`
	Type               string           `json:"Type"`
	NodeName           string           `json:"node_name,omitempty"`
	L7                 *exportL7        `json:"l7,omitempty"`
	SourceService      *exportService   `json:"source_service,omitempty"`
	DestinationService *exportService   `json:"destination_service,omitempty"`
	TrafficDirection   string           `json:"traffic_direction,omitempty"`
	DropReasonDesc     any              `json:"drop_reason_desc,omitempty"`
	IsReply            *bool            `json:"is_reply,omitempty"`
	Interface          *exportInterface `json:"interface,omitempty"`
	Aggregate          *exportAggregate `json:"aggregate,omitempty"`
}

type exportIP struct {
	Source      string `json:"source,omitempty"`
	Destination string `json:"destination,omitempty"`
	IPVersion   string `json:"ipVersion,omitempty"`
}

type exportL4 struct {
	TCP    *exportPorts `json:"TCP,omitempty"`
	UDP    *exportPorts `json:"UDP,omitempty"`
	ICMPv4 *exportICMP  `json:"ICMPv4,omitempty"`
	ICMPv6 *exportICMP  `json:"ICMPv6,omitempty"`
	SCTP   *exportPorts `json:"SCTP,omitempty"`
	VRRP   *struct{}    `json:"VRRP,omitempty"`
	IGMP   *struct{}    `json:"IGMP,omitempty"`
}

type exportPorts struct {
	SourcePort      int32           `json:"source_port,omitempty"`
	DestinationPort int32           `json:"destination_port,omitempty"`
	Flags           map[string]bool `json:"flags,omitempty"`
}

type exportICMP struct {
	Type int32 `json:"type,omitempty"`
	Code int32 `json:"code,omitempty"`
}

type exportEndpoint struct {
	Identity  uint32           `json:"identity,omitempty"`
	Namespace string           `json:"namespace,omitempty"`
	Labels    []string         `json:"labels,omitempty"`
	PodName   string           `json:"pod_name,omitempty"`
	Workloads []exportWorkload `json:"workloads,omitempty"`
}

type exportWorkload struct {
	Name string `json:"name,omitempty"`
	Kind string `json:"kind,omitempty"`
}

type exportService struct {
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace,omitempty"`
}

type exportInterface struct {
	Name string `json:"name,omitempty"`
}

type exportAggregate struct {
	IngressFlowCount          int64 `json:"ingress_flow_count,omitempty"`
	EgressFlowCount           int64 `json:"egress_flow_count,omitempty"`
	UnknownDirectionFlowCount int64 `json:"unknown_direction_flow_count,omitempty"`
}

type exportL7 struct {
	Type      string       `json:"type,omitempty"`
	LatencyNs string       `json:"latency_ns,omitempty"`
	DNS       *exportDNS   `json:"dns,omitempty"`
	HTTP      *exportHTTP  `json:"http,omitempty"`
	Kafka     *exportKafka `json:"kafka,omitempty"`
}

type exportDNS struct {
	Query   string   `json:"query,omitempty"`
	IPs     []string `json:"ips,omitempty"`
	TTL     int32    `json:"ttl,omitempty"`
	CNAMEs  []string `json:"cnames,omitempty"`
	RCode   int32    `json:"rcode,omitempty"`
	QTypes  []string `json:"qtypes,omitempty"`
	RRTypes []string `json:"rrtypes,omitempty"`
}

type exportHTTP struct {
	Code     int32                 `json:"code,omitempty"`
	Method   string                `json:"method,omitempty"`
	URL      string                `json:"url,omitempty"`
	Protocol string                `json:"protocol,omitempty"`
	Headers  []v1alpha1.HTTPHeader `json:"headers,omitempty"`
}

type exportKafka struct {
	ErrorCode     int32  `json:"error_code,omitempty"`
	APIVersion    int32  `json:"api_version,omitempty"`
	APIKey        string `json:"api_key,omitempty"`
	CorrelationID int32  `json:"correlation_id,omitempty"`
	Topic         string `json:"topic,omitempty"`
}

// worldIdentity is Cilium's reserved identity for addresses outside the
// cluster.
const worldIdentity = 2

// ExportLine writes a flow as a Hubble export line, without the trailing
// newline, in the form Cilium's exporter writes: proto field names, enums by
// name, 64-bit integers as strings. parse.ExportLine reads it back into the
// same flow, except for what Hubble has no field for (metadata other than
// the uid, endTime, traffic bytes, packets beyond 2^32-1) and gRPC, which
// Hubble logs as HTTP/2.
// An end without a pod is written as Cilium's reserved world identity.
func ExportLine(f *v1alpha1.Flow) ([]byte, error) {
	if f == nil {
		return nil, errors.New("write hubble export line: no flow")
	}
	if f.Time.IsZero() {
		return nil, errors.New("write hubble export line: flow has no time")
	}
	ts := formatTimestamp(f.Time.Time)
	ef := &exportFlow{
		Time:             ts,
		UUID:             string(f.UID),
		Verdict:          hubbleName(flowproto.Verdicts, f.Verdict),
		Type:             "L3_L4",
		NodeName:         f.NodeName,
		TrafficDirection: hubbleName(flowproto.Directions, f.TrafficDirection),
		IsReply:          f.IsReply,
	}
	if f.DropReason != "" {
		if n, ok := flowproto.DropReasonNumbers[f.DropReason]; ok {
			ef.DropReason, ef.DropReasonDesc = n, f.DropReason
		} else if n, err := strconv.ParseInt(f.DropReason, 10, 32); err == nil {
			ef.DropReason, ef.DropReasonDesc = n, n
		} else {
			ef.DropReasonDesc = f.DropReason
		}
	}
	if f.Interface != "" {
		ef.Interface = &exportInterface{Name: f.Interface}
	}
	if f.IP != nil {
		ef.IP = &exportIP{Source: f.IP.Source, Destination: f.IP.Destination, IPVersion: string(f.IP.IPVersion)}
	}
	var err error
	if ef.L4, err = exportLayer4(f.L4); err != nil {
		return nil, err
	}
	ef.Source, ef.SourceService = exportEndpointOf(f.Source)
	ef.Destination, ef.DestinationService = exportEndpointOf(f.Destination)
	if ef.IP == nil && (f.Source != nil && f.Source.IP != "" || f.Destination != nil && f.Destination.IP != "") {
		ef.IP = &exportIP{}
		if f.Source != nil {
			ef.IP.Source = f.Source.IP
		}
		if f.Destination != nil {
			ef.IP.Destination = f.Destination.IP
		}
	}
	if f.L7 != nil {
		ef.Type = "L7"
		if ef.L7, err = exportLayer7(f.L7, f.IsReply != nil && *f.IsReply); err != nil {
			return nil, err
		}
	}
	if f.Traffic != nil && f.Traffic.Packets > 1 {
		// An aggregated Hubble record counts the events it stands for.
		n := min(f.Traffic.Packets, math.MaxUint32)
		ef.Aggregate = &exportAggregate{}
		switch f.TrafficDirection {
		case v1alpha1.TrafficDirectionIngress:
			ef.Aggregate.IngressFlowCount = n
		case v1alpha1.TrafficDirectionEgress:
			ef.Aggregate.EgressFlowCount = n
		default:
			ef.Aggregate.UnknownDirectionFlowCount = n
		}
	}

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// protojson does not escape <, > and &; neither do we, so URLs stay legible.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(exportEvent{Flow: ef, NodeName: f.NodeName, Time: ts}); err != nil {
		return nil, fmt.Errorf("write hubble export line: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func hubbleName[T comparable](m map[string]T, v T) string {
	for name, value := range m {
		if value == v {
			return name
		}
	}
	return ""
}

// formatTimestamp writes a time as protojson writes a Timestamp: UTC with
// 0, 3, 6 or 9 fractional digits.
func formatTimestamp(t time.Time) string {
	t = t.UTC()
	layout := "2006-01-02T15:04:05.000000000Z"
	switch ns := t.Nanosecond(); {
	case ns == 0:
		layout = "2006-01-02T15:04:05Z"
	case ns%1e6 == 0:
		layout = "2006-01-02T15:04:05.000Z"
	case ns%1e3 == 0:
		layout = "2006-01-02T15:04:05.000000Z"
	}
	return t.Format(layout)
}

func exportLayer4(l4 *v1alpha1.Layer4) (*exportL4, error) {
	if l4 == nil {
		return nil, nil
	}
	out := &exportL4{}
	ports := &exportPorts{SourcePort: l4.SourcePort, DestinationPort: l4.DestinationPort}
	var icmp *exportICMP
	if l4.ICMP != nil {
		icmp = &exportICMP{Type: l4.ICMP.Type, Code: l4.ICMP.Code}
	} else {
		icmp = &exportICMP{}
	}
	switch l4.Protocol {
	case v1alpha1.ProtocolTCP:
		out.TCP = ports
		for _, flag := range l4.TCPFlags {
			if ports.Flags == nil {
				ports.Flags = make(map[string]bool)
			}
			ports.Flags[flag] = true
		}
	case v1alpha1.ProtocolUDP:
		out.UDP = ports
	case v1alpha1.ProtocolSCTP:
		out.SCTP = ports
	case v1alpha1.ProtocolICMPv4:
		out.ICMPv4 = icmp
	case v1alpha1.ProtocolICMPv6:
		out.ICMPv6 = icmp
	case v1alpha1.ProtocolVRRP:
		out.VRRP = &struct{}{}
	case v1alpha1.ProtocolIGMP:
		out.IGMP = &struct{}{}
	default:
		return nil, fmt.Errorf("write hubble export line: unknown protocol %q", l4.Protocol)
	}
	return out, nil
}

func exportEndpointOf(e *v1alpha1.Endpoint) (*exportEndpoint, *exportService) {
	if e == nil {
		return nil, nil
	}
	out := &exportEndpoint{Namespace: e.Namespace, PodName: e.PodName}
	if e.PodName != "" {
		out.Labels = flowproto.CiliumLabels(e.Labels, e.Namespace)
	} else {
		out.Identity = worldIdentity
		out.Labels = append(flowproto.CiliumLabels(e.Labels, ""), "reserved:world")
	}
	for _, w := range e.Workloads {
		out.Workloads = append(out.Workloads, exportWorkload{Name: w.Name, Kind: w.Kind})
	}
	var svc *exportService
	if e.Service != "" {
		svc = &exportService{Name: e.Service, Namespace: e.Namespace}
	}
	return out, svc
}

func exportLayer7(l7 *v1alpha1.Layer7, reply bool) (*exportL7, error) {
	out := &exportL7{Type: "REQUEST"}
	if reply {
		out.Type = "RESPONSE"
	}
	if l7.Latency != nil && l7.Latency.Duration > 0 {
		out.LatencyNs = strconv.FormatInt(int64(l7.Latency.Duration), 10)
	}
	switch l7.Type {
	case v1alpha1.L7TypeDNS:
		dns := l7.DNS
		if dns == nil {
			dns = &v1alpha1.DNS{}
		}
		out.DNS = &exportDNS{Query: dns.Query, IPs: dns.IPs, TTL: dns.TTL, CNAMEs: dns.CNAMEs,
			RCode: dns.RCode, QTypes: dns.QTypes, RRTypes: dns.RRTypes}
	case v1alpha1.L7TypeHTTP:
		h := l7.HTTP
		if h == nil {
			h = &v1alpha1.HTTP{}
		}
		out.HTTP = &exportHTTP{Code: h.Code, Method: h.Method, URL: h.URL, Protocol: h.Protocol, Headers: h.Headers}
	case v1alpha1.L7TypeGRPC:
		g := l7.GRPC
		if g == nil {
			g = &v1alpha1.GRPC{}
		}
		out.HTTP = &exportHTTP{
			Method:   "POST",
			URL:      "/" + g.Service + "/" + g.Method,
			Protocol: "HTTP/2",
			Headers: []v1alpha1.HTTPHeader{
				{Key: "content-type", Value: "application/grpc"},
				{Key: "grpc-status", Value: strconv.Itoa(int(g.StatusCode))},
			},
		}
		if reply {
			out.HTTP.Code = 200
		}
	case v1alpha1.L7TypeKafka:
		k := l7.Kafka
		if k == nil {
			k = &v1alpha1.Kafka{}
		}
		out.Kafka = &exportKafka{ErrorCode: k.ErrorCode, APIVersion: k.APIVersion, APIKey: k.APIKey,
			CorrelationID: k.CorrelationID, Topic: k.Topic}
	default:
		return nil, fmt.Errorf("write hubble export line: unknown L7 type %q", l7.Type)
	}
	return out, nil
}
