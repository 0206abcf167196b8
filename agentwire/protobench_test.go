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

package agentwire_test

import (
	"fmt"
	"reflect"
	"runtime"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"flowscope.io/flowscope/agentwire"
	pb "flowscope.io/flowscope/agentwire/internal/protobench"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowcodec"
	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/internal/flowtest"
	"flowscope.io/flowscope/internal/rusage"
)

// BenchmarkProtobench measures agentwire's hand-written Codec against the
// generated protobuf messages of internal/protobench carrying flowcodec's
// bytes, for the decision written in that package's doc. One iteration is
// an encode and a decode of one message, from agentwire's Go types back to
// them (so flowcodec's work is in both): a list page of 500 flows, a feed
// event (the watch path: one flow for three subscriptions) and a feed
// request (a subscription with a filter).
//
// via=codec calls the codecs directly; via=grpc calls them as gRPC does:
// agentwire's through gRPC's bridge for a v1 codec (its Materialize copies
// what was received), protobuf through gRPC's own proto codec (pooled
// buffers), with the message received in 16 KiB HTTP/2 frames.
//
// The benchmark's own heap is a few MiB, so the garbage collector would
// run every other list page, and how often would depend on what each
// codec happens to hold when it starts: a ballast gives it a server's heap
// goal, and then sec/op and cpu-ns/op measure the codecs' own work, B/op
// and allocs/op what each leaves to the collector.
func BenchmarkProtobench(b *testing.B) {
	ballast := make([]byte, 64<<20) // never touched: costs no memory
	defer runtime.KeepAlive(ballast)
	flows := flowtest.RealisticFlows(b, 500)
	for _, m := range benchMessages(flows) {
		for _, via := range []string{"codec", "grpc"} {
			for _, w := range []wire{agentwireWire(m.zero), protobufWire(m.zero)} {
				b.Run(fmt.Sprintf("msg=%s/via=%s/wire=%s", m.name, via, w.name), func(b *testing.B) {
					roundTrip := w.codec
					if via == "grpc" {
						roundTrip = w.grpc
					}
					var size, i int
					b.ReportAllocs()
					cpu := rusage.CPU()
					for ; b.Loop(); i++ {
						n, err := roundTrip(m.msg(i))
						if err != nil {
							b.Fatal(err)
						}
						size += n
					}
					b.ReportMetric(float64(rusage.CPU()-cpu)/float64(i), "cpu-ns/op")
					b.ReportMetric(float64(size)/float64(i), "bytes/msg")
				})
			}
		}
	}
}

// TestProtobenchCarriesTheSame: the protobuf path decodes every benchmark
// message to what agentwire's codec decodes, so both do the same work.
func TestProtobenchCarriesTheSame(t *testing.T) {
	flows := flowtest.RealisticFlows(t, 20)
	for _, m := range benchMessages(flows) {
		for i := range 3 {
			msg := m.msg(i)
			data, err := agentwire.Codec{}.Marshal(msg)
			if err != nil {
				t.Fatal(err)
			}
			want := m.zero()
			if err := (agentwire.Codec{}).Unmarshal(data, want); err != nil {
				t.Fatal(err)
			}
			p, err := toProto(msg)
			if err != nil {
				t.Fatal(err)
			}
			data, err = proto.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			got := m.zero()
			if err := fromProto(data, got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s %d: protobuf decodes\n%+v\nagentwire decodes\n%+v", m.name, i, got, want)
			}
		}
	}
}

type benchMessage struct {
	name string
	msg  func(i int) any // the i-th message to send
	zero func() any      // a new message of its type, to decode into
}

func benchMessages(flows []v1alpha1.Flow) []benchMessage {
	since := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	page := &agentwire.ListResponse{Flows: flows, More: true, SnapshotRV: 1772442000000000}
	sub := &agentwire.FeedRequest{ID: 7, FromRV: 1772441999000000, Filter: flowfilter.Filter{
		Namespace: "shop", LabelSelector: "app=checkout", FieldSelector: "verdict=Dropped", Since: &since}}
	events := make([]*agentwire.FeedEvent, len(flows))
	for i := range flows {
		rv, _ := strconv.ParseUint(flows[i].ResourceVersion, 10, 64)
		events[i] = &agentwire.FeedEvent{Type: agentwire.Added, RV: rv, IDs: []uint64{3, 17, 42}, Flow: &flows[i]}
	}
	return []benchMessage{
		{"list500", func(int) any { return page }, func() any { return new(agentwire.ListResponse) }},
		{"feed-event", func(i int) any { return events[i%len(events)] }, func() any { return new(agentwire.FeedEvent) }},
		{"feed-request", func(int) any { return sub }, func() any { return new(agentwire.FeedRequest) }},
	}
}

// wire is one way to carry messages: each function encodes and decodes
// one and returns the size of its encoding.
type wire struct {
	name  string
	codec func(any) (int, error)
	grpc  func(any) (int, error)
}

func agentwireWire(zero func() any) wire {
	c := agentwire.Codec{}
	return wire{
		name: "agentwire",
		codec: func(m any) (int, error) {
			data, err := c.Marshal(m)
			if err != nil {
				return 0, err
			}
			return len(data), c.Unmarshal(data, zero())
		},
		// What grpc.ForceServerCodec and ForceCodec make of a v1 codec
		// (grpc's codecV1Bridge).
		grpc: func(m any) (int, error) {
			data, err := c.Marshal(m)
			if err != nil {
				return 0, err
			}
			sent := mem.BufferSlice{mem.SliceBuffer(data)}
			defer sent.Free()
			return len(data), c.Unmarshal(frames(sent).Materialize(), zero())
		},
	}
}

func protobufWire(zero func() any) wire {
	c := encoding.GetCodecV2(grpcproto.Name)
	return wire{
		name: "protobuf",
		codec: func(m any) (int, error) {
			p, err := toProto(m)
			if err != nil {
				return 0, err
			}
			data, err := proto.Marshal(p)
			if err != nil {
				return 0, err
			}
			return len(data), fromProto(data, zero())
		},
		grpc: func(m any) (int, error) {
			p, err := toProto(m)
			if err != nil {
				return 0, err
			}
			sent, err := c.Marshal(p)
			if err != nil {
				return 0, err
			}
			defer sent.Free()
			r := newProto(m)
			if err := c.Unmarshal(frames(sent), r); err != nil {
				return 0, err
			}
			return sent.Len(), fromProtoMessage(r, zero())
		},
	}
}

// frames is sent as the receiver gets it: in HTTP/2 DATA frames of
// 16 KiB at most, each a buffer of its own.
func frames(sent mem.BufferSlice) mem.BufferSlice {
	const frame = 16 << 10
	var data []byte
	if len(sent) == 1 {
		data = sent[0].ReadOnlyData()
	} else {
		data = sent.Materialize()
	}
	if len(data) <= frame {
		return mem.BufferSlice{mem.SliceBuffer(data)}
	}
	out := make(mem.BufferSlice, 0, (len(data)+frame-1)/frame)
	for len(data) > frame {
		out = append(out, mem.SliceBuffer(data[:frame]))
		data = data[frame:]
	}
	return append(out, mem.SliceBuffer(data))
}

// toProto converts an agentwire message to its protobuf equivalent, flows
// encoded with flowcodec.
func toProto(m any) (proto.Message, error) {
	switch m := m.(type) {
	case *agentwire.ListResponse:
		out := &pb.ListResponse{More: m.More, SnapshotRv: m.SnapshotRV, Flows: make([][]byte, len(m.Flows))}
		// One buffer for all of the page's flows.
		buf := make([]byte, 0, 256*len(m.Flows))
		for i := range m.Flows {
			start := len(buf)
			var err error
			if buf, err = flowcodec.AppendMarshal(buf, &m.Flows[i]); err != nil {
				return nil, err
			}
			out.Flows[i] = buf[start:len(buf):len(buf)]
		}
		return out, nil
	case *agentwire.FeedEvent:
		out := &pb.FeedEvent{Type: pbEventType(m.Type), Rv: m.RV, Ids: m.IDs, Code: m.Code, Message: m.Message}
		if m.Flow != nil {
			var err error
			if out.Flow, err = flowcodec.Marshal(m.Flow); err != nil {
				return nil, err
			}
		}
		return out, nil
	case *agentwire.FeedRequest:
		return &pb.FeedRequest{Id: m.ID, Cancel: m.Cancel, Filter: pbFilter(&m.Filter), FromRv: m.FromRV, Progress: m.Progress}, nil
	}
	return nil, fmt.Errorf("no protobuf message for %T", m)
}

func newProto(m any) proto.Message {
	switch m.(type) {
	case *agentwire.ListResponse:
		return new(pb.ListResponse)
	case *agentwire.FeedEvent:
		return new(pb.FeedEvent)
	case *agentwire.FeedRequest:
		return new(pb.FeedRequest)
	}
	return nil
}

// fromProto decodes data, the protobuf equivalent of v's type, into v.
func fromProto(data []byte, v any) error {
	p := newProto(v)
	if err := proto.Unmarshal(data, p); err != nil {
		return err
	}
	return fromProtoMessage(p, v)
}

func fromProtoMessage(p proto.Message, v any) error {
	switch p := p.(type) {
	case *pb.ListResponse:
		m := v.(*agentwire.ListResponse)
		*m = agentwire.ListResponse{More: p.More, SnapshotRV: p.SnapshotRv}
		if len(p.Flows) > 0 {
			m.Flows = make([]v1alpha1.Flow, len(p.Flows))
			for i, b := range p.Flows {
				if err := flowcodec.Unmarshal(b, &m.Flows[i]); err != nil {
					return err
				}
			}
		}
	case *pb.FeedEvent:
		m := v.(*agentwire.FeedEvent)
		*m = agentwire.FeedEvent{Type: eventType(p.Type), RV: p.Rv, IDs: p.Ids, Code: p.Code, Message: p.Message}
		if len(p.Flow) > 0 {
			m.Flow = new(v1alpha1.Flow)
			if err := flowcodec.Unmarshal(p.Flow, m.Flow); err != nil {
				return err
			}
		}
	case *pb.FeedRequest:
		m := v.(*agentwire.FeedRequest)
		*m = agentwire.FeedRequest{ID: p.Id, Cancel: p.Cancel, FromRV: p.FromRv, Progress: p.Progress}
		if f := p.Filter; f != nil {
			m.Filter = flowfilter.Filter{Namespace: f.Namespace, LabelSelector: f.LabelSelector,
				FieldSelector: f.FieldSelector, Since: goTime(f.Since), Until: goTime(f.Until)}
		}
	default:
		return fmt.Errorf("no agentwire message for %T", p)
	}
	return nil
}

func pbEventType(t agentwire.EventType) pb.EventType {
	switch t {
	case agentwire.Added:
		return pb.EventType_EVENT_TYPE_ADDED
	case agentwire.Deleted:
		return pb.EventType_EVENT_TYPE_DELETED
	case agentwire.Progress:
		return pb.EventType_EVENT_TYPE_PROGRESS
	case agentwire.CaughtUp:
		return pb.EventType_EVENT_TYPE_CAUGHT_UP
	case agentwire.Ended:
		return pb.EventType_EVENT_TYPE_ENDED
	}
	return pb.EventType_EVENT_TYPE_UNSPECIFIED
}

func eventType(t pb.EventType) agentwire.EventType {
	switch t {
	case pb.EventType_EVENT_TYPE_ADDED:
		return agentwire.Added
	case pb.EventType_EVENT_TYPE_DELETED:
		return agentwire.Deleted
	case pb.EventType_EVENT_TYPE_PROGRESS:
		return agentwire.Progress
	case pb.EventType_EVENT_TYPE_CAUGHT_UP:
		return agentwire.CaughtUp
	case pb.EventType_EVENT_TYPE_ENDED:
		return agentwire.Ended
	}
	return ""
}

func pbFilter(f *flowfilter.Filter) *pb.Filter {
	return &pb.Filter{Namespace: f.Namespace, LabelSelector: f.LabelSelector, FieldSelector: f.FieldSelector,
		Since: pbTime(f.Since), Until: pbTime(f.Until)}
}

func pbTime(t *time.Time) *timestamppb.Timestamp {
	if t == nil {
		return nil
	}
	return timestamppb.New(*t)
}

func goTime(ts *timestamppb.Timestamp) *time.Time {
	if ts == nil {
		return nil
	}
	t := ts.AsTime()
	return &t
}
