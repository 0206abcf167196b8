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

package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDeployManifestsDryRun applies what a user of a real cluster applies,
// the Helm chart (artifacts/charts/flowscope) rendered with its default
// values and with every optional part on, and the kustomize deployment
// (artifacts/deploy), to the local kube-apiserver with a server-side dry
// run: every object must pass its validation and admission (schemas, the
// CRDs' own, RBAC escalation checks, the APIService, the workloads' pod
// specs), CRDs first. Nothing is changed. The two must also deploy the same
// objects.
func TestDeployManifestsDryRun(t *testing.T) {
	helm := filepath.Join(sys.Root, "_output", "tools", "helm")
	if _, err := os.Stat(helm); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing: make tools builds it (hack/build-helm.sh)", helm)
		}
		t.Skipf("SKIPPING: %s is missing: run hack/build-helm.sh (make tools does)", helm)
	}
	chart := filepath.Join(sys.Root, "artifacts", "charts", "flowscope")
	dir := t.TempDir()

	render := func(name string, args ...string) string {
		t.Helper()
		out := run(t, helm, append([]string{"template", "flowscope", chart, "--namespace", "flowscope-system"}, args...)...)
		f := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(f, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	defaults := render("chart-default")
	allOn := render("chart-all-on",
		// ServiceMonitor is left out: the local system has no Prometheus
		// Operator, so its kind would not be found.
		"--set", "grafanaDashboards.enabled=true",
		"--set", "examplePolicy.enabled=true",
		"--set", "agent.otlp.endpoint=collector.monitoring.svc:4317",
		"--set", "agent.otlp.secretName=otlp-client",
		"--set", "agent.l7.keepQueryStrings=true",
		"--set", "apiserver.podDisruptionBudget.enabled=true",
	)
	manual := render("chart-manual", "--set", "certificates.mode=manual")
	kustomized := filepath.Join(dir, "kustomize.yaml")
	if err := os.WriteFile(kustomized, []byte(kubectl(t, "kustomize", filepath.Join(sys.Root, "artifacts", "deploy"))), 0o644); err != nil {
		t.Fatal(err)
	}

	// CRDs first: the chart's crds/ (which helm installs before its
	// templates) must be accepted as they are.
	crdOut := kubectl(t, "apply", "--dry-run=server", "-o", "name", "-f", filepath.Join(chart, "crds"))
	if n := strings.Count(crdOut, "customresourcedefinition"); n != 2 {
		t.Fatalf("chart crds/: %d CRDs applied, want 2:\n%s", n, crdOut)
	}

	applied := map[string][]string{}
	for name, f := range map[string]string{"chart (default values)": defaults, "chart (optional parts on)": allOn,
		"chart (manual certificates)": manual, "kustomize": kustomized} {
		out, stderr, err := sys.KubectlAs("", "apply", "--dry-run=server", "-o", "name", "-f", f)
		if err != nil {
			t.Errorf("%s: kubectl apply --dry-run=server: %v\n%s%s", name, err, out, stderr)
			continue
		}
		objs := strings.Fields(out)
		if want := countObjects(t, f); len(objs) != want {
			t.Errorf("%s: %d objects applied, the manifests have %d:\n%s%s", name, len(objs), want, out, stderr)
		}
		slices.Sort(objs)
		applied[name] = objs
		t.Logf("%s: %d objects valid (server-side dry run)", name, len(objs))
	}

	// Same objects but what each leaves to its own tool: the chart makes
	// the continue-token Secret and leaves the Namespace to
	// --create-namespace; kustomize users create the Secret, and get the
	// Namespace and the CRDs from it.
	chartSet := without(applied["chart (default values)"], "secret/flowscope-continue-token-keys")
	kustomizeSet := without(applied["kustomize"], "namespace/flowscope-system",
		"customresourcedefinition.apiextensions.k8s.io/clusterflowlogpolicies.config.flowscope.io",
		"customresourcedefinition.apiextensions.k8s.io/flowlogpolicies.config.flowscope.io")
	if !slices.Equal(chartSet, kustomizeSet) {
		t.Errorf("the chart and kustomize deploy different objects:\nchart:     %v\nkustomize: %v", chartSet, kustomizeSet)
	}
	for _, want := range []string{"daemonset.apps/flowscope-agent", "deployment.apps/flowscope-apiserver",
		"poddisruptionbudget.policy/flowscope-apiserver", "apiservice.apiregistration.k8s.io/v1alpha1.flows.flowscope.io",
		"validatingadmissionpolicy.admissionregistration.k8s.io/flowscope-agent-leases"} {
		if !slices.Contains(chartSet, want) {
			t.Errorf("the chart lacks %s", want)
		}
	}
	if !slices.Contains(applied["chart (optional parts on)"], "clusterflowlogpolicy.config.flowscope.io/demo") {
		t.Errorf("examplePolicy.enabled: no ClusterFlowLogPolicy demo in %v", applied["chart (optional parts on)"])
	}
	dashboards, _ := filepath.Glob(filepath.Join(sys.Root, "artifacts", "dashboards", "*.json"))
	for _, d := range dashboards {
		cm := "configmap/" + strings.TrimSuffix(filepath.Base(d), ".json")
		if !slices.Contains(applied["chart (optional parts on)"], cm) {
			t.Errorf("grafanaDashboards.enabled: no %s", cm)
		}
	}
}

// TestChartArgsParse checks that the flags the chart gives each binary are
// flags it has, with values of their types: each binary parses the rendered
// arguments (the pod's environment replaced) with --version, which exits
// after parsing, before anything starts.
func TestChartArgsParse(t *testing.T) {
	if _, err := os.Stat(filepath.Join(sys.Root, "_output", "tools", "helm")); err != nil {
		t.Skip("SKIPPING: no _output/tools/helm (see TestDeployManifestsDryRun)")
	}
	for _, c := range []struct{ component, binary string }{
		{"agent", "flowscope-agent"}, {"apiserver", "flowscope-apiserver"},
	} {
		for _, values := range [][]string{nil, {"--set", "certificates.mode=manual", "--set", "agent.otlp.endpoint=c:4317", "--set", "agent.otlp.secretName=s"}} {
			out := run(t, filepath.Join(sys.Root, "hack", "chart-args.sh"), append([]string{c.component}, values...)...)
			args := strings.Split(strings.TrimSpace(out), "\n")
			if len(args) < 3 {
				t.Fatalf("%s %v: chart-args gave %q", c.component, values, out)
			}
			r := strings.NewReplacer("$(NODE_NAME)", "node-a", "$(POD_IP)", "127.0.0.1")
			for i := range args {
				args[i] = r.Replace(args[i])
			}
			got := run(t, filepath.Join(sys.Root, "_output", "bin", c.binary), append(args, "--version")...)
			if !strings.HasPrefix(got, c.binary+" ") {
				t.Errorf("%s %v: --version printed %q", c.binary, args, got)
			}
		}
	}
}

// TestSuiteRunsChartArgs checks that this suite's agents run with the flags
// the chart renders (main_test.go starts the system with CHART_ARGS=1):
// hack/local-up.sh wrote them to OUT_DIR/chart-args-agent and passed them to
// each agent, whose command line shows them.
func TestSuiteRunsChartArgs(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(sys.Out, "chart-args-agent"))
	if err != nil {
		t.Fatalf("the suite's system was not started with CHART_ARGS=1: %v", err)
	}
	flags := strings.Fields(string(data))
	if !slices.Contains(flags, "--retention=1h") || !slices.Contains(flags, "--max-store-bytes=10Gi") {
		t.Fatalf("chart-args-agent: %q, want the chart's --retention=1h and --max-store-bytes=10Gi", flags)
	}
	for _, n := range sys.Nodes {
		pid, err := os.ReadFile(filepath.Join(sys.Out, "pids", "agent-"+n+".pid"))
		if err != nil {
			t.Fatal(err)
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", strings.TrimSpace(string(pid)), "cmdline"))
		if err != nil {
			t.Fatal(err)
		}
		args := strings.Split(string(cmdline), "\x00")
		for _, f := range flags {
			if !slices.Contains(args, f) {
				t.Errorf("agent %s runs without the chart's %s: %q", n, f, args)
			}
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// countObjects counts the YAML documents of f that hold an object.
func countObjects(t *testing.T, f string) int {
	t.Helper()
	data, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, doc := range strings.Split("\n"+string(data), "\n---") {
		for _, line := range strings.Split(doc, "\n") {
			if strings.HasPrefix(line, "kind: ") {
				n++
				break
			}
		}
	}
	return n
}

func without(s []string, drop ...string) []string {
	return slices.DeleteFunc(slices.Clone(s), func(x string) bool { return slices.Contains(drop, x) })
}
