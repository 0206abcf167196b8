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

// Package flowtest makes flows for tests and benchmarks.
package flowtest

import (
	"strconv"
	"testing"
	"time"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/internal/flowgen"
	"flowscope.io/flowscope/nodeagent/hubble/parse"
)

// RealisticFlows returns n flows of the demo application as an agent stores
// and serves them: parsed from Hubble export lines, named and versioned.
func RealisticFlows(tb testing.TB, n int) []v1alpha1.Flow {
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
		f, err := parse.ExportLine(line, parse.Options{NodeName: "node-a"})
		if err != nil {
			tb.Fatal(err)
		}
		f.ResourceVersion = strconv.FormatInt(f.Time.UnixMicro()+1500, 10)
		f.Name = f.NodeName + "." + f.ResourceVersion
		flows[i] = *f
	}
	return flows
}
