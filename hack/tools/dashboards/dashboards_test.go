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
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// panel is what the tests read of a generated panel.
type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID      string `json:"refId"`
		Expr       string `json:"expr"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
}

func generated(t *testing.T) map[string][]panel {
	t.Helper()
	files, err := generate()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]panel{}
	for _, f := range files {
		if !strings.HasSuffix(f.name, ".json") {
			continue
		}
		var d struct {
			Panels []panel `json:"panels"`
		}
		if err := json.Unmarshal(f.data, &d); err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		out[f.name] = d.Panels
	}
	if len(out) != 2 {
		t.Fatalf("want 2 dashboards, got %d", len(out))
	}
	return out
}

var (
	rangeFn     = regexp.MustCompile(`\b(rate|increase|irate)\(([^\[]*)\[([^\]]+)\]\)`)
	rangeVector = regexp.MustCompile(`\}\[([^\]]+)\]`)
)

// TestLint holds the panels to the rules of Grafana's dashboard linter that
// apply here: every query goes to the templated data source, every range
// is $__rate_interval (rates) or $__range (totals), and every panel but
// rows and text has a query.
func TestLint(t *testing.T) {
	for file, panels := range generated(t) {
		ids := map[int]bool{}
		for _, p := range panels {
			if ids[p.ID] {
				t.Errorf("%s: panel id %d used twice", file, p.ID)
			}
			ids[p.ID] = true
			switch p.Type {
			case "row", "text":
				if len(p.Targets) != 0 {
					t.Errorf("%s: %s %q has queries", file, p.Type, p.Title)
				}
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("%s: %q: panel data source is not ${datasource}", file, p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: %q has no query", file, p.Title)
			}
			for _, q := range p.Targets {
				if q.Datasource == nil || q.Datasource.UID != "${datasource}" {
					t.Errorf("%s: %q/%s: query data source is not ${datasource}", file, p.Title, q.RefID)
				}
				if !strings.Contains(q.Expr, `cluster=~"$cluster"`) {
					t.Errorf("%s: %q/%s: no cluster filter: %s", file, p.Title, q.RefID, q.Expr)
				}
				for _, m := range rangeVector.FindAllStringSubmatch(q.Expr, -1) {
					if m[1] != "$__rate_interval" && m[1] != "$__range" {
						t.Errorf("%s: %q/%s: range [%s], want $__rate_interval or $__range", file, p.Title, q.RefID, m[1])
					}
				}
				for _, m := range rangeFn.FindAllStringSubmatch(q.Expr, -1) {
					if m[1] != "increase" && m[3] != "$__rate_interval" {
						t.Errorf("%s: %q/%s: %s over [%s], want $__rate_interval", file, p.Title, q.RefID, m[1], m[3])
					}
				}
			}
		}
	}
}

// substitute replaces Grafana's variables with values Prometheus accepts.
func substitute(expr string) string {
	return strings.NewReplacer("$__rate_interval", "1m", "$__range", "5m",
		"$cluster", ".*", "$namespace", ".*", "$workload", ".*").Replace(expr)
}

// TestPromtoolCheckRules parses every query with the promtool of the
// Prometheus the dashboards are tested against (Debian's), as recording
// rules: an invalid expression fails here even where no data exists.
func TestPromtoolCheckRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is missing: hack/install-prometheus.sh (make tools) installs it")
		}
		t.Skip("SKIPPING: promtool is missing: run hack/install-prometheus.sh (make tools)")
	}
	var rules strings.Builder
	rules.WriteString("groups:\n")
	n := 0
	for file, panels := range generated(t) {
		fmt.Fprintf(&rules, "- name: %q\n  rules:\n", file)
		for _, p := range panels {
			for _, q := range p.Targets {
				n++
				expr, _ := json.Marshal(substitute(q.Expr))
				fmt.Fprintf(&rules, "  - record: panel_%d_%s\n    expr: %s\n", p.ID, q.RefID, expr)
			}
		}
	}
	path := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(path, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	t.Logf("promtool check rules: %d expressions: %s", n, strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0])
}
