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

// The shape of FlowSummary: one object per edge, not one object per
// namespace with its edges in a list.
//
//   - kubectl: `kubectl get flowsummaries -n shop` prints one row per edge
//     with the server's table, sorts with --sort-by, selects with -l and
//     --field-selector and pages with --chunk-size, as for any resource; a
//     single object would print one row and hide the edges in its body.
//   - Size: a namespace can have thousands of edges. As items of a list
//     they are bounded per response and streamed by kubectl and client-go
//     like flows; as one object they would make one unbounded object.
//   - The clientset: List returns the edges as typed items, so
//     `kubectl flows top` sorts them and a web UI's service map draws one
//     edge per item, merging namespaces (-A) by concatenation.
//   - Names are stable hashes of the edge's key (EdgeName), so the same
//     edge keeps its name across windows and requests and a UI can key its
//     graph's edges by metadata.name.
//
// A summary is computed per request from the flows of its window (since and
// until field selectors, the server's default window otherwise): it is not
// stored, has no resourceVersion of its own, and cannot be watched (get and
// list only).

// +genclient
// +genclient:onlyVerbs=get,list
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// FlowSummary is one edge of the flow graph over a window: the flows with
// the same source and destination (workload, service or external CIDR),
// destination port, protocol, verdict, direction and L7 status class,
// counted. Agents aggregate the flows of their stores; the aggregated
// server merges their parts.
//
// metadata.namespace is the namespace of the observed side, as for flows:
// an edge between two observed pods is reported by both ends' agents, as
// Egress at the source and as Ingress at the destination, and each appears
// in the namespace of its observed pod. A service map that wants one count
// per pair takes the Egress edge when both exist.
// metadata.name is EdgeName(edge): "e" and 16 hexadecimal digits of a hash
// of the edge, the same for the same edge in every window.
type FlowSummary struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Window is the time range of the flows counted: those whose time is
	// in [start, end).
	Window SummaryWindow `json:"window"`
	// Edge is what the counted flows have in common.
	Edge FlowEdge `json:"edge"`
	// Traffic counts the flows and what they carried.
	Traffic EdgeTraffic `json:"traffic"`
	// Drops counts the dropped flows by drop reason.
	// +optional
	// +listType=map
	// +listMapKey=reason
	Drops []DropCount `json:"drops,omitempty"`
	// L7 counts the application-layer exchanges, for edges of L7 records.
	// +optional
	L7 *EdgeL7 `json:"l7,omitempty"`
	// Nodes are the nodes whose agents observed flows of the edge.
	// +optional
	// +listType=set
	Nodes []string `json:"nodes,omitempty"`
}

// SummaryWindow is the time range a summary covers.
type SummaryWindow struct {
	// Start is the earliest time of a counted flow (inclusive).
	Start metav1.MicroTime `json:"start"`
	// End is the latest (exclusive); the time of the request when the
	// window is open.
	End metav1.MicroTime `json:"end"`
}

// FlowEdge is the key of a summary: every field is one of the flows'.
type FlowEdge struct {
	// Source is the sending end.
	Source EdgeEndpoint `json:"source"`
	// Destination is the receiving end.
	Destination EdgeEndpoint `json:"destination"`
	// DestinationPort is the flows' destination port, 0 for protocols
	// without ports.
	// +optional
	DestinationPort int32 `json:"destinationPort,omitempty"`
	// Protocol is the transport protocol, empty when unknown.
	// +optional
	Protocol Protocol `json:"protocol,omitempty"`
	// Verdict is the flows' verdict.
	Verdict Verdict `json:"verdict"`
	// TrafficDirection is the direction at the observed pod: Egress for
	// flows observed at the source, Ingress at the destination.
	TrafficDirection TrafficDirection `json:"trafficDirection"`
	// Reply is set on the edge of reply flows (isReply), which is
	// oriented as their connection: Source is the client (the flows'
	// destination), Destination the server and DestinationPort its port
	// (the flows' source port). So a connection's replies make one edge
	// between the same ends as its requests, not one per client port.
	// Traffic still counts in the flows' direction.
	// +optional
	Reply bool `json:"reply,omitempty"`
	// L7Type is the application protocol of L7 records, empty for the
	// records of connections.
	// +optional
	L7Type L7Type `json:"l7Type,omitempty"`
	// L7Status is the status class of L7 records: 1xx to 5xx for HTTP, a
	// gRPC status name (OK, NotFound, ...), a DNS response code name
	// (NOERROR, NXDOMAIN, SERVFAIL, ...), OK or Error for Kafka, and
	// Unknown when no status was seen.
	// +optional
	L7Status string `json:"l7Status,omitempty"`
	// Other is set on the one edge that counts the flows of edges beyond
	// an agent's or the server's bound on edges per summary: its ends
	// are of kind Other and its other fields empty.
	// +optional
	Other bool `json:"other,omitempty"`
}

// Kinds of EdgeEndpoint beyond the workload kinds (Deployment,
// StatefulSet, DaemonSet, Job, CronJob, ReplicaSet, ...).
const (
	// EndpointKindPod is a pod that no workload owns.
	EndpointKindPod = "Pod"
	// EndpointKindService is a service address no pod was found behind.
	EndpointKindService = "Service"
	// EndpointKindExternal is an address outside the cluster's pods,
	// bucketed by CIDR (/24 for IPv4, /48 for IPv6).
	EndpointKindExternal = "External"
	// EndpointKindUnknown is an end of which nothing is known.
	EndpointKindUnknown = "Unknown"
	// EndpointKindOther is either end of the edge that counts the flows
	// of edges beyond a bound (FlowEdge.Other).
	EndpointKindOther = "Other"
)

// EdgeEndpoint is one end of an edge: a workload, a pod, a service or an
// external CIDR.
type EdgeEndpoint struct {
	// Kind is the workload's kind (Deployment, StatefulSet, ...), or Pod,
	// Service, External, Unknown or Other.
	Kind string `json:"kind"`
	// Namespace is the namespace of the workload, pod or service; empty
	// for External, Unknown and Other.
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// Name is the name of the workload, pod or service, or the CIDR of an
	// External end.
	// +optional
	Name string `json:"name,omitempty"`
	// Service is, for a destination, the service the traffic was
	// addressed to, when known. Empty for sources.
	// +optional
	Service string `json:"service,omitempty"`
}

// EdgeTraffic counts an edge's flows.
type EdgeTraffic struct {
	// Flows is the number of flow records.
	Flows int64 `json:"flows"`
	// Packets sent in the flows' direction.
	Packets int64 `json:"packets"`
	// Bytes sent in the flows' direction.
	Bytes int64 `json:"bytes"`
	// PacketsReply sent in the reply direction.
	// +optional
	PacketsReply int64 `json:"packetsReply,omitempty"`
	// BytesReply sent in the reply direction.
	// +optional
	BytesReply int64 `json:"bytesReply,omitempty"`
}

// DropCount counts the dropped flows of one drop reason.
type DropCount struct {
	// Reason is the drop reason, such as POLICY_DENIED; empty when the
	// datapath gave none.
	Reason string `json:"reason"`
	// Flows is the number of dropped flow records.
	Flows int64 `json:"flows"`
	// Packets is the number of packets they dropped.
	// +optional
	Packets int64 `json:"packets,omitempty"`
}

// EdgeL7 counts an edge's application-layer exchanges.
type EdgeL7 struct {
	// Requests is the number of exchanges.
	Requests int64 `json:"requests"`
	// Errors is the number of failed exchanges: HTTP 5xx, gRPC statuses
	// other than OK, DNS response codes other than NOERROR, Kafka error
	// codes other than 0.
	Errors int64 `json:"errors"`
	// Latency holds percentiles of the exchanges' latencies, merged from
	// the agents' sketches (relative error within 1%). Absent when no
	// exchange had a latency.
	// +optional
	Latency *LatencyPercentiles `json:"latency,omitempty"`
}

// LatencyPercentiles are percentiles of a latency distribution.
type LatencyPercentiles struct {
	// Count is the number of latencies the percentiles are of.
	Count int64 `json:"count"`
	// P50 is the median.
	P50 metav1.Duration `json:"p50"`
	// P95 is the 95th percentile.
	P95 metav1.Duration `json:"p95"`
	// P99 is the 99th percentile.
	P99 metav1.Duration `json:"p99"`
	// Max is the largest latency, within the same relative error.
	Max metav1.Duration `json:"max"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// FlowSummaryList is a list of flow summaries, one per edge.
type FlowSummaryList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	// Items are the edges, ordered by namespace and name.
	Items []FlowSummary `json:"items"`
}
