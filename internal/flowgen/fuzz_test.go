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

package flowgen

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"flowscope.io/flowscope/nodeagent/hubble/parse"
)

// FuzzGenerate checks that whatever the seed, node name and index, every
// generated line is a flow parse.ExportLine reads, on the generator's node.
func FuzzGenerate(f *testing.F) {
	f.Add(uint64(1), "node-a", 7)
	f.Add(uint64(0), "", -1)
	f.Add(uint64(1<<63), "aks-nodepool1-12345678-vmss000000", 255)
	f.Add(uint64(42), "cluster/node-b", 0)
	f.Fuzz(func(t *testing.T, seed uint64, node string, index int) {
		if !utf8.ValidString(node) {
			t.Skip("JSON has no invalid UTF-8 node names")
		}
		start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		lines, err := Generate(50, Options{NodeName: node, NodeIndex: index, Seed: seed, Now: func() time.Time { return start }})
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range lines {
			fl, err := parse.ExportLine(line, parse.Options{AgentNamespace: "flowscope"})
			if err != nil {
				t.Fatalf("line %d: %v\n%s", i, err, line)
			}
			if want := node[strings.LastIndexByte(node, '/')+1:]; fl.NodeName != want {
				t.Errorf("line %d: node %q, want %q", i, fl.NodeName, want)
			}
		}
	})
}
