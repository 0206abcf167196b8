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

package otlpexport

import (
	"strings"

	"go.opentelemetry.io/otel/attribute"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// The attributes of a flow's log record. This file is the whole mapping,
// so that README's table and the tests have one place to follow.
//
// OpenTelemetry's semantic conventions have names for the addresses, ports
// and transport (source.*, destination.*, network.*), for the emitting pod
// (k8s.*) and for L7 fields (http.*, dns.*, rpc.*, messaging.*), but none
// for a flow: the network flow proposals were closed unmerged. So the pod
// at the observation point takes the k8s.* names, as the emitter of the
// traffic observed; each end's Kubernetes identity takes NetObserv's and
// Mermin's source.k8s.* and destination.k8s.* names; the rest is
// flowscope.*.
const (
	// EventName is the event name of every flow record.
	EventName = "flowscope.flow"

	AttrSourceAddress      = "source.address"
	AttrSourcePort         = "source.port"
	AttrDestinationAddress = "destination.address"
	AttrDestinationPort    = "destination.port"
	AttrNetworkTransport   = "network.transport"
	AttrNetworkType        = "network.type"
	AttrNetworkInterface   = "network.interface.name"
	AttrNodeName           = "k8s.node.name"
	AttrNamespaceName      = "k8s.namespace.name"
	AttrPodName            = "k8s.pod.name"

	AttrFlowName         = "flowscope.flow.name"
	AttrFlowNamespace    = "flowscope.flow.namespace"
	AttrVerdict          = "flowscope.verdict"
	AttrDropReason       = "flowscope.drop_reason"
	AttrTrafficDirection = "flowscope.traffic_direction"
	AttrIsReply          = "flowscope.is_reply"
	AttrProtocol         = "flowscope.protocol"
	AttrTCPFlags         = "flowscope.tcp.flags"
	AttrICMPType         = "flowscope.icmp.type"
	AttrICMPCode         = "flowscope.icmp.code"
	AttrPackets          = "flowscope.packets"
	AttrBytes            = "flowscope.bytes"
	AttrPacketsReply     = "flowscope.packets_reply"
	AttrBytesReply       = "flowscope.bytes_reply"
	AttrEndTime          = "flowscope.end_time_unix_nano"

	AttrL7Type      = "flowscope.l7.type"
	AttrL7LatencyNs = "flowscope.l7.latency_ns"
	AttrL7Partial   = "flowscope.l7.partial"

	AttrHTTPMethod       = "http.request.method"
	AttrHTTPStatusCode   = "http.response.status_code"
	AttrURLFull          = "url.full"
	AttrNetworkProtoName = "network.protocol.name"
	AttrNetworkProtoVer  = "network.protocol.version"

	AttrDNSQuestionName = "dns.question.name"
	AttrDNSRCode        = "flowscope.dns.rcode"
	AttrDNSQTypes       = "flowscope.dns.qtypes"
	AttrDNSIPs          = "flowscope.dns.ips"

	AttrRPCSystem         = "rpc.system"
	AttrRPCService        = "rpc.service"
	AttrRPCMethod         = "rpc.method"
	AttrRPCGRPCStatusCode = "rpc.grpc.status_code"

	AttrMessagingSystem      = "messaging.system"
	AttrMessagingDestination = "messaging.destination.name"
	AttrMessagingClientID    = "messaging.client.id"
	AttrKafkaAPIKey          = "flowscope.kafka.api_key"
	AttrKafkaErrorCode       = "flowscope.kafka.error_code"
)

// workloadKinds maps the kinds of a pod's controllers to the semantic
// conventions' k8s.<kind>.name; other kinds are flowscope.workload.<kind>.
var workloadKinds = map[string]string{
	"Deployment":  "deployment",
	"ReplicaSet":  "replicaset",
	"StatefulSet": "statefulset",
	"DaemonSet":   "daemonset",
	"Job":         "job",
	"CronJob":     "cronjob",
}

// Attributes returns the attributes of f's log record, appended to dst.
func Attributes(dst []attribute.KeyValue, f *v1alpha1.Flow) []attribute.KeyValue {
	dst = append(dst,
		attribute.String(AttrFlowName, f.Name),
		attribute.String(AttrFlowNamespace, f.Namespace),
		attribute.String(AttrVerdict, string(f.Verdict)),
		attribute.String(AttrTrafficDirection, string(f.TrafficDirection)),
	)
	if f.NodeName != "" {
		dst = append(dst, attribute.String(AttrNodeName, f.NodeName))
	}
	if f.DropReason != "" {
		dst = append(dst, attribute.String(AttrDropReason, f.DropReason))
	}
	if f.IsReply != nil {
		dst = append(dst, attribute.Bool(AttrIsReply, *f.IsReply))
	}
	if f.Interface != "" {
		dst = append(dst, attribute.String(AttrNetworkInterface, f.Interface))
	}
	if f.EndTime != nil {
		dst = append(dst, attribute.Int64(AttrEndTime, f.EndTime.UnixNano()))
	}
	if ip := f.IP; ip != nil {
		dst = appendNonEmpty(dst, AttrSourceAddress, ip.Source)
		dst = appendNonEmpty(dst, AttrDestinationAddress, ip.Destination)
		switch ip.IPVersion {
		case v1alpha1.IPv4:
			dst = append(dst, attribute.String(AttrNetworkType, "ipv4"))
		case v1alpha1.IPv6:
			dst = append(dst, attribute.String(AttrNetworkType, "ipv6"))
		}
	}
	dst = appendLayer4(dst, f.L4)
	if local := f.ObservedPod(); local != nil {
		dst = append(dst,
			attribute.String(AttrNamespaceName, local.Namespace),
			attribute.String(AttrPodName, local.PodName))
		dst = appendWorkloads(dst, "", local.Workloads)
	}
	dst = appendEndpoint(dst, "source.", f.Source)
	dst = appendEndpoint(dst, "destination.", f.Destination)
	if t := f.Traffic; t != nil {
		dst = append(dst, attribute.Int64(AttrPackets, t.Packets), attribute.Int64(AttrBytes, t.Bytes))
		if t.PacketsReply != 0 || t.BytesReply != 0 {
			dst = append(dst, attribute.Int64(AttrPacketsReply, t.PacketsReply), attribute.Int64(AttrBytesReply, t.BytesReply))
		}
	}
	return appendLayer7(dst, f.L7)
}

func appendLayer4(dst []attribute.KeyValue, l4 *v1alpha1.Layer4) []attribute.KeyValue {
	if l4 == nil {
		return dst
	}
	dst = append(dst, attribute.String(AttrProtocol, string(l4.Protocol)))
	switch l4.Protocol {
	case v1alpha1.ProtocolTCP:
		dst = append(dst, attribute.String(AttrNetworkTransport, "tcp"))
	case v1alpha1.ProtocolUDP:
		dst = append(dst, attribute.String(AttrNetworkTransport, "udp"))
	case v1alpha1.ProtocolSCTP:
		// network.transport has no sctp value: flowscope.protocol says it.
	}
	if l4.SourcePort != 0 {
		dst = append(dst, attribute.Int(AttrSourcePort, int(l4.SourcePort)))
	}
	if l4.DestinationPort != 0 {
		dst = append(dst, attribute.Int(AttrDestinationPort, int(l4.DestinationPort)))
	}
	if len(l4.TCPFlags) > 0 {
		dst = append(dst, attribute.StringSlice(AttrTCPFlags, l4.TCPFlags))
	}
	if l4.ICMP != nil {
		dst = append(dst, attribute.Int(AttrICMPType, int(l4.ICMP.Type)), attribute.Int(AttrICMPCode, int(l4.ICMP.Code)))
	}
	return dst
}

// appendEndpoint adds an end's Kubernetes identity under prefix
// (source. or destination.). Its address and port are source.address and
// the like, from the IP and L4 headers.
func appendEndpoint(dst []attribute.KeyValue, prefix string, e *v1alpha1.Endpoint) []attribute.KeyValue {
	if e == nil {
		return dst
	}
	dst = appendNonEmpty(dst, prefix+"k8s.namespace.name", e.Namespace)
	dst = appendNonEmpty(dst, prefix+"k8s.pod.name", e.PodName)
	dst = appendNonEmpty(dst, prefix+"k8s.service.name", e.Service)
	return appendWorkloads(dst, prefix, e.Workloads)
}

func appendWorkloads(dst []attribute.KeyValue, prefix string, ws []v1alpha1.Workload) []attribute.KeyValue {
	for _, w := range ws {
		if w.Name == "" {
			continue
		}
		if kind, ok := workloadKinds[w.Kind]; ok {
			dst = append(dst, attribute.String(prefix+"k8s."+kind+".name", w.Name))
		} else if w.Kind != "" {
			dst = append(dst, attribute.String(prefix+"flowscope.workload."+strings.ToLower(w.Kind)+".name", w.Name))
		}
	}
	return dst
}

func appendLayer7(dst []attribute.KeyValue, l7 *v1alpha1.Layer7) []attribute.KeyValue {
	if l7 == nil {
		return dst
	}
	dst = append(dst, attribute.String(AttrL7Type, string(l7.Type)))
	if l7.Latency != nil {
		dst = append(dst, attribute.Int64(AttrL7LatencyNs, l7.Latency.Nanoseconds()))
	}
	if l7.Partial {
		dst = append(dst, attribute.Bool(AttrL7Partial, true))
	}
	if h := l7.HTTP; h != nil {
		dst = appendNonEmpty(dst, AttrHTTPMethod, h.Method)
		if h.Code != 0 {
			dst = append(dst, attribute.Int(AttrHTTPStatusCode, int(h.Code)))
		}
		dst = appendNonEmpty(dst, AttrURLFull, h.URL)
		if name, version, ok := strings.Cut(h.Protocol, "/"); ok {
			dst = append(dst, attribute.String(AttrNetworkProtoName, strings.ToLower(name)), attribute.String(AttrNetworkProtoVer, version))
		}
	}
	if d := l7.DNS; d != nil {
		dst = append(dst, attribute.String(AttrNetworkProtoName, "dns"))
		dst = appendNonEmpty(dst, AttrDNSQuestionName, d.Query)
		dst = append(dst, attribute.Int(AttrDNSRCode, int(d.RCode)))
		if len(d.QTypes) > 0 {
			dst = append(dst, attribute.StringSlice(AttrDNSQTypes, d.QTypes))
		}
		if len(d.IPs) > 0 {
			dst = append(dst, attribute.StringSlice(AttrDNSIPs, d.IPs))
		}
	}
	if g := l7.GRPC; g != nil {
		dst = append(dst, attribute.String(AttrRPCSystem, "grpc"))
		dst = appendNonEmpty(dst, AttrRPCService, g.Service)
		dst = appendNonEmpty(dst, AttrRPCMethod, g.Method)
		dst = append(dst, attribute.Int(AttrRPCGRPCStatusCode, int(g.StatusCode)))
	}
	if k := l7.Kafka; k != nil {
		dst = append(dst, attribute.String(AttrMessagingSystem, "kafka"))
		dst = appendNonEmpty(dst, AttrMessagingDestination, k.Topic)
		dst = appendNonEmpty(dst, AttrMessagingClientID, k.ClientID)
		dst = appendNonEmpty(dst, AttrKafkaAPIKey, k.APIKey)
		dst = append(dst, attribute.Int(AttrKafkaErrorCode, int(k.ErrorCode)))
	}
	return dst
}

func appendNonEmpty(dst []attribute.KeyValue, key, value string) []attribute.KeyValue {
	if value == "" {
		return dst
	}
	return append(dst, attribute.String(key, value))
}
