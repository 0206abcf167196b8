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

package agentwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"google.golang.org/grpc/encoding"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowcodec"
	"flowscope.io/flowscope/flowfilter"
)

// WireVersion is the first byte of every message. A peer from a release
// with another wire format fails on it with an error that says so, instead
// of misreading the fields.
//
// # Format, version 1
//
// Integers are unsigned LEB128 varints ("uv"), signed ones zigzag varints
// ("zz"). A message is
//
//	version byte, WireVersion
//	kind    byte, the message type (kind* below)
//
// then its fields in declaration order, and nothing after them:
//
//	str     uv length, then the bytes
//	bool    byte 0 or 1
//	time    zz seconds since the Unix epoch, uv nanoseconds (< 1e9)
//	opt     byte 0 (absent) or 1, then the value
//	flow    uv length, then the flow in package flowcodec's encoding
//	filter  namespace str, labelSelector str, fieldSelector str,
//	        since opt time, until opt time
//	cursor  time, node str, rv uv
//	event   byte: 0 ADDED, 1 DELETED, 2 PROGRESS, 3 CAUGHT_UP, 4 ENDED
//
// ListRequest: filter, snapshotRV uv, after opt cursor, limit zz.
// ListResponse: snapshotRV uv, more bool, uv n, n flows.
// GetRequest: rv uv, namespace str. GetResponse: flow.
// FeedRequest: id uv, cancel bool, filter, fromRV uv, progress uv, then,
// only when not 0, heartbeat uv (milliseconds): a field added after the
// others, so that a request without it is what older servers send.
// FeedEvent: event, rv uv, uv n, n ids uv, opt flow, code uv,
// message str. SummaryRequest and SummaryResponse: see summary.go.
const WireVersion = 1

// ErrWire is matched by every decoding error of a message.
var ErrWire = errors.New("malformed agent API message")

// Kinds 5 and 6 were WatchRequest and WatchEvent, the messages of the
// per-watch Watch call that the Feed replaced; they are not reused. Kinds
// 7 and 8 are FeedRequest and FeedEvent, named SessionRequest and
// SessionEvent, in the same encoding, when the call was named Session.
const (
	kindListRequest  byte = 1
	kindListResponse byte = 2
	kindGetRequest   byte = 3
	kindGetResponse  byte = 4
	kindFeedRequest  byte = 7
	kindFeedEvent    byte = 8
)

var eventTypes = []EventType{Added, Deleted, Progress, CaughtUp, Ended}

// Codec is the gRPC codec of the agent API: compact, and fast to encode
// and decode for the flows of large list pages, which dominate the
// traffic between the agents and the aggregated server.
type Codec struct{}

var _ encoding.Codec = Codec{}

// Name implements encoding.Codec; it is the gRPC content subtype.
func (Codec) Name() string { return "flowscope" }

// Marshal implements encoding.Codec.
func (Codec) Marshal(v any) ([]byte, error) {
	e := wireEncoder{b: make([]byte, 0, 256)}
	switch m := v.(type) {
	case *ListRequest:
		e.header(kindListRequest)
		e.filter(&m.Filter)
		e.uvarint(m.SnapshotRV)
		e.bool(m.After != nil)
		if m.After != nil {
			e.cursor(m.After)
		}
		e.varint(m.Limit)
	case *ListResponse:
		e.header(kindListResponse)
		e.uvarint(m.SnapshotRV)
		e.bool(m.More)
		e.uvarint(uint64(len(m.Flows)))
		for i := range m.Flows {
			e.flow(&m.Flows[i])
		}
	case *GetRequest:
		e.header(kindGetRequest)
		e.uvarint(m.RV)
		e.string(m.Namespace)
	case *GetResponse:
		e.header(kindGetResponse)
		e.flow(&m.Flow)
	case *FeedRequest:
		e.header(kindFeedRequest)
		e.uvarint(m.ID)
		e.bool(m.Cancel)
		e.filter(&m.Filter)
		e.uvarint(m.FromRV)
		e.uvarint(m.Progress)
		if m.Heartbeat != 0 {
			e.heartbeat(m.Heartbeat)
		}
	case *FeedEvent:
		e.header(kindFeedEvent)
		e.eventType(m.Type)
		e.uvarint(m.RV)
		e.uvarint(uint64(len(m.IDs)))
		for _, id := range m.IDs {
			e.uvarint(id)
		}
		e.bool(m.Flow != nil)
		if m.Flow != nil {
			e.flow(m.Flow)
		}
		e.uvarint(uint64(m.Code))
		e.string(m.Message)
	case *SummaryRequest:
		e.summaryRequest(m)
	case *SummaryResponse:
		e.summaryResponse(m)
	default:
		return nil, fmt.Errorf("encode agent API message: unsupported type %T", v)
	}
	if e.err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, e.err)
	}
	return e.b, nil
}

// Unmarshal implements encoding.Codec. It rejects any input Marshal cannot
// have written with an error matching ErrWire.
func (Codec) Unmarshal(data []byte, v any) error {
	d := wireDecoder{b: data}
	switch m := v.(type) {
	case *ListRequest:
		*m = ListRequest{}
		d.header(kindListRequest)
		d.filter(&m.Filter)
		m.SnapshotRV = d.uvarint()
		if d.bool() {
			m.After = new(flowfilter.Cursor)
			d.cursor(m.After)
		}
		m.Limit = d.varint()
	case *ListResponse:
		*m = ListResponse{}
		d.header(kindListResponse)
		m.SnapshotRV = d.uvarint()
		m.More = d.bool()
		// Every flow takes at least minWireFlow bytes: a count beyond
		// that is a lie that must not become an allocation.
		if n := d.count(minWireFlow); n > 0 {
			m.Flows = make([]v1alpha1.Flow, n)
			for i := range m.Flows {
				d.flow(&m.Flows[i])
			}
		}
	case *GetRequest:
		*m = GetRequest{}
		d.header(kindGetRequest)
		m.RV = d.uvarint()
		m.Namespace = d.string()
	case *GetResponse:
		*m = GetResponse{}
		d.header(kindGetResponse)
		d.flow(&m.Flow)
	case *FeedRequest:
		*m = FeedRequest{}
		d.header(kindFeedRequest)
		m.ID = d.uvarint()
		m.Cancel = d.bool()
		d.filter(&m.Filter)
		m.FromRV = d.uvarint()
		m.Progress = d.uvarint()
		if d.err == nil && d.i < len(d.b) {
			m.Heartbeat = d.heartbeat()
		}
	case *FeedEvent:
		*m = FeedEvent{}
		d.header(kindFeedEvent)
		m.Type = d.eventType()
		m.RV = d.uvarint()
		if n := d.count(1); n > 0 {
			m.IDs = make([]uint64, n)
			for i := range m.IDs {
				m.IDs[i] = d.uvarint()
			}
		}
		if d.bool() {
			m.Flow = new(v1alpha1.Flow)
			d.flow(m.Flow)
		}
		if code := d.uvarint(); code <= math.MaxUint32 {
			m.Code = uint32(code)
		} else {
			d.fail("status code out of range")
		}
		m.Message = d.string()
	case *SummaryRequest:
		d.summaryRequest(m)
	case *SummaryResponse:
		d.summaryResponse(m)
	default:
		return fmt.Errorf("decode agent API message: unsupported type %T", v)
	}
	if d.err == nil && d.i != len(d.b) {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return fmt.Errorf("decode %T: %w", v, d.err)
	}
	return nil
}

type wireEncoder struct {
	b   []byte
	err error
}

func (e *wireEncoder) header(kind byte) { e.b = append(e.b, WireVersion, kind) }

func (e *wireEncoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }

// heartbeat writes a FeedRequest.Heartbeat in whole milliseconds, at
// least 1 and at most MaxHeartbeat's.
func (e *wireEncoder) heartbeat(d time.Duration) {
	if d < 0 || d > MaxHeartbeat {
		if e.err == nil {
			e.err = fmt.Errorf("heartbeat %v outside (0, %v]", d, MaxHeartbeat)
		}
		return
	}
	e.uvarint(uint64(max(d.Milliseconds(), 1)))
}

func (e *wireEncoder) varint(v int64) { e.b = binary.AppendVarint(e.b, v) }

func (e *wireEncoder) string(s string) {
	e.uvarint(uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *wireEncoder) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

func (e *wireEncoder) time(t time.Time) {
	e.varint(t.Unix())
	e.uvarint(uint64(t.Nanosecond()))
}

func (e *wireEncoder) optTime(t *time.Time) {
	e.bool(t != nil)
	if t != nil {
		e.time(*t)
	}
}

func (e *wireEncoder) filter(f *flowfilter.Filter) {
	e.string(f.Namespace)
	e.string(f.LabelSelector)
	e.string(f.FieldSelector)
	e.optTime(f.Since)
	e.optTime(f.Until)
}

func (e *wireEncoder) cursor(c *flowfilter.Cursor) {
	e.time(c.Time)
	e.string(c.Node)
	e.uvarint(c.RV)
}

func (e *wireEncoder) eventType(t EventType) {
	for i, known := range eventTypes {
		if t == known {
			e.b = append(e.b, byte(i))
			return
		}
	}
	if e.err == nil {
		e.err = fmt.Errorf("unknown watch event type %q", t)
	}
}

// flow writes the flow after a length prefix. The codec's encoding is
// typically under 256 bytes, so the prefix takes one or two bytes: encode
// after a two-byte gap, then close it or widen it.
func (e *wireEncoder) flow(f *v1alpha1.Flow) {
	start := len(e.b)
	b, err := flowcodec.AppendMarshal(append(e.b, 0, 0), f)
	if err != nil {
		if e.err == nil {
			e.err = err
		}
		return
	}
	n := len(b) - start - 2
	var prefix [binary.MaxVarintLen64]byte
	p := binary.PutUvarint(prefix[:], uint64(n))
	switch {
	case p == 2:
	case p < 2:
		copy(b[start+p:], b[start+2:])
		b = b[:len(b)-(2-p)]
	default:
		b = append(b, make([]byte, p-2)...)
		copy(b[start+p:], b[start+2:start+2+n])
	}
	copy(b[start:], prefix[:p])
	e.b = b
}

type wireDecoder struct {
	b   []byte
	i   int
	err error
}

func (d *wireDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at byte %d", ErrWire, what, d.i)
	}
}

func (d *wireDecoder) header(kind byte) {
	switch {
	case len(d.b) == 0:
		d.fail("empty message")
	case d.b[0] == '{':
		d.err = fmt.Errorf("%w: a JSON message from a peer of an older release; upgrade flowscope-apiserver and the agents to the same release", ErrWire)
	case d.b[0] != WireVersion:
		d.err = fmt.Errorf("%w: wire format version %d, want %d; upgrade flowscope-apiserver and the agents to the same release", ErrWire, d.b[0], WireVersion)
	case len(d.b) < 2 || d.b[1] != kind:
		d.i = 1
		d.fail("wrong message type")
	default:
		d.i = 2
	}
}

func (d *wireDecoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.i >= len(d.b) {
		d.fail("truncated")
		return 0
	}
	d.i++
	return d.b[d.i-1]
}

func (d *wireDecoder) heartbeat() time.Duration {
	ms := d.uvarint()
	if d.err == nil && (ms == 0 || ms > uint64(MaxHeartbeat.Milliseconds())) {
		d.fail("heartbeat out of range")
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

func (d *wireDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.i:])
	if n == 0 {
		d.fail("truncated")
		return 0
	}
	if n < 0 {
		d.fail("varint overflows 64 bits")
		return 0
	}
	d.i += n
	return v
}

func (d *wireDecoder) varint() int64 {
	u := d.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

// minWireFlow is the fewest bytes a flow takes on the wire: its length and
// the shortest value of package flowcodec. So a message of n bytes decodes
// to at most n/minWireFlow flows, at most 69 times n in memory (a Flow is
// 432 bytes, its optional parts 448 more): FuzzDecode checks the bound.
const minWireFlow = 1 + flowcodec.MinSize

// count reads a length whose items take at least minBytes each.
func (d *wireDecoder) count(minBytes int) int {
	n := d.uvarint()
	if n > uint64(len(d.b)-d.i)/uint64(minBytes) {
		d.fail("count beyond the message")
		return 0
	}
	return int(n)
}

func (d *wireDecoder) string() string {
	n := d.count(1)
	if d.err != nil {
		return ""
	}
	s := string(d.b[d.i : d.i+n])
	d.i += n
	return s
}

func (d *wireDecoder) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("bad bool")
	return false
}

func (d *wireDecoder) time() time.Time {
	sec := d.varint()
	nsec := d.uvarint()
	if nsec >= 1e9 {
		d.fail("nanoseconds out of range")
		return time.Time{}
	}
	// Only times JSON can print: the server puts them in responses.
	if sec < flowcodec.MinUnix || sec > flowcodec.MaxUnix {
		d.fail("time outside years 0-9999")
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

func (d *wireDecoder) optTime() *time.Time {
	if !d.bool() {
		return nil
	}
	t := d.time()
	return &t
}

func (d *wireDecoder) filter(f *flowfilter.Filter) {
	f.Namespace = d.string()
	f.LabelSelector = d.string()
	f.FieldSelector = d.string()
	f.Since = d.optTime()
	f.Until = d.optTime()
}

func (d *wireDecoder) cursor(c *flowfilter.Cursor) {
	c.Time = d.time()
	c.Node = d.string()
	c.RV = d.uvarint()
}

func (d *wireDecoder) eventType() EventType {
	i := d.byte()
	if int(i) >= len(eventTypes) {
		d.fail("unknown watch event type")
		return ""
	}
	return eventTypes[i]
}

func (d *wireDecoder) flow(f *v1alpha1.Flow) {
	n := d.count(1)
	if d.err != nil {
		return
	}
	if err := flowcodec.Unmarshal(d.b[d.i:d.i+n], f); err != nil {
		d.err = fmt.Errorf("%w: flow at byte %d: %w", ErrWire, d.i, err)
		return
	}
	d.i += n
}
