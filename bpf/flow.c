//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Flowscope datapath.
 *
 * Four passive TC programs (ingress/egress x Ethernet/L3 devices) parse every
 * packet and aggregate it into a per-connection record in a hash table; a
 * tp_btf/kfree_skb program aggregates dropped packets per (5-tuple, reason).
 * Both tables are plain (preallocated) hashes, not LRU: the kernel never
 * evicts a record, so none is lost unseen. A record that finds the table
 * full is not made, and its packet is counted (CNT_UNTRACKED_FULL,
 * CNT_DROPS_INSERT_FAIL); user space evicts with a final record before
 * the tables fill.
 * Events reach user space only through one ring buffer, and only per
 * connection (new, periodic update, close) or per drop aggregate, never per
 * packet. Nothing here ever changes a verdict: every TC exit is TC_ACT_UNSPEC
 * (TCX "next"), including on errors, which are only counted.
 *
 * The common packet (TCP or UDP over IPv4 without options or IPv6 without
 * extension headers, headers linear) is read in place with direct packet
 * access at constant offsets (fast_parse). Every other one is read with
 * bpf_skb_load_bytes (TC) or bpf_probe_read_kernel (kfree_skb): both fail
 * cleanly past the end, work on non-linear skbs and keep the verifier out
 * of variable packet-pointer arithmetic. Each read is a bounds check; each
 * comment "bounds:" says why that length is required.
 */

#include "vmlinux.h"
#include "bpf_helpers.h"
#include "bpf_endian.h"
#include "bpf_core_read.h"
#include "bpf_tracing.h"
#include "flow.h"

char __license[] SEC("license") = "Dual BSD/GPL";

#define TC_ACT_UNSPEC (-1)

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8

#define IPPROTO_HOPOPTS 0
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ROUTING 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_AH 51
#define IPPROTO_ICMPV6 58
#define IPPROTO_NONE 59
#define IPPROTO_DSTOPTS 60
#define IPPROTO_SCTP 132
#define IPPROTO_UDPLITE 136

#define E2BIG 7

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

/* QinQ (802.1ad outer + 802.1Q inner) is the deepest stack we expect. */
#define MAX_VLAN 2
/* RFC 8200 order allows hop-by-hop, dest, routing, fragment, AH, dest:
 * 6 headers; 8 leaves room and bounds the loop for the verifier. */
#define MAX_IPV6_EXT 8

/* Below this port a sender is more likely a server (port heuristic). */
#define SERVICE_PORT_MAX 1024

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536); /* user space may resize before load */
	__type(key, struct flow_key);
	__type(value, struct flow_value);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct drop_key);
	__type(value, struct drop_value);
} drops SEC(".maps");

/* Budgets of the interfaces (struct iface_budget), while one is set. Not
 * preallocated: user space deletes the entries of detached interfaces,
 * and a program that looked one up just before keeps writing to memory
 * that RCU has not freed, rather than to another interface's entry. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct iface_budget);
} iface_budgets SEC(".maps");

/* First-fragment ports, so later fragments join their connection. Small
 * and LRU: reassembly windows are short. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct frag_key);
	__type(value, struct frag_ports);
} frags SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 21); /* 2 MiB, about 13k events */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flow_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} sel_ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for LPM tries */
	__type(key, struct sel_addr_key);
	__type(value, __u8);
} sel_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct sel_port_key);
	__type(value, __u8);
} sel_ports SEC(".maps");

/* Which interfaces (and ports) get payload sampled: see struct l7_gate. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct l7_gate_key);
	__type(value, struct l7_gate);
} l7_gate SEC(".maps");

/* Payload samples, apart from the flow records so that a burst of L7
 * never costs a flow record its place. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22); /* 4 MiB; user space may resize before load */
} l7_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct l7_bucket);
} l7_buckets SEC(".maps");

/* l7_sample's larger locals: handle_tc's frame leaves it too little
 * stack (512 bytes for both) to keep them there. */
struct l7_scratch {
	struct l7_event h;  /* the header of the record being built */
	struct flow_key k;  /* the connection, for the per-connection limit */
	struct l7_conn nc;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct l7_scratch);
} l7_scratch SEC(".maps");

/* Only used while a per-connection limit is set, for packets without a
 * connection record (whose record holds the state). LRU: a connection
 * that is evicted merely starts a fresh window. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct flow_key);
	__type(value, struct l7_conn);
} l7_conns SEC(".maps");

/* Force BTF for the types user space shares but no map references, so
 * bpf2go emits FlowEvent, FlowCounter, ... (never read or written). */
const struct event *unused_event __attribute__((unused));
const enum counter unused_counter __attribute__((unused));
const enum event_kind unused_kind __attribute__((unused));
const enum event_flag unused_flag __attribute__((unused));
const struct l7_event *unused_l7_event __attribute__((unused));
const enum l7_proto unused_l7_proto __attribute__((unused));
const enum l7_gate_flag unused_l7_gate_flag __attribute__((unused));
const enum ending unused_ending __attribute__((unused));

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);
	/* The lookup only fails for idx >= CNT_MAX, which callers never pass;
	 * the check is for the verifier. Per-CPU: no atomics needed. */
	if (c)
		*c += 1;
}

static __always_inline void count_add(__u32 idx, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);
	if (c) /* as in count() */
		*c += n;
}

enum parse_result {
	P_OK = 0,
	P_TRUNCATED,
	P_MALFORMED,
	P_EXT_DEPTH,
};

enum frag_state {
	FRAG_NONE = 0,
	FRAG_FIRST,
	FRAG_LATER,
};

/* What the parser learned about one packet, oriented as sent. */
struct parsed {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 frag_id;
	__u32 l3_len;  /* IP datagram bytes: what a packet adds to "bytes" */
	__u32 hdr_len; /* L3+L4 header bytes, repeated per GSO segment */
	__u32 l4_off;  /* where the L4 header is; 0: this packet has none */
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 family;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 tcp_flags;
	__u8 has_ports; /* TCP, UDP, UDP-Lite, SCTP: port selectors apply */
	__u8 icmp_echo; /* ports are the echo identifier */
	__u8 frag;      /* enum frag_state */
};

/* Where the bytes come from: an skb (TC) or kernel memory (kfree_skb). */
struct reader {
	struct __sk_buff *skb;
	const unsigned char *base;
	__u32 limit; /* kernel mode: readable (linear) bytes from base */
	__u32 len;   /* bytes of packet from offset 0, linear or not */
	__u8 gso;    /* a GSO/BIG TCP skb: zero IP length means "all of it" */
};

static __always_inline int load(const struct reader *r, __u32 off, void *dst,
				__u32 n, const bool is_skb)
{
	if (is_skb)
		/* The helper refuses off + n > skb->len. */
		return bpf_skb_load_bytes(r->skb, off, dst, n);
	/* bounds: past the linear area probe_read would not fault but read
	 * unrelated memory, so we stop at the linear end ourselves. */
	if (off > r->limit || n > r->limit - off)
		return -1;
	return bpf_probe_read_kernel(dst, n, r->base + off);
}

static __always_inline void v4_mapped(__u8 *dst, const __u8 *v4)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, v4, 4);
}

/* parse_l4 reads the transport header at off; end is where the IP
 * datagram ends (headers beyond it would be Ethernet padding). */
static __always_inline int parse_l4(const struct reader *r, __u32 off,
				    __u32 end, struct parsed *p,
				    const bool is_skb)
{
	switch (p->proto) {
	case IPPROTO_TCP: {
		__u8 t[20];
		/* bounds: the fixed TCP header must be in the packet */
		if (load(r, off, t, sizeof(t), is_skb) < 0)
			return P_TRUNCATED;
		__u32 doff = (t[12] >> 4) * 4;
		/* bounds: a data offset under 5 words cannot hold the header */
		if (doff < 20)
			return P_MALFORMED;
		/* bounds: the header must fit in the IP datagram it is in */
		if (off + doff > end)
			return P_MALFORMED;
		p->sport = (t[0] << 8) | t[1];
		p->dport = (t[2] << 8) | t[3];
		p->tcp_flags = t[13];
		p->has_ports = 1;
		p->hdr_len += doff;
		return P_OK;
	}
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE: {
		__u8 u[8];
		/* bounds: the 8-byte UDP header must be in the packet */
		if (load(r, off, u, sizeof(u), is_skb) < 0)
			return P_TRUNCATED;
		/* bounds: ... and inside the IP datagram */
		if (off + 8 > end)
			return P_MALFORMED;
		p->sport = (u[0] << 8) | u[1];
		p->dport = (u[2] << 8) | u[3];
		p->has_ports = 1;
		p->hdr_len += 8;
		return P_OK;
	}
	case IPPROTO_SCTP: {
		__u8 s[12];
		/* bounds: the 12-byte SCTP common header must be there */
		if (load(r, off, s, sizeof(s), is_skb) < 0)
			return P_TRUNCATED;
		/* bounds: ... and inside the IP datagram */
		if (off + 12 > end)
			return P_MALFORMED;
		p->sport = (s[0] << 8) | s[1];
		p->dport = (s[2] << 8) | s[3];
		p->has_ports = 1;
		p->hdr_len += 12;
		return P_OK;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		__u8 c[8];
		/* bounds: every ICMP/ICMPv6 message we attribute has type,
		 * code, checksum and a 4-byte rest-of-header (echo id/seq) */
		if (load(r, off, c, sizeof(c), is_skb) < 0)
			return P_TRUNCATED;
		/* bounds: ... inside the IP datagram */
		if (off + 8 > end)
			return P_MALFORMED;
		/* ICMP belongs to its IP version; the other one is bogus. */
		if ((p->proto == IPPROTO_ICMP) != (p->family == 4))
			return P_MALFORMED;
		p->icmp_type = c[0];
		p->icmp_code = c[1];
		p->hdr_len += 8;
		bool echo = p->family == 4 ? (c[0] == 8 || c[0] == 0)
					   : (c[0] == 128 || c[0] == 129);
		if (echo) {
			p->icmp_echo = 1;
			p->sport = p->dport = (c[4] << 8) | c[5];
		}
		return P_OK;
	}
	default:
		/* GRE, ESP, ...: counted per address pair and protocol. */
		return P_OK;
	}
}

static __always_inline bool ipv6_is_ext(__u8 nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING ||
	       nh == IPPROTO_FRAGMENT || nh == IPPROTO_DSTOPTS ||
	       nh == IPPROTO_AH;
}

/* parse_ip parses the IPv4/IPv6 header at off (l3proto in host order)
 * and the transport header behind it. */
static __always_inline int parse_ip(const struct reader *r, __u32 off,
				    __u16 l3proto, struct parsed *p,
				    const bool is_skb)
{
	__u32 l4off, end;
	/* bounds: callers have read up to off, so it is inside r->len */
	if (off > r->len)
		return P_TRUNCATED;
	__u32 avail = r->len - off;

	if (l3proto == ETH_P_IP) {
		__u8 h[20];
		/* bounds: the fixed 20-byte IPv4 header must be there */
		if (load(r, off, h, sizeof(h), is_skb) < 0)
			return P_TRUNCATED;
		/* An L2 type that says IPv4 over a non-IPv4 header. */
		if ((h[0] >> 4) != 4)
			return P_MALFORMED;
		__u32 ihl = (h[0] & 0xf) * 4;
		/* bounds: IHL under 5 words cannot hold the fixed header;
		 * options (IHL > 5) are skipped, never read */
		if (ihl < 20)
			return P_MALFORMED;
		__u32 tot = (h[2] << 8) | h[3];
		/* BIG TCP (IPv4, > 64 KiB GSO) sets tot_len to 0. */
		if (tot == 0 && r->gso)
			tot = avail;
		/* bounds: the total length must cover its own header */
		if (tot < ihl)
			return P_MALFORMED;
		/* bounds: a datagram longer than the packet was cut short
		 * (or lies); trailing Ethernet padding (avail > tot) is fine */
		if (tot > avail)
			return P_TRUNCATED;
		p->family = 4;
		v4_mapped(p->saddr, &h[12]);
		v4_mapped(p->daddr, &h[16]);
		p->proto = h[9];
		p->l3_len = tot;
		p->hdr_len = ihl;
		__u16 fo = (h[6] << 8) | h[7];
		p->frag_id = (h[4] << 8) | h[5];
		if (fo & 0x1fff)
			p->frag = FRAG_LATER; /* offset > 0: no L4 header */
		else if (fo & 0x2000)
			p->frag = FRAG_FIRST; /* MF with offset 0 */
		l4off = off + ihl;
		end = off + tot;
	} else {
		__u8 h[40];
		/* bounds: the fixed 40-byte IPv6 header must be there */
		if (load(r, off, h, sizeof(h), is_skb) < 0)
			return P_TRUNCATED;
		if ((h[0] >> 4) != 6)
			return P_MALFORMED;
		__u32 tot = 40 + ((h[4] << 8) | h[5]);
		/* Payload length 0 with more bytes behind: a jumbogram
		 * (hop-by-hop) or BIG TCP GSO packet; take the whole skb. */
		if (tot == 40 && avail > 40 && (r->gso || h[6] == IPPROTO_HOPOPTS))
			tot = avail;
		/* bounds: a datagram longer than the packet was cut short */
		if (tot > avail)
			return P_TRUNCATED;
		p->family = 6;
		__builtin_memcpy(p->saddr, &h[8], 16);
		__builtin_memcpy(p->daddr, &h[24], 16);
		p->l3_len = tot;
		l4off = off + 40;
		end = off + tot;

		__u8 nh = h[6];
		int i;
		for (i = 0; i < MAX_IPV6_EXT; i++) {
			if (!ipv6_is_ext(nh))
				break;
			__u8 e[8];
			/* bounds: every extension header is at least 8 bytes
			 * (RFC 8200: lengths are in 8-octet units, AH's in
			 * 4-octet units but at least 12) */
			if (load(r, l4off, e, sizeof(e), is_skb) < 0)
				return P_TRUNCATED;
			/* bounds: ... and must lie inside the payload length */
			if (l4off + 8 > end)
				return P_MALFORMED;
			if (nh == IPPROTO_FRAGMENT) {
				__u16 fo = (e[2] << 8) | e[3];
				p->frag_id = ((__u32)e[4] << 24) | ((__u32)e[5] << 16) |
					     ((__u32)e[6] << 8) | e[7];
				l4off += 8;
				nh = e[0];
				if (fo >> 3) {
					/* offset > 0: the upper-layer header is in
					 * the first fragment, not here. */
					p->frag = FRAG_LATER;
					break;
				}
				if (fo & 1)
					p->frag = FRAG_FIRST;
				continue;
			}
			if (nh == IPPROTO_AH)
				l4off += ((__u32)e[1] + 2) * 4;
			else
				l4off += ((__u32)e[1] + 1) * 8;
			nh = e[0];
		}
		/* Still an extension header after MAX_IPV6_EXT: give up
		 * rather than attribute the packet to a wrong protocol. */
		if (p->frag != FRAG_LATER && ipv6_is_ext(nh))
			return P_EXT_DEPTH;
		p->proto = nh;
		p->hdr_len = l4off - off;
	}

	if (p->frag == FRAG_LATER || p->proto == IPPROTO_NONE)
		return P_OK;
	p->l4_off = l4off;
	return parse_l4(r, l4off, end, p, is_skb);
}

static __always_inline void count_parse_error(int rc)
{
	if (rc == P_TRUNCATED)
		count(CNT_TRUNCATED);
	else if (rc == P_EXT_DEPTH)
		count(CNT_IPV6_EXT_DEPTH);
	else
		count(CNT_MALFORMED);
}

static __always_inline void frag_key_of(struct frag_key *fk, const struct parsed *p)
{
	__builtin_memcpy(fk->saddr, p->saddr, 16);
	__builtin_memcpy(fk->daddr, p->daddr, 16);
	fk->id = p->frag_id;
	fk->proto = p->proto;
	fk->family = p->family;
}

/* handle_frags remembers the ports of first fragments and gives them to
 * later ones. A later fragment that arrives first (or whose first
 * fragment was evicted) is counted with ports 0: a separate record per
 * address pair and protocol, flagged EV_F_FRAGMENTS. */
static __always_inline void handle_frags(struct parsed *p)
{
	struct frag_key fk = {};

	if (p->frag == FRAG_NONE)
		return;
	frag_key_of(&fk, p);
	if (p->frag == FRAG_FIRST) {
		struct frag_ports fp = { .sport = p->sport, .dport = p->dport };
		if (bpf_map_update_elem(&frags, &fk, &fp, BPF_ANY))
			count(CNT_FRAG_INSERT_FAIL);
		else
			count(CNT_FRAG_FIRST);
		return;
	}
	struct frag_ports *fp = bpf_map_lookup_elem(&frags, &fk);
	if (!fp) {
		count(CNT_FRAG_LATER_UNMATCHED);
		return;
	}
	count(CNT_FRAG_LATER_MATCHED);
	p->sport = fp->sport;
	p->dport = fp->dport;
	p->frag = FRAG_NONE; /* fully attributed */
	if (p->proto == IPPROTO_ICMP || p->proto == IPPROTO_ICMPV6)
		p->icmp_echo = 1; /* only echo has non-zero "ports" */
	else
		p->has_ports = 1;
}

static __always_inline bool port_selected(__u16 port, __u8 proto)
{
	struct sel_port_key k = { .port = port, .proto = proto };

	if (bpf_map_lookup_elem(&sel_ports, &k))
		return true;
	k.proto = 0;
	return bpf_map_lookup_elem(&sel_ports, &k) != NULL;
}

/* selected ORs the selectors; only called in CAPTURE_SELECTED mode, so
 * "all" mode pays none of these lookups. */
static __always_inline bool selected(const struct flow_config *cfg,
				     __u32 ifindex, const struct parsed *p)
{
	struct sel_addr_key ak = { .prefixlen = 128 };

	if ((cfg->sel_kinds & SEL_IFACES) && bpf_map_lookup_elem(&sel_ifaces, &ifindex))
		return true;
	if (cfg->sel_kinds & SEL_ADDRS) {
		__builtin_memcpy(ak.addr, p->saddr, 16);
		if (bpf_map_lookup_elem(&sel_addrs, &ak))
			return true;
		__builtin_memcpy(ak.addr, p->daddr, 16);
		if (bpf_map_lookup_elem(&sel_addrs, &ak))
			return true;
	}
	if (p->has_ports && (cfg->sel_kinds & SEL_PORTS))
		return port_selected(p->sport, p->proto) ||
		       port_selected(p->dport, p->proto);
	return false;
}

static __always_inline int addr_cmp(const __u8 *a, const __u8 *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	if (x[0] != y[0])
		return x[0] < y[0] ? -1 : 1;
	if (x[1] != y[1])
		return x[1] < y[1] ? -1 : 1;
	return 0;
}

/* make_key fills a normalised key and returns the sender's side. */
static __always_inline int make_key(struct flow_key *k, const struct parsed *p,
				    __u32 ifindex)
{
	int c = addr_cmp(p->saddr, p->daddr);
	int side = c > 0 || (c == 0 && p->sport > p->dport);

	if (!side) {
		__builtin_memcpy(k->addr_a, p->saddr, 16);
		__builtin_memcpy(k->addr_b, p->daddr, 16);
		k->port_a = p->sport;
		k->port_b = p->dport;
	} else {
		__builtin_memcpy(k->addr_a, p->daddr, 16);
		__builtin_memcpy(k->addr_b, p->saddr, 16);
		k->port_a = p->dport;
		k->port_b = p->sport;
	}
	k->ifindex = ifindex;
	k->proto = p->proto;
	k->family = p->family;
	if ((p->proto == IPPROTO_ICMP || p->proto == IPPROTO_ICMPV6) &&
	    !p->icmp_echo && p->frag == FRAG_NONE) {
		k->icmp_type = p->icmp_type;
		k->icmp_code = p->icmp_code;
	}
	return side;
}

/* initiator decides, from the first packet of a record, which side opened
 * the connection and whether that is certain (EV_F_INITIATOR_KNOWN).
 * Returns the initiator's side; *flags gets the EV_F_* bits. */
static __always_inline __u8 initiator(const struct parsed *p, int side,
				      __u8 hook, __u8 *flags)
{
	bool sender_initiates = true, known = false;

	if (p->proto == IPPROTO_TCP && (p->tcp_flags & TCP_SYN)) {
		/* SYN: the sender opens; SYN-ACK: the receiver did. */
		sender_initiates = !(p->tcp_flags & TCP_ACK);
		known = true;
	} else if (p->icmp_echo) {
		/* Echo request (8, 128) opens; a reply answers. */
		sender_initiates = p->icmp_type == 8 || p->icmp_type == 128;
		known = true;
	} else if (p->has_ports && p->sport < SERVICE_PORT_MAX &&
		   p->dport >= SERVICE_PORT_MAX) {
		/* Mid-stream (agent started late) or a UDP answer seen
		 * first: a service port talking to an ephemeral one. */
		sender_initiates = false;
	}
	__u8 init_side = sender_initiates ? side : !side;
	__u8 init_hook = sender_initiates ? hook : !hook;

	*flags = (known ? EV_F_INITIATOR_KNOWN : 0) |
		 (init_hook == HOOK_EGRESS ? EV_F_INIT_EGRESS : 0) |
		 (p->frag == FRAG_LATER ? EV_F_FRAGMENTS : 0);
	return init_side;
}

/*
 * claim moves a reported total (*rep) up to the current total (*total) and
 * returns the counts it moved over: those no event has carried yet. Every
 * emitter claims with a compare-and-swap (the packet path's update, the
 * close, the creator's new record, the flush program for silent records),
 * so each count lands in exactly one event however they race: a loser
 * takes the winner's snapshot and tries once more, and at worst carries 0
 * and leaves the counts to the next event. *now gets the total the event
 * reports. Totals only grow and rep is only ever set to a total read
 * before it, so t >= r; a record replaced in between (tuple reuse) is the
 * exception, which claims nothing.
 */
static __always_inline __u64 claim(__u64 *rep, const __u64 *total, __u64 *now)
{
	__u64 r = *(volatile __u64 *)rep, t = 0;
	int i;

#pragma unroll
	for (i = 0; i < 2; i++) {
		t = *(volatile const __u64 *)total;
		if (t < r)
			break;
		__u64 old = __sync_val_compare_and_swap(rep, r, t);
		if (old == r) {
			*now = t;
			return t - r;
		}
		r = old;
	}
	*now = t;
	return 0;
}

/* emit_flow sends one record oriented initiator -> responder and claims
 * the counts since the previous one (claim), so the next event's delta
 * starts here. The ring buffer slot is reserved first: an event that
 * cannot be queued claims nothing, and its counts go with the next. */
static __always_inline int emit_flow(const struct flow_key *k,
				     struct flow_value *v, __u8 kind,
				     __u8 end_flags)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(CNT_RINGBUF_FAIL);
		return -1;
	}
	__u64 pk[2], by[2], dpk[2], dby[2];
	dpk[0] = claim(&v->rep_packets[0], &v->packets[0], &pk[0]);
	dpk[1] = claim(&v->rep_packets[1], &v->packets[1], &pk[1]);
	dby[0] = claim(&v->rep_bytes[0], &v->bytes[0], &by[0]);
	dby[1] = claim(&v->rep_bytes[1], &v->bytes[1], &by[1]);
	__u32 tf = v->tcp_flags;
	__u8 ini = v->initiator & 1;

	e->kind = kind;
	e->flags = v->flags | end_flags;
	e->proto = k->proto;
	e->family = k->family;
	e->icmp_type = v->icmp_type;
	e->icmp_code = v->icmp_code;
	e->ifindex = k->ifindex;
	e->drop_reason = 0;
	e->netns = 0;
	e->first_ns = v->first_seen;
	e->last_ns = v->last_seen;
	if (ini == 0) {
		__builtin_memcpy(e->src, k->addr_a, 16);
		__builtin_memcpy(e->dst, k->addr_b, 16);
		e->sport = k->port_a;
		e->dport = k->port_b;
		e->tcp_flags = tf & 0xff;
		e->tcp_flags_reply = (tf >> 8) & 0xff;
		e->packets = pk[0];
		e->bytes = by[0];
		e->packets_reply = pk[1];
		e->bytes_reply = by[1];
		e->delta_packets = dpk[0];
		e->delta_bytes = dby[0];
		e->delta_packets_reply = dpk[1];
		e->delta_bytes_reply = dby[1];
	} else {
		__builtin_memcpy(e->src, k->addr_b, 16);
		__builtin_memcpy(e->dst, k->addr_a, 16);
		e->sport = k->port_b;
		e->dport = k->port_a;
		e->tcp_flags = (tf >> 8) & 0xff;
		e->tcp_flags_reply = tf & 0xff;
		e->packets = pk[1];
		e->bytes = by[1];
		e->packets_reply = pk[0];
		e->bytes_reply = by[0];
		e->delta_packets = dpk[1];
		e->delta_bytes = dby[1];
		e->delta_packets_reply = dpk[0];
		e->delta_bytes_reply = dby[0];
	}
	bpf_ringbuf_submit(e, 0);
	count(CNT_EVENTS);
	return 0;
}

/* budget_of returns ifindex's budget, made on its first connection;
 * NULL only when the budget table is full. */
static __always_inline struct iface_budget *budget_of(__u32 ifindex)
{
	struct iface_budget *b = bpf_map_lookup_elem(&iface_budgets, &ifindex);
	if (b)
		return b;
	struct iface_budget nb = {};
	/* -EEXIST: another CPU made it first, which is as good */
	bpf_map_update_elem(&iface_budgets, &ifindex, &nb, BPF_NOEXIST);
	return bpf_map_lookup_elem(&iface_budgets, &ifindex);
}

/*
 * track inserts a new connection record, within its interface's budget.
 * Returns 0 when inserted, 1 when another CPU inserted the key first,
 * and -1 when the packet is not tracked (counted by reason). Not inlined:
 * only new connections come here, and its stack would otherwise add to
 * handle_tc's, which with l7_sample's is at the verifier's 512 bytes.
 */
static __noinline int track(const struct flow_key *k,
				 const struct flow_value *nv,
				 const struct flow_config *cfg)
{
	struct iface_budget *b = NULL;
	__u32 limit = cfg->iface_max_conns;

	if (limit) {
		/* Take a place first, then insert: places taken never exceed
		 * the budget however many CPUs race (a check, then an add,
		 * would let each CPU pass the check). An interface without
		 * an entry (the budget table full) tracks nothing new. */
		b = budget_of(k->ifindex);
		if (!b) {
			count(CNT_UNTRACKED_BUDGET);
			return -1;
		}
		if (__sync_fetch_and_add(&b->conns, 1) >= (__s64)limit) {
			__sync_fetch_and_add(&b->conns, -1);
			__sync_fetch_and_add(&b->untracked, 1);
			count(CNT_UNTRACKED_BUDGET);
			return -1;
		}
	}
	long rc = bpf_map_update_elem(&flows, k, nv, BPF_NOEXIST);
	if (rc == 0)
		return 0;
	if (b)
		__sync_fetch_and_add(&b->conns, -1);
	if (rc == -E2BIG) {
		if (b)
			__sync_fetch_and_add(&b->untracked_full, 1);
		count(CNT_UNTRACKED_FULL);
		return -1;
	}
	return 1; /* -EEXIST, or a bucket lock busy: the caller looks */
}

/* usable says whether a packet may add to record v, which user space may
 * be ending (enum ending): a marked record is taken back, a claimed one
 * is user space's alone, and the packet is counted instead. */
static __always_inline bool usable(struct flow_value *v)
{
	__u32 e = *(volatile __u32 *)&v->ending;

	if (e == ENDING_NONE)
		return true;
	if (e == ENDING_MARKED &&
	    __sync_val_compare_and_swap(&v->ending, ENDING_MARKED, ENDING_NONE) == ENDING_MARKED)
		return true;
	count(CNT_UNTRACKED_ENDING);
	return false;
}

/* account adds the packet to its connection's record and returns the
 * record, or NULL when the packet went into none (counted by reason). now
 * is bpf_ktime_get_coarse_ns. */
static __always_inline struct flow_value *account(__u32 ifindex, __u8 hook,
						  struct parsed *p, __u64 pkts,
						  __u64 bytes,
						  const struct flow_config *cfg,
						  __u64 now)
{
	struct flow_key k = {};
	int side = make_key(&k, p, ifindex);
	struct flow_value *v = bpf_map_lookup_elem(&flows, &k);
	bool syn_only = p->proto == IPPROTO_TCP &&
			(p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN;

	if (v && !usable(v))
		return NULL;

	/* A SYN on a closed record is a new connection reusing the tuple
	 * (TIME_WAIT recycling): start a fresh record over the old one. */
	bool reuse = v && v->closed && syn_only;
	if (!v || reuse) {
		struct flow_value nv = {};
		nv.first_seen = now;
		nv.last_seen = now;
		nv.last_report = now;
		nv.initiator = initiator(p, side, hook, &nv.flags);
		nv.icmp_type = p->icmp_type;
		nv.icmp_code = p->icmp_code;
		nv.packets[side & 1] = pkts;
		nv.bytes[side & 1] = bytes;
		nv.tcp_flags = (__u32)p->tcp_flags << (8 * (side & 1));
		int rc;
		/* BPF_EXIST: replacing takes no place of the table or the
		 * budget; if user space deleted the closed record meanwhile,
		 * this is a new record like any other. */
		if (reuse && bpf_map_update_elem(&flows, &k, &nv, BPF_EXIST) == 0) {
			count(CNT_FLOW_REPLACED);
			rc = 0;
		} else {
			rc = track(&k, &nv, cfg);
		}
		if (rc < 0)
			return NULL;
		if (rc == 0) {
			count(CNT_FLOW_CREATED);
			count(CNT_PACKETS_ACCOUNTED);
			v = bpf_map_lookup_elem(&flows, &k);
			/* NULL only if user space deleted it in between: its
			 * final record carried this packet. */
			if (!v)
				return NULL;
			emit_flow(&k, v, EVENT_NEW, 0);
			goto close_check;
		}
		/* Another CPU created it first: add to theirs. */
		v = bpf_map_lookup_elem(&flows, &k);
		if (!v) {
			count(CNT_FLOW_INSERT_FAIL);
			return NULL;
		}
		if (!usable(v))
			return NULL;
	}

	count(CNT_PACKETS_ACCOUNTED);
	if (side) {
		__sync_fetch_and_add(&v->packets[1], pkts);
		__sync_fetch_and_add(&v->bytes[1], bytes);
	} else {
		__sync_fetch_and_add(&v->packets[0], pkts);
		__sync_fetch_and_add(&v->bytes[0], bytes);
	}
	/* Writes only when something changes: most packets of a connection
	 * repeat its flags, and most arrive within the clock's tick. */
	__u32 tf = (__u32)p->tcp_flags << (8 * (side & 1));
	if (tf && (v->tcp_flags & tf) != tf)
		__sync_fetch_and_or(&v->tcp_flags, tf);
	if (p->frag == FRAG_LATER && !(v->flags & EV_F_FRAGMENTS))
		v->flags |= EV_F_FRAGMENTS;
	if (v->last_seen != now)
		v->last_seen = now;

close_check:
	if (v->closed)
		return v; /* trailing ACKs after the close record: counted only */
	if (p->proto == IPPROTO_TCP) {
		__u32 tf = v->tcp_flags;
		__u8 end = 0;
		if (p->tcp_flags & TCP_RST)
			end = EV_F_END_RST;
		else if ((tf & TCP_FIN) && (tf & (TCP_FIN << 8)))
			end = EV_F_END_FIN;
		if (end) {
			/* One close event per record, whichever CPU wins. */
			if (__sync_val_compare_and_swap(&v->closed, 0, 1) == 0) {
				if (emit_flow(&k, v, EVENT_CLOSE, end) == 0)
					count(CNT_FLOW_CLOSED);
				else
					/* Ring buffer full: let the next packet
					 * (the last ACK) try again. */
					v->closed = 0;
			}
			return v;
		}
	}
	__u64 lr = v->last_report;
	if (now - lr >= cfg->report_interval_ns &&
	    __sync_val_compare_and_swap(&v->last_report, lr, now) == lr) {
		if (emit_flow(&k, v, EVENT_UPDATE, 0) < 0)
			v->last_report = lr; /* retry on the next packet */
	}
	return v;
}

/*
 * L7 payload sampling. Runs after accounting, for packets the selection
 * captured; every step before the gate is a test of what the parser
 * already knows, so with the gate empty (CFG_F_L7 clear) this costs no
 * map lookup. The gate's answer is kept in the connection's record, so
 * a connection with a record looks in the gate map once per change of
 * the gate, and never for the per-connection limit.
 *
 * l7_sample is a global (non-inlined) function: the verifier checks it
 * once, on its own, rather than once for every path through the parser
 * that reaches it (inlined, that was over a million instructions).
 */

#define NSEC_PER_SEC 1000000000ULL

/* Ring buffer flags of uapi/linux/bpf.h (not in the trimmed vmlinux.h). */
#define BPF_RB_NO_WAKEUP (1ULL << 0)
#define BPF_RB_FORCE_WAKEUP (1ULL << 1)
#define BPF_RB_AVAIL_DATA 0

enum l7_emit_result {
	L7_SENT = 0,
	L7_RINGBUF_FULL,
	L7_UNREADABLE,
};

/* l7_gate_find returns the gate entry that applies to the packet, or
 * NULL. An interface entry without L7_GATE_PORTS decides alone. */
static __always_inline struct l7_gate *l7_gate_find(__u32 ifindex,
						    const struct parsed *p)
{
	struct l7_gate_key gk = { .ifindex = ifindex };
	struct l7_gate *g = bpf_map_lookup_elem(&l7_gate, &gk);
	struct l7_gate *pg;

	if (!g || !(g->flags & L7_GATE_PORTS))
		return g;
	/* The destination port first: on a request it is the service's. */
	gk.port = p->dport;
	pg = bpf_map_lookup_elem(&l7_gate, &gk);
	if (pg)
		return pg;
	gk.port = p->sport;
	pg = bpf_map_lookup_elem(&l7_gate, &gk);
	if (pg)
		return pg;
	return g; /* other ports: the interface's budget, often 0 (none) */
}

/* l7_gate_get copies the gate entry that applies to the packet to *out
 * (budget 0: none). The connection's record, v, keeps a copy tagged with
 * the gate's generation (config.l7_gate_gen, which user space changes
 * after each change of the map), so that only the first packet after a
 * change looks in the map. One 8-byte word: a CPU never sees one
 * generation's tag with another's entry. */
static __always_inline void l7_gate_get(__u32 ifindex, const struct parsed *p,
					struct flow_value *v, __u32 gen,
					struct l7_gate *out)
{
	__u64 cached;
	__u32 bits = 0;

	if (v) {
		cached = *(volatile __u64 *)&v->l7_gate;
		if ((__u32)(cached >> 32) == gen) {
			bits = (__u32)cached;
			__builtin_memcpy(out, &bits, sizeof(*out));
			return;
		}
	}
	struct l7_gate *g = l7_gate_find(ifindex, p);
	if (g)
		__builtin_memcpy(&bits, g, sizeof(bits));
	__builtin_memcpy(out, &bits, sizeof(*out));
	if (v)
		*(volatile __u64 *)&v->l7_gate = (__u64)gen << 32 | bits;
}

/* l7_emit_class reserves a record of header + size bytes (a constant:
 * ring buffer reservations must be) and copies cap <= size payload bytes
 * from off into it. */
static __always_inline int l7_emit_class(struct __sk_buff *skb,
					 const struct l7_event *h, __u32 off,
					 __u32 cap, const __u32 size, __u64 wake)
{
	struct l7_event *e = bpf_ringbuf_reserve(&l7_events, sizeof(*e) + size, 0);

	if (!e)
		return L7_RINGBUF_FULL;
	__builtin_memcpy(e, h, sizeof(*e));
	if (size) {
		/* bounds: the caller picked the class (a power of two) so
		 * that 0 < cap <= size; said again for the verifier, which
		 * must see the copy fit the record and have a non-zero
		 * length: masked on the register it checks, after a barrier
		 * (clang clamped and tested a copy the verifier did not
		 * connect to the argument, and would fold the mask) */
		if (cap == 0) {
			bpf_ringbuf_discard(e, 0);
			return L7_UNREADABLE;
		}
		__u32 n = cap;
		barrier_var(n);
		n = ((n - 1) & (size - 1)) + 1;
		if (bpf_skb_load_bytes(skb, off, (void *)(e + 1), n) < 0) {
			bpf_ringbuf_discard(e, 0);
			return L7_UNREADABLE;
		}
	}
	bpf_ringbuf_submit(e, wake);
	return L7_SENT;
}

/* l7_emit picks the smallest power-of-two class that holds cap bytes. */
static __always_inline int l7_emit(struct __sk_buff *skb,
				   const struct l7_event *h, __u32 off,
				   __u32 cap, __u64 wake)
{
	if (cap == 0)
		return l7_emit_class(skb, h, off, 0, 0, wake);
	if (cap <= 64)
		return l7_emit_class(skb, h, off, cap, 64, wake);
	if (cap <= 128)
		return l7_emit_class(skb, h, off, cap, 128, wake);
	if (cap <= 256)
		return l7_emit_class(skb, h, off, cap, 256, wake);
	if (cap <= 512)
		return l7_emit_class(skb, h, off, cap, 512, wake);
	return l7_emit_class(skb, h, off, cap, L7_MAX_BUDGET, wake);
}

/* l7_refill adds elapsed nanoseconds' worth of rate tokens to a bucket
 * holding at most one second's worth (the burst). Tokens are scaled by
 * 1e9: elapsed (<= 1e9) * rate (< 2^32) cannot overflow 64 bits. */
static __always_inline void l7_refill(__u64 *tokens, __u64 rate, __u64 elapsed)
{
	__u64 t = *tokens + elapsed * rate;

	if (t > rate * NSEC_PER_SEC)
		t = rate * NSEC_PER_SEC;
	*tokens = t;
}

/* l7_wanted says whether a packet may carry something for user space:
 * a TCP segment with payload, SYN, FIN or RST (so user space learns
 * initial sequence numbers and ends), a UDP datagram. Pure ACKs, the
 * bulk of TCP, carry nothing for a parser: they leave here, before any
 * map lookup and before the call. */
static __always_inline bool l7_wanted(const struct parsed *p)
{
	if (!p->l4_off || p->hdr_len > p->l3_len)
		return false;
	if (p->proto == IPPROTO_UDP)
		return true;
	return p->proto == IPPROTO_TCP &&
	       (p->l3_len > p->hdr_len || (p->tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST)));
}

/* l7_conn_of returns the per-connection limit's state: the record's (v,
 * which the accounting looked up), or for a packet without a record
 * (untracked: a full table, a budget, a record being ended) an entry of
 * l7_conns, made on first use; NULL if that fails too, which leaves the
 * packet unlimited per connection. *side gets the sender's side. */
static __always_inline struct l7_conn *l7_conn_of(struct __sk_buff *skb,
						  const struct parsed *p,
						  struct flow_value *v, int *side)
{
	__u32 zero = 0;
	struct l7_scratch *sc;
	struct l7_conn *c;

	if (v) {
		/* the side make_key gives, without the key */
		int cmp = addr_cmp(p->saddr, p->daddr);
		*side = cmp > 0 || (cmp == 0 && p->sport > p->dport);
		return &v->l7;
	}
	sc = bpf_map_lookup_elem(&l7_scratch, &zero);
	if (!sc) /* cannot happen for an array; for the verifier */
		return NULL;
	struct flow_key *k = &sc->k;
	__builtin_memset(k, 0, sizeof(*k));
	*side = make_key(k, p, skb->ifindex) & 1;
	c = bpf_map_lookup_elem(&l7_conns, k);
	if (c)
		return c;
	__builtin_memset(&sc->nc, 0, sizeof(sc->nc));
	/* -EEXIST (another CPU) is fine */
	bpf_map_update_elem(&l7_conns, k, &sc->nc, BPF_NOEXIST);
	return bpf_map_lookup_elem(&l7_conns, k);
}

/* l7_sample sends the first bytes of a gated packet's payload (one that
 * l7_wanted) to the l7 ring buffer. v is the packet's connection record
 * or NULL, now bpf_ktime_get_coarse_ns; at holds the offset of the IP
 * header in bits 0-15 and the hook above (a global function takes at
 * most five arguments). Returns 0 (a global function must return a
 * scalar; nobody looks).
 *
 * Ordered for the common case of a busy connection, whose packets are
 * mostly over the per-connection limit: the gate, then the limits, which
 * need no helper call but the gate's lookup when the connection has a
 * record; reading the TCP header, the precise clock and building the
 * record only for a packet that is sent. */
__noinline int l7_sample(struct __sk_buff *skb, const struct parsed *p,
			 struct flow_value *v, __u64 now, __u32 at)
{
	__u32 off = at & 0xffff, hook = at >> 16;
	__u32 zero = 0;

	/* Checked once by the caller; a global function's pointer
	 * arguments may be NULL as far as the verifier knows. */
	if (!p || !p->l4_off)
		return 0;
	/* bounds: parse_ip made hdr_len <= l3_len (headers inside the
	 * datagram); repeated so that a wrap can never happen here */
	if (p->hdr_len > p->l3_len)
		return 0;
	if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)
		return 0;
	struct flow_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg) /* cannot happen for an ARRAY; for the verifier */
		return 0;
	__u32 plen = p->l3_len - p->hdr_len; /* payload bytes in this skb */

	struct l7_gate gate;
	l7_gate_get(skb->ifindex, p, v, cfg->l7_gate_gen, &gate);
	if (!gate.budget)
		return 0;
	count(CNT_L7_GATED);

	__u32 payload_len = plen;
	if (p->proto == IPPROTO_UDP) {
		__u8 ul[2];
		/* bounds: parse_l4 read this UDP header (8 bytes), its length
		 * at 4..5; the helper checks again */
		if (bpf_skb_load_bytes(skb, p->l4_off + 4, ul, 2) < 0) {
			count(CNT_L7_DROP_UNREADABLE);
			return 0;
		}
		/* A first fragment holds the start of a longer datagram: the
		 * UDP length tells how long. A UDP length shorter than the
		 * packet means the rest is not payload. 0 (jumbograms) and
		 * lengths under the header say nothing. */
		__u32 ulen = ((__u32)ul[0] << 8) | ul[1];
		if (ulen >= 8) {
			payload_len = ulen - 8;
			if (plen > ulen - 8)
				plen = ulen - 8;
		}
	}
	__u32 cap = gate.budget;
	if (cap > L7_MAX_BUDGET)
		cap = L7_MAX_BUDGET;
	if (cap > plen)
		cap = plen;

	struct l7_conn *c = NULL;
	int side = 0;
	if (cfg->l7_conn_events || cfg->l7_conn_bytes) {
		c = l7_conn_of(skb, p, v, &side);
		if (c) {
			/* Racy across CPUs by design: a window reset twice or
			 * an event too many is the price of no lock. Signed: a
			 * CPU may read the clock a tick before another wrote
			 * the window. */
			if ((__s64)(now - c->window_ns) >= (__s64)NSEC_PER_SEC) {
				c->window_ns = now;
				c->events[0] = 0;
				c->events[1] = 0;
				c->bytes[0] = 0;
				c->bytes[1] = 0;
			}
			if ((cfg->l7_conn_events && c->events[side & 1] >= cfg->l7_conn_events) ||
			    (cfg->l7_conn_bytes && c->bytes[side & 1] + cap > cfg->l7_conn_bytes)) {
				count(CNT_L7_DROP_CONN_RATE);
				return 0;
			}
		}
	}

	struct l7_bucket *b = NULL;
	__u64 er = cfg->l7_cpu_events, br = cfg->l7_cpu_bytes;
	if (er || br)
		b = bpf_map_lookup_elem(&l7_buckets, &zero);
	if (b) {
		/* Per CPU: no other program touches this bucket meanwhile.
		 * last_ns only moves forward (now may be a tick behind it
		 * when another CPU's clock read went into v). */
		__u64 el = 0;
		if (now > b->last_ns) {
			el = now - b->last_ns;
			if (el > NSEC_PER_SEC)
				el = NSEC_PER_SEC;
			b->last_ns = now;
		}
		if (er)
			l7_refill(&b->events, er, el);
		if (br)
			l7_refill(&b->bytes, br, el);
		if ((er && b->events < NSEC_PER_SEC) ||
		    (br && b->bytes < (__u64)cap * NSEC_PER_SEC)) {
			count(CNT_L7_DROP_CPU_RATE);
			return 0;
		}
	}

	__u32 seq = 0, ack = 0;
	if (p->proto == IPPROTO_TCP) {
		__u8 l4[8];
		/* bounds: parse_l4 read this TCP header (20 bytes or more):
		 * seq and ack at 4..11; the helper checks again */
		if (bpf_skb_load_bytes(skb, p->l4_off + 4, l4, 8) < 0) {
			count(CNT_L7_DROP_UNREADABLE);
			return 0;
		}
		seq = ((__u32)l4[0] << 24) | ((__u32)l4[1] << 16) |
		      ((__u32)l4[2] << 8) | l4[3];
		ack = ((__u32)l4[4] << 24) | ((__u32)l4[5] << 16) |
		      ((__u32)l4[6] << 8) | l4[7];
	}

	struct l7_scratch *sc = bpf_map_lookup_elem(&l7_scratch, &zero);
	if (!sc) /* cannot happen for an array; for the verifier */
		return 0;
	/* h->_pad stays zero: nothing writes it. */
	struct l7_event *h = &sc->h;
	h->ts_ns = bpf_ktime_get_boot_ns(); /* user space times exchanges with it */
	h->ifindex = skb->ifindex;
	h->seq = seq;
	h->ack = ack;
	h->payload_len = payload_len;
	h->tcp_flags = p->proto == IPPROTO_TCP ? p->tcp_flags : 0;
	__builtin_memcpy(h->saddr, p->saddr, 16);
	__builtin_memcpy(h->daddr, p->daddr, 16);
	h->sport = p->sport;
	h->dport = p->dport;
	h->cap_len = cap;
	h->proto = p->proto;
	h->family = p->family;
	h->hook = hook;
	h->protos = gate.protos;
	/* Waking the reader costs more than the rest of a sample: batch.
	 * Below the mark the reader finds the samples on its own timer
	 * (RunL7's flush interval); above it, every sample wakes it. */
	__u64 wake = 0; /* the kernel's default: wake an idle reader */
	if (cfg->l7_wakeup_bytes)
		wake = bpf_ringbuf_query(&l7_events, BPF_RB_AVAIL_DATA) >= cfg->l7_wakeup_bytes ?
			       BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	int rc = l7_emit(skb, h, off + p->hdr_len, cap, wake);
	if (rc == L7_RINGBUF_FULL) {
		count(CNT_L7_DROP_RINGBUF);
		return 0;
	}
	if (rc == L7_UNREADABLE) {
		count(CNT_L7_DROP_UNREADABLE);
		return 0;
	}
	/* Charged only for what was sent. */
	if (c) {
		__sync_fetch_and_add(&c->events[side & 1], 1);
		__sync_fetch_and_add(&c->bytes[side & 1], cap);
	}
	if (b) {
		if (er)
			b->events -= NSEC_PER_SEC;
		if (br)
			b->bytes -= (__u64)cap * NSEC_PER_SEC;
	}
	count(CNT_L7_EVENTS);
	count_add(CNT_L7_BYTES, cap);
	return 0;
}

/* Loads of a packet field in place, in network byte order. */
#define PKT_U16(ptr) (*(const __u16 *)(ptr))
#define PKT_U32(ptr) (*(const __u32 *)(ptr))

/*
 * fast_l4 checks the TCP or UDP header at l4, behind an IP header of iphl
 * bytes in a datagram of tot bytes, and on success fills in what both
 * families share. Anything else returns false with *p untouched.
 */
static __always_inline bool fast_l4(__u8 *l4, void *end, const __u8 l4p,
				    const __u32 iphl, const __u32 tot,
				    const __u32 l3, const __u8 family,
				    struct parsed *p)
{
	__u32 hl = 8;
	__u8 flags = 0;
	if (l4p == IPPROTO_TCP) {
		if ((void *)(l4 + 20) > end)
			return false;
		hl = (l4[12] >> 4) * 4;
		flags = l4[13];
		if (hl < 20)
			return false;
	} else if (l4p != IPPROTO_UDP) {
		return false; /* ICMP, IPv6 extension headers, ... */
	}
	/* the headers must fit in the datagram */
	if (iphl + hl > tot)
		return false;
	p->family = family;
	p->proto = l4p;
	p->l3_len = tot;
	p->hdr_len = iphl + hl;
	p->l4_off = l3 + iphl;
	p->sport = bpf_ntohs(PKT_U16(l4));
	p->dport = bpf_ntohs(PKT_U16(l4 + 2));
	p->tcp_flags = flags;
	p->has_ports = 1;
	return true;
}

static __always_inline bool fast_parse4(struct __sk_buff *skb, __u8 *ip,
					void *end, const __u32 l3,
					struct parsed *p)
{
	__u8 *l4 = ip + 20;

	if ((void *)(l4 + 8) > end) /* IPv4 and a UDP header */
		return false;
	/* version 4, IHL 5: options take the general path */
	if (ip[0] != 0x45)
		return false;
	/* MF or a fragment offset: the general path */
	if (PKT_U16(ip + 6) & bpf_htons(0x3fff))
		return false;
	__u32 tot = bpf_ntohs(PKT_U16(ip + 2));
	__u8 l4p = ip[9];
	/* the datagram must lie in the packet (and a BIG TCP tot_len of 0
	 * fails the header check below) */
	if (tot > skb->len - l3)
		return false;
	if (!fast_l4(l4, end, l4p, 20, tot, l3, 4, p))
		return false;
	__u32 *sa = (__u32 *)p->saddr, *da = (__u32 *)p->daddr;
	sa[0] = 0;
	sa[1] = 0;
	sa[2] = bpf_htonl(0xffff);
	sa[3] = PKT_U32(ip + 12);
	da[0] = 0;
	da[1] = 0;
	da[2] = bpf_htonl(0xffff);
	da[3] = PKT_U32(ip + 16);
	return true;
}

static __always_inline bool fast_parse6(struct __sk_buff *skb, __u8 *ip,
					void *end, const __u32 l3,
					struct parsed *p)
{
	__u8 *l4 = ip + 40;

	if ((void *)(l4 + 8) > end) /* IPv6 and a UDP header */
		return false;
	if ((ip[0] >> 4) != 6)
		return false;
	__u32 tot = 40 + bpf_ntohs(PKT_U16(ip + 4));
	__u8 l4p = ip[6];
	/* a payload length of 0 (jumbogram, BIG TCP) takes the general path */
	if (tot == 40 || tot > skb->len - l3)
		return false;
	if (!fast_l4(l4, end, l4p, 40, tot, l3, 6, p))
		return false;
	__u32 *sa = (__u32 *)p->saddr, *da = (__u32 *)p->daddr;
	sa[0] = PKT_U32(ip + 8);
	sa[1] = PKT_U32(ip + 12);
	sa[2] = PKT_U32(ip + 16);
	sa[3] = PKT_U32(ip + 20);
	da[0] = PKT_U32(ip + 24);
	da[1] = PKT_U32(ip + 28);
	da[2] = PKT_U32(ip + 32);
	da[3] = PKT_U32(ip + 36);
	return true;
}

/*
 * fast_parse reads the common packet in place (direct packet access: no
 * helper call, no copy): untagged Ethernet (or an L3 device's IP), IPv4
 * without options or IPv6 without extension headers, not a fragment,
 * TCP or UDP, all headers in the skb's linear part. Every offset is a
 * constant, so each bound is one comparison with data_end. Anything
 * else, including every packet the general parser would call truncated
 * or malformed, returns false with *p untouched, and the general parser
 * (parse_ip, through bpf_skb_load_bytes, which also reads non-linear
 * skbs without pulling them) takes it. On success *p holds what parse_ip
 * fills in for the same packet; the IP header starts at *off.
 */
static __always_inline bool fast_parse(struct __sk_buff *skb, const bool l3dev,
				       struct parsed *p, __u32 *off)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	const __u32 l3 = l3dev ? 0 : ETH_HLEN;
	__u16 proto;

	if (l3dev) {
		proto = bpf_ntohs(skb->protocol);
	} else {
		if (data + ETH_HLEN > end)
			return false;
		proto = bpf_ntohs(PKT_U16((__u8 *)data + 12));
	}
	*off = l3;
	if (proto == ETH_P_IP)
		return fast_parse4(skb, (__u8 *)data + l3, end, l3, p);
	if (proto == ETH_P_IPV6)
		return fast_parse6(skb, (__u8 *)data + l3, end, l3, p);
	return false;
}

static __always_inline int handle_tc(struct __sk_buff *skb, const bool l3dev,
				     const __u8 hook)
{
	struct reader r = {
		.skb = skb,
		.len = skb->len,
		.gso = skb->gso_segs > 1,
	};
	struct parsed p = {};
	__u32 off = 0;
	__u16 proto;
	__u32 key = 0;
	int rc;

	/* Each packet ends in exactly one outcome counter (accounted,
	 * non-IP, a parse error, filtered out); user space adds them up
	 * into "seen", so the common path updates one counter, not two. */
	if (fast_parse(skb, l3dev, &p, &off))
		goto parsed;
	off = 0;
	if (!l3dev) {
		__u8 eth[ETH_HLEN];
		/* bounds: a frame without a whole Ethernet header (runt) */
		if (load(&r, 0, eth, sizeof(eth), true) < 0) {
			count(CNT_TRUNCATED);
			return TC_ACT_UNSPEC;
		}
		proto = (eth[12] << 8) | eth[13];
		off = ETH_HLEN;
		int i;
		for (i = 0; i < MAX_VLAN; i++) {
			if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
				break;
			__u8 tag[4];
			/* bounds: a VLAN tag announced but cut off */
			if (load(&r, off, tag, sizeof(tag), true) < 0) {
				count(CNT_TRUNCATED);
				return TC_ACT_UNSPEC;
			}
			proto = (tag[2] << 8) | tag[3];
			off += 4;
		}
		if (proto == ETH_P_8021Q || proto == ETH_P_8021AD) {
			count(CNT_VLAN_DEPTH);
			return TC_ACT_UNSPEC;
		}
	} else {
		/* No MAC header (tun, wireguard, ipip): data starts at L3
		 * and skb->protocol says which; else trust the version. */
		proto = bpf_ntohs(skb->protocol);
		if (proto != ETH_P_IP && proto != ETH_P_IPV6) {
			__u8 b;
			/* bounds: an empty packet has no version nibble */
			if (load(&r, 0, &b, 1, true) < 0) {
				count(CNT_TRUNCATED);
				return TC_ACT_UNSPEC;
			}
			proto = (b >> 4) == 4 ? ETH_P_IP : (b >> 4) == 6 ? ETH_P_IPV6 : 0;
		}
	}
	if (proto != ETH_P_IP && proto != ETH_P_IPV6) {
		count(CNT_NON_IP);
		return TC_ACT_UNSPEC;
	}

	rc = parse_ip(&r, off, proto, &p, true);
	if (rc != P_OK) {
		count_parse_error(rc);
		return TC_ACT_UNSPEC;
	}
	handle_frags(&p);

parsed:;
	struct flow_config *cfg = bpf_map_lookup_elem(&config, &key);
	if (!cfg) /* cannot happen for an ARRAY; for the verifier */
		return TC_ACT_UNSPEC;
	if (cfg->capture_mode == CAPTURE_SELECTED && !selected(cfg, skb->ifindex, &p)) {
		count(CNT_FILTERED_OUT);
		return TC_ACT_UNSPEC;
	}

	/* A GSO skb is several wire packets: count each, with its headers. */
	__u32 segs = skb->gso_segs;
	if (segs == 0)
		segs = 1;
	__u64 bytes = p.l3_len + (__u64)(segs - 1) * p.hdr_len;
	/* CLOCK_MONOTONIC at tick resolution: the precise clocks cost a
	 * clocksource read per packet (about 25 ns here, more in VMs), and
	 * flow records and the L7 limits need no finer time than a tick. */
	__u64 now = bpf_ktime_get_coarse_ns();
	struct flow_value *v = account(skb->ifindex, hook, &p, segs, bytes, cfg, now);
	if ((cfg->flags & CFG_F_L7) && l7_wanted(&p))
		l7_sample(skb, &p, v, now, off | (__u32)hook << 16);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int flowscope_ingress(struct __sk_buff *skb)
{
	return handle_tc(skb, false, HOOK_INGRESS);
}

SEC("tc")
int flowscope_egress(struct __sk_buff *skb)
{
	return handle_tc(skb, false, HOOK_EGRESS);
}

SEC("tc")
int flowscope_l3_ingress(struct __sk_buff *skb)
{
	return handle_tc(skb, true, HOOK_INGRESS);
}

SEC("tc")
int flowscope_l3_egress(struct __sk_buff *skb)
{
	return handle_tc(skb, true, HOOK_EGRESS);
}

static __always_inline int emit_drop(const struct drop_key *k, struct drop_value *v)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(CNT_RINGBUF_FAIL);
		return -1;
	}
	__u64 pk, by;

	__builtin_memset(e, 0, sizeof(*e));
	/* Claimed as emit_flow does: the flush program races this. */
	e->delta_packets = claim(&v->rep_packets, &v->packets, &pk);
	e->delta_bytes = claim(&v->rep_bytes, &v->bytes, &by);
	e->kind = EVENT_DROP;
	e->flags = EV_F_INITIATOR_KNOWN; /* src is the dropped packet's source */
	e->proto = k->proto;
	e->family = k->family;
	e->icmp_type = k->icmp_type;
	e->icmp_code = k->icmp_code;
	e->ifindex = k->ifindex;
	e->drop_reason = k->reason;
	e->netns = k->netns;
	__builtin_memcpy(e->src, k->saddr, 16);
	__builtin_memcpy(e->dst, k->daddr, 16);
	e->sport = k->sport;
	e->dport = k->dport;
	e->first_ns = v->first_seen;
	e->last_ns = v->last_seen;
	e->packets = pk;
	e->bytes = by;
	bpf_ringbuf_submit(e, 0);
	count(CNT_EVENTS);
	return 0;
}

/*
 * Drops. NOT_SPECIFIED is what plain kfree_skb() reports: error paths that
 * were never given a reason but also frees that are no drop at all in some
 * drivers and older code. It is by far the most frequent reason and not
 * actionable, so by default it is only counted (CNT_DROPS_UNSPECIFIED);
 * CFG_F_DROPS_UNSPECIFIED reports it like any other. SKB_CONSUMED (not a
 * drop; 6.2+ send it to consume_skb instead) is ignored.
 */
SEC("tp_btf/kfree_skb")
int BPF_PROG(flowscope_kfree_skb, struct sk_buff *skb, void *location,
	     enum skb_drop_reason reason)
{
	__u32 key = 0;
	struct flow_config *cfg = bpf_map_lookup_elem(&config, &key);

	if (!cfg || (cfg->flags & CFG_F_DROPS_OFF))
		return 0;
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_CONSUMED) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_CONSUMED))
		return 0;
	count(CNT_DROPS_SEEN);
	if (reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_NOT_SPECIFIED) &&
	    !(cfg->flags & CFG_F_DROPS_UNSPECIFIED)) {
		count(CNT_DROPS_UNSPECIFIED);
		return 0;
	}

	__u16 proto = bpf_ntohs(BPF_CORE_READ(skb, protocol));
	if (proto != ETH_P_IP && proto != ETH_P_IPV6) {
		count(CNT_DROPS_NOT_IP);
		return 0;
	}
	unsigned char *head = BPF_CORE_READ(skb, head);
	unsigned char *data = BPF_CORE_READ(skb, data);
	__u32 nh = BPF_CORE_READ(skb, network_header);
	__u32 tail = BPF_CORE_READ(skb, tail);
	__u32 len = BPF_CORE_READ(skb, len);
	__u32 data_off = data - head;

	/* bounds: the network header must start inside the linear area and
	 * inside the packet (len counts from data, frags included); a skb
	 * dropped before its IP header was set fails here */
	if (nh >= tail || data_off + len <= nh) {
		count(CNT_DROPS_PARSE);
		return 0;
	}
	struct reader r = {
		.base = head + nh,
		.limit = tail - nh,
		.len = data_off + len - nh,
	};
	struct parsed p = {};
	int rc = parse_ip(&r, 0, proto, &p, false);
	if (rc != P_OK) {
		count(CNT_DROPS_PARSE);
		return 0;
	}
	/* Drops obey the selection too: unselected traffic costs no event.
	 * Interfaces are not matched here: a drop's ifindex belongs to
	 * whatever namespace dropped it. */
	if (cfg->capture_mode == CAPTURE_SELECTED && !selected(cfg, 0, &p)) {
		count(CNT_FILTERED_OUT);
		return 0;
	}

	struct drop_key k = {};
	__builtin_memcpy(k.saddr, p.saddr, 16);
	__builtin_memcpy(k.daddr, p.daddr, 16);
	k.sport = p.sport;
	k.dport = p.dport;
	k.proto = p.proto;
	k.family = p.family;
	k.icmp_type = p.icmp_type;
	k.icmp_code = p.icmp_code;
	k.reason = reason;
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	if (dev) {
		k.ifindex = BPF_CORE_READ(dev, ifindex);
		k.netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	} else {
		k.ifindex = BPF_CORE_READ(skb, skb_iif);
	}

	/* CLOCK_MONOTONIC like the connection records (whose coarse clock
	 * tracing programs may not read). */
	__u64 now = bpf_ktime_get_ns();
	struct drop_value *v = bpf_map_lookup_elem(&drops, &k);
	if (!v) {
		struct drop_value nv = {
			.packets = 1,
			.bytes = p.l3_len,
			.first_seen = now,
			.last_seen = now,
			.last_report = now,
		};
		if (bpf_map_update_elem(&drops, &k, &nv, BPF_NOEXIST) == 0) {
			v = bpf_map_lookup_elem(&drops, &k);
			if (v)
				emit_drop(&k, v);
			return 0;
		}
		/* Lost the race to another CPU: add to its record. Else the
		 * table is full (-E2BIG): the drop is counted only. */
		v = bpf_map_lookup_elem(&drops, &k);
		if (!v) {
			count(CNT_DROPS_INSERT_FAIL);
			return 0;
		}
	}
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, p.l3_len);
	v->last_seen = now;
	__u64 lr = v->last_report;
	if (now - lr >= cfg->report_interval_ns &&
	    __sync_val_compare_and_swap(&v->last_report, lr, now) == lr) {
		if (emit_drop(&k, v) < 0)
			v->last_report = lr;
	}
	return 0;
}

/*
 * Flush: records fall silent. The packet path reports a record only when
 * a packet arrives after the report interval, so the counts of a burst
 * followed by silence would wait for the idle timeout. User space runs
 * this program (prog.Run) at every sweep: it walks both tables and emits
 * an update for every record whose last report is older than the report
 * interval and that holds counts no event has carried. It takes the
 * report slot with the same compare-and-swap on last_report as the packet
 * path and claims the counts like every emitter (claim), so a packet
 * arriving meanwhile can neither report the same counts again nor lose
 * them. Closed records are left alone: their close event was final.
 */
struct flush_ctx {
	__u64 now;      /* the connection records' clock (coarse) */
	__u64 now_drop; /* the drop aggregates' (precise) */
	__u64 interval;
	__u32 events;
	__u32 full; /* the ring buffer is full: stop, the next sweep retries */
};

/* due takes the report slot of a record last reported at *last_report. */
static __always_inline bool due(__u64 *last_report, __u64 now, __u64 interval)
{
	__u64 lr = *(volatile __u64 *)last_report;

	/* lr > now: a packet took the slot after the flush read the clock */
	if (lr > now || now - lr < interval)
		return false;
	return __sync_val_compare_and_swap(last_report, lr, now) == lr;
}

static long flush_flow(void *map, const struct flow_key *k, struct flow_value *v,
		       struct flush_ctx *c)
{
	if (v->closed || v->ending == ENDING_CLAIMED ||
	    (v->packets[0] == v->rep_packets[0] && v->packets[1] == v->rep_packets[1]))
		return 0;
	if (!due(&v->last_report, c->now, c->interval))
		return 0;
	if (emit_flow(k, v, EVENT_UPDATE, 0) < 0) {
		/* Give the slot back, due at once. */
		v->last_report = 0;
		c->full = 1;
		return 1;
	}
	c->events++;
	return 0;
}

static long flush_drop(void *map, const struct drop_key *k, struct drop_value *v,
		       struct flush_ctx *c)
{
	if (v->packets == v->rep_packets || !due(&v->last_report, c->now_drop, c->interval))
		return 0;
	if (emit_drop(k, v) < 0) {
		v->last_report = 0;
		c->full = 1;
		return 1;
	}
	c->events++;
	return 0;
}

/* Returns the number of events emitted (prog.Run's return value). */
SEC("tc")
int flowscope_flush(struct __sk_buff *skb)
{
	__u32 key = 0;
	struct flow_config *cfg = bpf_map_lookup_elem(&config, &key);
	struct flush_ctx c = {};

	if (!cfg)
		return 0;
	c.now = bpf_ktime_get_coarse_ns();
	c.now_drop = bpf_ktime_get_ns();
	c.interval = cfg->report_interval_ns;
	bpf_for_each_map_elem(&flows, flush_flow, &c, 0);
	if (!c.full)
		bpf_for_each_map_elem(&drops, flush_drop, &c, 0);
	return c.events;
}

/*
 * Release: user space deleted connection records (the sweep) and gives
 * their places in their interfaces' budgets back. prog.Run hands it the
 * packet struct release_entry[], at most RELEASE_MAX of them; entries
 * with n 0 pad it to the minimum length. An interface whose budget entry
 * is gone (user space deletes those of detached interfaces) has nothing
 * to give back. Returns the number of places given back.
 */
SEC("tc")
int flowscope_release(struct __sk_buff *skb)
{
	__u32 done = 0;
	__u32 i;

	for (i = 0; i < RELEASE_MAX; i++) {
		struct release_entry e;
		/* bounds: the end of the list */
		if (bpf_skb_load_bytes(skb, i * sizeof(e), &e, sizeof(e)) < 0)
			break;
		if (!e.n)
			continue;
		struct iface_budget *b = bpf_map_lookup_elem(&iface_budgets, &e.ifindex);
		if (!b)
			continue;
		__sync_fetch_and_add(&b->conns, -(__s64)e.n);
		done += e.n;
	}
	return done;
}

/*
 * End: user space marks or claims the records it is ending (enum
 * ending). prog.Run hands it the packet struct end_entry[], at most
 * END_MAX of them, and gets it back with each entry's result: the
 * record's state after the operation, 0 when it is gone or a packet took
 * the mark back. Marking an already marked (or claimed) record leaves it
 * so. Returns the number of entries that ended in the state asked for.
 */
SEC("tc")
int flowscope_end(struct __sk_buff *skb)
{
	__u32 done = 0;
	__u32 i;

	for (i = 0; i < END_MAX; i++) {
		struct end_entry e;
		__u32 off = i * sizeof(e);
		/* bounds: the end of the list */
		if (bpf_skb_load_bytes(skb, off, &e, sizeof(e)) < 0)
			break;
		struct flow_value *v = bpf_map_lookup_elem(&flows, &e.key);
		__u32 r = 0;
		if (v) {
			if (e.op == ENDING_MARKED)
				__sync_val_compare_and_swap(&v->ending, ENDING_NONE, ENDING_MARKED);
			else if (e.op == ENDING_CLAIMED)
				__sync_val_compare_and_swap(&v->ending, ENDING_MARKED, ENDING_CLAIMED);
			r = *(volatile __u32 *)&v->ending;
		}
		if (r == e.op)
			done++;
		bpf_skb_store_bytes(skb, off + __builtin_offsetof(struct end_entry, result),
				    &r, sizeof(r), 0);
	}
	return done;
}
