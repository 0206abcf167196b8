package agentapi_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/agentapi"
	"flowscope.io/flowscope/nodeagent/hubble"
	"flowscope.io/flowscope/nodeagent/hubble/flowgen"
)

// realisticFlows returns n flows of the demo application as an agent stores
// and serves them: parsed from Hubble export lines, named and versioned.
func realisticFlows(tb testing.TB, n int) []v1alpha1.Flow {
	tb.Helper()
	t := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	now := func() time.Time {
		t = t.Add(time.Millisecond)
		return t
	}
	lines, err := flowgen.Generate(n, flowgen.Options{NodeName: "node-a", NodeIndex: -1, Seed: 5, Now: now})
	if err != nil {
		tb.Fatal(err)
	}
	flows := make([]v1alpha1.Flow, n)
	for i, line := range lines {
		f, err := hubble.ParseExportLine(line, hubble.Options{NodeName: "node-a"})
		if err != nil {
			tb.Fatal(err)
		}
		f.ResourceVersion = strconv.FormatInt(f.Time.UnixMicro()+1500, 10)
		f.Name = f.NodeName + "." + f.ResourceVersion
		flows[i] = *f
	}
	return flows
}

// messages returns one message of every type, with every field set.
func messages(tb testing.TB) []any {
	since := time.Date(2026, 3, 2, 9, 0, 0, 123456789, time.UTC)
	until := since.Add(time.Hour)
	filter := agentapi.Filter{Namespace: "shop", LabelSelector: "app=web", FieldSelector: "verdict=Dropped", Since: &since, Until: &until}
	flows := realisticFlows(tb, 3)
	return []any{
		&agentapi.ListRequest{Filter: filter, SnapshotRV: 1772442000000000, Limit: 500,
			After: &agentapi.Cursor{Time: since, Node: "node-b", RV: 1772441999999999}},
		&agentapi.ListRequest{},
		&agentapi.ListResponse{Flows: flows, More: true, SnapshotRV: 1772442000000000},
		&agentapi.ListResponse{},
		&agentapi.GetRequest{RV: 7, Namespace: "shop"},
		&agentapi.GetResponse{Flow: flows[0]},
		&agentapi.SessionRequest{ID: 7, Filter: filter, FromRV: 42},
		&agentapi.SessionRequest{ID: 7, Cancel: true},
		&agentapi.SessionRequest{Progress: 1772442000000123},
		&agentapi.SessionEvent{Type: agentapi.Added, RV: 45, IDs: []uint64{1, 7, 300}, Flow: &flows[0]},
		&agentapi.SessionEvent{Type: agentapi.Deleted, RV: 47, IDs: []uint64{300}, Flow: &flows[1]},
		&agentapi.SessionEvent{Type: agentapi.Progress, RV: 46},
		&agentapi.SessionEvent{Type: agentapi.CaughtUp, RV: 46, IDs: []uint64{7}},
		&agentapi.SessionEvent{Type: agentapi.Ended, IDs: []uint64{7}, Code: 11, Message: "too old"},
	}
}

// newOf returns a new zero message of m's type.
func newOf(m any) any {
	switch m.(type) {
	case *agentapi.ListRequest:
		return new(agentapi.ListRequest)
	case *agentapi.ListResponse:
		return new(agentapi.ListResponse)
	case *agentapi.GetRequest:
		return new(agentapi.GetRequest)
	case *agentapi.GetResponse:
		return new(agentapi.GetResponse)
	case *agentapi.SessionRequest:
		return new(agentapi.SessionRequest)
	case *agentapi.SessionEvent:
		return new(agentapi.SessionEvent)
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
		b, err := agentapi.Codec{}.Marshal(m)
		if err != nil {
			t.Fatalf("Marshal(%T): %v", m, err)
		}
		got := newOf(m)
		if err := (agentapi.Codec{}).Unmarshal(b, got); err != nil {
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
	list, err := agentapi.Codec{}.Marshal(&agentapi.ListRequest{Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		data    []byte
		into    any
		wantErr string
	}{
		{"empty", nil, new(agentapi.ListRequest), "empty message"},
		{"JSON of an older peer", []byte(`{"filter":{}}`), new(agentapi.ListRequest), "a JSON message from a peer of an older release"},
		{"another version", append([]byte{2}, list[1:]...), new(agentapi.ListRequest), "wire format version 2, want 1"},
		{"another message type", list, new(agentapi.GetRequest), "wrong message type"},
		{"truncated", list[:len(list)-1], new(agentapi.ListRequest), "truncated"},
		{"trailing bytes", append(list[:len(list):len(list)], 0), new(agentapi.ListRequest), "trailing bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := agentapi.Codec{}.Unmarshal(tt.data, tt.into)
			if !errors.Is(err, agentapi.ErrWire) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want ErrWire with %q", err, tt.wantErr)
			}
		})
	}
	if _, err := (agentapi.Codec{}).Marshal(&agentapi.SessionEvent{Type: "BOGUS"}); err == nil {
		t.Error("encoded an unknown event type")
	}
	// WatchEvent travels inside SessionEvent only.
	if _, err := (agentapi.Codec{}).Marshal(&agentapi.WatchEvent{Type: agentapi.Progress}); err == nil {
		t.Error("encoded a WatchEvent")
	}
}

// TestCodecKinds: a message's kind byte never changes, and the kinds of
// removed messages (5 and 6, the Watch call's) are not reused, so peers of
// different releases never misread each other's messages.
func TestCodecKinds(t *testing.T) {
	want := map[string]byte{"*agentapi.ListRequest": 1, "*agentapi.ListResponse": 2, "*agentapi.GetRequest": 3,
		"*agentapi.GetResponse": 4, "*agentapi.SessionRequest": 7, "*agentapi.SessionEvent": 8}
	for _, m := range messages(t) {
		b, err := agentapi.Codec{}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("%T", m)
		if k, ok := want[name]; !ok || b[0] != agentapi.WireVersion || b[1] != k {
			t.Errorf("%s: header %x, want version %d and kind %d", name, b[:2], agentapi.WireVersion, k)
		}
	}
}

// FuzzDecode: any input either fails with ErrWire or decodes to a message
// whose encoding decodes to the same message and re-encodes to itself. It
// never panics, whichever message type the input is read as.
func FuzzDecode(f *testing.F) {
	for _, m := range messages(f) {
		b, err := agentapi.Codec{}.Marshal(m)
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
			if err := (agentapi.Codec{}).Unmarshal(b, m); err != nil {
				if !errors.Is(err, agentapi.ErrWire) {
					t.Fatalf("%T: error %v does not match ErrWire", m, err)
				}
				continue
			}
			b2, err := agentapi.Codec{}.Marshal(m)
			if err != nil {
				t.Fatalf("%T: accepted input does not re-encode: %v", m, err)
			}
			m2 := newOf(typ)
			if err := (agentapi.Codec{}).Unmarshal(b2, m2); err != nil {
				t.Fatalf("%T: re-encoding fails to decode: %v\ninput %x\nre-encoded %x", m, err, b, b2)
			}
			if j1, j2 := toJSON(t, m), toJSON(t, m2); !bytes.Equal(j1, j2) {
				t.Fatalf("%T: re-encoding decodes differently:\n%s\n%s", m, j1, j2)
			}
			if b3, _ := (agentapi.Codec{}).Marshal(m2); !bytes.Equal(b2, b3) {
				t.Fatalf("%T: encoding not stable: %x then %x", m, b2, b3)
			}
		}
	})
}

// BenchmarkListResponse compares the wire codecs on a page of 500 flows:
// encode on the agent plus decode in the aggregated server.
func BenchmarkListResponse(b *testing.B) {
	resp := &agentapi.ListResponse{Flows: realisticFlows(b, 500), More: true, SnapshotRV: 1772442000000000}
	for _, c := range []struct {
		name      string
		marshal   func(any) ([]byte, error)
		unmarshal func([]byte, any) error
	}{
		{"json", json.Marshal, json.Unmarshal},
		{"binary", agentapi.Codec{}.Marshal, agentapi.Codec{}.Unmarshal},
	} {
		b.Run(c.name, func(b *testing.B) {
			var size int
			for b.Loop() {
				data, err := c.marshal(resp)
				if err != nil {
					b.Fatal(err)
				}
				size = len(data)
				if err := c.unmarshal(data, new(agentapi.ListResponse)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(size), "bytes/msg")
		})
	}
}
