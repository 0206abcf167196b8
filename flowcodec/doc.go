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

// Package flowcodec is the compact binary encoding of flows, shared by the
// node agent's store (on disk) and the agent wire (package agentwire).
//
// A value is self-contained: it needs no dictionary or state outside itself
// to decode, so values can expire, be compacted and be copied one by one.
// Repetition across values (namespaces, pod names, labels) is left to
// Badger's block compression; repetition within a value is removed here.
//
// # Format, version 1
//
// Integers are unsigned LEB128 varints ("uv"); signed ones are zigzag
// varints ("zz"). A value is
//
//	version   byte, 1 (a JSON value starts with '{', 0x7b, never 1)
//	flags     uv, the bits f* below
//	rv        uv when fRVNumeric (metadata.resourceVersion in decimal), else str
//	time      zz µs since the Unix epoch minus rv (rv is a µs clock, so
//	          this is small), or minus 0 without fRVNumeric; when fTime
//	endTime   zz µs after time; when fEndTime
//	created   zz s after time's second; when fCreation. With
//	          fCreationDerived it is time's second, and absent.
//	nodeName  str
//	name      str, unless fNameDerived: then nodeName + "." + rv
//	namespace str
//	uid       16 raw bytes when fUIDBinary (a lowercase RFC 4122 text UUID), else str
//	verdict, dropReason, trafficDirection   enum
//	interface str
//	ip        when fIP: ipVersion enum, source addr, destination addr
//	l4        when fL4: protocol enum, sourcePort zz, destinationPort zz,
//	          tcpFlags, and when fICMP type zz, code zz
//	source, destination   endpoint, when fSource, fDestination
//	l7        when fL7
//	traffic   when fTraffic: packets, bytes, packetsReply, bytesReply zz
//	labels    map, unless fLabelsSource or fLabelsDestination: a copy of
//	          that endpoint's labels
//	rare      when fRare: the rarely set ObjectMeta fields (see rare*)
//	typeMeta  when fTypeMeta: apiVersion str, kind str
//
// and nothing after it.
//
//	str     uv h. Even h: a literal of h/2 bytes follows. Odd h: the
//	        (h/2)-th non-empty literal of this value, counting from 0 (only
//	        the first 64 count).
//	enum    uv c. 0: "". 1: str follows (an unknown value). c >= 2: entry
//	        c-2 of the field's table (tables.go).
//	addr    byte: 0 "", 1 IPv4 (4 bytes), 2 IPv6 (16 bytes), 3 str (a
//	        non-canonical address), and in an endpoint 4 / 5 the same as
//	        ip.source / ip.destination.
//	map     uv n, then n pairs of key str, value str, keys sorted.
//	        n = 0 is a nil map.
//	list    uv n then n items; n = 0 is a nil slice.
//	tcpFlags uv v. v&3 = 0: the flags of mask v>>2 (bit i is
//	        tcpFlagsByBit[i]) in alphabetical order (Hubble's); 1: same in
//	        bit order (the agent's); 2: a list of v>>2 enums follows.
//	endpoint addr ip, port (uv: 0 the same as l4's port of that side,
//	        else zz(port)+1), namespace str, podName str, labels map,
//	        workloads list of (kind enum, name str), service str.
//	l7      byte bits l7*, type enum, latency (zz µs when l7LatencyMicros,
//	        else zz ns), then dns, http, grpc, kafka as present:
//	        dns:   query str, ips list of addr, ttl zz, cnames list of str,
//	               rcode zz, qtypes list of enum, rrtypes list of enum
//	        http:  code zz, method enum, url str, protocol enum, headers
//	               list of (key str, value str), and when
//	               fHTTPResponseHeaders responseHeaders list of the same
//	        grpc:  service str, method str, statusCode zz, and when
//	               fGRPCDetails message str, responseHeaders list of
//	               (key str, value str)
//	        kafka: errorCode zz, apiVersion zz, apiKey enum,
//	               correlationID zz, topic str
//
// Decoding yields what encoding/json yields for the same flow after a JSON
// round trip: times at µs (MicroTime) and s (Time) precision in the local
// zone, empty maps and slices as nil, zero times and *MicroTime{} as absent.
package flowcodec

import "errors"

// Version is the format version, the first byte of every value.
const Version = 1

// MinSize is the length of the shortest value Unmarshal accepts, an empty
// flow's: the version, flags 0, an empty rv, nodeName, name, namespace and
// uid, three empty enums, an empty interface and an empty labels map. A
// flag that leaves a field out (fNameDerived) takes a second byte of flags.
// A decoder of many values bounds their count by it before it allocates;
// FuzzUnmarshal checks it.
const MinSize = 12

// ErrMalformed is matched by every decoding error.
var ErrMalformed = errors.New("malformed flow value")

const (
	fTime = 1 << iota
	fEndTime
	fIsReply
	fIsReplyTrue
	fIP
	fL4
	fICMP
	fSource
	fDestination
	fL7
	fTraffic
	fNameDerived
	fRVNumeric
	fUIDBinary
	fCreationDerived
	fCreation
	fLabelsSource
	fLabelsDestination
	fRare
	fTypeMeta
	// fHTTPResponseHeaders: the l7 http section ends with the response
	// headers (HTTP.ResponseHeaders, never empty then).
	fHTTPResponseHeaders
	// fDNSRetriedOverTCP: DNS.RetriedOverTCP; no bytes follow.
	fDNSRetriedOverTCP
	// fGRPCDetails: the l7 grpc section ends with the message and the
	// response headers (GRPC.Message and GRPC.ResponseHeaders, not both
	// empty then).
	fGRPCDetails
	fAll = 1<<iota - 1
)

const (
	l7Latency = 1 << iota
	l7LatencyMicros
	l7DNS
	l7HTTP
	l7GRPC
	l7Kafka
	// l7Partial: Layer7.Partial; no bytes follow.
	l7Partial
	// l7KafkaClientID: the Kafka section ends with the client ID.
	l7KafkaClientID
	l7All = 1<<iota - 1
)

const (
	rareGenerateName = 1 << iota
	rareSelfLink
	rareGeneration
	rareDeletionTimestamp
	rareDeletionGracePeriod
	rareAnnotations
	rareOwnerReferences
	rareFinalizers
	rareManagedFields
	rareAll = 1<<iota - 1
)

const (
	addrEmpty = iota
	addr4
	addr6
	addrString
	addrSameSource
	addrSameDestination
)

const (
	flagsSorted = 0
	flagsInBits = 1
	flagsList   = 2
)

// maxRefs bounds the strings of a value that later ones can refer to.
const maxRefs = 64
