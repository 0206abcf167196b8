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

package flowcodec

// The tables of format version 1. A value's enum code n >= 2 names
// table[n-2]; they may only ever grow at their end, and a value using a new
// entry needs a new format version for older readers to reject it cleanly.
// They are literals rather than references to the API's lists so that a
// change there cannot silently change what stored bytes mean.

var verdicts = []string{"Unknown", "Forwarded", "Dropped", "Error", "Audit", "Redirected", "Traced", "Translated"}

var directions = []string{"Unknown", "Ingress", "Egress"}

var ipVersions = []string{"IPv4", "IPv6"}

var protocols = []string{"TCP", "UDP", "SCTP", "ICMPv4", "ICMPv6", "VRRP", "IGMP"}

var l7Types = []string{"DNS", "HTTP", "GRPC", "Kafka"}

// dropReasons are the reasons seen most: Cilium's policy drops (what Hubble
// exports) and the Linux skb_drop_reason names the agent reports, without
// their SKB_DROP_REASON_ prefix.
var dropReasons = []string{
	"POLICY_DENIED", "POLICY_DENY", "AUTH_REQUIRED", "STALE_OR_UNROUTABLE_IP",
	"UNKNOWN_L4_PROTOCOL", "CT_MAP_INSERTION_FAILED", "SERVICE_BACKEND_NOT_FOUND",
	"INVALID_SOURCE_IP", "FIB_LOOKUP_FAILED", "TTL_EXCEEDED", "DROP_RATE_LIMITED",
	"NOT_SPECIFIED", "NO_SOCKET", "PKT_TOO_SMALL", "TCP_CSUM", "SOCKET_FILTER",
	"UDP_CSUM", "NETFILTER_DROP", "OTHERHOST", "IP_CSUM", "IP_INHDR", "IP_RPFILTER",
	"UNICAST_IN_L2_MULTICAST", "XFRM_POLICY", "IP_NOPROTO", "SOCKET_RCVBUFF",
	"PROTO_MEM", "TCP_OVERWINDOW", "TCP_OFOMERGE", "TCP_RFC7323_PAWS",
	"TCP_INVALID_SEQUENCE", "TCP_RESET", "TCP_INVALID_SYN", "TCP_CLOSE",
	"TCP_FLAGS", "TCP_OLD_ACK", "TCP_TOO_OLD_ACK", "TCP_ACK_UNSENT_DATA",
	"TCP_OFO_QUEUE_PRUNE", "TCP_OFO_DROP", "IP_OUTNOROUTES", "BPF_CGROUP_EGRESS",
	"IPV6DISABLED", "NEIGH_CREATEFAIL", "NEIGH_FAILED", "NEIGH_QUEUEFULL",
	"NEIGH_DEAD", "TC_EGRESS", "QDISC_DROP", "CPU_BACKLOG", "XDP", "TC_INGRESS",
	"UNHANDLED_PROTO", "SKB_CSUM", "SKB_GSO_SEG", "SKB_UCOPY_FAULT", "DEV_HDR",
	"DEV_READY", "FULL_RING", "NOMEM", "HDR_TRUNC", "TAP_FILTER", "TAP_TXFILTER",
	"ICMP_CSUM", "INVALID_PROTO", "IP_INADDRERRORS", "IP_INNOROUTES", "PKT_TOO_BIG",
	"DUP_FRAG", "FRAG_REASM_TIMEOUT", "FRAG_TOO_FAR", "TCP_MINTTL", "IPV6_BAD_EXTHDR",
	"IPV6_NDISC_FRAG", "IPV6_NDISC_HOP_LIMIT", "IPV6_NDISC_BAD_CODE",
	"IPV6_NDISC_BAD_OPTIONS", "IPV6_NDISC_NS_OTHERHOST", "QUEUE_PURGE",
	"TC_COOKIE_ERROR", "PACKET_SOCK_ERROR", "TC_CHAIN_NOTFOUND", "TC_RECLASSIFY_LOOP",
}

var workloadKinds = []string{"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob",
	"Pod", "ReplicationController", "Node"}

var dnsTypes = []string{"A", "AAAA", "CNAME", "PTR", "SRV", "TXT", "MX", "NS", "SOA", "HTTPS", "SVCB", "ANY", "CAA", "DS", "DNSKEY", "RRSIG", "NSEC", "OPT"}

var httpMethods = []string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE"}

var httpProtocols = []string{"HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/3"}

var kafkaAPIKeys = []string{"produce", "fetch", "offsets", "metadata", "leader_and_isr", "stop_replica",
	"update_metadata", "controlled_shutdown", "offset_commit", "offset_fetch", "find_coordinator",
	"join_group", "heartbeat", "leave_group", "sync_group", "describe_groups", "list_groups",
	"sasl_handshake", "api_versions", "create_topics", "delete_topics"}

// tcpFlagsByBit are the TCP flags in the order of their header bits: a
// flag's index is its bit in a mask. tcpFlagsSorted is the alphabetical
// order Hubble lists them in; the agent lists them in bit order.
var (
	tcpFlagsByBit  = []string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS"}
	tcpFlagsSorted = []uint8{4, 7, 6, 0, 8, 3, 2, 1, 5} // ACK CWR ECE FIN NS PSH RST SYN URG
	tcpFlagsInBits = []uint8{0, 1, 2, 3, 4, 5, 6, 7, 8}
)
