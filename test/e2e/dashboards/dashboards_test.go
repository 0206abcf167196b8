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

package dashboards

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/test/e2e/framework"
)

// The dashboards under test.
var files = []string{"flowscope-flow-logs.json", "flowscope-flow-logs-external.json"}

// exempt names the panels that may return no data here, "<file>/<title>",
// with the reason. Every other panel must return data.
var exempt = map[string]string{
	"flowscope-flow-logs-external.json/Kafka requests": "no Kafka broker outside the cluster: the demo's Kafka is payments/kafka-0",
}

// A dashboard as the test reads it: panels, their queries, the variables.
type dashboard struct {
	file   string
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`

	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	Options struct {
		Content string `json:"content"`
	} `json:"options"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

func load(t *testing.T) []dashboard {
	t.Helper()
	var out []dashboard
	for _, f := range files {
		raw, err := os.ReadFile(filepath.Join(sys.Root, "artifacts/dashboards", f))
		if err != nil {
			t.Fatal(err)
		}
		d := dashboard{file: f}
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, d)
	}
	return out
}

// vars are the values of the dashboards' variables in one evaluation, as
// Grafana would interpolate them ("All" is the variables' allValue ".*").
type vars struct{ namespace, workload string }

// substitute interpolates the variables and Grafana's macros: the rate
// interval is at least four scrapes (5 s here), the range the last five
// minutes.
func (v vars) substitute(expr string) string {
	return strings.NewReplacer(
		"$__rate_interval", "1m", "$__range", "5m",
		"${namespace:text}", v.namespace, "$cluster", "local",
		"$namespace", v.namespace, "$workload", v.workload,
	).Replace(expr)
}

// The evaluations: every namespace, one demo namespace, and one workload
// of it.
var evaluations = []vars{{namespace: ".*", workload: ".*"}, {namespace: "shop", workload: ".*"}, {namespace: "shop", workload: "web"}}

// prometheus is the local system's Prometheus (OUT_DIR/env PROMETHEUS_URL).
func prometheus(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(sys.Out, "env"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, "PROMETHEUS_URL="); ok {
			return v
		}
	}
	t.Fatal("hack/local-up.sh started no Prometheus (no PROMETHEUS_URL in OUT_DIR/env)")
	return ""
}

// sample is one series of an instant query's result.
type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// query evaluates expr at the current time through /api/v1/query.
func query(base, expr string) ([]sample, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/query",
		strings.NewReader(url.Values{"query": {expr}}.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s", r.ErrorType, r.Error)
	}
	if r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("result type %s, want vector", r.Data.ResultType)
	}
	var out []sample
	if err := json.Unmarshal(r.Data.Result, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// world and the other replayed endpoints: the demo pods talk only to each
// other, so flows to and from the outside world, DNS drops and HTTP to an
// external API are replayed (Hubble export lines on node-a's replay file),
// as a pod of shop would have them.
var (
	webPod   = framework.Pod("shop", "web-7", "web", "10.244.0.17")
	worldAPI = framework.Host("93.184.216.34")
	resolver = framework.Host("8.8.8.8")
	client   = framework.Host("198.51.100.7")
	attacker = framework.Host("203.0.113.9")
)

// worldFlows are one round of replayed flows; sport makes them distinct.
func worldFlows(sport int32) []framework.Seed {
	mk := framework.MkFlow
	httpFlow := mk("node-a", sport+4, 80, "TCP", "Egress", "Forwarded", webPod, worldAPI)
	httpFlow.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, Latency: &metav1.Duration{Duration: 30 * time.Millisecond},
		HTTP: &v1alpha1.HTTP{Method: "GET", Code: 200, URL: "http://93.184.216.34/status", Protocol: "HTTP/1.1"}}
	dnsFlow := mk("node-a", sport+5, 53, "UDP", "Egress", "Forwarded", webPod, resolver)
	dnsFlow.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeDNS, Latency: &metav1.Duration{Duration: 2 * time.Millisecond},
		DNS: &v1alpha1.DNS{Query: "example.com.", QTypes: []string{"A"}, IPs: []string{"93.184.216.34"}}}
	flows := []*v1alpha1.Flow{
		mk("node-a", sport, 443, "TCP", "Egress", "Forwarded", webPod, worldAPI),
		mk("node-a", sport+1, 443, "TCP", "Egress", "Dropped", webPod, worldAPI),
		mk("node-a", sport+2, 8080, "TCP", "Ingress", "Forwarded", client, webPod),
		mk("node-a", sport+3, 8080, "TCP", "Ingress", "Dropped", attacker, webPod),
		httpFlow,
		dnsFlow,
		mk("node-a", sport+6, 53, "UDP", "Egress", "Dropped", webPod, resolver),
		mk("node-a", sport+7, 0, "ICMPv4", "Egress", "Forwarded", webPod, worldAPI),
	}
	seeds := make([]framework.Seed, len(flows))
	for i, f := range flows {
		seeds[i] = framework.Seed{Node: "node-a", Sport: f.L4.SourcePort, Namespace: "shop", Flow: f}
	}
	return seeds
}

// result is what one panel query returned in one evaluation.
type result struct {
	key, refID, expr string
	series           int
	err              error
	sample           []sample
}

// evaluate runs every query of every panel with v.
func evaluate(base string, ds []dashboard, v vars) []result {
	var out []result
	for _, d := range ds {
		for _, p := range d.Panels {
			for _, q := range p.Targets {
				expr := v.substitute(q.Expr)
				s, err := query(base, expr)
				out = append(out, result{key: d.file + "/" + p.Title, refID: q.RefID, expr: expr, series: len(s), err: err, sample: s})
			}
		}
	}
	return out
}

// missing: the results that are errors, or empty and not exempt.
func missing(rs []result) []result {
	var out []result
	for _, r := range rs {
		if r.err != nil || (r.series == 0 && exempt[r.key] == "") {
			out = append(out, r)
		}
	}
	return out
}

// TestPanelsReturnData evaluates every panel query of both dashboards
// through Prometheus's HTTP API once it has scraped the demo traffic and
// the replayed flows, for all namespaces, for shop and for shop's web:
// each must be valid and return data, but the exempt ones.
func TestPanelsReturnData(t *testing.T) {
	ds := load(t)
	base := prometheus(t)
	sport := int32(46000)
	start := time.Now()
	deadline := start.Add(4 * time.Minute)
	var last map[vars][]result
	for {
		// Keep the replayed counters growing, so that their rates are not
		// zero at the time of the query.
		sys.Replay(t, worldFlows(sport)...)
		sport += 10
		last = map[vars][]result{}
		done := true
		for _, v := range evaluations {
			last[v] = evaluate(base, ds, v)
			if len(missing(last[v])) > 0 {
				done = false
			}
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Second)
	}
	t.Logf("evaluated after %s", time.Since(start).Round(time.Second))
	for _, v := range evaluations {
		rs := last[v]
		withData := 0
		for _, r := range rs {
			if r.series > 0 {
				withData++
			}
		}
		t.Logf("namespace=%q workload=%q: %d queries, %d with data", v.namespace, v.workload, len(rs), withData)
		for _, r := range rs {
			note := ""
			if reason := exempt[r.key]; reason != "" && r.series == 0 {
				note = " (exempt: " + reason + ")"
			}
			t.Logf("  %-80s %-6s %3d series%s", r.key, r.refID, r.series, note)
		}
		for _, r := range missing(rs) {
			if r.err != nil {
				t.Errorf("namespace=%q: %s (%s): invalid: %v\n  %s", v.namespace, r.key, r.refID, r.err, r.expr)
			} else {
				t.Errorf("namespace=%q: %s (%s): no data\n  %s", v.namespace, r.key, r.refID, r.expr)
			}
		}
		// An exempt panel with data is exempt no more: say so, so that the
		// list shrinks when the traffic grows.
		for _, r := range rs {
			if exempt[r.key] != "" && r.series > 0 {
				t.Errorf("%s is exempt (%s) but returns data: remove it from the list", r.key, exempt[r.key])
			}
		}
		checkGraphs(t, rs)
	}
}

// checkGraphs holds the node graph queries to the frames Grafana's node
// graph reads: nodes with id, title and subtitle; edges with id, source
// and target, each end a node.
func checkGraphs(t *testing.T, rs []result) {
	t.Helper()
	nodes := map[string]map[string]bool{}
	for _, r := range rs {
		if r.refID != "nodes" {
			continue
		}
		nodes[r.key] = map[string]bool{}
		for _, s := range r.sample {
			for _, l := range []string{"id", "title", "subtitle"} {
				if _, ok := s.Metric[l]; !ok && l != "subtitle" {
					t.Errorf("%s: node %v has no %s", r.key, s.Metric, l)
				}
			}
			nodes[r.key][s.Metric["id"]] = true
		}
	}
	for _, r := range rs {
		if r.refID != "edges" {
			continue
		}
		for _, s := range r.sample {
			id, src, dst := s.Metric["id"], s.Metric["source"], s.Metric["target"]
			if id != src+"->"+dst {
				t.Errorf("%s: edge id %q, want %q", r.key, id, src+"->"+dst)
			}
			if !nodes[r.key][src] || !nodes[r.key][dst] {
				t.Errorf("%s: edge %s: an end is no node (nodes %v)", r.key, id, nodes[r.key])
			}
		}
	}
}

var (
	selectorRE = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}`)
	matcherRE  = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	byRE       = regexp.MustCompile(`\bby \(([^)]*)\)`)
	// The label a label_replace or label_join writes: its first string
	// argument after the vector.
	madeRE = regexp.MustCompile(`\),\s*"([a-zA-Z_][a-zA-Z0-9_]*)"`)
)

// labelsOf returns the label names of metric's series, as Prometheus has
// them (a label whose value is empty on every series is absent).
func labelsOf(t *testing.T, base, metric string) map[string]bool {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/labels?" + url.Values{"match[]": {metric}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Data []string `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, l := range r.Data {
		out[l] = true
	}
	return out
}

// TestQueryLabelsExist: a query that unites two sides (`a or b`) returns
// data when one side is right; and a matcher of an absent label with ".*"
// matches everything. So every label a query names, in a matcher or a
// `by`, must be one its metric has (or one the query makes with
// label_replace or label_join). Run after TestPanelsReturnData, once
// Prometheus has every series.
func TestQueryLabelsExist(t *testing.T) {
	base := prometheus(t)
	known := map[string]map[string]bool{}
	for _, d := range load(t) {
		for _, p := range d.Panels {
			for _, q := range p.Targets {
				where := d.file + "/" + p.Title + " (" + q.RefID + ")"
				all := map[string]bool{}
				for _, m := range madeRE.FindAllStringSubmatch(q.Expr, -1) {
					all[m[1]] = true
				}
				for _, sel := range selectorRE.FindAllStringSubmatch(q.Expr, -1) {
					metric := sel[1]
					if known[metric] == nil {
						known[metric] = labelsOf(t, base, metric)
					}
					if len(known[metric]) == 0 {
						t.Errorf("%s: metric %s has no series", where, metric)
						continue
					}
					for l := range known[metric] {
						all[l] = true
					}
					for _, m := range strings.Split(sel[2], ",") {
						mm := matcherRE.FindStringSubmatch(m)
						if mm == nil {
							t.Errorf("%s: matcher %q not understood by the test", where, m)
							continue
						}
						if !known[metric][mm[1]] {
							t.Errorf("%s: %s has no label %s", where, metric, mm[1])
						}
					}
				}
				for _, by := range byRE.FindAllStringSubmatch(q.Expr, -1) {
					for _, l := range strings.Split(by[1], ",") {
						if l = strings.TrimSpace(l); !all[l] {
							t.Errorf("%s: by (%s): no metric of the query has %s", where, by[1], l)
						}
					}
				}
			}
		}
	}
}

// TestVariables evaluates the variables' queries as Grafana would: the
// cluster is "local", and namespace and workload list the demo's.
func TestVariables(t *testing.T) {
	base := prometheus(t)
	for _, d := range load(t) {
		for _, v := range d.Templating.List {
			q, _ := v.Query.(string)
			switch {
			case v.Type == "datasource":
				if q != "prometheus" {
					t.Errorf("%s: variable %s: query %q, want prometheus", d.file, v.Name, q)
				}
			case strings.HasPrefix(q, "label_values("):
				// label_values(metric, label)
				args := strings.Split(strings.TrimSuffix(strings.TrimPrefix(q, "label_values("), ")"), ",")
				metric, label := strings.TrimSpace(args[0]), strings.TrimSpace(args[1])
				s, err := query(base, fmt.Sprintf("count by (%s) (%s)", label, metric))
				var got []string
				for _, x := range s {
					got = append(got, x.Metric[label])
				}
				if err != nil || !slices.Contains(got, "local") {
					t.Errorf("%s: variable %s: values %v (%v), want local among them", d.file, v.Name, got, err)
				}
			case strings.HasPrefix(q, "query_result("):
				expr := (vars{namespace: ".*", workload: ".*"}).substitute(strings.TrimSuffix(strings.TrimPrefix(q, "query_result("), ")"))
				s, err := query(base, expr)
				var got []string
				for _, x := range s {
					got = append(got, x.Metric[v.Name])
				}
				sort.Strings(got)
				want := map[string]string{"namespace": "shop", "workload": "web"}[v.Name]
				if err != nil || !slices.Contains(got, want) {
					t.Errorf("%s: variable %s: values %v (%v), want %s among them", d.file, v.Name, got, err, want)
				}
				t.Logf("%s: variable %s: %v", d.file, v.Name, got)
			default:
				t.Errorf("%s: variable %s: query %q not understood by the test", d.file, v.Name, q)
			}
		}
	}
}

// TestPromtoolCheckRules parses every query of the committed dashboards
// with promtool, as recording rules, whatever data exists.
func TestPromtoolCheckRules(t *testing.T) {
	var rules strings.Builder
	rules.WriteString("groups:\n")
	n := 0
	for _, d := range load(t) {
		fmt.Fprintf(&rules, "- name: %q\n  rules:\n", d.file)
		for _, p := range d.Panels {
			for _, q := range p.Targets {
				n++
				expr, _ := json.Marshal((vars{namespace: ".*", workload: ".*"}).substitute(q.Expr))
				fmt.Fprintf(&rules, "  - record: panel_%d_%s\n    expr: %s\n", p.ID, q.RefID, expr)
			}
		}
	}
	path := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(path, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("promtool", "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	t.Logf("promtool check rules: %d expressions parse", n)
}

// TestFlowLogCommands runs the commands that the flow-log and error-log
// panels show against the local system: kubectl get flows as is, the
// kubectl-flows plugin's observe, and its ui with --help (it serves until
// stopped).
func TestFlowLogCommands(t *testing.T) {
	plugin := filepath.Join(sys.Root, "_output/bin/kubectl-flows")
	_, pluginErr := os.Stat(plugin)
	ran := 0
	for _, d := range load(t) {
		for _, p := range d.Panels {
			if p.Type != "text" {
				continue
			}
			for _, line := range strings.Split(p.Options.Content, "\n") {
				line = strings.TrimSpace(line)
				if !strings.HasPrefix(line, "kubectl ") {
					continue
				}
				args := strings.Fields((vars{namespace: "shop", workload: ".*"}).substitute(line))[1:]
				switch args[0] {
				case "get":
					if _, stderr, err := sys.KubectlAs("", args...); err != nil {
						t.Errorf("%s/%s: %s: %v: %s", d.file, p.Title, line, err, stderr)
					}
					ran++
				case "flows":
					if pluginErr != nil {
						t.Logf("%s/%s: %s: not run: %s is not built", d.file, p.Title, line, plugin)
						continue
					}
					args = args[1:]
					if args[0] == "ui" {
						args = append(args, "--help")
					}
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					cmd := exec.CommandContext(ctx, plugin, append(args, "--kubeconfig", filepath.Join(sys.Out, "kubeconfig"))...)
					out, err := cmd.CombinedOutput()
					cancel()
					if err != nil {
						t.Errorf("%s/%s: %s: %v: %s", d.file, p.Title, line, err, out)
					}
					ran++
				default:
					t.Errorf("%s/%s: %s: not a command the test knows", d.file, p.Title, line)
				}
			}
		}
	}
	t.Logf("%d commands of the flow-log panels ran", ran)
}
