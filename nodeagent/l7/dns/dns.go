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

// Package dns parses DNS over UDP and TCP (RFC 1035, RFC 7766) from the
// sampled bytes of a connection into v1alpha1.DNS records, one per query
// and its response.
//
// Records follow what Hubble shows for a DNS response from Cilium's DNS
// proxy: Query is the first question's name, lowercased, with its trailing
// dot (as nodeagent/hubble/parse keeps it); QTypes are the question types
// and RRTypes the types of every answer record, as miekg/dns names them
// ("A", "AAAA", "TYPE65280"); IPs are the A and AAAA answers in wire order;
// CNAMEs the targets of the CNAME answers, lowercased; TTL is the lowest
// TTL of the A, AAAA and CNAME answers (Cilium's ExtractMsgDetails: the
// chain is cached no longer than its shortest link), 0 without them; RCode
// includes the extended bits of an EDNS(0) OPT record. Names are in
// presentation form: bytes outside printable ASCII and backslashes are
// escaped (\DDD, \\), so every string is valid UTF-8.
//
// Queries and responses are told apart by the QR bit, not by direction,
// and pair by ID and first question within one Conn (a UDP flow or a TCP
// connection), with a response travelling the other way. A query without
// a response becomes a record with RCode RCodeTimeout when Expire finds
// it; a response without a query still becomes a record, with no
// Request time.
//
// Partial marks a record when a field it reports may be incomplete:
//   - neither the query nor the response was read through its questions;
//   - the answer section was not wholly read: IPs, CNAMEs and RRTypes hold
//     the answers that were, TTL the lowest of those;
//   - the additional section was cut before an OPT record was read, so the
//     extended RCode bits are unknown;
//   - the message could not be decoded past some point (Stats.Malformed),
//     or held more than the 8 questions or 128 answers a record keeps;
//   - the server set the TC bit: it left answers out (RFC 2181 §9). The
//     client will retry, usually over TCP: another connection, another
//     record, which pairing across connections (the stream layer's
//     business) may join with this one.
//
// A message cut after everything the record reports (a sample that ends in
// the authority section of a response without additional records) is not
// Partial: nothing is missing. A response whose query was not seen is not
// Partial either: its record lacks only the latency, which the missing
// Request time already says.
package dns

import (
	"encoding/binary"
	"sync"
	"sync/atomic"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/l7"
)

// RCodeTimeout is the RCode of a query that got no response within the
// timeout given to Expire. DNS response codes are 0 to 4095 (12 bits with
// EDNS), so a negative value cannot be mistaken for an answer. Hubble has
// no such code: its DNS records come from Cilium's proxy, which answers
// SERVFAIL itself when the upstream fails, and its rcode is a uint32, so
// an exporter to Hubble's format must leave this value out.
const RCodeTimeout int32 = -1

// DefaultMaxPending is the number of queries a connection keeps waiting
// for their responses unless Options say otherwise.
const DefaultMaxPending = 1024

// headerLen is the length of the fixed DNS header.
const headerLen = 12

// Transport is the transport a Protocol's connections carry DNS over.
type Transport uint8

const (
	// UDP carries one message per datagram: each Chunk is one.
	UDP Transport = iota
	// TCP carries messages with a 2-byte length prefix in a byte stream
	// (RFC 1035 §4.2.2); a message may span chunks.
	TCP
)

// Options configure a Protocol.
type Options struct {
	// MaxPending bounds the queries each connection keeps waiting for
	// their responses; when it is full the oldest is forgotten and counted
	// in Stats.DroppedQueries. 0 means DefaultMaxPending.
	MaxPending int
}

// Stats counts what a Protocol's connections dropped or could not read.
// Its counters are safe for concurrent use.
type Stats struct {
	// DroppedQueries counts queries forgotten unanswered because their
	// connection already had MaxPending waiting.
	DroppedQueries atomic.Uint64
	// Retransmits counts queries that repeated a waiting one (same ID,
	// question and direction): the first stands for both, so the latency
	// is what the client waited.
	Retransmits atomic.Uint64
	// Mismatches counts responses whose ID matched a waiting query but
	// whose question did not. They are reported without a request, and
	// the query keeps waiting.
	Mismatches atomic.Uint64
	// Malformed counts messages that were wholly sampled and still failed
	// to decode. What was read before the error is reported, Partial.
	Malformed atomic.Uint64
	// Undecodable counts messages ignored because less than their header
	// was sampled, and TCP messages shorter than a header.
	Undecodable atomic.Uint64
	// Desyncs counts the times a TCP stream lost its message framing,
	// because a length prefix was not sampled. The stream resumes at the
	// next chunk that starts with a plausible message.
	Desyncs atomic.Uint64
}

// Protocol is the DNS parser over one transport. Make it with New; it is
// safe for concurrent use, its connections are not.
type Protocol struct {
	tcp        bool
	maxPending int
	stats      Stats
	decoders   sync.Pool
}

var _ l7.Protocol = (*Protocol)(nil)

// New returns the DNS parser for connections of transport t. The l7
// contract does not say which transport a connection uses (a UDP chunk and
// the first chunk of a TCP stream both have offset 0), so the stream layer,
// which knows, keeps one Protocol per transport.
func New(t Transport, o Options) *Protocol {
	p := &Protocol{tcp: t == TCP, maxPending: o.MaxPending}
	if p.maxPending <= 0 {
		p.maxPending = DefaultMaxPending
	}
	p.decoders.New = func() any { return new(decoder) }
	return p
}

// Stats returns the counters of every connection the Protocol made.
func (p *Protocol) Stats() *Stats { return &p.stats }

// Name returns v1alpha1.L7TypeDNS.
func (p *Protocol) Name() v1alpha1.L7Type { return v1alpha1.L7TypeDNS }

// New returns a parser for one connection. Over TCP, a connection whose
// handshake was not seen starts without framing and finds it at the first
// chunk that starts with a plausible message.
func (p *Protocol) New(s l7.Start) l7.Conn {
	c := &conn{p: p}
	if p.tcp {
		for i := range c.streams {
			c.streams[i].synced = s.FromHandshake
		}
	}
	return c
}

// Detect reports whether first, the first bytes of a connection from dir,
// start a plausible DNS message, with the checks Pixie and OBI use: a
// standard query (opcode 0, the Z bit clear); a query has no rcode, one
// question, no answer or authority records and at most two additional
// ones (OPT, TSIG); a response has at most one question (RFC 9619) and no
// more records than 64 KiB can hold; the first question's name, as far as
// it was sampled, is a sequence of uncompressed labels within 255 bytes;
// its type is not 0 and its class IN, CH, HS, NONE or ANY. Counts are not
// checked against the bytes present: first may be a cut sample. Over TCP
// the length prefix must hold at least a header, and the QR bit must match
// the direction (clients ask); over UDP a flow first seen at a response is
// still DNS.
func (p *Protocol) Detect(dir l7.Dir, first []byte) bool {
	if p.tcp {
		return len(first) >= 2 && binary.BigEndian.Uint16(first) >= headerLen &&
			plausible(first[2:], dir, true)
	}
	return plausible(first, dir, false)
}

// plausible reports whether b starts a DNS message; see Detect. With
// matchDir, a query must come from the client and a response from the
// server.
func plausible(b []byte, dir l7.Dir, matchDir bool) bool {
	if len(b) < headerLen {
		return false
	}
	flags := binary.BigEndian.Uint16(b[2:])
	qd := binary.BigEndian.Uint16(b[4:])
	an := binary.BigEndian.Uint16(b[6:])
	ns := binary.BigEndian.Uint16(b[8:])
	ar := binary.BigEndian.Uint16(b[10:])
	response := flags&0x8000 != 0
	switch {
	case flags>>11&0xf != 0: // opcode: QUERY only
		return false
	case flags&0x0040 != 0: // Z, the one bit still reserved (AD and CD are not)
		return false
	case matchDir && response != (dir == l7.FromServer):
		return false
	case !response && (flags&0xf != 0 || qd != 1 || an != 0 || ns != 0 || ar > 2):
		return false
	case response && (qd > 1 || (int(an)+int(ns)+int(ar))*11 > 0xffff-headerLen):
		return false // every record takes at least 11 bytes
	}
	if qd == 0 {
		return true
	}
	q := b[headerLen:]
	i, wire := 0, 1
	for {
		if i >= len(q) {
			return true // the sample ends in the name
		}
		l := int(q[i])
		i++
		if l == 0 {
			break
		}
		// Compression needs an earlier name to point to, and the first
		// question's name is the first name; 0x40 and 0x80 are reserved.
		if l > 63 {
			return false
		}
		if wire += 1 + l; wire > 255 {
			return false
		}
		i += l
	}
	if i+4 > len(q) {
		return true
	}
	qtype := binary.BigEndian.Uint16(q[i:])
	switch binary.BigEndian.Uint16(q[i+2:]) {
	case 1, 3, 4, 254, 255:
		return qtype != 0
	}
	return false
}
