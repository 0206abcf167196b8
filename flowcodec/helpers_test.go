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
	"encoding/json"
	"fmt"
	"math/rand"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/diff"
	"sigs.k8s.io/randfill"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowcodec"
	"flowscope.io/flowscope/internal/flowgen"
	"flowscope.io/flowscope/nodeagent/hubble/parse"
)

// realisticFlows returns n flows of the demo application as the ingest
// pipeline stores them: parsed from Hubble export lines, with the name and
// resource version it assigns (a µs clock a little after the flow's time).
func realisticFlows(tb testing.TB, n int, seed uint64) []*v1alpha1.Flow {
	tb.Helper()
	start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	t := start
	now := func() time.Time {
		t = t.Add(time.Millisecond)
		return t
	}
	lines, err := flowgen.Generate(n, flowgen.Options{NodeName: "node-a", NodeIndex: -1, Seed: seed, Now: now})
	if err != nil {
		tb.Fatal(err)
	}
	flows := make([]*v1alpha1.Flow, n)
	var rv uint64
	for i, line := range lines {
		f, err := parse.ExportLine(line, parse.Options{NodeName: "node-a"})
		if err != nil {
			tb.Fatal(err)
		}
		stamp(f, &rv)
		flows[i] = f
	}
	return flows
}

// stamp names f as the ingest pipeline does, with the next version.
func stamp(f *v1alpha1.Flow, rv *uint64) {
	*rv = max(*rv+1, uint64(f.Time.UnixMicro())+1500)
	f.ResourceVersion = strconv.FormatUint(*rv, 10)
	f.Name = f.NodeName + "." + f.ResourceVersion
}

// viaJSON is what a flow becomes through the store's previous encoding.
func viaJSON(tb testing.TB, f *v1alpha1.Flow) (*v1alpha1.Flow, []byte) {
	tb.Helper()
	b, err := json.Marshal(f)
	if err != nil {
		tb.Fatalf("json.Marshal: %v", err)
	}
	g := new(v1alpha1.Flow)
	if err := json.Unmarshal(b, g); err != nil {
		tb.Fatalf("json.Unmarshal: %v\n%s", err, b)
	}
	b, err = json.Marshal(g)
	if err != nil {
		tb.Fatal(err)
	}
	return g, b
}

// checkRoundTrip encodes f, decodes it, and compares the result with what
// a JSON round trip gives: semantically and as JSON bytes.
func checkRoundTrip(tb testing.TB, f *v1alpha1.Flow) []byte {
	tb.Helper()
	b, err := flowcodec.Marshal(f)
	if err != nil {
		tb.Fatal(err)
	}
	got := new(v1alpha1.Flow)
	if err := flowcodec.Unmarshal(b, got); err != nil {
		tb.Fatalf("Unmarshal(Marshal(f)): %v\nflow: %#v\nbytes: %x", err, f, b)
	}
	want, wantJSON := viaJSON(tb, f)
	if !equality.Semantic.DeepEqual(got, want) {
		tb.Fatalf("round trip differs from JSON's (-json +codec):\n%s", diff.Diff(want, got))
	}
	gotJSON, err := json.Marshal(got)
	if err != nil {
		tb.Fatal(err)
	}
	if !bytes.Equal(gotJSON, wantJSON) {
		tb.Fatalf("round trip differs from JSON's:\njson:  %s\ncodec: %s", wantJSON, gotJSON)
	}
	// Encoding is deterministic and a decoded flow encodes the same.
	again, _ := flowcodec.Marshal(got)
	if !bytes.Equal(again, b) {
		tb.Fatalf("re-encoding differs:\n%x\n%x", b, again)
	}
	return b
}

// filler fills flows with random values, biased towards what the format
// treats specially (known enum values, canonical addresses, UUIDs, derived
// names and times) so that both the compact and the escape paths run.
func filler(f *randfill.Filler) *randfill.Filler {
	pick := func(c randfill.Continue, table []string) string {
		switch c.Intn(5) {
		case 0:
			return ""
		case 1:
			return c.String(8)
		default:
			return table[c.Intn(len(table))]
		}
	}
	addr := func(c randfill.Continue) string {
		switch c.Intn(6) {
		case 0:
			return ""
		case 1:
			return c.String(10)
		case 2:
			var b [16]byte
			c.Read(b[:])
			return netip.AddrFrom16(b).String()
		case 3:
			return "::ffff:10.0.0." + strconv.Itoa(c.Intn(256))
		default:
			return netip.AddrFrom4([4]byte{10, byte(c.Intn(4)), byte(c.Intn(4)), byte(c.Intn(256))}).String()
		}
	}
	labels := func(c randfill.Continue) map[string]string {
		if c.Intn(3) == 0 {
			return nil
		}
		m := map[string]string{}
		for range c.Intn(4) {
			m[pick(c, []string{"app", "pod-template-hash", "team"})] = pick(c, []string{"web", "db", "x"})
		}
		return m
	}
	return f.NilChance(0.25).NumElements(0, 3).Funcs(
		func(v *v1alpha1.Verdict, c randfill.Continue) {
			*v = v1alpha1.Verdict(pick(c, []string{"Forwarded", "Dropped", "Unknown", "Translated"}))
		},
		func(v *v1alpha1.TrafficDirection, c randfill.Continue) {
			*v = v1alpha1.TrafficDirection(pick(c, []string{"Ingress", "Egress", "Unknown"}))
		},
		func(v *v1alpha1.Protocol, c randfill.Continue) {
			*v = v1alpha1.Protocol(pick(c, []string{"TCP", "UDP", "ICMPv4", "IGMP"}))
		},
		func(v *v1alpha1.IPVersion, c randfill.Continue) {
			*v = v1alpha1.IPVersion(pick(c, []string{"IPv4", "IPv6"}))
		},
		func(v *v1alpha1.L7Type, c randfill.Continue) {
			*v = v1alpha1.L7Type(pick(c, []string{"DNS", "HTTP", "GRPC", "Kafka"}))
		},
		func(ip *v1alpha1.IP, c randfill.Continue) {
			c.FillNoCustom(ip)
			ip.Source, ip.Destination = addr(c), addr(c)
		},
		func(l4 *v1alpha1.Layer4, c randfill.Continue) {
			c.FillNoCustom(l4)
			l4.Protocol = v1alpha1.Protocol(pick(c, []string{"TCP", "UDP", "ICMPv4"}))
			if c.Intn(4) == 0 {
				l4.SourcePort, l4.DestinationPort = int32(c.Intn(65536)), int32(c.Intn(65536))
			}
			switch c.Intn(4) {
			case 0:
				l4.TCPFlags = nil
			case 1, 2:
				// A subset in one of the two canonical orders.
				names := []string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS"}
				if c.Intn(2) == 0 {
					slices.Sort(names)
				}
				l4.TCPFlags = nil
				for _, n := range names {
					if c.Intn(3) == 0 {
						l4.TCPFlags = append(l4.TCPFlags, n)
					}
				}
			}
		},
		func(e *v1alpha1.Endpoint, c randfill.Continue) {
			c.FillNoCustom(e)
			e.IP = addr(c)
			e.Labels = labels(c)
			for i := range e.Workloads {
				e.Workloads[i].Kind = pick(c, []string{"Deployment", "StatefulSet", "DaemonSet"})
			}
		},
		func(d *v1alpha1.DNS, c randfill.Continue) {
			c.FillNoCustom(d)
			for i := range d.IPs {
				d.IPs[i] = addr(c)
			}
			for i := range d.QTypes {
				d.QTypes[i] = pick(c, []string{"A", "AAAA"})
			}
		},
		func(h *v1alpha1.HTTP, c randfill.Continue) {
			c.FillNoCustom(h)
			h.Method = pick(c, []string{"GET", "POST"})
			h.Protocol = pick(c, []string{"HTTP/1.1", "HTTP/2"})
		},
		func(d *metav1.Duration, c randfill.Continue) {
			if c.Intn(2) == 0 {
				d.Duration = time.Duration(c.Int63n(1e7)) * time.Microsecond
			} else {
				d.Duration = time.Duration(c.Int63() - c.Int63())
			}
		},
		func(fv *metav1.FieldsV1, c randfill.Continue) {
			if c.Intn(3) != 0 {
				fv.SetRawString(fmt.Sprintf(`{"f:metadata":{"f:labels":{"f:%d":{}}}}`, c.Intn(100)))
			}
		},
		func(u *types.UID, c randfill.Continue) {
			switch c.Intn(3) {
			case 0:
				*u = types.UID(c.String(40))
			default:
				var b [16]byte
				c.Read(b[:])
				*u = types.UID(fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]))
			}
		},
		func(f *v1alpha1.Flow, c randfill.Continue) {
			c.FillNoCustom(f)
			if c.Intn(3) == 0 {
				f.Time = metav1.MicroTime{}
			}
			if c.Intn(2) == 0 {
				f.CreationTimestamp = metav1.NewTime(f.Time.Truncate(time.Second))
			}
			if f.EndTime != nil && c.Intn(2) == 0 {
				f.EndTime = &metav1.MicroTime{Time: f.Time.Add(time.Duration(c.Intn(1e7)) * time.Microsecond)}
			}
			if c.Intn(2) == 0 {
				f.ResourceVersion = strconv.FormatUint(uint64(c.Int63()), 10)
				if !f.Time.IsZero() && c.Intn(2) == 0 {
					f.ResourceVersion = strconv.FormatUint(uint64(f.Time.UnixMicro())+uint64(c.Intn(1e6)), 10)
				}
			}
			if c.Intn(2) == 0 {
				f.Name = f.NodeName + "." + f.ResourceVersion
			}
			f.Labels = labels(c)
			if c.Intn(2) == 0 && f.Source != nil {
				f.Labels = f.Source.Labels
			} else if c.Intn(2) == 0 && f.Destination != nil {
				f.Labels = f.Destination.Labels
			}
			if c.Intn(2) == 0 && f.IP != nil {
				if f.Source != nil {
					f.Source.IP = f.IP.Source
				}
				if f.Destination != nil {
					f.Destination.IP = f.IP.Destination
				}
			}
			if c.Intn(2) == 0 && f.L4 != nil {
				if f.Source != nil {
					f.Source.Port = f.L4.SourcePort
				}
				if f.Destination != nil {
					f.Destination.Port = f.L4.DestinationPort
				}
			}
			if c.Intn(2) == 0 {
				f.TypeMeta = metav1.TypeMeta{}
			}
			if c.Intn(2) == 0 {
				// Most flows have none of the rare metadata.
				f.ObjectMeta = metav1.ObjectMeta{Name: f.Name, Namespace: f.Namespace, UID: f.UID,
					ResourceVersion: f.ResourceVersion, CreationTimestamp: f.CreationTimestamp, Labels: f.Labels}
			}
		},
	)
}

func randomFlow(r *rand.Rand) *v1alpha1.Flow {
	f := new(v1alpha1.Flow)
	filler(randfill.New().RandSource(r)).Fill(f)
	return f
}

func metav1ObjectMeta(name, rv string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, ResourceVersion: rv}
}
