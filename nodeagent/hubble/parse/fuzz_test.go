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

package parse

import (
	"errors"
	"strings"
	"testing"
	"time"

	"flowscope.io/flowscope/nodeagent/hubble/internal/hubbletest"
)

// FuzzExportLine feeds ExportLine arbitrary lines. It must never
// panic; every error must be exactly one of ErrMalformed and ErrNotAFlow;
// every flow must satisfy the invariants the store relies on and survive a
// round trip through format.ExportLine unchanged.
func FuzzExportLine(f *testing.F) {
	for _, line := range readLines(f, "testdata/events.log") {
		f.Add(line)
	}
	for _, s := range []string{
		hubbletest.Line,
		`{"time":"2026-03-02T09:15:04Z","verdict":2,"drop_reason":133,"IP":{"source":"::1","destination":"10.0.0.1"}}`,
		`{"flow":{"time":"2026-03-02T09:15:04Z","l4":{"ICMPv6":{"type":"128","code":0}},"l7":{"latency_ns":1e3,"http":{"code":"404","headers":[{"key":"content-type","value":"application/grpc"}],"url":"http://h/a.B/C"}}}}`,
		`{"flow":{"time":"2026-03-02T09:15:04Z","source":{"namespace":"a","pod_name":"b","labels":["k8s:x=y","x","=","k8s:=","a:b:c=d"]},"traffic_direction":"INGRESS","is_reply":true,"aggregate":{"egress_flow_count":"4294967295","ingress_flow_count":7}}}`,
		`{"flow":{"time":"2026-03-02T09:15:04Z","destination_service":{"name":"kube-dns","namespace":"kube-system"},"l7":{"kafka":{"error_code":-2147483648}}}}`,
		`{"lost_events":{"source":3,"num_events_lost":"18446744073709551615"}}`,
		`{"node_status":{}}`,
		`{"flow":{}}`,
		`{"flow":null}`,
		`{}`,
		`[]`,
		`{"flow":{"time":"1970-01-01T00:00:00Z"}}`,
		`{"flow":{"time":"1969-12-31T23:59:59.999999Z"}}`,
		`{"flow":{"time":"9999-12-31T23:59:59.999999999-23:59"}}`,
		strings.Repeat("[", 100),
		"{\"flow\":{\"time\":\"2026-03-02T09:15:04Z\",\"uuid\":\"\\ud800\"}}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		opts := Options{AgentNamespace: "flowscope", NodeName: "node-a"}
		flow, err := ExportLine(line, opts)
		if err != nil {
			if flow != nil {
				t.Fatalf("flow and error: %v", err)
			}
			if errors.Is(err, ErrMalformed) == errors.Is(err, ErrNotAFlow) {
				t.Fatalf("error %v: Is(ErrMalformed) = Is(ErrNotAFlow) = %v", err, errors.Is(err, ErrMalformed))
			}
			if !strings.HasPrefix(err.Error(), "parse hubble export line: ") {
				t.Fatalf("error without context: %v", err)
			}
			return
		}
		checkInvariants(t, flow)
		roundTrip(t, flow, opts)
	})
}

// FuzzParseUTC checks the timestamp fast path against time.Parse: when it
// reads a text, time.Parse reads the same time from it.
func FuzzParseUTC(f *testing.F) {
	for _, s := range []string{
		"2026-03-02T09:15:04Z",
		"2026-03-02T09:15:04.123456789Z",
		"2024-02-29T23:59:59.1Z",
		"2026-02-29T00:00:00Z",
		"2026-03-02T09:15:04.1234567891Z",
		"2026-03-02T09:15:60Z",
		"0000-01-01T00:00:00Z",
		"9999-12-31T23:59:59.999999999Z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseUTC([]byte(s))
		if !ok {
			return
		}
		want, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatalf("parseUTC(%q) = %v, time.Parse refuses it: %v", s, got, err)
		}
		if !got.Equal(want) || got.Location() != want.Location() {
			t.Fatalf("parseUTC(%q) = %v, time.Parse %v", s, got, want)
		}
	})
}
