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
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowcodec"
)

// roundTripFlows makes n flows that take every way into and around the
// columns: versions that are and are not the record's, names that are and
// are not derived, times before 1970 and zero, end times, UIDs that are
// and are not UUIDs, ports in and beyond 16 bits, endpoint ports that are
// and are not l4's, counters, latencies.
func roundTripFlows(rng *rand.Rand, n int) []Record {
	base := time.Now().Truncate(time.Second)
	var recs []Record
	rv := uint64(base.UnixMicro())
	for i := range n {
		rv += 1 + uint64(rng.IntN(3000))
		s := randomSpec(rng)
		if s.proto != "" && rng.IntN(2) == 0 {
			s.sport = int32(32768 + rng.IntN(28000))
		}
		t := base.Add(time.Duration(i)*time.Millisecond + time.Duration(rng.IntN(1000))*time.Nanosecond)
		f := s.flow(t, rv)
		switch rng.IntN(12) {
		case 0:
			f.ResourceVersion = "0" + strconv.FormatUint(rv, 10)
		case 1:
			f.Name = "other"
		case 2:
			f.Time = metav1.MicroTime{}
		case 3:
			f.Time = metav1.NewMicroTime(time.Unix(-5, 0))
		case 4:
			f.ResourceVersion, f.Name = "", ""
		}
		if rng.IntN(2) == 0 {
			f.CreationTimestamp = metav1.NewTime(t.Truncate(time.Second).Add(time.Duration(rng.IntN(2)) * time.Second))
		}
		if rng.IntN(2) == 0 {
			end := metav1.NewMicroTime(t.Add(time.Duration(rng.IntN(5000)-100) * time.Microsecond))
			if rng.IntN(8) == 0 {
				end = metav1.MicroTime{}
			}
			f.EndTime = &end
		}
		switch rng.IntN(3) {
		case 0:
			f.UID = types.UID(fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", rng.Uint32(), rng.IntN(1<<16), rng.IntN(1<<12), rng.IntN(1<<12), rng.Uint64()>>16))
		case 1:
			f.UID = "NOT-A-UUID"
		}
		if f.L4 != nil {
			switch rng.IntN(6) {
			case 0:
				f.L4.DestinationPort = 70000
			case 1:
				f.L4.SourcePort = -1
			}
			if f.Source != nil {
				f.Source.Port = []int32{0, f.L4.SourcePort, 9}[rng.IntN(3)]
			}
			if f.Destination != nil {
				f.Destination.Port = []int32{0, f.L4.DestinationPort, 9}[rng.IntN(3)]
			}
			if rng.IntN(4) == 0 {
				f.L4.TCPFlags = []string{"SYN", "ACK"}
			}
		}
		if rng.IntN(3) > 0 {
			f.Traffic = &v1alpha1.Traffic{Packets: rng.Int64N(100), Bytes: rng.Int64N(1<<20) - 10}
		}
		if f.L7 != nil && rng.IntN(2) == 0 {
			f.L7.Latency = &metav1.Duration{Duration: time.Duration(rng.Int64N(1e9))}
		}
		if f.Source != nil && rng.IntN(2) == 0 {
			f.Source.Labels = map[string]string{"app": s.app + "x"}
			if rng.IntN(2) == 0 {
				f.Labels = map[string]string{"app": s.app + "x"}
			}
		}
		if rng.IntN(2) == 0 {
			reply := rng.IntN(2) == 0
			f.IsReply = &reply
		}
		recs = append(recs, Record{RV: rv, Flow: f})
	}
	return recs
}

// TestFrameRoundTrip: every flow a frame holds decodes to what flowcodec
// makes of it, byte for byte once encoded again, with its version and its
// time in list order.
func TestFrameRoundTrip(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	for round := range 20 {
		recs := roundTripFlows(rng, 1+rng.IntN(3*frameFlows))
		blocks := cutBlocks(recs)
		jobs, err := encodeFrames(blocks)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, j := range jobs {
			_, entries, err := decodeFrame(j.out, nil, j.b.firstRV, nil)
			if err != nil {
				t.Fatalf("round %d: block %d frame %d: %v", round, j.b.firstRV, j.frame, err)
			}
			for k, e := range entries {
				r := j.b.recs[j.frame*frameFlows+k]
				got, err := e.fr.flow(e.i)
				if err != nil {
					t.Fatalf("flow %d: %v", r.RV, err)
				}
				want, err := flowcodec.Marshal(r.Flow)
				if err != nil {
					t.Fatal(err)
				}
				var wantFlow v1alpha1.Flow
				if err := flowcodec.Unmarshal(want, &wantFlow); err != nil {
					t.Fatal(err)
				}
				enc, err := flowcodec.Marshal(got)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(enc, want) || e.rv != r.RV || e.time != flowTime(r.Flow) {
					t.Fatalf("flow %d at %d came back as %d at %d:\n got %+v\nwant %+v", r.RV, flowTime(r.Flow), e.rv, e.time, got, &wantFlow)
				}
				if got.EndTime != nil && wantFlow.EndTime != nil && got.EndTime.Location() != wantFlow.EndTime.Location() ||
					got.Time.Location() != wantFlow.Time.Location() {
					t.Fatalf("flow %d: times in another zone", r.RV)
				}
				n++
			}
		}
		if n != len(recs) {
			t.Fatalf("%d flows decoded of %d", n, len(recs))
		}
	}
}

// TestBlocksOfPerFlowEncodingsCleared: a store of the layout before
// columnar frames opens empty, and holds nothing up to the last version it
// held, so that a watch resuming there gets 410 Gone.
func TestBlocksOfPerFlowEncodingsCleared(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, Options{Dir: dir})
	recs := roundTripFlows(rand.New(rand.NewPCG(1, 1)), 100)
	if err := s.Write(recs); err != nil {
		t.Fatal(err)
	}
	last := recs[len(recs)-1].RV
	if err := s.SetMeta(metaFormat, []byte("blocks/1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, Options{Dir: dir})
	if got, err := s.LastRV(); err != nil || got != 0 {
		t.Fatalf("LastRV of a cleared store: %d, %v", got, err)
	}
	if got := s.OldestCompleteRV(time.Now()); got <= last {
		t.Fatalf("OldestCompleteRV %d, want above the last version the older layout held, %d", got, last)
	}
	if format, _ := s.GetMeta(metaFormat); string(format) != currentFormat {
		t.Fatalf("format %q after opening", format)
	}
}

// TestAppendUUID: a UID goes into the UID column (flowcodec.AppendUUID) exactly when it is a
// lowercase RFC 4122 UUID, and formatUUID gives it back.
func TestAppendUUID(t *testing.T) {
	const u = "0123abcd-4567-89ef-a0b1-c2d3e4f5a6b7"
	for _, tc := range []struct {
		s  string
		ok bool
	}{
		{u, true},
		{"ffffffff-ffff-ffff-ffff-ffffffffffff", true},
		{"", false},
		{u[:35], false},
		{u + "0", false},
		{strings.ToUpper(u), false},
		{strings.Replace(u, "-", "0", 1), false},
		{"0123abcd04567-89ef-a0b1-c2d3e4f5a6b7", false},
		{"0123abcg-4567-89ef-a0b1-c2d3e4f5a6b7", false},
		{"0123abcd-4567-89ef-a0b1-c2d3e4f5a6b/", false},
		{"0123abcd-4567-89ef-a0b1-c2d3e4f5a6b:", false},
		{"0123abcd-4567-89ef-a0b1-c2d3e4f5a6b`", false},
	} {
		got, ok := flowcodec.AppendUUID([]byte("x"), tc.s)
		if ok != tc.ok {
			t.Errorf("flowcodec.AppendUUID(%q) = %v, want %v", tc.s, ok, tc.ok)
			continue
		}
		if !ok {
			if string(got) != "x" {
				t.Errorf("flowcodec.AppendUUID(%q) appended %q to a UID it refused", tc.s, got[1:])
			}
			continue
		}
		if len(got) != 17 || formatUUID(got[1:]) != tc.s {
			t.Errorf("flowcodec.AppendUUID(%q) = %x, which formats as %q", tc.s, got[1:], formatUUID(got[1:]))
		}
	}
}

// TestPostingBuilder: the posting lists Write makes from the frames' shapes
// are those of each flow's own values (what Check compares the stored lists
// with), with one builder reused from block to block.
func TestPostingBuilder(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 5))
	p := postingBuilders.Get().(*postingBuilder)
	defer postingBuilders.Put(p)
	for round := range 20 {
		recs := roundTripFlows(rng, 1+rng.IntN(3*frameFlows))
		withL7Details(rng, recs)
		blocks := cutBlocks(recs)
		jobs, err := encodeFrames(blocks)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range blocks {
			p.build(b, jobs)
			got := map[string][]uint32{}
			for _, l := range p.lists {
				got[fmt.Sprintf("%v=%s", l.field, l.value)] = slices.Clone(l.pos)
			}
			want := map[string][]uint32{}
			for field, values := range b.postings() {
				for v, pos := range values {
					want[fmt.Sprintf("%v=%s", indexField(field), v)] = pos
				}
			}
			if !maps.EqualFunc(got, want, slices.Equal) {
				t.Fatalf("round %d block %d: lists\n%v\nwant\n%v", round, b.firstRV, got, want)
			}
		}
	}
}

// TestCutBlocksOrder: each block holds its run of the records, in storage
// order (namespace, source pod, destination pod, destination port, time,
// version), and the records passed in are left as they were.
func TestCutBlocksOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	recs := roundTripFlows(rng, 2*MaxBlockFlows+100)
	in := slices.Clone(recs)
	blocks := cutBlocks(recs)
	if !slices.Equal(recs, in) {
		t.Fatal("cutBlocks changed its input")
	}
	n := 0
	for _, b := range blocks {
		want := slices.Clone(in[n : n+len(b.recs)])
		n += len(b.recs)
		key := func(r Record) []string {
			f := r.Flow
			k := []string{f.Namespace, "", "", fmt.Sprintf("%012d", int64(1)<<31), fmt.Sprintf("%020d", flowTime(f)), fmt.Sprintf("%020d", r.RV)}
			if f.Source != nil {
				k[1] = f.Source.PodName
			}
			if f.Destination != nil {
				k[2] = f.Destination.PodName
			}
			if f.L4 != nil {
				k[3] = fmt.Sprintf("%012d", int64(f.L4.DestinationPort)+1<<31)
			}
			return k
		}
		slices.SortFunc(want, func(a, b Record) int { return slices.Compare(key(a), key(b)) })
		if !slices.Equal(b.recs, want) {
			t.Fatalf("block %d is not in storage order", b.firstRV)
		}
		for i, r := range b.recs {
			if b.times[i] != flowTime(r.Flow) {
				t.Fatalf("block %d: flow %d's time moved apart from it", b.firstRV, r.RV)
			}
		}
	}
	if n != len(in) {
		t.Fatalf("blocks hold %d flows, want %d", n, len(in))
	}
}

// withL7Details gives the L7 flows among recs a type of every kind and
// the indexed field of their type (DNS query, HTTP URL, gRPC method, Kafka
// topic), from few values so that lists hold several flows, and leaves
// some without it.
func withL7Details(rng *rand.Rand, recs []Record) {
	for _, r := range recs {
		l7 := r.Flow.L7
		if l7 == nil {
			continue
		}
		l7.Type = pick(rng, v1alpha1.L7Types)
		if rng.IntN(5) == 0 {
			continue
		}
		v := pick(rng, testPods)
		switch l7.Type {
		case v1alpha1.L7TypeDNS:
			l7.DNS = &v1alpha1.DNS{Query: v + ".svc."}
		case v1alpha1.L7TypeHTTP:
			l7.HTTP = &v1alpha1.HTTP{Method: "GET", URL: "http://" + v + "/api"}
		case v1alpha1.L7TypeGRPC:
			l7.GRPC = &v1alpha1.GRPC{Service: "grpc.health.v1.Health", Method: v}
		case v1alpha1.L7TypeKafka:
			l7.Kafka = &v1alpha1.Kafka{Topic: v}
		}
	}
}
