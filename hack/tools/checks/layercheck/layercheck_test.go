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

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testRules = `
contracts = wire apis/...
server    = apiserver/... registry/...
agent     = nodeagent/...

server        !-> agent                # the server reaches agents over the wire only
contracts     !-> server agent cmd/...  # contracts import neither side
generated/... only-> apis/... generated/...
... !cmd/...  !-> cmd/...
`

// testGraph is go list output for a module m whose registry reaches the
// agent's store through a helper, and whose generated code imports wire.
const testGraph = `
fmt
m/apis/v1 k8s.io/apimachinery/pkg/apis/meta/v1
m/wire m/apis/v1 fmt
m/helper m/nodeagent/store
m/registry/flow m/wire m/helper
m/apiserver m/registry/flow m/wire
m/nodeagent/store m/apis/v1
m/nodeagent/server m/nodeagent/store m/wire
m/generated/clientset m/apis/v1 m/generated/scheme
m/generated/scheme m/apis/v1 m/wire
m/cmd/server m/apiserver
`

func runCheck(t *testing.T, rules, graph string) ([]violation, error) {
	t.Helper()
	rs, err := parseRules("layers.txt", strings.NewReader(rules))
	if err != nil {
		t.Fatalf("parseRules: %v", err)
	}
	g, err := readGraph("m", strings.NewReader(graph))
	if err != nil {
		t.Fatalf("readGraph: %v", err)
	}
	return check(g, rs)
}

func TestCheck(t *testing.T) {
	vs, err := runCheck(t, testRules, testGraph)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range vs {
		got = append(got, v.String())
	}
	want := []string{
		// apiserver reaches the store through registry/flow, which is
		// reported on its own, once.
		`registry/flow depends on nodeagent/store, which its layer must not use:
    registry/flow
    -> helper
    -> nodeagent/store
  rule layers.txt:6: server !-> agent  # the server reaches agents over the wire only`,
		`generated/scheme depends on wire, outside the packages its layer may use:
    generated/scheme
    -> wire
  rule layers.txt:8: generated/... only-> apis/... generated/...`,
	}
	if strings.Join(got, "\n\n") != strings.Join(want, "\n\n") {
		t.Errorf("violations:\n%s\n\nwant:\n%s", strings.Join(got, "\n\n"), strings.Join(want, "\n\n"))
	}
}

func TestCheckClean(t *testing.T) {
	graph := strings.ReplaceAll(testGraph, "m/registry/flow m/wire m/helper", "m/registry/flow m/wire")
	graph = strings.ReplaceAll(graph, "m/generated/scheme m/apis/v1 m/wire", "m/generated/scheme m/apis/v1")
	vs, err := runCheck(t, testRules, graph)
	if err != nil || len(vs) != 0 {
		t.Fatalf("got %v, %v; want no violation", vs, err)
	}
}

func TestCheckStalePattern(t *testing.T) {
	_, err := runCheck(t, testRules+"agentclient !-> nodeagent/...\n", testGraph)
	want := "layers.txt:10: pattern agentclient matches no package of m"
	if err == nil || err.Error() != want {
		t.Fatalf("got error %v, want %q", err, want)
	}
}

func TestParseRulesErrors(t *testing.T) {
	for _, tc := range []struct{ rules, want string }{
		{"a b", `layers.txt:1: want FROM... !-> TO..., FROM... only-> TO... or NAME = PATTERN..., got "a b"`},
		{"a !-> b !-> c", "layers.txt:1: more than one arrow"},
		{"a !->", "layers.txt:1: !-> needs patterns on both sides"},
		{"!a !-> b", "layers.txt:1: !-> needs a pattern that is not an exclusion on each side"},
		{"g =", "layers.txt:1: group g is empty"},
		{"g = a\ng = b", "layers.txt:2: group g is defined twice"},
		{"a/b... !-> c", `layers.txt:1: bad pattern "a/b..." (want x, x/... or ...)`},
		{"g = a !b\n... !g !-> c", "layers.txt:2: !g: group g has exclusions of its own"},
	} {
		_, err := parseRules("layers.txt", strings.NewReader(tc.rules))
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q: got %v, want %q", tc.rules, err, tc.want)
		}
	}
}

func TestPattern(t *testing.T) {
	for _, tc := range []struct {
		p    pattern
		rel  string
		want bool
	}{
		{"...", "a/b", true},
		{"a/...", "a", true},
		{"a/...", "a/b/c", true},
		{"a/...", "ab", false},
		{"a", "a", true},
		{"a", "a/b", false},
	} {
		if got := tc.p.match(tc.rel); got != tc.want {
			t.Errorf("%s.match(%s) = %v, want %v", tc.p, tc.rel, got, tc.want)
		}
	}
}

// TestRunGraphFile is the command as verify-layers runs it, on a graph
// file: the violations are printed and the error counts them.
func TestRunGraphFile(t *testing.T) {
	dir := t.TempDir()
	rules, graph := filepath.Join(dir, "layers.txt"), filepath.Join(dir, "graph.txt")
	if err := os.WriteFile(rules, []byte(testRules), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(graph, []byte(testGraph), 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	err := run(rules, dir, "m", graph, &out)
	want := "2 layering violations: move the import, or change " + rules + " and say why"
	if err == nil || err.Error() != want {
		t.Errorf("got error %v, want %q", err, want)
	}
	if !strings.Contains(out.String(), "    -> helper\n    -> nodeagent/store\n") {
		t.Errorf("output lacks the chain:\n%s", out.String())
	}
}
