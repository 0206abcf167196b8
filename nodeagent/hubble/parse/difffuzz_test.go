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
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/diff"

	"flowscope.io/flowscope/nodeagent/hubble/internal/hubbletest"
	"flowscope.io/flowscope/nodeagent/hubble/parse/internal/reflectparse"
)

// FuzzExportLineDifferential checks the scanner-based ExportLine against
// the encoding/json one it replaced (package reflectparse, a frozen copy):
// on any line both give the same flow, or the same error.
func FuzzExportLineDifferential(f *testing.F) {
	for _, line := range readLines(f, "testdata/events.log") {
		f.Add(line)
	}
	for _, s := range []string{
		hubbletest.Line,
		`{"flow":{"time":"2026-03-02T09:15:04Z","time":null,"verdict":"DROPPED","verdict":3}}`,
		`{"flow":{"time":"2026-03-02T09:15:04Z","source":{"pod_name":"a"},"source":null}}`,
		`{"\u0066low":{"t\u0069me":"2026-03-02T09:15:04Z","uuid":"\ud83d\ude00\udc00\ud800x\u00e9\"\\\/\b\f\n\r\t"}}`,
		`{"flow":{"time":"2026-03-02T09:15:04Z","l4":{"TCP":{"source_port":-0,"destination_port":1.0e2}}}}`,
		`{"flow":{"time":"2026-03-02T09:15:04Z","source":{"labels":["k8s:a=b",null]}}}`,
		`{"flow":{"time":"2026-03-02T09:15:04Z","source":{"workloads":[null,{"name":"w"},7]}}}`,
		"{\"flow\":{\"time\":\"2026-03-02T09:15:04Z\"} }\t\r\n ",
		`{"flow" : { "time" : "2026-03-02T09:15:04Z" , "IP" : { "source" : "::ffff:10.0.0.1" } } }`,
		`{"flow":{"time":"2024-02-29T23:59:59.123456789Z","IP":{"source":"10.0.0.1","destination":"010.0.0.1"}}}`,
		`{"flow":{"time":"2026-02-29T09:15:04Z"}}`,
		`{"flow":{"time":"2026-03-02T09:15:04.1234567891Z"}}`,
		`{"flow":{"time":"2026-03-02T09:15:60Z"}}`,
		`{"flow":{"time":"2026-03-02T24:00:00Z"}}`,
		`{"flow":{"time":"2026-03-02t09:15:04z"}}`,
		`{"flow":{"time":"2026-03-02T09:15:04.Z"}}`,
		`{"flow":{"time":"2026-03-02T09:15:04,5Z"}}`,
		`{"flow":{"time":"0000-01-01T00:00:00Z"}}`,
		`{"flow":{"time":"2026-13-02T09:15:04Z"}}`,
		`{"flow":{"time":"2026-03-02T09:15:04Z","source":{"namespace":"a\u0062","pod_name":"p"},"source":{"namespace":"ab"}}}`,
		`{"a":[1,2,],"flow":{}}`,
		`{"a":01}`,
		`{"a":1.}`,
		`{"a":-}`,
		`{"a":1e}`,
		`{"a":tru}`,
		`{"a":"\x"}`,
		`{"a":"\u12g4"}`,
		"{\"a\":\"\x01\"}",
		`{"a" 1}`,
		`{"a":1,}`,
		`{,}`,
		`{"flow":{"time":"2026-03-02T09:15:04Z"}}{}`,
		strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
		`{"a":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `,"flow":{"time":"2026-03-02T09:15:04Z"}}`,
		`{"a":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		got, err := ExportLine(line, Options{AgentNamespace: "flowscope", NodeName: "node-a"})
		want, wantErr := reflectparse.ExportLine(line, reflectparse.Options{AgentNamespace: "flowscope", NodeName: "node-a"})
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("error %v, the reflection decoder's %v", err, wantErr)
		}
		if err != nil {
			if err.Error() != wantErr.Error() {
				t.Fatalf("error:\n got %q\nwant %q", err, wantErr)
			}
			var nf *NotAFlowError
			var wantNF *reflectparse.NotAFlowError
			if errors.As(err, &nf) != errors.As(wantErr, &wantNF) {
				t.Fatalf("error %v: not a flow %v, the reflection decoder's %v", err, nf != nil, wantNF != nil)
			}
			if nf != nil && (nf.Kind != wantNF.Kind || nf.LostEvents != wantNF.LostEvents || nf.LostEventSource != wantNF.LostEventSource) {
				t.Fatalf("got %+v, want %+v", *nf, *wantNF)
			}
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("flows differ (-reflection +scanner):\n%s", diff.Diff(want, got))
		}
	})
}
