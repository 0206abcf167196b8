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

// Package flowproto holds what reading and writing Hubble's flow export
// share: the names and numbers of flow.proto's enums and the form of
// Cilium's endpoint labels.
package flowproto

import (
	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// Enum value names and numbers from flow.proto (cilium v1.19). protojson
// writes a value's name when the writer knows it and the number otherwise,
// so a reader older than the writer sees numbers.

// VerdictNames is flow.proto's Verdict.
var VerdictNames = map[int64]string{
	0: "VERDICT_UNKNOWN", 1: "FORWARDED", 2: "DROPPED", 3: "ERROR",
	4: "AUDIT", 5: "REDIRECTED", 6: "TRACED", 7: "TRANSLATED",
}

// Verdicts maps Hubble's verdicts to a Flow's.
var Verdicts = map[string]v1alpha1.Verdict{
	"FORWARDED":  v1alpha1.VerdictForwarded,
	"DROPPED":    v1alpha1.VerdictDropped,
	"ERROR":      v1alpha1.VerdictError,
	"AUDIT":      v1alpha1.VerdictAudit,
	"REDIRECTED": v1alpha1.VerdictRedirected,
	"TRACED":     v1alpha1.VerdictTraced,
	"TRANSLATED": v1alpha1.VerdictTranslated,
}

// DirectionNames is flow.proto's TrafficDirection.
var DirectionNames = map[int64]string{0: "TRAFFIC_DIRECTION_UNKNOWN", 1: "INGRESS", 2: "EGRESS"}

// Directions maps Hubble's traffic directions to a Flow's.
var Directions = map[string]v1alpha1.TrafficDirection{
	"INGRESS": v1alpha1.TrafficDirectionIngress,
	"EGRESS":  v1alpha1.TrafficDirectionEgress,
}

// IPVersionNames is flow.proto's IPVersion.
var IPVersionNames = map[int64]string{0: "IP_NOT_USED", 1: "IPv4", 2: "IPv6"}

// DropReasonNames is flow.proto's DropReason. Numbers missing here arrive
// as numbers and are kept as their decimal text.
var DropReasonNames = map[int64]string{
	0:   "DROP_REASON_UNKNOWN",
	130: "INVALID_SOURCE_MAC",
	131: "INVALID_DESTINATION_MAC",
	132: "INVALID_SOURCE_IP",
	133: "POLICY_DENIED",
	134: "INVALID_PACKET_DROPPED",
	135: "CT_TRUNCATED_OR_INVALID_HEADER",
	136: "CT_MISSING_TCP_ACK_FLAG",
	137: "CT_UNKNOWN_L4_PROTOCOL",
	138: "CT_CANNOT_CREATE_ENTRY_FROM_PACKET",
	139: "UNSUPPORTED_L3_PROTOCOL",
	140: "MISSED_TAIL_CALL",
	141: "ERROR_WRITING_TO_PACKET",
	142: "UNKNOWN_L4_PROTOCOL",
	143: "UNKNOWN_ICMPV4_CODE",
	144: "UNKNOWN_ICMPV4_TYPE",
	145: "UNKNOWN_ICMPV6_CODE",
	146: "UNKNOWN_ICMPV6_TYPE",
	147: "ERROR_RETRIEVING_TUNNEL_KEY",
	148: "ERROR_RETRIEVING_TUNNEL_OPTIONS",
	149: "INVALID_GENEVE_OPTION",
	150: "UNKNOWN_L3_TARGET_ADDRESS",
	151: "STALE_OR_UNROUTABLE_IP",
	152: "NO_MATCHING_LOCAL_CONTAINER_FOUND",
	153: "ERROR_WHILE_CORRECTING_L3_CHECKSUM",
	154: "ERROR_WHILE_CORRECTING_L4_CHECKSUM",
	155: "CT_MAP_INSERTION_FAILED",
	156: "INVALID_IPV6_EXTENSION_HEADER",
	157: "IP_FRAGMENTATION_NOT_SUPPORTED",
	158: "SERVICE_BACKEND_NOT_FOUND",
	160: "NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT",
	161: "FAILED_TO_INSERT_INTO_PROXYMAP",
	162: "REACHED_EDT_RATE_LIMITING_DROP_HORIZON",
	163: "UNKNOWN_CONNECTION_TRACKING_STATE",
	164: "LOCAL_HOST_IS_UNREACHABLE",
	165: "NO_CONFIGURATION_AVAILABLE_TO_PERFORM_POLICY_DECISION",
	166: "UNSUPPORTED_L2_PROTOCOL",
	167: "NO_MAPPING_FOR_NAT_MASQUERADE",
	168: "UNSUPPORTED_PROTOCOL_FOR_NAT_MASQUERADE",
	169: "FIB_LOOKUP_FAILED",
	170: "ENCAPSULATION_TRAFFIC_IS_PROHIBITED",
	171: "INVALID_IDENTITY",
	172: "UNKNOWN_SENDER",
	173: "NAT_NOT_NEEDED",
	174: "IS_A_CLUSTERIP",
	175: "FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND",
	176: "FORBIDDEN_ICMPV6_MESSAGE",
	177: "DENIED_BY_LB_SRC_RANGE_CHECK",
	178: "SOCKET_LOOKUP_FAILED",
	179: "SOCKET_ASSIGN_FAILED",
	180: "PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL",
	181: "POLICY_DENY",
	182: "VLAN_FILTERED",
	183: "INVALID_VNI",
	184: "INVALID_TC_BUFFER",
	185: "NO_SID",
	186: "MISSING_SRV6_STATE",
	187: "NAT46",
	188: "NAT64",
	189: "AUTH_REQUIRED",
	190: "CT_NO_MAP_FOUND",
	191: "SNAT_NO_MAP_FOUND",
	192: "INVALID_CLUSTER_ID",
	193: "UNSUPPORTED_PROTOCOL_FOR_DSR_ENCAP",
	194: "NO_EGRESS_GATEWAY",
	195: "UNENCRYPTED_TRAFFIC",
	196: "TTL_EXCEEDED",
	197: "NO_NODE_ID",
	198: "DROP_RATE_LIMITED",
	199: "IGMP_HANDLED",
	200: "IGMP_SUBSCRIBED",
	201: "MULTICAST_HANDLED",
	202: "DROP_HOST_NOT_READY",
	203: "DROP_EP_NOT_READY",
	204: "DROP_NO_EGRESS_IP",
	205: "DROP_PUNT_PROXY",
}

// DropReasonNumbers inverts DropReasonNames, for writing the deprecated
// numeric drop_reason next to drop_reason_desc as Hubble does.
var DropReasonNumbers = func() map[string]int64 {
	m := make(map[string]int64, len(DropReasonNames))
	for n, s := range DropReasonNames {
		m[s] = n
	}
	return m
}()

// LostEventSourceNames is flow.proto's LostEventSource.
var LostEventSourceNames = map[int64]string{
	0: "UNKNOWN_LOST_EVENT_SOURCE", 1: "PERF_EVENT_RING_BUFFER",
	2: "OBSERVER_EVENTS_QUEUE", 3: "HUBBLE_RING_BUFFER",
}

// TCPFlagNames are the fields of flow.proto's TCPFlags, sorted: the order
// Flow.l4.tcpFlags lists them in.
var TCPFlagNames = []string{"ACK", "CWR", "ECE", "FIN", "NS", "PSH", "RST", "SYN", "URG"}
