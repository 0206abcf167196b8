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
//	               list of (key str, value str)
//	        grpc:  service str, method str, statusCode zz
//	        kafka: errorCode zz, apiVersion zz, apiKey enum,
//	               correlationID zz, topic str
//
// Decoding yields what encoding/json yields for the same flow after a JSON
// round trip: times at µs (MicroTime) and s (Time) precision in the local
// zone, empty maps and slices as nil, zero times and *MicroTime{} as absent.
package flowcodec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// Version is the format version, the first byte of every value.
const Version = 1

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
	fAll = 1<<iota - 1
)

const (
	l7Latency = 1 << iota
	l7LatencyMicros
	l7DNS
	l7HTTP
	l7GRPC
	l7Kafka
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

// Marshal encodes f.
func Marshal(f *v1alpha1.Flow) ([]byte, error) {
	return AppendMarshal(make([]byte, 0, 256), f)
}

// AppendMarshal appends the encoding of f to dst.
func AppendMarshal(dst []byte, f *v1alpha1.Flow) ([]byte, error) {
	if f == nil {
		return dst, errors.New("encode flow: nil flow")
	}
	e := encoder{b: dst}
	e.flow(f)
	return e.b, nil
}

type encoder struct {
	b    []byte
	nstr int
	strs [maxRefs]string
}

func (e *encoder) uvarint(v uint64) {
	if v < 0x80 {
		e.b = append(e.b, byte(v))
		return
	}
	e.b = binary.AppendUvarint(e.b, v)
}

func (e *encoder) varint(v int64) { e.uvarint(zigzag(v)) }

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

func (e *encoder) string(s string) {
	if s == "" {
		e.b = append(e.b, 0)
		return
	}
	for i, t := range e.strs[:e.nstr] {
		if t == s {
			e.uvarint(uint64(i)<<1 | 1)
			return
		}
	}
	e.uvarint(uint64(len(s)) << 1)
	e.b = append(e.b, s...)
	if e.nstr < maxRefs {
		e.strs[e.nstr] = s
		e.nstr++
	}
}

func (e *encoder) enum(s string, table []string) {
	if s == "" {
		e.b = append(e.b, 0)
		return
	}
	if i := slices.Index(table, s); i >= 0 {
		e.uvarint(uint64(i) + 2)
		return
	}
	e.b = append(e.b, 1)
	e.string(s)
}

func (e *encoder) strMap(m map[string]string) {
	e.uvarint(uint64(len(m)))
	if len(m) == 0 {
		return
	}
	var buf [16]string
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		e.string(k)
		e.string(m[k])
	}
}

func (e *encoder) strList(l []string) {
	e.uvarint(uint64(len(l)))
	for _, s := range l {
		e.string(s)
	}
}

func (e *encoder) enums(l []string, table []string) {
	e.uvarint(uint64(len(l)))
	for _, s := range l {
		e.enum(s, table)
	}
}

// addr writes an address; src and dst are the flow's IP addresses an
// endpoint may refer to, when refs.
func (e *encoder) addr(s string, refs bool, src, dst string) {
	switch {
	case s == "":
		e.b = append(e.b, addrEmpty)
		return
	case refs && s == src:
		e.b = append(e.b, addrSameSource)
		return
	case refs && s == dst:
		e.b = append(e.b, addrSameDestination)
		return
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		var buf [64]byte
		if string(a.AppendTo(buf[:0])) == s {
			if a.Is4() {
				b := a.As4()
				e.b = append(append(e.b, addr4), b[:]...)
			} else {
				b := a.As16()
				e.b = append(append(e.b, addr6), b[:]...)
			}
			return
		}
	}
	e.b = append(e.b, addrString)
	e.string(s)
}

func (e *encoder) flow(f *v1alpha1.Flow) {
	var flags uint64
	rv, rvErr := strconv.ParseUint(f.ResourceVersion, 10, 64)
	rvNumeric := rvErr == nil && len(f.ResourceVersion) > 0 && f.ResourceVersion[0] != '+' &&
		(f.ResourceVersion == "0" || f.ResourceVersion[0] != '0')
	if rvNumeric {
		flags |= fRVNumeric
	}
	var timeBase int64
	if rvNumeric {
		timeBase = int64(rv)
	}
	var us, sec int64
	if !f.Time.IsZero() {
		flags |= fTime
		us = f.Time.UnixMicro()
		sec = floorDiv(us, 1e6)
	}
	if f.EndTime != nil && !f.EndTime.IsZero() {
		flags |= fEndTime
	}
	if !f.CreationTimestamp.IsZero() {
		if flags&fTime != 0 && f.CreationTimestamp.Unix() == sec {
			flags |= fCreationDerived
		} else {
			flags |= fCreation
		}
	}
	if f.IsReply != nil {
		flags |= fIsReply
		if *f.IsReply {
			flags |= fIsReplyTrue
		}
	}
	if f.IP != nil {
		flags |= fIP
	}
	if f.L4 != nil {
		flags |= fL4
		if f.L4.ICMP != nil {
			flags |= fICMP
		}
	}
	if f.Source != nil {
		flags |= fSource
	}
	if f.Destination != nil {
		flags |= fDestination
	}
	if f.L7 != nil {
		flags |= fL7
	}
	if f.Traffic != nil {
		flags |= fTraffic
	}
	if len(f.Name) == len(f.NodeName)+1+len(f.ResourceVersion) && f.Name[len(f.NodeName)] == '.' &&
		f.Name[:len(f.NodeName)] == f.NodeName && f.Name[len(f.NodeName)+1:] == f.ResourceVersion {
		flags |= fNameDerived
	}
	if isUUID(string(f.UID)) {
		flags |= fUIDBinary
	}
	if len(f.Labels) > 0 {
		switch {
		case f.Source != nil && mapsEqual(f.Labels, f.Source.Labels):
			flags |= fLabelsSource
		case f.Destination != nil && mapsEqual(f.Labels, f.Destination.Labels):
			flags |= fLabelsDestination
		}
	}
	if rareFlags(&f.ObjectMeta) != 0 {
		flags |= fRare
	}
	if f.APIVersion != "" || f.Kind != "" {
		flags |= fTypeMeta
	}

	e.b = append(e.b, Version)
	e.uvarint(flags)
	if rvNumeric {
		e.uvarint(rv)
	} else {
		e.string(f.ResourceVersion)
	}
	if flags&fTime != 0 {
		e.varint(us - timeBase)
	}
	if flags&fEndTime != 0 {
		e.varint(f.EndTime.UnixMicro() - us)
	}
	if flags&fCreation != 0 {
		e.varint(f.CreationTimestamp.Unix() - sec)
	}
	e.string(f.NodeName)
	if flags&fNameDerived == 0 {
		e.string(f.Name)
	}
	e.string(f.Namespace)
	if flags&fUIDBinary != 0 {
		e.b = appendUUID(e.b, string(f.UID))
	} else {
		e.string(string(f.UID))
	}
	e.enum(string(f.Verdict), verdicts)
	e.enum(f.DropReason, dropReasons)
	e.enum(string(f.TrafficDirection), directions)
	e.string(f.Interface)
	var ipSrc, ipDst string
	if f.IP != nil {
		e.enum(string(f.IP.IPVersion), ipVersions)
		e.addr(f.IP.Source, false, "", "")
		e.addr(f.IP.Destination, false, "", "")
		ipSrc, ipDst = f.IP.Source, f.IP.Destination
	}
	var sport, dport int32
	if l4 := f.L4; l4 != nil {
		e.enum(string(l4.Protocol), protocols)
		e.varint(int64(l4.SourcePort))
		e.varint(int64(l4.DestinationPort))
		e.tcpFlags(l4.TCPFlags)
		if l4.ICMP != nil {
			e.varint(int64(l4.ICMP.Type))
			e.varint(int64(l4.ICMP.Code))
		}
		sport, dport = l4.SourcePort, l4.DestinationPort
	}
	if f.Source != nil {
		e.endpoint(f.Source, sport, f.IP != nil, ipSrc, ipDst)
	}
	if f.Destination != nil {
		e.endpoint(f.Destination, dport, f.IP != nil, ipSrc, ipDst)
	}
	if f.L7 != nil {
		e.layer7(f.L7)
	}
	if t := f.Traffic; t != nil {
		e.varint(t.Packets)
		e.varint(t.Bytes)
		e.varint(t.PacketsReply)
		e.varint(t.BytesReply)
	}
	if flags&(fLabelsSource|fLabelsDestination) == 0 {
		e.strMap(f.Labels)
	}
	if flags&fRare != 0 {
		e.rare(&f.ObjectMeta)
	}
	if flags&fTypeMeta != 0 {
		e.string(f.APIVersion)
		e.string(f.Kind)
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func (e *encoder) tcpFlags(flags []string) {
	if len(flags) == 0 {
		e.b = append(e.b, 0)
		return
	}
	for _, order := range []struct {
		kind uint64
		bits []uint8
	}{{flagsSorted, tcpFlagsSorted}, {flagsInBits, tcpFlagsInBits}} {
		var mask uint64
		j := 0
		for _, name := range flags {
			for j < len(order.bits) && tcpFlagsByBit[order.bits[j]] != name {
				j++
			}
			if j == len(order.bits) {
				break
			}
			mask |= 1 << order.bits[j]
			j++
		}
		if j <= len(order.bits) && countBits(mask) == len(flags) {
			e.uvarint(mask<<2 | order.kind)
			return
		}
	}
	e.uvarint(uint64(len(flags))<<2 | flagsList)
	for _, s := range flags {
		e.enum(s, tcpFlagsByBit)
	}
}

func countBits(m uint64) int {
	n := 0
	for ; m != 0; m &= m - 1 {
		n++
	}
	return n
}

func (e *encoder) endpoint(ep *v1alpha1.Endpoint, l4Port int32, refs bool, src, dst string) {
	e.addr(ep.IP, refs, src, dst)
	if ep.Port == l4Port {
		e.b = append(e.b, 0)
	} else {
		e.uvarint(zigzag(int64(ep.Port)) + 1)
	}
	e.string(ep.Namespace)
	e.string(ep.PodName)
	e.strMap(ep.Labels)
	e.uvarint(uint64(len(ep.Workloads)))
	for _, w := range ep.Workloads {
		e.enum(w.Kind, workloadKinds)
		e.string(w.Name)
	}
	e.string(ep.Service)
}

func (e *encoder) layer7(l7 *v1alpha1.Layer7) {
	var bits byte
	var lat int64
	if l7.Latency != nil {
		bits |= l7Latency
		lat = int64(l7.Latency.Duration)
		if lat%1000 == 0 {
			bits |= l7LatencyMicros
			lat /= 1000
		}
	}
	if l7.DNS != nil {
		bits |= l7DNS
	}
	if l7.HTTP != nil {
		bits |= l7HTTP
	}
	if l7.GRPC != nil {
		bits |= l7GRPC
	}
	if l7.Kafka != nil {
		bits |= l7Kafka
	}
	e.b = append(e.b, bits)
	e.enum(string(l7.Type), l7Types)
	if bits&l7Latency != 0 {
		e.varint(lat)
	}
	if d := l7.DNS; d != nil {
		e.string(d.Query)
		e.uvarint(uint64(len(d.IPs)))
		for _, ip := range d.IPs {
			e.addr(ip, false, "", "")
		}
		e.varint(int64(d.TTL))
		e.strList(d.CNAMEs)
		e.varint(int64(d.RCode))
		e.enums(d.QTypes, dnsTypes)
		e.enums(d.RRTypes, dnsTypes)
	}
	if h := l7.HTTP; h != nil {
		e.varint(int64(h.Code))
		e.enum(h.Method, httpMethods)
		e.string(h.URL)
		e.enum(h.Protocol, httpProtocols)
		e.uvarint(uint64(len(h.Headers)))
		for _, kv := range h.Headers {
			e.string(kv.Key)
			e.string(kv.Value)
		}
	}
	if g := l7.GRPC; g != nil {
		e.string(g.Service)
		e.string(g.Method)
		e.varint(int64(g.StatusCode))
	}
	if k := l7.Kafka; k != nil {
		e.varint(int64(k.ErrorCode))
		e.varint(int64(k.APIVersion))
		e.enum(k.APIKey, kafkaAPIKeys)
		e.varint(int64(k.CorrelationID))
		e.string(k.Topic)
	}
}

func rareFlags(m *metav1.ObjectMeta) uint64 {
	var bits uint64
	if m.GenerateName != "" {
		bits |= rareGenerateName
	}
	if m.SelfLink != "" {
		bits |= rareSelfLink
	}
	if m.Generation != 0 {
		bits |= rareGeneration
	}
	if m.DeletionTimestamp != nil && !m.DeletionTimestamp.IsZero() {
		bits |= rareDeletionTimestamp
	}
	if m.DeletionGracePeriodSeconds != nil {
		bits |= rareDeletionGracePeriod
	}
	if len(m.Annotations) > 0 {
		bits |= rareAnnotations
	}
	if len(m.OwnerReferences) > 0 {
		bits |= rareOwnerReferences
	}
	if len(m.Finalizers) > 0 {
		bits |= rareFinalizers
	}
	if len(m.ManagedFields) > 0 {
		bits |= rareManagedFields
	}
	return bits
}

func (e *encoder) rare(m *metav1.ObjectMeta) {
	bits := rareFlags(m)
	e.uvarint(bits)
	if bits&rareGenerateName != 0 {
		e.string(m.GenerateName)
	}
	if bits&rareSelfLink != 0 {
		e.string(m.SelfLink)
	}
	if bits&rareGeneration != 0 {
		e.varint(m.Generation)
	}
	if bits&rareDeletionTimestamp != 0 {
		e.varint(m.DeletionTimestamp.Unix())
	}
	if bits&rareDeletionGracePeriod != 0 {
		e.varint(*m.DeletionGracePeriodSeconds)
	}
	if bits&rareAnnotations != 0 {
		e.strMap(m.Annotations)
	}
	if bits&rareOwnerReferences != 0 {
		e.uvarint(uint64(len(m.OwnerReferences)))
		for _, r := range m.OwnerReferences {
			e.string(r.APIVersion)
			e.string(r.Kind)
			e.string(r.Name)
			e.string(string(r.UID))
			var b byte
			if r.Controller != nil {
				b |= 1
				if *r.Controller {
					b |= 2
				}
			}
			if r.BlockOwnerDeletion != nil {
				b |= 4
				if *r.BlockOwnerDeletion {
					b |= 8
				}
			}
			e.b = append(e.b, b)
		}
	}
	if bits&rareFinalizers != 0 {
		e.strList(m.Finalizers)
	}
	if bits&rareManagedFields != 0 {
		e.uvarint(uint64(len(m.ManagedFields)))
		for i := range m.ManagedFields {
			mf := &m.ManagedFields[i]
			var b byte
			if mf.Time != nil && !mf.Time.IsZero() {
				b |= 1
			}
			raw := mf.FieldsV1.GetRawString()
			if raw != "" {
				b |= 2
			}
			e.b = append(e.b, b)
			e.string(mf.Manager)
			e.string(string(mf.Operation))
			e.string(mf.APIVersion)
			if b&1 != 0 {
				e.varint(mf.Time.Unix())
			}
			e.string(mf.FieldsType)
			if b&2 != 0 {
				e.string(raw)
			}
			e.string(mf.Subresource)
		}
	}
}

// isUUID tells whether s is a UUID in lowercase hex with dashes, which
// appendUUID and formatUUID convert exactly.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'a' + 10
}

func appendUUID(b []byte, s string) []byte {
	for i := 0; i < 36; {
		if s[i] == '-' {
			i++
			continue
		}
		b = append(b, unhex(s[i])<<4|unhex(s[i+1]))
		i += 2
	}
	return b
}

const hexDigits = "0123456789abcdef"

func appendFormatUUID(b []byte, u []byte) []byte {
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hexDigits[c>>4], hexDigits[c&15])
	}
	return b
}

// Unmarshal decodes b into f, replacing all of f. It rejects any input
// Marshal cannot have written, with an error matching ErrMalformed; f is
// then undefined. f keeps no reference to b.
func Unmarshal(b []byte, f *v1alpha1.Flow) error {
	*f = v1alpha1.Flow{}
	if len(b) == 0 {
		return fmt.Errorf("%w: empty", ErrMalformed)
	}
	if b[0] != Version {
		return fmt.Errorf("%w: format version %d, want %d", ErrMalformed, b[0], Version)
	}
	var scratch [160]byte
	d := decoder{b: b, s: string(b), i: 1, scratch: scratch[:0]}
	d.flow(f)
	if d.err == nil && d.i != len(d.b) {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return d.err
	}
	if len(d.fixups) > 0 {
		s := string(d.scratch)
		for _, x := range d.fixups {
			*x.p = s[x.start:x.end]
		}
	}
	return nil
}

// strRef is a decoded string: s, or bytes start:end of the scratch buffer
// that becomes one string once decoding is done.
type strRef struct {
	s          string
	start, end int
	scratch    bool
}

type fixup struct {
	p          *string
	start, end int
}

type decoder struct {
	b       []byte
	s       string // b as a string, so literals cost no allocation
	i       int
	err     error
	scratch []byte
	fixups  []fixup
	nstr    int
	strs    [maxRefs]string
	fixBuf  [8]fixup
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at byte %d", ErrMalformed, what, d.i)
	}
	d.i = len(d.b)
}

func (d *decoder) byte() byte {
	if d.i >= len(d.b) {
		d.fail("truncated")
		return 0
	}
	c := d.b[d.i]
	d.i++
	return c
}

func (d *decoder) bytes(n int) []byte {
	if len(d.b)-d.i < n {
		d.fail("truncated")
		return nil
	}
	p := d.b[d.i : d.i+n]
	d.i += n
	return p
}

func (d *decoder) uvarint() uint64 {
	if d.i < len(d.b) && d.b[d.i] < 0x80 {
		c := d.b[d.i]
		d.i++
		return uint64(c)
	}
	v, n := binary.Uvarint(d.b[d.i:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.i += n
	return v
}

func (d *decoder) varint() int64 { return unzigzag(d.uvarint()) }

func (d *decoder) int32() int32 {
	v := d.varint()
	if v < math.MinInt32 || v > math.MaxInt32 {
		d.fail("integer out of range")
		return 0
	}
	return int32(v)
}

// count reads a list or map length, each of whose items takes at least
// minBytes: a length the rest of the input cannot hold is an error, so a
// hostile length never allocates more than the input justifies.
func (d *decoder) count(minBytes int) int {
	n := d.uvarint()
	if n > uint64((len(d.b)-d.i)/minBytes) {
		d.fail("length exceeds input")
		return 0
	}
	return int(n)
}

func (d *decoder) string() string {
	h := d.uvarint()
	if h&1 != 0 {
		if h>>1 >= uint64(d.nstr) {
			d.fail("bad string reference")
			return ""
		}
		return d.strs[h>>1]
	}
	n := h >> 1
	if n > uint64(len(d.b)-d.i) {
		d.fail("string exceeds input")
		return ""
	}
	s := d.s[d.i : d.i+int(n)]
	d.i += int(n)
	if n > 0 && d.nstr < maxRefs {
		d.strs[d.nstr] = s
		d.nstr++
	}
	return s
}

func (d *decoder) enum(table []string) string {
	c := d.uvarint()
	switch {
	case c == 0:
		return ""
	case c == 1:
		s := d.string()
		if s == "" || slices.Contains(table, s) {
			d.fail("non-canonical enum")
		}
		return s
	case c-2 < uint64(len(table)):
		return table[c-2]
	}
	d.fail("unknown enum code")
	return ""
}

func (d *decoder) strMap() map[string]string {
	n := d.count(2)
	if n == 0 {
		return nil
	}
	m := make(map[string]string, n)
	for range n {
		k := d.string()
		m[k] = d.string()
	}
	return m
}

func (d *decoder) strList() []string {
	n := d.count(1)
	if n == 0 {
		return nil
	}
	l := make([]string, n)
	for i := range l {
		l[i] = d.string()
	}
	return l
}

func (d *decoder) enumList(table []string) []string {
	n := d.count(1)
	if n == 0 {
		return nil
	}
	l := make([]string, n)
	for i := range l {
		l[i] = d.enum(table)
	}
	return l
}

// set stores r in *p, now or once the scratch string exists.
func (d *decoder) set(p *string, r strRef) {
	if !r.scratch {
		*p = r.s
		return
	}
	if d.fixups == nil {
		d.fixups = d.fixBuf[:0]
	}
	d.fixups = append(d.fixups, fixup{p: p, start: r.start, end: r.end})
}

func (d *decoder) addr(refs bool, src, dst strRef) strRef {
	switch c := d.byte(); c {
	case addrEmpty:
		return strRef{}
	case addr4:
		if b := d.bytes(4); b != nil {
			return d.formatAddr(netip.AddrFrom4([4]byte(b)))
		}
		return strRef{}
	case addr6:
		if b := d.bytes(16); b != nil {
			return d.formatAddr(netip.AddrFrom16([16]byte(b)))
		}
		return strRef{}
	case addrString:
		s := d.string()
		if s == "" {
			d.fail("empty address string")
		}
		return strRef{s: s}
	case addrSameSource, addrSameDestination:
		if !refs {
			d.fail("address reference without ip")
			return strRef{}
		}
		if c == addrSameSource {
			return src
		}
		return dst
	}
	d.fail("bad address kind")
	return strRef{}
}

func (d *decoder) formatAddr(a netip.Addr) strRef {
	if d.err != nil {
		return strRef{}
	}
	start := len(d.scratch)
	d.scratch = a.AppendTo(d.scratch)
	return strRef{start: start, end: len(d.scratch), scratch: true}
}

// block holds the parts of a flow a decoder allocates together.
type block struct {
	ip    v1alpha1.IP
	l4    v1alpha1.Layer4
	icmp  v1alpha1.ICMP
	src   v1alpha1.Endpoint
	dst   v1alpha1.Endpoint
	tr    v1alpha1.Traffic
	end   metav1.MicroTime
	reply bool
	l7    v1alpha1.Layer7
}

func (d *decoder) flow(f *v1alpha1.Flow) {
	flags := d.uvarint()
	if flags&^fAll != 0 || flags&(fCreation|fCreationDerived) == fCreation|fCreationDerived ||
		flags&(fLabelsSource|fLabelsDestination) == fLabelsSource|fLabelsDestination ||
		flags&(fIsReply|fIsReplyTrue) == fIsReplyTrue || flags&(fL4|fICMP) == fICMP ||
		flags&(fTime|fCreationDerived) == fCreationDerived {
		d.fail("bad flags")
		return
	}
	var blk *block
	if flags&(fEndTime|fIsReply|fIP|fL4|fSource|fDestination|fL7|fTraffic) != 0 {
		blk = new(block)
	}

	var rv uint64
	var rvRef strRef
	if flags&fRVNumeric != 0 {
		rv = d.uvarint()
	} else {
		rvRef.s = d.string()
	}
	var us, sec int64
	if flags&fTime != 0 {
		var base int64
		if flags&fRVNumeric != 0 {
			base = int64(rv)
		}
		us = d.varint() + base
		sec = floorDiv(us, 1e6)
		f.Time = metav1.NewMicroTime(time.UnixMicro(us))
	}
	if flags&fEndTime != 0 {
		blk.end = metav1.NewMicroTime(time.UnixMicro(us + d.varint()))
		f.EndTime = &blk.end
	}
	switch {
	case flags&fCreation != 0:
		f.CreationTimestamp = metav1.NewTime(time.Unix(sec+d.varint(), 0))
	case flags&fCreationDerived != 0:
		f.CreationTimestamp = metav1.NewTime(time.Unix(sec, 0))
	}
	f.NodeName = d.string()
	switch {
	case flags&fNameDerived != 0:
		start := len(d.scratch)
		d.scratch = append(append(d.scratch, f.NodeName...), '.')
		if flags&fRVNumeric != 0 {
			rvStart := len(d.scratch)
			d.scratch = strconv.AppendUint(d.scratch, rv, 10)
			rvRef = strRef{start: rvStart, end: len(d.scratch), scratch: true}
		} else {
			d.scratch = append(d.scratch, rvRef.s...)
		}
		d.set(&f.Name, strRef{start: start, end: len(d.scratch), scratch: true})
	default:
		f.Name = d.string()
		if flags&fRVNumeric != 0 {
			start := len(d.scratch)
			d.scratch = strconv.AppendUint(d.scratch, rv, 10)
			rvRef = strRef{start: start, end: len(d.scratch), scratch: true}
		}
	}
	d.set(&f.ResourceVersion, rvRef)
	f.Namespace = d.string()
	if flags&fUIDBinary != 0 {
		u := d.bytes(16)
		if d.err == nil {
			start := len(d.scratch)
			d.scratch = appendFormatUUID(d.scratch, u)
			d.set((*string)(&f.UID), strRef{start: start, end: len(d.scratch), scratch: true})
		}
	} else {
		f.UID = types.UID(d.string())
	}
	f.Verdict = v1alpha1.Verdict(d.enum(verdicts))
	f.DropReason = d.enum(dropReasons)
	f.TrafficDirection = v1alpha1.TrafficDirection(d.enum(directions))
	if flags&fIsReply != 0 {
		blk.reply = flags&fIsReplyTrue != 0
		f.IsReply = &blk.reply
	}
	f.Interface = d.string()
	var src, dst strRef
	if flags&fIP != 0 {
		f.IP = &blk.ip
		f.IP.IPVersion = v1alpha1.IPVersion(d.enum(ipVersions))
		src = d.addr(false, strRef{}, strRef{})
		dst = d.addr(false, strRef{}, strRef{})
		d.set(&f.IP.Source, src)
		d.set(&f.IP.Destination, dst)
	}
	var sport, dport int32
	if flags&fL4 != 0 {
		l4 := &blk.l4
		f.L4 = l4
		l4.Protocol = v1alpha1.Protocol(d.enum(protocols))
		l4.SourcePort = d.int32()
		l4.DestinationPort = d.int32()
		l4.TCPFlags = d.tcpFlags()
		if flags&fICMP != 0 {
			l4.ICMP = &blk.icmp
			l4.ICMP.Type = d.int32()
			l4.ICMP.Code = d.int32()
		}
		sport, dport = l4.SourcePort, l4.DestinationPort
	}
	if flags&fSource != 0 {
		f.Source = &blk.src
		d.endpoint(f.Source, sport, flags&fIP != 0, src, dst)
	}
	if flags&fDestination != 0 {
		f.Destination = &blk.dst
		d.endpoint(f.Destination, dport, flags&fIP != 0, src, dst)
	}
	if flags&fL7 != 0 {
		f.L7 = &blk.l7
		d.layer7(f.L7)
	}
	if flags&fTraffic != 0 {
		f.Traffic = &blk.tr
		f.Traffic.Packets = d.varint()
		f.Traffic.Bytes = d.varint()
		f.Traffic.PacketsReply = d.varint()
		f.Traffic.BytesReply = d.varint()
	}
	switch {
	case flags&fLabelsSource != 0:
		if f.Source == nil || len(f.Source.Labels) == 0 {
			d.fail("labels refer to no source labels")
			return
		}
		f.Labels = cloneMap(f.Source.Labels)
	case flags&fLabelsDestination != 0:
		if f.Destination == nil || len(f.Destination.Labels) == 0 {
			d.fail("labels refer to no destination labels")
			return
		}
		f.Labels = cloneMap(f.Destination.Labels)
	default:
		f.Labels = d.strMap()
	}
	if flags&fRare != 0 {
		d.rare(&f.ObjectMeta)
	}
	if flags&fTypeMeta != 0 {
		f.APIVersion = d.string()
		f.Kind = d.string()
	}
}

func cloneMap(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func (d *decoder) tcpFlags() []string {
	v := d.uvarint()
	if v == 0 {
		return nil
	}
	var order []uint8
	switch v & 3 {
	case flagsSorted:
		order = tcpFlagsSorted
	case flagsInBits:
		order = tcpFlagsInBits
	case flagsList:
		n := v >> 2
		if n > uint64(len(d.b)-d.i) {
			d.fail("length exceeds input")
			return nil
		}
		l := make([]string, n)
		for i := range l {
			l[i] = d.enum(tcpFlagsByBit)
		}
		return l
	default:
		d.fail("bad tcp flags")
		return nil
	}
	mask := v >> 2
	if mask >= 1<<len(tcpFlagsByBit) {
		d.fail("bad tcp flags")
		return nil
	}
	l := make([]string, 0, countBits(mask))
	for _, bit := range order {
		if mask&(1<<bit) != 0 {
			l = append(l, tcpFlagsByBit[bit])
		}
	}
	return l
}

func (d *decoder) endpoint(ep *v1alpha1.Endpoint, l4Port int32, refs bool, src, dst strRef) {
	d.set(&ep.IP, d.addr(refs, src, dst))
	if p := d.uvarint(); p == 0 {
		ep.Port = l4Port
	} else {
		v := unzigzag(p - 1)
		if v < math.MinInt32 || v > math.MaxInt32 || int32(v) == l4Port {
			d.fail("bad port")
			return
		}
		ep.Port = int32(v)
	}
	ep.Namespace = d.string()
	ep.PodName = d.string()
	ep.Labels = d.strMap()
	if n := d.count(2); n > 0 {
		ep.Workloads = make([]v1alpha1.Workload, n)
		for i := range ep.Workloads {
			ep.Workloads[i].Kind = d.enum(workloadKinds)
			ep.Workloads[i].Name = d.string()
		}
	}
	ep.Service = d.string()
}

func (d *decoder) layer7(l7 *v1alpha1.Layer7) {
	bits := d.byte()
	if bits&^l7All != 0 || bits&(l7Latency|l7LatencyMicros) == l7LatencyMicros {
		d.fail("bad l7 bits")
		return
	}
	l7.Type = v1alpha1.L7Type(d.enum(l7Types))
	if bits&l7Latency != 0 {
		v := d.varint()
		if bits&l7LatencyMicros != 0 {
			if v > math.MaxInt64/1000 || v < math.MinInt64/1000 {
				d.fail("latency out of range")
				return
			}
			v *= 1000
		} else if v%1000 == 0 {
			d.fail("non-canonical latency")
			return
		}
		l7.Latency = &metav1.Duration{Duration: time.Duration(v)}
	}
	if bits&l7DNS != 0 {
		dns := new(v1alpha1.DNS)
		l7.DNS = dns
		dns.Query = d.string()
		if n := d.count(1); n > 0 {
			dns.IPs = make([]string, n)
			for i := range dns.IPs {
				d.set(&dns.IPs[i], d.addr(false, strRef{}, strRef{}))
			}
		}
		dns.TTL = d.int32()
		dns.CNAMEs = d.strList()
		dns.RCode = d.int32()
		dns.QTypes = d.enumList(dnsTypes)
		dns.RRTypes = d.enumList(dnsTypes)
	}
	if bits&l7HTTP != 0 {
		h := new(v1alpha1.HTTP)
		l7.HTTP = h
		h.Code = d.int32()
		h.Method = d.enum(httpMethods)
		h.URL = d.string()
		h.Protocol = d.enum(httpProtocols)
		if n := d.count(2); n > 0 {
			h.Headers = make([]v1alpha1.HTTPHeader, n)
			for i := range h.Headers {
				h.Headers[i].Key = d.string()
				h.Headers[i].Value = d.string()
			}
		}
	}
	if bits&l7GRPC != 0 {
		g := new(v1alpha1.GRPC)
		l7.GRPC = g
		g.Service = d.string()
		g.Method = d.string()
		g.StatusCode = d.int32()
	}
	if bits&l7Kafka != 0 {
		k := new(v1alpha1.Kafka)
		l7.Kafka = k
		k.ErrorCode = d.int32()
		k.APIVersion = d.int32()
		k.APIKey = d.enum(kafkaAPIKeys)
		k.CorrelationID = d.int32()
		k.Topic = d.string()
	}
}

func (d *decoder) rare(m *metav1.ObjectMeta) {
	bits := d.uvarint()
	if bits == 0 || bits&^rareAll != 0 {
		d.fail("bad metadata bits")
		return
	}
	if bits&rareGenerateName != 0 {
		m.GenerateName = d.string()
	}
	if bits&rareSelfLink != 0 {
		m.SelfLink = d.string()
	}
	if bits&rareGeneration != 0 {
		m.Generation = d.varint()
	}
	if bits&rareDeletionTimestamp != 0 {
		t := metav1.NewTime(time.Unix(d.varint(), 0))
		m.DeletionTimestamp = &t
	}
	if bits&rareDeletionGracePeriod != 0 {
		v := d.varint()
		m.DeletionGracePeriodSeconds = &v
	}
	if bits&rareAnnotations != 0 {
		m.Annotations = d.strMap()
	}
	if bits&rareOwnerReferences != 0 {
		if n := d.count(5); n > 0 {
			m.OwnerReferences = make([]metav1.OwnerReference, n)
			for i := range m.OwnerReferences {
				r := &m.OwnerReferences[i]
				r.APIVersion = d.string()
				r.Kind = d.string()
				r.Name = d.string()
				r.UID = types.UID(d.string())
				b := d.byte()
				if b&^15 != 0 || b&3 == 2 || b&12 == 8 {
					d.fail("bad owner reference bits")
					return
				}
				if b&1 != 0 {
					v := b&2 != 0
					r.Controller = &v
				}
				if b&4 != 0 {
					v := b&8 != 0
					r.BlockOwnerDeletion = &v
				}
			}
		}
	}
	if bits&rareFinalizers != 0 {
		m.Finalizers = d.strList()
	}
	if bits&rareManagedFields != 0 {
		if n := d.count(6); n > 0 {
			m.ManagedFields = make([]metav1.ManagedFieldsEntry, n)
			for i := range m.ManagedFields {
				mf := &m.ManagedFields[i]
				b := d.byte()
				if b&^3 != 0 {
					d.fail("bad managed fields bits")
					return
				}
				mf.Manager = d.string()
				mf.Operation = metav1.ManagedFieldsOperationType(d.string())
				mf.APIVersion = d.string()
				if b&1 != 0 {
					t := metav1.NewTime(time.Unix(d.varint(), 0))
					mf.Time = &t
				}
				mf.FieldsType = d.string()
				if b&2 != 0 {
					raw := d.string()
					if raw == "" {
						d.fail("empty fieldsV1")
						return
					}
					mf.FieldsV1 = &metav1.FieldsV1{}
					mf.FieldsV1.SetRawString(raw)
				}
				mf.Subresource = d.string()
			}
		}
	}
}
