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
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowcodec"
	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/internal/flowtest"
)

// messages returns one message of every type, with every field set.
func messages(tb testing.TB) []any {
	since := time.Date(2026, 3, 2, 9, 0, 0, 123456789, time.UTC)
	until := since.Add(time.Hour)
	filter := flowfilter.Filter{Namespace: "shop", LabelSelector: "app=web", FieldSelector: "verdict=Dropped", Since: &since, Until: &until}
	flows := flowtest.RealisticFlows(tb, 3)
	return []any{
		&agentwire.ListRequest{Filter: filter, SnapshotRV: 1772442000000000, Limit: 500,
			After: &flowfilter.Cursor{Time: since, Node: "node-b", RV: 1772441999999999}},
		&agentwire.ListRequest{},
		&agentwire.ListResponse{Flows: flows, More: true, SnapshotRV: 1772442000000000},
		&agentwire.ListResponse{},
		&agentwire.GetRequest{RV: 7, Namespace: "shop"},
		&agentwire.GetResponse{Flow: flows[0]},
		&agentwire.FeedRequest{ID: 7, Filter: filter, FromRV: 42},
		&agentwire.FeedRequest{ID: 7, Cancel: true},
		&agentwire.FeedRequest{Progress: 1772442000000123},
		&agentwire.FeedRequest{Heartbeat: 2500 * time.Millisecond},
		&agentwire.FeedEvent{Type: agentwire.Added, RV: 45, IDs: []uint64{1, 7, 300}, Flow: &flows[0]},
		&agentwire.FeedEvent{Type: agentwire.Deleted, RV: 47, IDs: []uint64{300}, Flow: &flows[1]},
		&agentwire.FeedEvent{Type: agentwire.Progress, RV: 46},
		&agentwire.FeedEvent{Type: agentwire.CaughtUp, RV: 46, IDs: []uint64{7}},
		&agentwire.FeedEvent{Type: agentwire.Ended, IDs: []uint64{7}, Code: 11, Message: "too old"},
		&agentwire.SummaryRequest{Filter: filter, SnapshotRV: 1772442000000000, MaxEdges: 100},
		&agentwire.SummaryRequest{},
		summaryResponse(tb),
		&agentwire.SummaryResponse{},
	}
}

// newOf returns a new zero message of m's type.
func newOf(m any) any {
	switch m.(type) {
	case *agentwire.ListRequest:
		return new(agentwire.ListRequest)
	case *agentwire.ListResponse:
		return new(agentwire.ListResponse)
	case *agentwire.GetRequest:
		return new(agentwire.GetRequest)
	case *agentwire.GetResponse:
		return new(agentwire.GetResponse)
	case *agentwire.FeedRequest:
		return new(agentwire.FeedRequest)
	case *agentwire.FeedEvent:
		return new(agentwire.FeedEvent)
	case *agentwire.SummaryRequest:
		return new(agentwire.SummaryRequest)
	case *agentwire.SummaryResponse:
		return new(agentwire.SummaryResponse)
	}
	panic("unknown message type")
}

func toJSON(tb testing.TB, m any) []byte {
	tb.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestCodecCarriesWhatJSONCarries: the binary codec replaced JSON on the
// wire, so a message must arrive as it did through JSON.
func TestCodecCarriesWhatJSONCarries(t *testing.T) {
	for _, m := range messages(t) {
		b, err := agentwire.Codec{}.Marshal(m)
		if err != nil {
			t.Fatalf("Marshal(%T): %v", m, err)
		}
		got := newOf(m)
		if err := (agentwire.Codec{}).Unmarshal(b, got); err != nil {
			t.Fatalf("Unmarshal(%T): %v", m, err)
		}
		viaJSON := newOf(m)
		if err := json.Unmarshal(toJSON(t, m), viaJSON); err != nil {
			t.Fatal(err)
		}
		if g, w := toJSON(t, got), toJSON(t, viaJSON); !bytes.Equal(g, w) {
			t.Errorf("%T through the codec:\n%s\nthrough JSON:\n%s", m, g, w)
		}
	}
}

func TestCodecRejects(t *testing.T) {
	list, err := agentwire.Codec{}.Marshal(&agentwire.ListRequest{Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	ask, err := agentwire.Codec{}.Marshal(&agentwire.FeedRequest{Progress: 9})
	if err != nil {
		t.Fatal(err)
	}
	beat := func(ms uint64) []byte { return binary.AppendUvarint(ask[:len(ask):len(ask)], ms) }
	for _, tt := range []struct {
		name    string
		data    []byte
		into    any
		wantErr string
	}{
		{"empty", nil, new(agentwire.ListRequest), "empty message"},
		{"JSON of an older peer", []byte(`{"filter":{}}`), new(agentwire.ListRequest), "a JSON message from a peer of an older release"},
		{"another version", append([]byte{2}, list[1:]...), new(agentwire.ListRequest), "wire format version 2, want 1"},
		{"another message type", list, new(agentwire.GetRequest), "wrong message type"},
		{"truncated", list[:len(list)-1], new(agentwire.ListRequest), "truncated"},
		{"trailing bytes", append(list[:len(list):len(list)], 0), new(agentwire.ListRequest), "trailing bytes"},
		{"a heartbeat of 0", beat(0), new(agentwire.FeedRequest), "heartbeat out of range"},
		{"a heartbeat over an hour", beat(uint64(time.Hour.Milliseconds()) + 1), new(agentwire.FeedRequest), "heartbeat out of range"},
		{"bytes after the heartbeat", append(beat(1000), 0), new(agentwire.FeedRequest), "trailing bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := agentwire.Codec{}.Unmarshal(tt.data, tt.into)
			if !errors.Is(err, agentwire.ErrWire) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want ErrWire with %q", err, tt.wantErr)
			}
		})
	}
	if _, err := (agentwire.Codec{}).Marshal(&agentwire.FeedRequest{Heartbeat: 2 * time.Hour}); err == nil {
		t.Error("encoded a heartbeat over MaxHeartbeat")
	}
	if _, err := (agentwire.Codec{}).Marshal(&agentwire.FeedEvent{Type: "BOGUS"}); err == nil {
		t.Error("encoded an unknown event type")
	}
	// Event travels inside FeedEvent only.
	if _, err := (agentwire.Codec{}).Marshal(&agentwire.Event{Type: agentwire.Progress}); err == nil {
		t.Error("encoded an Event")
	}
}

// TestCodecKinds: a message's kind byte never changes, and the kinds of
// removed messages (5 and 6, the Watch call's) are not reused, so peers of
// different releases never misread each other's messages.
func TestCodecKinds(t *testing.T) {
	want := map[string]byte{"*agentwire.ListRequest": 1, "*agentwire.ListResponse": 2, "*agentwire.GetRequest": 3,
		"*agentwire.GetResponse": 4, "*agentwire.FeedRequest": 7, "*agentwire.FeedEvent": 8,
		"*agentwire.SummaryRequest": 9, "*agentwire.SummaryResponse": 10}
	for _, m := range messages(t) {
		b, err := agentwire.Codec{}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("%T", m)
		if k, ok := want[name]; !ok || b[0] != agentwire.WireVersion || b[1] != k {
			t.Errorf("%s: header %x, want version %d and kind %d", name, b[:2], agentwire.WireVersion, k)
		}
	}
}

// maxDecodeAlloc bounds what decoding n hostile bytes may allocate: a
// flow takes at least 13 bytes on the wire and at most 896 in memory (the
// Flow, the block of optional parts that one flag asks for, and the copy
// of its bytes that its strings share), 69 times as many; the rest is the
// message and slack for the runtime.
func maxDecodeAlloc(n int) uint64 { return 70*uint64(n) + 64<<10 }

// decodeAllocation is what decoding b as a message of typ's type
// allocates, at least. The process's count includes what other goroutines
// allocate meanwhile (the fuzzing engine's): decoding is deterministic, so
// the least of three tries is its own.
func decodeAllocation(b []byte, typ any) uint64 {
	least := uint64(math.MaxUint64)
	for range 3 {
		m := newOf(typ)
		before := allocatedBytes()
		_ = agentwire.Codec{}.Unmarshal(b, m)
		least = min(least, allocatedBytes()-before)
		if least <= maxDecodeAlloc(len(b)) {
			break
		}
	}
	return least
}

// allocatedBytes is what the process has allocated so far, read without
// stopping the world (runtime.ReadMemStats would, and slow fuzzing down).
func allocatedBytes() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestDecodeAllocationBound: a list response of the most flows its bytes
// can hold, each the shortest flow whose flags make the decoder allocate
// its optional parts, stays within maxDecodeAlloc; so does a count that
// lies.
func TestDecodeAllocationBound(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation bounds do not hold under the race detector (sync.Pool drops decoders); this test runs without -race in make test")
	}
	// The empty flow with fIsReply (bit 2): version, flags, ten empty
	// fields.
	smallest := append([]byte{1, 4}, make([]byte, 10)...)
	if err := flowcodec.Unmarshal(smallest, new(v1alpha1.Flow)); err != nil {
		t.Fatalf("the smallest flow does not decode: %v", err)
	}
	const n = 100000
	ok, err := agentwire.Codec{}.Marshal(&agentwire.ListResponse{})
	if err != nil {
		t.Fatal(err)
	}
	header := ok[:len(ok)-1] // without the flow count
	for _, c := range []struct {
		name  string
		count uint64
		flows int
	}{
		{"as many flows as the bytes hold", n, n},
		{"a count that lies", 1 << 40, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := binary.AppendUvarint(bytes.Clone(header), c.count)
			for range c.flows {
				b = append(b, byte(len(smallest)))
				b = append(b, smallest...)
			}
			before := allocatedBytes()
			var m agentwire.ListResponse
			err := agentwire.Codec{}.Unmarshal(b, &m)
			alloc := allocatedBytes() - before
			t.Logf("%d bytes, %d flows, error %v: %d bytes allocated, %.1f per byte", len(b), len(m.Flows), err, alloc, float64(alloc)/float64(len(b)))
			if c.count == n && (err != nil || len(m.Flows) != n) {
				t.Fatalf("decoded %d flows, %v; want %d", len(m.Flows), err, n)
			}
			if alloc > maxDecodeAlloc(len(b)) {
				t.Errorf("allocated %d bytes, over the bound %d", alloc, maxDecodeAlloc(len(b)))
			}
		})
	}
}

// FuzzDecode: any input either fails with ErrWire or decodes to a message
// whose encoding decodes to the same message and re-encodes to itself. It
// never panics, whichever message type the input is read as.
func FuzzDecode(f *testing.F) {
	for _, m := range messages(f) {
		b, err := agentwire.Codec{}.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{}`))
	types := messages(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, typ := range types {
			m := newOf(typ)
			err := agentwire.Codec{}.Unmarshal(b, m)
			if alloc := decodeAllocation(b, typ); !raceEnabled && alloc > maxDecodeAlloc(len(b)) {
				t.Fatalf("%T: decoding %d bytes allocated %d, over the bound %d", m, len(b), alloc, maxDecodeAlloc(len(b)))
			}
			if err != nil {
				if !errors.Is(err, agentwire.ErrWire) {
					t.Fatalf("%T: error %v does not match ErrWire", m, err)
				}
				continue
			}
			b2, err := agentwire.Codec{}.Marshal(m)
			if err != nil {
				t.Fatalf("%T: accepted input does not re-encode: %v", m, err)
			}
			m2 := newOf(typ)
			if err := (agentwire.Codec{}).Unmarshal(b2, m2); err != nil {
				t.Fatalf("%T: re-encoding fails to decode: %v\ninput %x\nre-encoded %x", m, err, b, b2)
			}
			if j1, j2 := toJSON(t, m), toJSON(t, m2); !bytes.Equal(j1, j2) {
				t.Fatalf("%T: re-encoding decodes differently:\n%s\n%s", m, j1, j2)
			}
			if b3, _ := (agentwire.Codec{}).Marshal(m2); !bytes.Equal(b2, b3) {
				t.Fatalf("%T: encoding not stable: %x then %x", m, b2, b3)
			}
		}
	})
}

// BenchmarkListResponse compares the wire codecs on a page of 500 flows:
// encode on the agent plus decode in the aggregated server.
func BenchmarkListResponse(b *testing.B) {
	resp := &agentwire.ListResponse{Flows: flowtest.RealisticFlows(b, 500), More: true, SnapshotRV: 1772442000000000}
	for _, c := range []struct {
		name      string
		marshal   func(any) ([]byte, error)
		unmarshal func([]byte, any) error
	}{
		{"json", json.Marshal, json.Unmarshal},
		{"binary", agentwire.Codec{}.Marshal, agentwire.Codec{}.Unmarshal},
	} {
		b.Run(c.name, func(b *testing.B) {
			var size int
			for b.Loop() {
				data, err := c.marshal(resp)
				if err != nil {
					b.Fatal(err)
				}
				size = len(data)
				if err := c.unmarshal(data, new(agentwire.ListResponse)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(size), "bytes/msg")
		})
	}
}

// TestFeedRequestWithoutHeartbeat: a request that asks for no heartbeat is
// encoded as servers that never heard of one encode it, byte for byte, so
// agents of either release read the other's requests.
func TestFeedRequestWithoutHeartbeat(t *testing.T) {
	filter := flowfilter.Filter{Namespace: "shop"}
	for _, m := range []*agentwire.FeedRequest{{ID: 7, Filter: filter, FromRV: 42}, {Progress: 9}, {ID: 3, Cancel: true}} {
		b, err := agentwire.Codec{}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		// The encoding as it was: id, cancel, filter, fromRV, progress.
		want := []byte{agentwire.WireVersion, 7}
		want = binary.AppendUvarint(want, m.ID)
		want = append(want, map[bool]byte{false: 0, true: 1}[m.Cancel])
		for _, s := range []string{m.Filter.Namespace, m.Filter.LabelSelector, m.Filter.FieldSelector} {
			want = append(binary.AppendUvarint(want, uint64(len(s))), s...)
		}
		want = append(want, 0, 0) // no since, no until
		want = binary.AppendUvarint(binary.AppendUvarint(want, m.FromRV), m.Progress)
		if !bytes.Equal(b, want) {
			t.Errorf("%+v encodes as %x, want %x", m, b, want)
		}
	}
}
