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

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +genclient
// +genclient:readonly
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Flow is one record of network traffic observed on a node: a connection's
// start, one active interval, or its end, as in IPFIX. Flows are immutable;
// a flow exists while the observing node's agent retains it. Field names
// follow Hubble's flow.proto, enum values Kubernetes conventions.
//
// metadata.name is "<nodeName>.<sequence>" so that a get is routed to one
// agent; metadata.namespace is the namespace of the pod at the observation
// point (the agent's own namespace when no pod is involved); metadata.labels
// are that pod's labels.
type Flow struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Time is when the interval this record covers started.
	Time metav1.MicroTime `json:"time"`
	// EndTime is when the interval ended; equal to Time for a single packet.
	// +optional
	EndTime *metav1.MicroTime `json:"endTime,omitempty"`
	// NodeName is the node whose agent observed the flow.
	NodeName string `json:"nodeName"`
	// Verdict is what the datapath did with the traffic.
	Verdict Verdict `json:"verdict"`
	// DropReason is the kernel's or the datapath's reason for a drop, such
	// as NO_SOCKET or POLICY_DENIED. Empty unless the verdict is Dropped.
	// +optional
	DropReason string `json:"dropReason,omitempty"`
	// TrafficDirection is Egress when the observed pod sent the traffic and
	// Ingress when it received it.
	TrafficDirection TrafficDirection `json:"trafficDirection"`
	// IsReply tells whether the traffic goes in the reply direction of its
	// connection. Absent when unknown.
	// +optional
	IsReply *bool `json:"isReply,omitempty"`
	// Interface is the network interface the traffic was observed on.
	// +optional
	Interface string `json:"interface,omitempty"`
	// IP holds the layer-3 addresses.
	// +optional
	IP *IP `json:"ip,omitempty"`
	// L4 holds the transport protocol and its ports or ICMP type.
	// +optional
	L4 *Layer4 `json:"l4,omitempty"`
	// Source is the sending end.
	// +optional
	Source *Endpoint `json:"source,omitempty"`
	// Destination is the receiving end.
	// +optional
	Destination *Endpoint `json:"destination,omitempty"`
	// L7 holds the application-layer exchange, when one was parsed.
	// +optional
	L7 *Layer7 `json:"l7,omitempty"`
	// Traffic counts what the interval carried in both directions.
	// +optional
	Traffic *Traffic `json:"traffic,omitempty"`
}

// Verdict is the fate of the traffic in the datapath.
// +enum
type Verdict string

// Verdicts, after Hubble's flow.Verdict.
const (
	VerdictUnknown    Verdict = "Unknown"
	VerdictForwarded  Verdict = "Forwarded"
	VerdictDropped    Verdict = "Dropped"
	VerdictError      Verdict = "Error"
	VerdictAudit      Verdict = "Audit"
	VerdictRedirected Verdict = "Redirected"
	VerdictTraced     Verdict = "Traced"
	VerdictTranslated Verdict = "Translated"
)

// Verdicts lists every Verdict value, for validation and documentation.
var Verdicts = []Verdict{VerdictUnknown, VerdictForwarded, VerdictDropped, VerdictError,
	VerdictAudit, VerdictRedirected, VerdictTraced, VerdictTranslated}

// TrafficDirection says whether the observed pod sent or received the traffic.
// +enum
type TrafficDirection string

// Traffic directions, after Hubble's flow.TrafficDirection.
const (
	TrafficDirectionUnknown TrafficDirection = "Unknown"
	TrafficDirectionIngress TrafficDirection = "Ingress"
	TrafficDirectionEgress  TrafficDirection = "Egress"
)

// TrafficDirections lists every TrafficDirection value.
var TrafficDirections = []TrafficDirection{TrafficDirectionUnknown, TrafficDirectionIngress, TrafficDirectionEgress}

// IPVersion is the version of the IP protocol.
// +enum
type IPVersion string

// IP versions.
const (
	IPv4 IPVersion = "IPv4"
	IPv6 IPVersion = "IPv6"
)

// Protocol is a transport protocol.
// +enum
type Protocol string

// Transport protocols, after the cases of Hubble's flow.Layer4.
const (
	ProtocolTCP    Protocol = "TCP"
	ProtocolUDP    Protocol = "UDP"
	ProtocolSCTP   Protocol = "SCTP"
	ProtocolICMPv4 Protocol = "ICMPv4"
	ProtocolICMPv6 Protocol = "ICMPv6"
	ProtocolVRRP   Protocol = "VRRP"
	ProtocolIGMP   Protocol = "IGMP"
)

// Protocols lists every Protocol value.
var Protocols = []Protocol{ProtocolTCP, ProtocolUDP, ProtocolSCTP, ProtocolICMPv4, ProtocolICMPv6, ProtocolVRRP, ProtocolIGMP}

// IP holds the layer-3 header fields of a flow.
type IP struct {
	// Source is the source address.
	Source string `json:"source"`
	// Destination is the destination address.
	Destination string `json:"destination"`
	// IPVersion is IPv4 or IPv6.
	IPVersion IPVersion `json:"ipVersion"`
}

// Layer4 holds the transport header fields of a flow.
type Layer4 struct {
	// Protocol is the transport protocol.
	Protocol Protocol `json:"protocol"`
	// SourcePort is the source port for TCP, UDP and SCTP.
	// +optional
	SourcePort int32 `json:"sourcePort,omitempty"`
	// DestinationPort is the destination port for TCP, UDP and SCTP.
	// +optional
	DestinationPort int32 `json:"destinationPort,omitempty"`
	// TCPFlags are the TCP flags seen during the interval, such as SYN or FIN.
	// +optional
	// +listType=set
	TCPFlags []string `json:"tcpFlags,omitempty"`
	// ICMP holds the ICMP type and code for ICMPv4 and ICMPv6.
	// +optional
	ICMP *ICMP `json:"icmp,omitempty"`
}

// ICMP holds an ICMP message's type and code.
type ICMP struct {
	// Type is the ICMP type.
	Type int32 `json:"type"`
	// Code is the ICMP code.
	Code int32 `json:"code"`
}

// Endpoint is one end of a flow, enriched with what the cluster knows of it.
type Endpoint struct {
	// IP is the end's address.
	// +optional
	IP string `json:"ip,omitempty"`
	// Port is the end's transport port, when the protocol has ports.
	// +optional
	Port int32 `json:"port,omitempty"`
	// Namespace is the namespace of the end's pod.
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// PodName is the name of the end's pod.
	// +optional
	PodName string `json:"podName,omitempty"`
	// Labels are the labels of the end's pod.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// Workloads are the pod's controllers, following owner references.
	// +optional
	// +listType=atomic
	Workloads []Workload `json:"workloads,omitempty"`
	// Service is the name of a service the end belongs to, in Namespace.
	// +optional
	Service string `json:"service,omitempty"`
}

// Workload is a controller that owns a pod.
type Workload struct {
	// Kind is the controller's kind, such as Deployment.
	Kind string `json:"kind"`
	// Name is the controller's name.
	Name string `json:"name"`
}

// L7Type is the application protocol of a flow's layer-7 record.
// +enum
type L7Type string

// Application protocols.
const (
	L7TypeDNS   L7Type = "DNS"
	L7TypeHTTP  L7Type = "HTTP"
	L7TypeGRPC  L7Type = "GRPC"
	L7TypeKafka L7Type = "Kafka"
)

// L7Types lists every L7Type value.
var L7Types = []L7Type{L7TypeDNS, L7TypeHTTP, L7TypeGRPC, L7TypeKafka}

// Layer7 is one application-layer exchange: a request and its response.
type Layer7 struct {
	// Type is the application protocol.
	Type L7Type `json:"type"`
	// Latency is the time between request and response.
	// +optional
	Latency *metav1.Duration `json:"latency,omitempty"`
	// DNS is set for DNS exchanges.
	// +optional
	DNS *DNS `json:"dns,omitempty"`
	// HTTP is set for HTTP exchanges.
	// +optional
	HTTP *HTTP `json:"http,omitempty"`
	// GRPC is set for gRPC calls.
	// +optional
	GRPC *GRPC `json:"grpc,omitempty"`
	// Kafka is set for Kafka requests.
	// +optional
	Kafka *Kafka `json:"kafka,omitempty"`
	// Partial is set when part of the exchange was not seen or could not
	// be decoded (a gap in the capture, a connection that started before
	// the agent): the fields set are exact, the ones missing are unknown.
	// +optional
	Partial bool `json:"partial,omitempty"`
}

// DNS is a DNS query and its answer.
type DNS struct {
	// Query is the queried name.
	Query string `json:"query"`
	// IPs are the addresses in the answer.
	// +optional
	// +listType=atomic
	IPs []string `json:"ips,omitempty"`
	// TTL is the answer's time to live in seconds.
	// +optional
	TTL int32 `json:"ttl,omitempty"`
	// CNAMEs are the canonical names in the answer.
	// +optional
	// +listType=atomic
	CNAMEs []string `json:"cnames,omitempty"`
	// RCode is the response code (0 is NOERROR).
	// +optional
	RCode int32 `json:"rcode,omitempty"`
	// QTypes are the question types, such as A or AAAA.
	// +optional
	// +listType=atomic
	QTypes []string `json:"qtypes,omitempty"`
	// RRTypes are the types of the answer's resource records.
	// +optional
	// +listType=atomic
	RRTypes []string `json:"rrtypes,omitempty"`
	// RetriedOverTCP is set when the answer over UDP came truncated (the
	// TC bit) and the client asked again over TCP: the record is the TCP
	// exchange's, with the latency from the UDP query.
	// +optional
	RetriedOverTCP bool `json:"retriedOverTCP,omitempty"`
}

// HTTP is an HTTP request and its response.
type HTTP struct {
	// Code is the response status code.
	// +optional
	Code int32 `json:"code,omitempty"`
	// Method is the request method.
	// +optional
	Method string `json:"method,omitempty"`
	// URL is the request URL.
	// +optional
	URL string `json:"url,omitempty"`
	// Protocol is the HTTP version, such as HTTP/1.1.
	// +optional
	Protocol string `json:"protocol,omitempty"`
	// Headers are selected request headers.
	// +optional
	// +listType=atomic
	Headers []HTTPHeader `json:"headers,omitempty"`
	// ResponseHeaders are the response's headers that the agent's header
	// allow-list names (never Set-Cookie).
	// +optional
	// +listType=atomic
	ResponseHeaders []HTTPHeader `json:"responseHeaders,omitempty"`
}

// HTTPHeader is one HTTP header.
type HTTPHeader struct {
	// Key is the header name.
	Key string `json:"key"`
	// Value is the header value.
	Value string `json:"value"`
}

// GRPC is a gRPC call.
type GRPC struct {
	// Service is the fully qualified service name.
	Service string `json:"service"`
	// Method is the method name.
	Method string `json:"method"`
	// StatusCode is the grpc-status from the trailers.
	// +optional
	StatusCode int32 `json:"statusCode,omitempty"`
	// Message is the grpc-message from the trailers, percent-decoded,
	// at most 256 bytes.
	// +optional
	Message string `json:"message,omitempty"`
	// ResponseHeaders are the response's headers and trailers that the
	// agent's header allow-list names (never Set-Cookie).
	// +optional
	// +listType=atomic
	ResponseHeaders []HTTPHeader `json:"responseHeaders,omitempty"`
}

// Kafka is a Kafka request.
type Kafka struct {
	// ErrorCode is the response's error code.
	// +optional
	ErrorCode int32 `json:"errorCode,omitempty"`
	// APIVersion is the request's API version.
	// +optional
	APIVersion int32 `json:"apiVersion,omitempty"`
	// APIKey is the request's API, such as produce or fetch.
	// +optional
	APIKey string `json:"apiKey,omitempty"`
	// CorrelationID matches a response to its request.
	// +optional
	CorrelationID int32 `json:"correlationID,omitempty"`
	// Topic is the topic the request names.
	// +optional
	Topic string `json:"topic,omitempty"`
	// ClientID is the client.id the request carries.
	// +optional
	ClientID string `json:"clientID,omitempty"`
}

// Traffic counts packets and bytes in both directions of the interval.
type Traffic struct {
	// Packets sent in the flow's direction.
	Packets int64 `json:"packets"`
	// Bytes sent in the flow's direction.
	Bytes int64 `json:"bytes"`
	// PacketsReply sent in the reply direction.
	// +optional
	PacketsReply int64 `json:"packetsReply,omitempty"`
	// BytesReply sent in the reply direction.
	// +optional
	BytesReply int64 `json:"bytesReply,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// FlowList is a list of flows.
type FlowList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	// Items are the flows, ordered by time.
	Items []Flow `json:"items"`
}
