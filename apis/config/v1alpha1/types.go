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
// +genclient:nonNamespaced
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=cflp,categories=flowscope
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Outputs",type=string,JSONPath=`.spec.outputs`
// +kubebuilder:printcolumn:name="Retention",type=string,JSONPath=`.spec.retention`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Nodes",type=string,JSONPath=`.status.nodes.applied`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// ClusterFlowLogPolicy selects flows of any namespace to keep (stored mode).
// An AKS ContainerNetworkLog applies as one with only apiVersion and kind
// changed, and means the same. Policies combine with OR.
type ClusterFlowLogPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   FlowLogPolicySpec   `json:"spec"`
	Status FlowLogPolicyStatus `json:"status,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true

// ClusterFlowLogPolicyList is a list of ClusterFlowLogPolicies.
type ClusterFlowLogPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []ClusterFlowLogPolicy `json:"items"`
}

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,shortName=flp,categories=flowscope
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Outputs",type=string,JSONPath=`.spec.outputs`
// +kubebuilder:printcolumn:name="Retention",type=string,JSONPath=`.spec.retention`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Nodes",type=string,JSONPath=`.status.nodes.applied`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// FlowLogPolicy is a ClusterFlowLogPolicy confined to its own namespace: it
// selects only flows whose metadata.namespace is the policy's, whatever its
// filters say, so a namespace's admins can keep their own flows and no
// one else's.
type FlowLogPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   FlowLogPolicySpec   `json:"spec"`
	Status FlowLogPolicyStatus `json:"status,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true

// FlowLogPolicyList is a list of FlowLogPolicies.
type FlowLogPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []FlowLogPolicy `json:"items"`
}

// FlowLogPolicySpec says which flows to keep, for how long and where. A
// flow is selected when it matches any include filter and no exclude
// filter.
type FlowLogPolicySpec struct {
	// IncludeFilters select flows; a flow matching any of them is selected.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	IncludeFilters []FlowLogFilter `json:"includefilters"`

	// ExcludeFilters remove flows from the selection; a flow matching any
	// of them is not kept.
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +optional
	ExcludeFilters []FlowLogFilter `json:"excludefilters,omitempty"`

	// Retention is how long the Store output keeps a selected flow.
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="retention must be positive"
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('8760h')",message="retention must be at most a year (8760h)"
	// +kubebuilder:validation:Type=string
	// +optional
	Retention *metav1.Duration `json:"retention,omitempty"`

	// Outputs receive the selected flows: Store keeps them in the agents'
	// long-retention tier, listable with kubectl get flows; File writes
	// them as Hubble export lines to each node's flow log file; OTLP sends
	// them to an OpenTelemetry collector.
	// +kubebuilder:default={Store,File}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=3
	// +listType=set
	// +optional
	Outputs []Output `json:"outputs,omitempty"`
}

// Output is a destination of selected flows.
// +kubebuilder:validation:Enum=Store;File;OTLP
type Output string

// The outputs.
const (
	OutputStore Output = "Store"
	OutputFile  Output = "File"
	OutputOTLP  Output = "OTLP"
)

// FlowLogFilter matches flows. Each field that is set must match (AND);
// the values within a field are alternatives (OR). An empty filter
// matches every flow.
type FlowLogFilter struct {
	// Name identifies the filter in messages.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Name string `json:"name,omitempty"`

	// From matches the flow's source; empty or absent matches any.
	// +optional
	From *FlowLogEndpoint `json:"from,omitempty"`

	// To matches the flow's destination; empty or absent matches any.
	// +optional
	To *FlowLogEndpoint `json:"to,omitempty"`

	// Protocol matches the transport (tcp, udp, sctp, icmp, which covers
	// ICMPv6) or, for dns, DNS traffic: flows with a DNS record or to or
	// from port 53.
	// +kubebuilder:validation:MaxItems=8
	// +listType=set
	// +optional
	Protocol []Protocol `json:"protocol,omitempty"`

	// Verdict matches the flow's verdict.
	// +kubebuilder:validation:MaxItems=2
	// +listType=set
	// +optional
	Verdict []Verdict `json:"verdict,omitempty"`

	// Ports match the destination port.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	Ports []PortRange `json:"ports,omitempty"`

	// Services match the destination's service, as namespace/name.
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +listType=set
	// +optional
	Services []string `json:"services,omitempty"`

	// TrafficDirection matches the direction seen at the observed pod.
	// +kubebuilder:validation:MaxItems=2
	// +listType=set
	// +optional
	TrafficDirection []TrafficDirection `json:"trafficDirection,omitempty"`

	// DropReasons match a dropped flow's reason, as kubectl get flows
	// prints it (for example POLICY_DENIED).
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9_]+$`
	// +listType=set
	// +optional
	DropReasons []string `json:"dropReasons,omitempty"`

	// L7 matches the flow's application-layer record; a flow without one
	// does not match.
	// +optional
	L7 *L7Filter `json:"l7,omitempty"`
}

// FlowLogEndpoint matches one side of a flow. Its fields that are set
// must all match; an empty endpoint matches any.
type FlowLogEndpoint struct {
	// NamespacedPod entries are namespace/pod-name-prefix: a pod of that
	// namespace whose name starts with the prefix. An empty prefix
	// (namespace/) matches every pod of the namespace.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[-a-z0-9.]*$`
	// +listType=atomic
	// +optional
	NamespacedPod []string `json:"namespacedPod,omitempty"`

	// Not in the schema's description: metav1.LabelSelector takes no
	// markers and its matchExpressions are unbounded, so a CEL rule over
	// them exceeds kube-apiserver's cost budget and the CRD is refused.
	// artifacts/crds/kustomization.yaml bounds them (maxItems) and
	// enumerates their operators in the CRDs instead.

	// LabelSelector matches the endpoint's pod labels. The pseudo-label
	// k8s.io/namespace matches the endpoint's namespace, as in ACNS.
	// +optional
	LabelSelector *metav1.LabelSelector `json:"labelSelector,omitempty"`

	// IP entries are addresses or CIDRs the endpoint's address is in.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.all(ip, isIP(ip) || isCIDR(ip))",message="each ip must be an IP address or a CIDR"
	// +listType=atomic
	// +optional
	IP []string `json:"ip,omitempty"`
}

// Protocol is a flow log filter's protocol.
// +kubebuilder:validation:Enum=tcp;udp;dns;icmp;sctp
type Protocol string

// Verdict is a flow log filter's verdict.
// +kubebuilder:validation:Enum=forwarded;dropped
type Verdict string

// TrafficDirection is a flow log filter's traffic direction.
// +kubebuilder:validation:Enum=ingress;egress
type TrafficDirection string

// PortRange is a destination port, or the ports from Port to EndPort.
// +kubebuilder:validation:XValidation:rule="!has(self.endPort) || self.endPort >= self.port",message="endPort must not be below port",fieldPath=".endPort"
type PortRange struct {
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	EndPort *int32 `json:"endPort,omitempty"`
}

// L7Filter matches application-layer records. Each field that is set must
// match.
type L7Filter struct {
	// Types match the record's type.
	// +kubebuilder:validation:MaxItems=4
	// +listType=set
	// +optional
	Types []L7Type `json:"types,omitempty"`
	// HTTPMethods match an HTTP request's method.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Pattern=`^[A-Z]+$`
	// +listType=set
	// +optional
	HTTPMethods []string `json:"httpMethods,omitempty"`
	// HTTPStatusClasses match an HTTP response's status class.
	// +kubebuilder:validation:MaxItems=5
	// +listType=set
	// +optional
	HTTPStatusClasses []HTTPStatusClass `json:"httpStatusClasses,omitempty"`
	// DNSQuerySuffixes match a DNS query name ending with one of them
	// (a trailing dot is optional).
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=set
	// +optional
	DNSQuerySuffixes []string `json:"dnsQuerySuffixes,omitempty"`
}

// L7Type is an application-layer record type.
// +kubebuilder:validation:Enum=dns;http;grpc;kafka
type L7Type string

// HTTPStatusClass is a class of HTTP status codes.
// +kubebuilder:validation:Enum=1xx;2xx;3xx;4xx;5xx
type HTTPStatusClass string

// FlowLogPolicyStatus is what the cluster has made of a policy.
type FlowLogPolicyStatus struct {
	// ObservedGeneration is the generation the conditions describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions are Accepted (the agents can apply the spec; reasons
	// name problems the schema cannot catch) and Ready (every agent
	// applies this generation).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Nodes counts the agents that apply this generation.
	// +optional
	Nodes *NodeCount `json:"nodes,omitempty"`
}

// NodeCount counts agents.
type NodeCount struct {
	// Applied is how many agents apply the policy's generation.
	Applied int32 `json:"applied"`
	// Total is how many agents are running.
	Total int32 `json:"total"`
}

// The condition types and reasons of a policy's status.
const (
	ConditionAccepted = "Accepted"
	ConditionReady    = "Ready"

	ReasonValid        = "Valid"
	ReasonNeverMatches = "FilterNeverMatches"
	ReasonOutputUnset  = "OutputNotConfigured"
	ReasonInvalid      = "Invalid"
	ReasonApplied      = "Applied"
	ReasonApplying     = "Applying"
	ReasonNoAgents     = "NoAgents"
)
