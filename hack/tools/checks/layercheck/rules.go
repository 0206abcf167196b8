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
	"strings"
)

// A pattern names module packages by their path relative to the module:
// "x" is x, "x/..." is x and every package below it, "..." is every one.
type pattern string

func (p pattern) match(rel string) bool {
	switch {
	case p == "...":
		return true
	case strings.HasSuffix(string(p), "/..."):
		base := strings.TrimSuffix(string(p), "/...")
		return rel == base || strings.HasPrefix(rel, base+"/")
	default:
		return rel == string(p)
	}
}

// A set is a list of patterns less a list of excluded ones.
type set struct {
	include, exclude []pattern
}

func (s set) match(rel string) bool {
	for _, p := range s.exclude {
		if p.match(rel) {
			return false
		}
	}
	for _, p := range s.include {
		if p.match(rel) {
			return true
		}
	}
	return false
}

func (s set) patterns() []pattern {
	return append(append([]pattern(nil), s.include...), s.exclude...)
}

// A rule is one line of the rules file: FROM !-> TO forbids packages in
// FROM to depend on packages in TO; FROM only-> TO allows them module
// packages in TO only.
type rule struct {
	file string
	line int
	text string // the line as written, without its comment
	why  string
	from set
	to   set
	only bool
}

func (r *rule) String() string {
	s := fmt.Sprintf("%s:%d: %s", r.file, r.line, r.text)
	if r.why != "" {
		s += "  # " + r.why
	}
	return s
}

// parseRules reads a rules file (see hack/layers.txt for the format).
func parseRules(name string, in io.Reader) ([]*rule, error) {
	groups := map[string][]string{}
	var rules []*rule
	sc := bufio.NewScanner(in)
	for n := 1; sc.Scan(); n++ {
		text, why, _ := strings.Cut(sc.Text(), "#")
		text, why = strings.TrimSpace(text), strings.TrimSpace(why)
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		errorf := func(format string, args ...any) error {
			return fmt.Errorf("%s:%d: %s", name, n, fmt.Sprintf(format, args...))
		}
		if len(fields) >= 2 && fields[1] == "=" {
			if len(fields) == 2 {
				return nil, errorf("group %s is empty", fields[0])
			}
			if _, dup := groups[fields[0]]; dup {
				return nil, errorf("group %s is defined twice", fields[0])
			}
			expanded, err := expand(fields[2:], groups)
			if err != nil {
				return nil, errorf("%v", err)
			}
			groups[fields[0]] = expanded
			continue
		}
		op := -1
		for i, f := range fields {
			if f == "!->" || f == "only->" {
				if op >= 0 {
					return nil, errorf("more than one arrow")
				}
				op = i
			}
		}
		if op < 0 {
			return nil, errorf("want FROM... !-> TO..., FROM... only-> TO... or NAME = PATTERN..., got %q", text)
		}
		if op == 0 || op == len(fields)-1 {
			return nil, errorf("%s needs patterns on both sides", fields[op])
		}
		from, err := parseSet(fields[:op], groups)
		if err != nil {
			return nil, errorf("%v", err)
		}
		to, err := parseSet(fields[op+1:], groups)
		if err != nil {
			return nil, errorf("%v", err)
		}
		if len(from.include) == 0 || len(to.include) == 0 {
			return nil, errorf("%s needs a pattern that is not an exclusion on each side", fields[op])
		}
		rules = append(rules, &rule{
			file: name, line: n, text: strings.Join(fields, " "), why: why,
			from: from, to: to, only: fields[op] == "only->",
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return rules, nil
}

// expand replaces group names by their patterns, keeping a leading "!".
func expand(tokens []string, groups map[string][]string) ([]string, error) {
	var out []string
	for _, t := range tokens {
		neg := strings.HasPrefix(t, "!")
		name := strings.TrimPrefix(t, "!")
		if name == "" {
			return nil, fmt.Errorf("empty pattern %q", t)
		}
		g, ok := groups[name]
		if !ok {
			if strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") || strings.Contains(name, "//") ||
				(strings.Contains(name, "...") && name != "..." && !strings.HasSuffix(name, "/...")) ||
				strings.Count(name, "...") > 1 {
				return nil, fmt.Errorf("bad pattern %q (want x, x/... or ...)", name)
			}
			out = append(out, t)
			continue
		}
		for _, p := range g {
			if neg {
				if strings.HasPrefix(p, "!") {
					return nil, fmt.Errorf("!%s: group %s has exclusions of its own", name, name)
				}
				p = "!" + p
			}
			out = append(out, p)
		}
	}
	return out, nil
}

func parseSet(tokens []string, groups map[string][]string) (set, error) {
	expanded, err := expand(tokens, groups)
	if err != nil {
		return set{}, err
	}
	var s set
	for _, t := range expanded {
		if p, ok := strings.CutPrefix(t, "!"); ok {
			s.exclude = append(s.exclude, pattern(p))
		} else {
			s.include = append(s.include, pattern(t))
		}
	}
	return s, nil
}
