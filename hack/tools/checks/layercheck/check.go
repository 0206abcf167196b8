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
	"bufio"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
)

// A graph holds the module's packages, by path relative to the module, and
// their non-test imports of other module packages.
type graph struct {
	module  string
	imports map[string][]string
}

// readGraph reads `go list -deps -f '{{.ImportPath}}{{range .Imports}} {{.}}{{end}}'`
// output: one package a line, its import path first, then its imports.
// Packages and imports outside module are dropped.
func readGraph(module string, in io.Reader) (*graph, error) {
	g := &graph{module: module, imports: map[string][]string{}}
	rel := func(path string) (string, bool) {
		if path == module {
			return ".", true
		}
		r, ok := strings.CutPrefix(path, module+"/")
		return r, ok
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		from, ok := rel(fields[0])
		if !ok {
			continue
		}
		imps := g.imports[from]
		for _, imp := range fields[1:] {
			if to, ok := rel(imp); ok && !slices.Contains(imps, to) {
				imps = append(imps, to)
			}
		}
		sort.Strings(imps)
		g.imports[from] = imps
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read package graph: %w", err)
	}
	if len(g.imports) == 0 {
		return nil, fmt.Errorf("no package of module %s in the package graph", module)
	}
	return g, nil
}

func (g *graph) packages() []string {
	pkgs := make([]string, 0, len(g.imports))
	for p := range g.imports {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	return pkgs
}

// A violation is a package that depends on one its rule keeps it from,
// with the chain of imports from the one to the other.
type violation struct {
	rule  *rule
	chain []string
}

func (v violation) String() string {
	from, to := v.chain[0], v.chain[len(v.chain)-1]
	var b strings.Builder
	if v.rule.only {
		fmt.Fprintf(&b, "%s depends on %s, outside the packages its layer may use:\n", from, to)
	} else {
		fmt.Fprintf(&b, "%s depends on %s, which its layer must not use:\n", from, to)
	}
	fmt.Fprintf(&b, "    %s\n", from)
	for _, p := range v.chain[1:] {
		fmt.Fprintf(&b, "    -> %s\n", p)
	}
	fmt.Fprintf(&b, "  rule %s", v.rule)
	return b.String()
}

// check returns the violations of rules in g, and an error for a pattern
// that matches no package (a renamed package would otherwise switch its
// rule off without a word) or a group name that is also a package.
//
// Each package of a rule's FROM is walked breadth first along its imports,
// so a chain is a shortest one; the walk stops at the first forbidden
// package of each path and does not go through other FROM packages, which
// are checked on their own: each violation is reported once, where it
// starts.
func check(g *graph, rules []*rule) ([]violation, error) {
	pkgs := g.packages()
	var problems []string
	for _, r := range rules {
		for _, p := range append(r.from.patterns(), r.to.patterns()...) {
			if !slices.ContainsFunc(pkgs, p.match) {
				problems = append(problems, fmt.Sprintf("%s:%d: pattern %s matches no package of %s", r.file, r.line, p, g.module))
			}
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(slices.Compact(problems), "\n"))
	}

	var out []violation
	for _, r := range rules {
		forbidden := func(p string) bool { return r.to.match(p) != r.only }
		for _, start := range pkgs {
			if !r.from.match(start) {
				continue
			}
			parent := map[string]string{start: ""}
			queue := []string{start}
			for len(queue) > 0 {
				p := queue[0]
				queue = queue[1:]
				for _, imp := range g.imports[p] {
					if _, seen := parent[imp]; seen {
						continue
					}
					parent[imp] = p
					switch {
					case forbidden(imp):
						chain := []string{imp}
						for q := p; q != ""; q = parent[q] {
							chain = append(chain, q)
						}
						slices.Reverse(chain)
						out = append(out, violation{rule: r, chain: chain})
					case r.from.match(imp):
						// Checked on its own.
					default:
						queue = append(queue, imp)
					}
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.rule.line != b.rule.line {
			return a.rule.line < b.rule.line
		}
		return slices.Compare(a.chain, b.chain) < 0
	})
	return out, nil
}
