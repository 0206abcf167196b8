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

package flowcodec_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/diff"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowcodec"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func TestVersionIsNotJSON(t *testing.T) {
	// The store tells old JSON values from codec values by the first byte.
	if flowcodec.Version == '{' || flowcodec.Version == ' ' || flowcodec.Version == '\n' {
		t.Fatalf("version byte %q could start a JSON value", rune(flowcodec.Version))
	}
	b, err := flowcodec.Marshal(&v1alpha1.Flow{})
	if err != nil || b[0] != flowcodec.Version {
		t.Fatalf("Marshal = %x, %v", b, err)
	}
}

func TestRoundTripRealistic(t *testing.T) {
	var raw, js int
	flows := realisticFlows(t, 5000, 1)
	for _, f := range flows {
		b := checkRoundTrip(t, f)
		raw += len(b)
		j, _ := json.Marshal(f)
		js += len(j)
	}
	t.Logf("uncompressed: %.1f bytes/flow, JSON %.1f bytes/flow", float64(raw)/float64(len(flows)), float64(js)/float64(len(flows)))
}

func TestRoundTripRandom(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	n := 20000
	if testing.Short() {
		n = 2000
	}
	for range n {
		checkRoundTrip(t, randomFlow(r))
	}
}

func TestRoundTripEdges(t *testing.T) {
	reply := true
	for name, f := range map[string]*v1alpha1.Flow{
		"empty":           {},
		"empty pointers":  {IP: &v1alpha1.IP{}, L4: &v1alpha1.Layer4{ICMP: &v1alpha1.ICMP{}}, Source: &v1alpha1.Endpoint{}, Destination: &v1alpha1.Endpoint{}, L7: &v1alpha1.Layer7{DNS: &v1alpha1.DNS{}, HTTP: &v1alpha1.HTTP{}, GRPC: &v1alpha1.GRPC{}, Kafka: &v1alpha1.Kafka{}}, Traffic: &v1alpha1.Traffic{}, IsReply: &reply},
		"empty lists":     {L4: &v1alpha1.Layer4{TCPFlags: []string{}}, Source: &v1alpha1.Endpoint{Labels: map[string]string{}, Workloads: []v1alpha1.Workload{}}},
		"odd tcp flags":   {L4: &v1alpha1.Layer4{TCPFlags: []string{"SYN", "SYN", "", "BOGUS", "ACK"}}},
		"odd addresses":   {IP: &v1alpha1.IP{Source: "fe80::1%eth0", Destination: "010.1.2.3"}, Source: &v1alpha1.Endpoint{IP: "fe80::1%eth0"}, Destination: &v1alpha1.Endpoint{IP: "::ffff:1.2.3.4"}},
		"endpoint no ip":  {Source: &v1alpha1.Endpoint{IP: "10.0.0.1", Port: 5}},
		"rv not numeric":  {ObjectMeta: metav1ObjectMeta("n.007", "007"), NodeName: "n"},
		"rv empty, named": {ObjectMeta: metav1ObjectMeta("n.", ""), NodeName: "n"},
		"grpc message":    {L7: &v1alpha1.Layer7{Type: v1alpha1.L7TypeGRPC, GRPC: &v1alpha1.GRPC{Service: "s", Method: "m", StatusCode: 5, Message: "no order 42"}}},
		"grpc headers":    {L7: &v1alpha1.Layer7{Type: v1alpha1.L7TypeGRPC, GRPC: &v1alpha1.GRPC{Service: "s", Method: "m", ResponseHeaders: []v1alpha1.HTTPHeader{{Key: "x-served-by", Value: ""}}}}},
	} {
		t.Run(name, func(t *testing.T) { checkRoundTrip(t, f) })
	}
}

// TestGolden pins the format: a change to the bytes written for the same
// flow must come with a new version (or be a deliberate, reviewed change
// of this file with -update while no store holds version 1 values).
func TestGolden(t *testing.T) {
	flows := realisticFlows(t, 40, 3)
	var f *v1alpha1.Flow
	for _, g := range flows { // an HTTP response: the richest flow flowgen makes
		if g.L7 != nil && g.L7.HTTP != nil && g.L7.HTTP.Code != 0 {
			f = g
			break
		}
	}
	if f == nil {
		t.Fatal("no HTTP response among the flows")
	}
	jsonPath, binPath := filepath.Join("testdata", "golden.json"), filepath.Join("testdata", "golden.hex")
	if *update {
		j, _ := json.MarshalIndent(f, "", "  ")
		b, _ := flowcodec.Marshal(f)
		if err := os.WriteFile(jsonPath, append(j, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(binPath, []byte(hex.Dump(b)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	j, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	want := new(v1alpha1.Flow)
	if err := json.Unmarshal(j, want); err != nil {
		t.Fatal(err)
	}
	dump, err := os.ReadFile(binPath)
	if err != nil {
		t.Fatal(err)
	}
	golden := undump(t, string(dump))
	b, err := flowcodec.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, golden) {
		t.Errorf("Marshal(testdata/golden.json) differs from testdata/golden.hex:\n%s", hex.Dump(b))
	}
	got := new(v1alpha1.Flow)
	if err := flowcodec.Unmarshal(golden, got); err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("Unmarshal(golden) (-want +got):\n%s", diff.Diff(want, got))
	}
	t.Logf("golden flow: %d bytes, %d as JSON", len(golden), len(j))
}

// undump reads hex.Dump output back.
func undump(t *testing.T, s string) []byte {
	var out []byte
	for _, line := range strings.Split(s, "\n") {
		if len(line) < 10 {
			continue
		}
		hexPart := line[10:min(len(line), 58)]
		b, err := hex.DecodeString(strings.ReplaceAll(hexPart, " ", ""))
		if err != nil {
			t.Fatalf("golden.hex: %v", err)
		}
		out = append(out, b...)
	}
	return out
}

// TestMalformed feeds every truncation and many corruptions of valid
// values: each must fail cleanly or decode to something that re-encodes.
func TestMalformed(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	var values [][]byte
	for _, f := range realisticFlows(t, 300, 2) {
		b, _ := flowcodec.Marshal(f)
		values = append(values, b)
	}
	for range 300 {
		b, _ := flowcodec.Marshal(randomFlow(r))
		values = append(values, b)
	}
	var f v1alpha1.Flow
	for _, b := range values {
		for n := range len(b) {
			if err := flowcodec.Unmarshal(b[:n], &f); !errors.Is(err, flowcodec.ErrMalformed) {
				t.Fatalf("Unmarshal of %d of %d bytes: %v, want ErrMalformed\n%x", n, len(b), err, b)
			}
		}
		if err := flowcodec.Unmarshal(append(b[:len(b):len(b)], 0), &f); err == nil {
			t.Fatalf("trailing byte accepted")
		}
		for range 20 {
			c := bytes.Clone(b)
			c[r.Intn(len(c))] ^= byte(1 + r.Intn(255))
			checkReencode(t, c)
		}
	}
	for _, b := range []string{"", "{}", "\x01", "\x02\x00", "\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"} {
		if err := flowcodec.Unmarshal([]byte(b), &f); !errors.Is(err, flowcodec.ErrMalformed) {
			t.Errorf("Unmarshal(%q) = %v, want ErrMalformed", b, err)
		}
	}
}

// TestRefusesWhatJSONCannotPrint: a flow with a time outside years
// 0-9999, or with fieldsV1 that is not JSON, does not encode, since no
// response containing it could be written; the time bounds themselves do.
func TestRefusesWhatJSONCannotPrint(t *testing.T) {
	at := func(sec int64) metav1.Time { return metav1.Unix(sec, 0) }
	for _, tc := range []struct {
		name string
		set  func(*v1alpha1.Flow, int64)
	}{
		{"time", func(f *v1alpha1.Flow, s int64) { f.Time = metav1.NewMicroTime(time.Unix(s, 0)) }},
		{"endTime", func(f *v1alpha1.Flow, s int64) { e := metav1.NewMicroTime(time.Unix(s, 0)); f.EndTime = &e }},
		{"creationTimestamp", func(f *v1alpha1.Flow, s int64) { f.CreationTimestamp = at(s) }},
		{"deletionTimestamp", func(f *v1alpha1.Flow, s int64) { d := at(s); f.DeletionTimestamp = &d }},
		{"managedFields", func(f *v1alpha1.Flow, s int64) {
			f.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "m", Time: ptr(at(s))}}
		}},
	} {
		for _, sec := range []int64{flowcodec.MinUnix, flowcodec.MaxUnix} {
			f := &v1alpha1.Flow{}
			tc.set(f, sec)
			b, err := flowcodec.Marshal(f)
			if err != nil {
				t.Fatalf("%s at %d: %v", tc.name, sec, err)
			}
			checkReencode(t, b)
		}
		for _, sec := range []int64{flowcodec.MinUnix - 1, flowcodec.MaxUnix + 1} {
			f := &v1alpha1.Flow{}
			tc.set(f, sec)
			if _, err := flowcodec.Marshal(f); err == nil {
				t.Errorf("%s at %d s: encoded a time JSON cannot print", tc.name, sec)
			}
		}
	}
	f := &v1alpha1.Flow{}
	notJSON := &metav1.FieldsV1{}
	notJSON.SetRawString(`{"f:`)
	f.ManagedFields = []metav1.ManagedFieldsEntry{{FieldsV1: notJSON}}
	if _, err := flowcodec.Marshal(f); err == nil {
		t.Errorf("encoded managedFields whose fieldsV1 is not JSON")
	}
}

func ptr[T any](v T) *T { return &v }

// checkReencode: input the decoder accepts re-encodes to a value that
// decodes to the same flow and re-encodes to itself, and serves as JSON.
func checkReencode(t testing.TB, b []byte) {
	var f v1alpha1.Flow
	if err := flowcodec.Unmarshal(b, &f); err != nil {
		if !errors.Is(err, flowcodec.ErrMalformed) {
			t.Fatalf("error %v does not match ErrMalformed", err)
		}
		return
	}
	if len(b) < flowcodec.MinSize {
		t.Fatalf("accepted %d bytes, shorter than MinSize %d: %x", len(b), flowcodec.MinSize, b)
	}
	if _, err := json.Marshal(&f); err != nil {
		t.Fatalf("accepted input cannot be served as JSON: %v\ninput %x", err, b)
	}
	b2, err := flowcodec.Marshal(&f)
	if err != nil {
		t.Fatal(err)
	}
	var g v1alpha1.Flow
	if err := flowcodec.Unmarshal(b2, &g); err != nil {
		t.Fatalf("re-encoding of accepted input fails to decode: %v\ninput %x\nre-encoded %x", err, b, b2)
	}
	if !equality.Semantic.DeepEqual(&f, &g) {
		t.Fatalf("re-encoding of accepted input decodes differently (-first +second):\n%s\ninput %x", diff.Diff(&f, &g), b)
	}
	b3, _ := flowcodec.Marshal(&g)
	if !bytes.Equal(b2, b3) {
		t.Fatalf("encoding not stable: %x then %x", b2, b3)
	}
}
