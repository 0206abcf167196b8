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

package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowcodec"
)

// Columnar frames.
//
// A frame's flows are stored column by column. What differs from flow to
// flow (versions, times, UIDs, ports, counters, latencies) is taken out of
// each flow into columns of its own, delta- or varint-encoded. What is
// left of a flow, its shape (endpoints with their labels and workloads,
// verdict, addresses, flags, L7 records), is one of a few per frame: it is
// encoded with flowcodec and dictionary-encoded, so a frame holds each
// distinct shape once and one small number per flow. Fields that do not fit
// a column exactly (a resource version that is not the flow's, a time
// before 1970, a port beyond 16 bits) simply stay in the shape, so every
// flow round-trips as flowcodec would round-trip it.
//
// Uncompressed, a frame of n flows is
//
//	uvarint n
//	uvarint shapes, then per shape uvarint(len) and its flowcodec value
//	n × uvarint  shape index
//	n × uvarint  column bits (c* below)
//	n × varint   time: µs after the previous flow's (the first: since 1970)
//	n × varint   rv - time µs, after the previous flow's
//	per flow with cUID: 16 bytes
//	per flow with cCreated: varint creationTimestamp - time, s (floored)
//	per flow with cEnd: varint endTime - time, µs
//	per flow with cPorts: 2 bytes source port, then varint destination port
//	               after the previous such flow's
//	per flow with cTraffic: varint packets, bytes, packetsReply, bytesReply
//	per flow with cLatency: varint nanoseconds
//
// and the frame is zstd-compressed. Times and versions come in storage
// order (block.go), runs of one pair of endpoints in time order, so their
// deltas are small; shape indexes and destination ports repeat in runs.
const (
	cRV      = 1 << iota // metadata.resourceVersion is the record's version
	cName    = 1 << iota // metadata.name is nodeName "." resourceVersion
	cTime    = 1 << iota // time is the time column
	cCreated = 1 << iota // creationTimestamp, in seconds after time's second
	cEnd     = 1 << iota
	cUID     = 1 << iota // a lowercase RFC 4122 UUID
	cPorts   = 1 << iota // l4's ports
	cSrcPort = 1 << iota // source.port is l4's source port
	cDstPort = 1 << iota
	cTraffic = 1 << iota
	cLatency = 1 << iota // l7.latency
	cAll     = 1<<iota - 1
)

var errMalformedFrame = errors.New("malformed frame")

// frame is a decoded frame: its columns, from which flow builds each flow
// on demand.
type frame struct {
	shapes  [][]byte // in the decompressed buffer
	shape   []uint32
	bits    []uint16
	time    []int64 // µs
	rv      []uint64
	uid     [][]byte
	created []int64 // s after time's second
	end     []int64 // µs after time
	sport   []int32
	dport   []int32
	traffic [][4]int64
	latency []int64
}

// rows returns the number of flows of the frame.
func (fr *frame) rows() int { return len(fr.shape) }

// flow decodes the flow of row i.
func (fr *frame) flow(i int) (*v1alpha1.Flow, error) {
	f := new(v1alpha1.Flow)
	if err := flowcodec.Unmarshal(fr.shapes[fr.shape[i]], f); err != nil {
		return nil, err
	}
	bits := fr.bits[i]
	if bits&cRV != 0 {
		f.ResourceVersion = strconv.FormatUint(fr.rv[i], 10)
	}
	if bits&cName != 0 {
		f.Name = f.NodeName + "." + f.ResourceVersion
	}
	us := fr.time[i]
	if bits&cTime != 0 {
		f.Time = metav1.NewMicroTime(time.UnixMicro(us))
	}
	if bits&cCreated != 0 {
		f.CreationTimestamp = metav1.NewTime(time.Unix(us/1e6+fr.created[i], 0))
	}
	if bits&cEnd != 0 {
		end := metav1.NewMicroTime(time.UnixMicro(us + fr.end[i]))
		f.EndTime = &end
	}
	if bits&cUID != 0 {
		f.UID = types.UID(formatUUID(fr.uid[i]))
	}
	if bits&cPorts != 0 {
		if f.L4 == nil {
			return nil, fmt.Errorf("%w: ports without l4", errMalformedFrame)
		}
		f.L4.SourcePort, f.L4.DestinationPort = fr.sport[i], fr.dport[i]
	}
	if bits&cSrcPort != 0 {
		if f.Source == nil || f.L4 == nil {
			return nil, fmt.Errorf("%w: source port without a source", errMalformedFrame)
		}
		f.Source.Port = f.L4.SourcePort
	}
	if bits&cDstPort != 0 {
		if f.Destination == nil || f.L4 == nil {
			return nil, fmt.Errorf("%w: destination port without a destination", errMalformedFrame)
		}
		f.Destination.Port = f.L4.DestinationPort
	}
	if bits&cTraffic != 0 {
		if f.Traffic == nil {
			return nil, fmt.Errorf("%w: counters without traffic", errMalformedFrame)
		}
		t := fr.traffic[i]
		f.Traffic.Packets, f.Traffic.Bytes, f.Traffic.PacketsReply, f.Traffic.BytesReply = t[0], t[1], t[2], t[3]
	}
	if bits&cLatency != 0 {
		if f.L7 == nil {
			return nil, fmt.Errorf("%w: latency without l7", errMalformedFrame)
		}
		f.L7.Latency = &metav1.Duration{Duration: time.Duration(fr.latency[i])}
	}
	return f, nil
}

// indexValues calls fn with the posting value of every indexed field of
// every flow of the frame, a value as often as it comes: the values of a
// shape once, and each flow's destination port.
func (fr *frame) indexValues(fn func(field indexField, v string)) error {
	decoded := make([]bool, len(fr.shapes))
	for i, sh := range fr.shape {
		if fr.bits[i]&cPorts != 0 {
			if fr.sport[i] != 0 || fr.dport[i] != 0 {
				fn(idxDestPort, postingValue(idxDestPort, strconv.Itoa(int(fr.dport[i]))))
			}
		}
		if decoded[sh] {
			continue // a shape without cPorts holds its flows' ports
		}
		decoded[sh] = true
		f, err := fr.flow(i)
		if err != nil {
			return err
		}
		vals := indexValues(f)
		for field := indexField(1); field <= numIndexes; field++ {
			if vals[field] != "" && (field != idxDestPort || fr.bits[i]&cPorts == 0) {
				fn(field, postingValue(field, vals[field]))
			}
		}
	}
	return nil
}

// frameEncoder encodes frames; encoders are pooled with their buffers, so
// that a write allocates little beyond its output.
type frameEncoder struct {
	raw    []byte // the uncompressed frame
	shapes []byte // the flowcodec values of the frame's shapes, back to back
	ends   []int  // shape i is shapes[ends[i-1]:ends[i]]
	index  map[uint64]uint32
	seed   maphash.Seed
	rvText []byte

	shape   []uint32
	bits    []uint16
	uid     []byte
	created []int64
	end     []int64
	ports   []int32 // source, destination
	traffic []int64
	latency []int64
	// The shape of the flow being added (cur), and the shapes last
	// encoded, most recent first, with their indexes: storage order puts
	// flows of one pair of endpoints side by side, whose few shapes
	// alternate, so most flows are found to have one of the recent
	// shapes (flowcodec.SameEncoding) without being encoded.
	cur          *shapeBuf
	recent       [recentShapes]*shapeBuf
	recentShape  [recentShapes]uint32
	recentShapes int
}

// recentShapes is how many shapes a frameEncoder compares a flow with
// before it encodes the flow's shape: of a block of the demo application's
// 4,096 flows (BenchmarkFrames), with 774 distinct shapes in its frames,
// it encodes 3,041 shapes with 1, 1,599 with 4, 1,188 with 8 and 1,045
// with 16.
const recentShapes = 8

// shapeBuf holds a flow's shape: a copy of the flow and of the parts its
// columns change.
type shapeBuf struct {
	flow     v1alpha1.Flow
	l4       v1alpha1.Layer4
	src, dst v1alpha1.Endpoint
	l7       v1alpha1.Layer7
}

var frameEncoders = sync.Pool{New: func() any {
	e := &frameEncoder{index: map[uint64]uint32{}, seed: maphash.MakeSeed(), cur: new(shapeBuf)}
	for i := range e.recent {
		e.recent[i] = new(shapeBuf)
	}
	return e
}}

// zeroTraffic stands in for a flow's counters in its shape; flowcodec only
// reads it.
var zeroTraffic v1alpha1.Traffic

// encode appends the uncompressed frame of b's flows [lo, hi) to e.raw and
// returns each flow's shape index (valid until the next encode).
func (e *frameEncoder) encode(b *block, lo, hi int) ([]uint32, error) {
	e.reset()
	for i := lo; i < hi; i++ {
		if err := e.add(b.recs[i], b.times[i]); err != nil {
			return nil, err
		}
	}
	raw := binary.AppendUvarint(e.raw[:0], uint64(hi-lo))
	raw = binary.AppendUvarint(raw, uint64(len(e.ends)))
	start := 0
	for _, end := range e.ends {
		raw = binary.AppendUvarint(raw, uint64(end-start))
		raw = append(raw, e.shapes[start:end]...)
		start = end
	}
	for _, s := range e.shape {
		raw = binary.AppendUvarint(raw, uint64(s))
	}
	for _, bits := range e.bits {
		raw = binary.AppendUvarint(raw, uint64(bits))
	}
	var prev int64
	for i := lo; i < hi; i++ {
		us := b.times[i] / 1e3
		raw = binary.AppendVarint(raw, us-prev)
		prev = us
	}
	var prevLag int64
	for i := lo; i < hi; i++ {
		lag := int64(b.recs[i].RV) - b.times[i]/1e3
		raw = binary.AppendVarint(raw, lag-prevLag)
		prevLag = lag
	}
	raw = append(raw, e.uid...)
	for _, d := range e.created {
		raw = binary.AppendVarint(raw, d)
	}
	for _, d := range e.end {
		raw = binary.AppendVarint(raw, d)
	}
	var prevDport int32
	for i := 0; i < len(e.ports); i += 2 {
		raw = binary.BigEndian.AppendUint16(raw, uint16(e.ports[i]))
		raw = binary.AppendVarint(raw, int64(e.ports[i+1]-prevDport))
		prevDport = e.ports[i+1]
	}
	for _, c := range e.traffic {
		raw = binary.AppendVarint(raw, c)
	}
	for _, l := range e.latency {
		raw = binary.AppendVarint(raw, l)
	}
	e.raw = raw
	return e.shape, nil
}

func (e *frameEncoder) reset() {
	e.shapes, e.ends = e.shapes[:0], e.ends[:0]
	clear(e.index)
	e.shape, e.bits, e.uid, e.created, e.end = e.shape[:0], e.bits[:0], e.uid[:0], e.created[:0], e.end[:0]
	e.ports, e.traffic, e.latency = e.ports[:0], e.traffic[:0], e.latency[:0]
	e.recentShapes = 0
}

// add takes one flow apart into its columns and its shape.
func (e *frameEncoder) add(r Record, t int64) error {
	sb := e.cur
	sb.flow = *r.Flow // what is left is the shape; r.Flow is not changed
	f := &sb.flow
	var bits uint16
	e.rvText = strconv.AppendUint(e.rvText[:0], r.RV, 10)
	if f.ResourceVersion == string(e.rvText) {
		bits |= cRV
		if len(f.Name) == len(f.NodeName)+1+len(f.ResourceVersion) && f.Name[len(f.NodeName)] == '.' &&
			f.Name[:len(f.NodeName)] == f.NodeName && f.Name[len(f.NodeName)+1:] == f.ResourceVersion {
			bits |= cName
			f.Name = ""
		}
		f.ResourceVersion = ""
	}
	// The time column holds the flow's time in list order (flowTime), which
	// is its time when that is after 1970.
	if us := f.Time.UnixMicro(); !f.Time.IsZero() && us > 0 && us*1e3 == t {
		bits |= cTime
		f.Time = metav1.MicroTime{}
		// As a rule, the flow's second (flowcodec's fCreationDerived).
		if !f.CreationTimestamp.IsZero() {
			bits |= cCreated
			e.created = append(e.created, f.CreationTimestamp.Unix()-us/1e6)
			f.CreationTimestamp = metav1.Time{}
		}
		if f.EndTime != nil && !f.EndTime.IsZero() {
			bits |= cEnd
			e.end = append(e.end, f.EndTime.UnixMicro()-us)
			f.EndTime = nil
		}
	}
	if uid, ok := flowcodec.AppendUUID(e.uid, string(f.UID)); ok {
		bits |= cUID
		e.uid = uid
		f.UID = ""
	}
	if l4 := f.L4; l4 != nil && uint32(l4.SourcePort) <= 0xffff && uint32(l4.DestinationPort) <= 0xffff {
		bits |= cPorts
		e.ports = append(e.ports, l4.SourcePort, l4.DestinationPort)
		sb.l4 = *l4
		sb.l4.SourcePort, sb.l4.DestinationPort = 0, 0
		f.L4 = &sb.l4
		if f.Source != nil && f.Source.Port == l4.SourcePort {
			bits |= cSrcPort
			sb.src = *f.Source
			sb.src.Port = 0
			f.Source = &sb.src
		}
		if f.Destination != nil && f.Destination.Port == l4.DestinationPort {
			bits |= cDstPort
			sb.dst = *f.Destination
			sb.dst.Port = 0
			f.Destination = &sb.dst
		}
	}
	if tr := f.Traffic; tr != nil {
		bits |= cTraffic
		e.traffic = append(e.traffic, tr.Packets, tr.Bytes, tr.PacketsReply, tr.BytesReply)
		f.Traffic = &zeroTraffic
	}
	if f.L7 != nil && f.L7.Latency != nil {
		bits |= cLatency
		e.latency = append(e.latency, int64(f.L7.Latency.Duration))
		sb.l7 = *f.L7
		sb.l7.Latency = nil
		f.L7 = &sb.l7
	}
	e.bits = append(e.bits, bits)
	for k, sb := range e.recent[:e.recentShapes] {
		if flowcodec.SameEncoding(&sb.flow, f) {
			e.shape = append(e.shape, e.recentShape[k])
			return nil
		}
	}
	start := len(e.shapes)
	var err error
	e.shapes, err = flowcodec.AppendMarshal(e.shapes, f)
	if err != nil {
		return fmt.Errorf("encode flow %d: %w", r.RV, err)
	}
	if n := len(e.shapes) - start; n > MaxFlowBytes {
		return fmt.Errorf("flow %d takes %d bytes encoded, over the store's bound of %d", r.RV, n, MaxFlowBytes)
	}
	i := e.intern(start)
	e.shape = append(e.shape, i)
	// cur goes first among the recent shapes; the last one's buffer
	// holds the next flow's shape.
	n := min(e.recentShapes+1, recentShapes)
	last := e.recent[n-1]
	copy(e.recent[1:n], e.recent[:n-1])
	copy(e.recentShape[1:n], e.recentShape[:n-1])
	e.recent[0], e.recentShape[0], e.cur = e.cur, i, last
	e.recentShapes = n
	return nil
}

// intern returns the index of the shape encoded at e.shapes[start:], which
// it keeps if it is new to the frame and drops if not.
func (e *frameEncoder) intern(start int) uint32 {
	enc := e.shapes[start:]
	h := maphash.Bytes(e.seed, enc)
	if i, ok := e.index[h]; ok {
		from := 0
		if i > 0 {
			from = e.ends[i-1]
		}
		if string(e.shapes[from:e.ends[i]]) == string(enc) {
			e.shapes = e.shapes[:start]
			return i
		}
		// A hash collision: keep the shape twice, it decodes the same.
	}
	i := uint32(len(e.ends))
	e.ends = append(e.ends, len(e.shapes))
	e.index[h] = i
	return i
}

// decodeColumns parses an uncompressed frame. Its shapes point into raw.
func decodeColumns(raw []byte, firstRV uint64) (*frame, error) {
	d := colDecoder{b: raw}
	n := d.count(MaxBlockFlows)
	shapes := d.count(n)
	if d.err != nil {
		return nil, d.err
	}
	if n == 0 || shapes == 0 {
		return nil, fmt.Errorf("%w: no flows", errMalformedFrame)
	}
	fr := &frame{shapes: make([][]byte, shapes), shape: make([]uint32, n), bits: make([]uint16, n),
		time: make([]int64, n), rv: make([]uint64, n)}
	for i := range fr.shapes {
		fr.shapes[i] = d.bytes(d.count(maxFrameBytes))
	}
	for i := range fr.shape {
		fr.shape[i] = uint32(d.count(shapes - 1))
	}
	var seen uint16 // the bits of any flow
	for i := range fr.bits {
		b := d.uvarint()
		if b&^cAll != 0 || b&(cRV|cName) == cName || b&(cTime|cCreated) == cCreated || b&(cTime|cEnd) == cEnd ||
			b&(cPorts|cSrcPort) == cSrcPort || b&(cPorts|cDstPort) == cDstPort {
			return nil, fmt.Errorf("%w: column bits %#x", errMalformedFrame, b)
		}
		fr.bits[i] = uint16(b)
		seen |= fr.bits[i]
	}
	var us int64
	for i := range fr.time {
		us += d.varint()
		fr.time[i] = us
	}
	var lag int64
	for i := range fr.rv {
		lag += d.varint()
		fr.rv[i] = uint64(fr.time[i] + lag)
		if fr.rv[i] < firstRV {
			return nil, fmt.Errorf("%w: version %d below the block's first, %d", errMalformedFrame, fr.rv[i], firstRV)
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if seen&cUID != 0 {
		fr.uid = make([][]byte, n)
	}
	if seen&cCreated != 0 {
		fr.created = make([]int64, n)
	}
	if seen&cEnd != 0 {
		fr.end = make([]int64, n)
	}
	if seen&cPorts != 0 {
		fr.sport, fr.dport = make([]int32, n), make([]int32, n)
	}
	if seen&cTraffic != 0 {
		fr.traffic = make([][4]int64, n)
	}
	if seen&cLatency != 0 {
		fr.latency = make([]int64, n)
	}
	for i, bits := range fr.bits {
		if bits&cUID != 0 {
			fr.uid[i] = d.bytes(16)
		}
	}
	for i, bits := range fr.bits {
		if bits&cCreated != 0 {
			fr.created[i] = d.varint()
		}
	}
	for i, bits := range fr.bits {
		if bits&cEnd != 0 {
			fr.end[i] = d.varint()
		}
	}
	var dport int64
	for i, bits := range fr.bits {
		if bits&cPorts != 0 {
			fr.sport[i] = int32(binary.BigEndian.Uint16(d.bytes(2)))
			dport += d.varint()
			if dport < 0 || dport > 0xffff {
				return nil, fmt.Errorf("%w: destination port %d", errMalformedFrame, dport)
			}
			fr.dport[i] = int32(dport)
		}
	}
	for i, bits := range fr.bits {
		if bits&cTraffic != 0 {
			for k := range fr.traffic[i] {
				fr.traffic[i][k] = d.varint()
			}
		}
	}
	for i, bits := range fr.bits {
		if bits&cLatency != 0 {
			fr.latency[i] = d.varint()
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errMalformedFrame, len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return fr, nil
}

// colDecoder reads a frame's varints, remembering the first error.
type colDecoder struct {
	b   []byte
	err error
}

func (d *colDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errMalformedFrame, what)
	}
	d.b = nil
}

func (d *colDecoder) uvarint() uint64 {
	x, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *colDecoder) varint() int64 {
	x, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return x
}

// count reads a uvarint that must not exceed limit.
func (d *colDecoder) count(limit int) int {
	x := d.uvarint()
	if x > uint64(max(limit, 0)) {
		d.fail(fmt.Sprintf("%d over its bound %d", x, limit))
		return 0
	}
	return int(x)
}

func (d *colDecoder) bytes(n int) []byte {
	if n > len(d.b) {
		d.fail("truncated")
		if n <= 16 {
			return make([]byte, n) // a UID or a port, read before the error is
		}
		return nil
	}
	b := d.b[:n:n]
	d.b = d.b[n:]
	return b
}

// formatUUID is the UUID whose 16 bytes are u.
func formatUUID(u []byte) string {
	var b [36]byte
	return string(flowcodec.AppendFormatUUID(b[:0], u))
}
