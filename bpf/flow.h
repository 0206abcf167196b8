/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Shared definitions of the Flowscope datapath: the layouts in this file are
 * the contract with nodeagent/capture (bpf2go generates Go types from them,
 * and capture's decoder checks their sizes in a test). Change both together.
 */
#ifndef __FLOWSCOPE_FLOW_H__
#define __FLOWSCOPE_FLOW_H__

/* Event kinds written to the ring buffer. Evictions by user space (map
 * pressure) and idle expiry are emitted by user space, not here. */
enum event_kind {
	EVENT_NEW = 1,
	EVENT_UPDATE = 2,
	EVENT_CLOSE = 3,
	EVENT_DROP = 4,
};

/* Event flags. */
enum event_flag {
	EV_F_INITIATOR_KNOWN = 1 << 0, /* first packet was a SYN, SYN-ACK, request... */
	EV_F_END_FIN = 1 << 1,         /* close: FIN seen from both sides */
	EV_F_END_RST = 1 << 2,         /* close: RST seen */
	EV_F_INIT_EGRESS = 1 << 3,     /* initiator's packets pass the egress hook */
	EV_F_FRAGMENTS = 1 << 4,       /* later fragments without ports are in it */
};

/* The hook a packet was seen at. */
enum hook {
	HOOK_INGRESS = 0,
	HOOK_EGRESS = 1,
};

/* Capture modes (config.capture_mode). */
enum capture_mode {
	CAPTURE_ALL = 0,
	CAPTURE_SELECTED = 1,
};

/* config.flags */
enum config_flag {
	/* Report drops whose reason is SKB_DROP_REASON_NOT_SPECIFIED. */
	CFG_F_DROPS_UNSPECIFIED = 1 << 0,
	/* Do not run the kfree_skb program body at all. */
	CFG_F_DROPS_OFF = 1 << 1,
	/* The l7_gate map holds entries: without it the TC programs never
	 * look there, so L7 sampling switched off costs no map lookup. */
	CFG_F_L7 = 1 << 2,
};

/* Per-CPU counters, summed by user space. Keep in sync with capture. */
enum counter {
	CNT_PACKETS_SEEN = 0,    /* unused: user space sums the outcomes */
	CNT_PACKETS_ACCOUNTED,   /* packets added to a connection record */
	CNT_NON_IP,              /* not IPv4/IPv6 (ARP, LLDP, ...): passed */
	CNT_TRUNCATED,           /* a header ends beyond the packet */
	CNT_MALFORMED,           /* a length or version field is impossible */
	CNT_VLAN_DEPTH,          /* more VLAN tags than we walk */
	CNT_IPV6_EXT_DEPTH,      /* more IPv6 extension headers than we walk */
	CNT_FILTERED_OUT,        /* selected mode: matched no selector */
	CNT_FRAG_FIRST,          /* first fragments remembered for later ones */
	CNT_FRAG_LATER_MATCHED,  /* later fragments attributed to their ports */
	CNT_FRAG_LATER_UNMATCHED,/* later fragments counted without ports */
	CNT_FRAG_INSERT_FAIL,    /* fragment table update failed */
	CNT_FLOW_CREATED,        /* connection records inserted */
	CNT_FLOW_REPLACED,       /* closed record reused by a new SYN */
	/* Packets not added to any record, each in exactly one of these
	 * four (instead of CNT_PACKETS_ACCOUNTED). The connection table is
	 * a plain hash: the kernel never evicts a record, so a record ends
	 * only by replacement or user space's delete, and every packet that
	 * finds no room is counted here. Its connection's next packet tries
	 * again. */
	CNT_FLOW_INSERT_FAIL,    /* insert failed otherwise (a bucket lock busy) */
	CNT_UNTRACKED_FULL,      /* the connection table is full */
	CNT_UNTRACKED_BUDGET,    /* the interface holds its budget of records */
	CNT_UNTRACKED_ENDING,    /* user space is deleting the record (enum ending) */
	CNT_FLOW_CLOSED,         /* close events emitted */
	CNT_RINGBUF_FAIL,        /* ring buffer reservation failed: event lost */
	CNT_EVENTS,              /* events submitted */
	CNT_DROPS_SEEN,          /* kfree_skb calls with a drop reason */
	CNT_DROPS_UNSPECIFIED,   /* ... ignored because NOT_SPECIFIED */
	CNT_DROPS_NOT_IP,        /* ... ignored: no IP header to attribute */
	CNT_DROPS_PARSE,         /* ... IP header unreadable or malformed */
	CNT_DROPS_INSERT_FAIL,   /* drop table full: the drop is counted only */
	/* L7 sampling: every packet the gate admits ends in exactly one of
	 * CNT_L7_EVENTS and the CNT_L7_DROP_* counters. */
	CNT_L7_GATED,            /* packets the l7 gate admitted */
	CNT_L7_EVENTS,           /* l7 records submitted */
	CNT_L7_BYTES,            /* payload bytes in them */
	CNT_L7_DROP_RINGBUF,     /* l7 ring buffer full */
	CNT_L7_DROP_CPU_RATE,    /* per-CPU token bucket empty */
	CNT_L7_DROP_CONN_RATE,   /* connection over its per-second limit */
	CNT_L7_DROP_UNREADABLE,  /* payload could not be read from the skb */
	CNT_MAX,
};

/*
 * The connection key: a normalised 5-tuple. Side "a" is the (address, port)
 * that compares lower, so both directions of a connection find one record.
 * IPv4 addresses are stored IPv4-mapped (::ffff:a.b.c.d), with family 4.
 * ICMP echo uses the echo identifier as both ports; other ICMP messages have
 * ports 0 and their type/code in the key, so each kind is its own record.
 */
struct flow_key {
	__u8 addr_a[16];
	__u8 addr_b[16];
	__u32 ifindex;
	__u16 port_a;
	__u16 port_b;
	__u8 proto;
	__u8 family;
	__u8 icmp_type;
	__u8 icmp_code;
};

/* The per-connection L7 limit's state (config.l7_conn_*), indexed by
 * sending side like flow_value: kept in the connection record, which the
 * accounting has already looked up, and in l7_conns for a packet that
 * has no record. */
struct l7_conn {
	__u64 window_ns; /* start of the current one-second window (coarse clock) */
	__u32 events[2];
	__u32 bytes[2];
};

/*
 * The connection record. Counters are indexed by sending side (0 = a,
 * 1 = b) so they never move when the initiator is learned; the event is
 * oriented initiator -> responder. rep_* hold the totals at the last event,
 * so an event carries both totals and the interval's delta.
 */
struct flow_value {
	__u64 packets[2];
	__u64 bytes[2];
	__u64 rep_packets[2];
	__u64 rep_bytes[2];
	__u64 first_seen;   /* bpf_ktime_get_coarse_ns (CLOCK_MONOTONIC) */
	__u64 last_seen;
	__u64 last_report;
	__u32 tcp_flags;    /* side a's flags in bits 0-7, side b's in 8-15 */
	__u32 closed;       /* set once (CAS) when the close event is sent */
	__u8 initiator;     /* side (0 = a, 1 = b) that opened the connection */
	__u8 flags;         /* EV_F_INITIATOR_KNOWN, EV_F_INIT_EGRESS, EV_F_FRAGMENTS */
	__u8 icmp_type;     /* of the first packet */
	__u8 icmp_code;
	__u32 ending;       /* enum ending: user space is ending the record */
	/* The datapath's alone; user space ignores them. */
	struct l7_conn l7;  /* the per-connection L7 limit's state */
	__u64 l7_gate;      /* config.l7_gate_gen << 32 | the struct l7_gate
			     * (as __u32) that applies to the connection */
};

/*
 * How user space ends a record that is still open (idle expiry, table
 * pressure) without a packet's report overlapping its final record, and
 * without a packet's counts going into a record already read: it marks
 * the record (ENDING_MARKED), waits until every program that may have
 * read it unmarked is done (an RCU grace period), then claims it
 * (ENDING_CLAIMED), and only then reads and deletes it. A packet that
 * finds it marked takes the mark back (the connection is alive: the
 * claim fails and the record stays); one that finds it claimed leaves it
 * alone and is counted (CNT_UNTRACKED_ENDING). See flowscope_end.
 */
enum ending {
	ENDING_NONE = 0,
	ENDING_MARKED = 1,
	ENDING_CLAIMED = 2,
};

/* One entry of flowscope_end's input; result is written back. */
struct end_entry {
	struct flow_key key;
	__u32 op;     /* ENDING_MARKED: mark; ENDING_CLAIMED: claim */
	__u32 result; /* the record's enum ending after; 0 also when gone */
};
#define END_MAX 64

/* A drop aggregate: packets of one (oriented 5-tuple, reason). */
struct drop_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 ifindex;
	__u32 reason;
	__u32 netns;   /* inode of the network namespace the skb was in */
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 family;
	__u8 icmp_type;
	__u8 icmp_code;
};

struct drop_value {
	__u64 packets;
	__u64 bytes;
	__u64 rep_packets;
	__u64 rep_bytes;
	__u64 first_seen;  /* bpf_ktime_get_ns (CLOCK_MONOTONIC) */
	__u64 last_seen;
	__u64 last_report;
};

/*
 * The ring buffer record, oriented: src is the initiator (flows) or the
 * packet's source (drops). Totals are since first_ns; delta_* since the
 * previous event of the same record.
 */
struct event {
	__u8 kind;
	__u8 flags;
	__u8 proto;
	__u8 family;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 tcp_flags;       /* initiator -> responder, ORed */
	__u8 tcp_flags_reply; /* responder -> initiator, ORed */
	__u32 ifindex;
	__u32 drop_reason;
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;
	__u16 dport;
	__u32 netns;          /* drops: network namespace inode; flows: 0 */
	__u64 first_ns;
	__u64 last_ns;
	__u64 packets;
	__u64 bytes;
	__u64 packets_reply;
	__u64 bytes_reply;
	__u64 delta_packets;
	__u64 delta_bytes;
	__u64 delta_packets_reply;
	__u64 delta_bytes_reply;
};

/* Runtime knobs, one entry, written by user space at any time. The L7
 * limits are 0 for unlimited; bytes are payload bytes copied. */
struct flow_config {
	__u64 report_interval_ns; /* periodic update for long connections */
	__u32 capture_mode;       /* enum capture_mode */
	__u32 flags;              /* enum config_flag */
	__u32 sel_kinds;          /* enum sel_kind: which selector maps hold entries */
	__u32 l7_cpu_events;      /* l7 records per second, per CPU (token bucket) */
	__u32 l7_cpu_bytes;       /* l7 payload bytes per second, per CPU */
	__u32 l7_conn_events;     /* l7 records per second, per connection and direction */
	__u32 l7_conn_bytes;      /* l7 payload bytes per second, per connection and direction */
	__u32 l7_wakeup_bytes;    /* wake the l7 reader only from this much data on; 0: always */
	__u32 iface_max_conns;    /* connection records per ifindex; 0: no budget */
	__u32 l7_gate_gen;        /* changes with every change of the l7_gate map; never 0 */
};

/*
 * The new-connection budget of one interface (ifindex), kept while
 * config.iface_max_conns is set. conns is taken (atomically, before the
 * insert, and given back when the insert fails) by the packet path and
 * given back by user space for the records it deleted (flowscope_release),
 * so it is never below the interface's live records and a reservation
 * succeeds only below the budget: an interface never holds more records
 * than its budget, on any number of CPUs.
 */
struct iface_budget {
	__s64 conns;          /* live records + reservations + deleted, not yet released */
	__u64 untracked;      /* packets refused by the budget */
	__u64 untracked_full; /* packets of this interface the full table refused */
};

/* One entry of flowscope_release's input: n records of ifindex deleted. */
struct release_entry {
	__u32 ifindex;
	__u32 n;
};
#define RELEASE_MAX 256

/* Which selector maps are non-empty: the datapath skips lookups in empty
 * ones (an LPM trie lookup is the dearest thing on the selected path). */
enum sel_kind {
	SEL_IFACES = 1,
	SEL_ADDRS = 2,
	SEL_PORTS = 4,
};

/* Selector keys for --capture=selected (ORed). */
struct sel_addr_key {
	__u32 prefixlen; /* LPM: 0..128, IPv4 as ::ffff:0:0/96 + prefix */
	__u8 addr[16];
};

struct sel_port_key {
	__u16 port;  /* host byte order */
	__u8 proto;  /* 0: any protocol */
	__u8 _pad;
};

/* Remembers the ports of a fragmented datagram from its first fragment. */
struct frag_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 id;
	__u8 proto;
	__u8 family;
	__u16 _pad;
};

struct frag_ports {
	__u16 sport;
	__u16 dport;
};

/*
 * L7 payload sampling.
 *
 * The gate: user space lists the (pod) interfaces whose payload it wants,
 * optionally narrowed to ports. An interface's entry has port 0 and is the
 * only lookup unselected traffic pays (once per connection record and
 * change of the gate: flow_value.l7_gate): with L7_GATE_PORTS set, the
 * packet's destination and then source port are looked up next
 * ({ifindex, port} entries), and the interface entry itself samples the
 * other ports only when its budget is non-zero.
 */
#define L7_MAX_BUDGET 1024

/* Protocols user space parses; the kernel only copies bytes. */
enum l7_proto {
	L7_DNS = 1 << 0,
	L7_HTTP = 1 << 1,
	L7_HTTP2 = 1 << 2,
	L7_KAFKA = 1 << 3,
};

enum l7_gate_flag {
	L7_GATE_PORTS = 1 << 0, /* interface entry: port entries exist */
};

struct l7_gate_key {
	__u32 ifindex;
	__u16 port;  /* host byte order; 0: the interface's entry */
	__u16 _pad;
};

struct l7_gate {
	__u16 budget; /* payload bytes to copy, at most L7_MAX_BUDGET; 0: none */
	__u8 protos;  /* enum l7_proto, passed on in the record */
	__u8 flags;   /* enum l7_gate_flag */
};

/*
 * One l7_events record: a TCP segment with payload (or a SYN, FIN or RST,
 * without payload), or a UDP datagram, seen at a hook. Addresses as in
 * struct event (IPv4 mapped). payload_len is the L4 payload of the packet
 * (of all segments of a GSO packet; for UDP, of the datagram, which may
 * continue in later fragments); cap_len bytes of it follow the header.
 * The record is header + a size class (0, 64, 128, ... L7_MAX_BUDGET
 * bytes) because ring buffer reservations have constant sizes: bytes
 * past cap_len are stale and must be ignored.
 */
struct l7_event {
	__u64 ts_ns;       /* bpf_ktime_get_boot_ns */
	__u32 ifindex;
	__u32 seq;         /* TCP: sequence number (of the SYN itself on a SYN) */
	__u32 ack;         /* TCP: acknowledgment number, valid with ACK */
	__u32 payload_len;
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u16 cap_len;
	__u8 proto;        /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 family;
	__u8 hook;         /* enum hook */
	__u8 tcp_flags;
	__u8 protos;       /* the gate's enum l7_proto */
	__u8 _pad[5];
	/* the captured bytes follow */
};

/* Per-CPU token buckets; tokens are scaled by 1e9 (token-nanoseconds),
 * so refilling needs no division. */
struct l7_bucket {
	__u64 last_ns;
	__u64 events;
	__u64 bytes;
};

#endif /* __FLOWSCOPE_FLOW_H__ */
