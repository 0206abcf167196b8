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
	"context"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "flowscope.io/flowscope/apis/config/v1alpha1"
)

// The policies of these tests are what kube-apiserver makes of the CRDs of
// artifacts/crds and the roles of artifacts/deploy/rbac, as hack/local-up.sh
// applies them: the schema (markers of apis/config/v1alpha1 and the
// kustomize patch), defaults and RBAC. Nothing here needs an agent.

// acnsSample is the ContainerNetworkLog of the AKS documentation (ACNS
// "Container Network Logs"), with only apiVersion and kind changed.
const acnsSample = `apiVersion: config.flowscope.io/v1alpha1
kind: ClusterFlowLogPolicy
metadata:
  name: sample-retinanetworkflowlog # Cluster scoped
spec:
  includefilters:                   # List of filters (mandatory, >=1)
    - name: sample-filter           # optional
      from:                         # Endpoint (optional)
        namespacedPod:              # []string "namespace/pod" (pod-name prefix; regex ^.+$)
          - sample-namespace/sample-pod
        labelSelector:              # standard metav1.LabelSelector
          matchLabels:
            app: frontend
            k8s.io/namespace: sample-namespace
          matchExpressions:
            - key: environment
              operator: In
              values: [production, staging]
        ip:                         # []string, IP or CIDR
          - "192.168.1.10"
          - "10.0.0.1"
      to:                           # Endpoint, same shape as from
        namespacedPod: [sample-namespace2/sample-pod2]
        labelSelector:
          matchLabels: {app: backend, k8s.io/namespace: sample-namespace2}
          matchExpressions: [{key: tier, operator: NotIn, values: [dev]}]
        ip: ["192.168.1.20", "10.0.1.1"]
      protocol: [tcp, udp, dns]     # allowed: tcp, udp, dns; omitted = all
      verdict: [forwarded, dropped] # allowed: forwarded, dropped; omitted = all
`

// TestPolicyACNSSampleApplies applies the AKS sample as a
// ClusterFlowLogPolicy and reads every field back, with the defaults
// filled in: none is pruned or renamed.
func TestPolicyACNSSampleApplies(t *testing.T) {
	const name = "sample-retinanetworkflowlog"
	t.Cleanup(func() { deletePolicy(t, "clusterflowlogpolicy", "", name) })
	if out, stderr, err := applyPolicy(t, acnsSample); err != nil {
		t.Fatalf("kubectl apply of the ACNS sample: %v\n%s%s", err, out, stderr)
	}
	got, err := clientset(t).ConfigV1alpha1().ClusterFlowLogPolicies().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := configv1alpha1.FlowLogPolicySpec{
		IncludeFilters: []configv1alpha1.FlowLogFilter{{
			Name: "sample-filter",
			From: &configv1alpha1.FlowLogEndpoint{
				NamespacedPod: []string{"sample-namespace/sample-pod"},
				LabelSelector: &metav1.LabelSelector{
					MatchLabels: map[string]string{"app": "frontend", "k8s.io/namespace": "sample-namespace"},
					MatchExpressions: []metav1.LabelSelectorRequirement{
						{Key: "environment", Operator: metav1.LabelSelectorOpIn, Values: []string{"production", "staging"}},
					},
				},
				IP: []string{"192.168.1.10", "10.0.0.1"},
			},
			To: &configv1alpha1.FlowLogEndpoint{
				NamespacedPod: []string{"sample-namespace2/sample-pod2"},
				LabelSelector: &metav1.LabelSelector{
					MatchLabels: map[string]string{"app": "backend", "k8s.io/namespace": "sample-namespace2"},
					MatchExpressions: []metav1.LabelSelectorRequirement{
						{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"dev"}},
					},
				},
				IP: []string{"192.168.1.20", "10.0.1.1"},
			},
			Protocol: []configv1alpha1.Protocol{"tcp", "udp", "dns"},
			Verdict:  []configv1alpha1.Verdict{"forwarded", "dropped"},
		}},
		Retention: &metav1.Duration{Duration: 24 * time.Hour},
		Outputs:   []configv1alpha1.Output{configv1alpha1.OutputStore, configv1alpha1.OutputFile},
	}
	if !reflect.DeepEqual(got.Spec, want) {
		t.Errorf("read back:\n%+v\nwant:\n%+v", got.Spec, want)
	}
	// The printer columns of the CRD, under the short name.
	out := kubectl(t, "get", "cflp", name)
	for _, w := range []string{"OUTPUTS", "RETENTION", "READY", `["Store","File"]`, "24h"} {
		if !strings.Contains(out, w) {
			t.Errorf("kubectl get cflp lacks %q:\n%s", w, out)
		}
	}
}

// TestPolicyRejectedAtApply applies bad policies of both kinds and expects
// each to be refused by kube-apiserver with the path of the bad field.
func TestPolicyRejectedAtApply(t *testing.T) {
	for i, tt := range []struct {
		name string
		spec string // the spec's YAML, indented by two
		path string // the field's path in the error
		msg  string // and what is wrong with it
	}{
		{"no includefilters", `excludefilters: [{protocol: [dns]}]`,
			"spec.includefilters", "Required value"},
		{"empty includefilters", `includefilters: []`,
			"spec.includefilters", "should have at least 1 items"},
		{"bad CIDR in from.ip", `includefilters: [{from: {ip: ["10.0.0.0/33"]}}]`,
			"spec.includefilters[0].from.ip", "each ip must be an IP address or a CIDR"},
		{"bad address in an exclude filter's to.ip", `includefilters: [{}]
  excludefilters: [{to: {ip: ["10.0.0.1", "300.1.2.3"]}}]`,
			"spec.excludefilters[0].to.ip", "each ip must be an IP address or a CIDR"},
		{"unknown protocol", `includefilters: [{protocol: [tcp, http]}]`,
			"spec.includefilters[0].protocol[1]", `Unsupported value: "http"`},
		{"unknown verdict", `includefilters: [{verdict: [audit]}]`,
			"spec.includefilters[0].verdict[0]", `Unsupported value: "audit"`},
		{"negative retention", `includefilters: [{}]
  retention: -1h`,
			"spec.retention", "retention must be positive"},
		{"zero retention", `includefilters: [{}]
  retention: 0s`,
			"spec.retention", "retention must be positive"},
		{"retention over a year", `includefilters: [{}]
  retention: 8761h`,
			"spec.retention", "retention must be at most a year (8760h)"},
		{"port 0", `includefilters: [{ports: [{port: 0}]}]`,
			"spec.includefilters[0].ports[0].port", "should be greater than or equal to 1"},
		{"port 70000", `includefilters: [{ports: [{port: 443}, {port: 70000}]}]`,
			"spec.includefilters[0].ports[1].port", "should be less than or equal to 65535"},
		{"endPort below port", `includefilters: [{ports: [{port: 8080, endPort: 80}]}]`,
			"spec.includefilters[0].ports[0].endPort", "endPort must not be below port"},
		{"namespacedPod without a slash", `includefilters: [{to: {namespacedPod: [web-0]}}]`,
			"spec.includefilters[0].to.namespacedPod[0]", "should match"},
		{"unknown output", `includefilters: [{}]
  outputs: [Store, Kafka]`,
			"spec.outputs[1]", `Unsupported value: "Kafka"`},
		{"unknown matchExpressions operator", `includefilters: [{from: {labelSelector: {matchExpressions: [{key: tier, operator: Like, values: [dev]}]}}}]`,
			"spec.includefilters[0].from.labelSelector.matchExpressions[0].operator", `Unsupported value: "Like"`},
	} {
		for _, kind := range []string{"ClusterFlowLogPolicy", "FlowLogPolicy"} {
			t.Run(kind+"/"+tt.name, func(t *testing.T) {
				name := fmt.Sprintf("rejected-%d", i)
				ns := ""
				if kind == "FlowLogPolicy" {
					ns = "shop"
				}
				out, stderr, err := applyPolicy(t, policyYAML(kind, ns, name, tt.spec))
				if err == nil {
					deletePolicy(t, kind, ns, name)
					t.Fatalf("kubectl apply succeeded: %s", out)
				}
				if want := fmt.Sprintf("The %s %q is invalid", kind, name); !strings.Contains(stderr, want) {
					t.Errorf("stderr = %s; want %q", stderr, want)
				}
				if !strings.Contains(stderr, tt.path+": ") || !strings.Contains(stderr, tt.msg) {
					t.Errorf("stderr = %s; want %q about %q", stderr, tt.msg, tt.path)
				}
			})
		}
	}
}

// TestPolicyDefaults reads back a FlowLogPolicy that sets neither
// retention nor outputs, and one that sets both.
func TestPolicyDefaults(t *testing.T) {
	for _, tt := range []struct {
		name, spec string
		retention  time.Duration
		outputs    []configv1alpha1.Output
	}{
		{"defaulted", `includefilters: [{protocol: [dns]}]`,
			24 * time.Hour, []configv1alpha1.Output{configv1alpha1.OutputStore, configv1alpha1.OutputFile}},
		{"explicit", `includefilters: [{protocol: [dns]}]
  retention: 90m
  outputs: [OTLP]`,
			90 * time.Minute, []configv1alpha1.Output{configv1alpha1.OutputOTLP}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			name := "defaults-" + tt.name
			t.Cleanup(func() { deletePolicy(t, "flowlogpolicy", "shop", name) })
			if out, stderr, err := applyPolicy(t, policyYAML("FlowLogPolicy", "shop", name, tt.spec)); err != nil {
				t.Fatalf("kubectl apply: %v\n%s%s", err, out, stderr)
			}
			got, err := clientset(t).ConfigV1alpha1().FlowLogPolicies("shop").Get(context.Background(), name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Spec.Retention == nil || got.Spec.Retention.Duration != tt.retention {
				t.Errorf("retention = %v, want %v", got.Spec.Retention, tt.retention)
			}
			if !reflect.DeepEqual(got.Spec.Outputs, tt.outputs) {
				t.Errorf("outputs = %v, want %v", got.Spec.Outputs, tt.outputs)
			}
		})
	}
}

// TestPolicyRBAC checks who may do what with policies: dave administers
// shop (flowscope-admin, which a cluster aggregates into admin and edit),
// alice views shop (flowscope-view in shop), carol views everything
// (flowscope-view cluster-wide), bob has nothing until he is given
// flowscope-policy-admin; and the agents and flowscope-apiserver, which
// watch policies and write their status.
func TestPolicyRBAC(t *testing.T) {
	const daveName = "rbac-dave"
	t.Cleanup(func() { deletePolicy(t, "flowlogpolicy", "shop", daveName) })
	forbidden := func(t *testing.T, user, verb, resource, ns string, args ...string) {
		t.Helper()
		_, stderr, err := kubectlAs(user, args...)
		want := fmt.Sprintf("User %q cannot %s resource %q in API group \"config.flowscope.io\"", user, verb, resource)
		if ns != "" {
			want += fmt.Sprintf(" in the namespace %q", ns)
		} else {
			want += " at the cluster scope"
		}
		if err == nil || !strings.Contains(stderr, "Forbidden") || !strings.Contains(stderr, want) {
			t.Errorf("%s %v: err=%v stderr=%s; want Forbidden: %s", user, args, err, stderr, want)
		}
	}
	allowed := func(t *testing.T, user string, args ...string) string {
		t.Helper()
		out, stderr, err := kubectlAs(user, args...)
		if err != nil {
			t.Errorf("%s %v: %v\n%s", user, args, err, stderr)
		}
		return out
	}
	spec := `includefilters: [{verdict: [dropped]}]`
	namespaced := func(ns, name string) string { return policyFile(t, policyYAML("FlowLogPolicy", ns, name, spec)) }
	cluster := policyFile(t, policyYAML("ClusterFlowLogPolicy", "", "rbac-cluster", spec))

	t.Run("dave administers shop's policies", func(t *testing.T) {
		allowed(t, "dave", "apply", "-f", namespaced("shop", daveName))
		allowed(t, "dave", "patch", "flowlogpolicy", daveName, "-n", "shop", "--type=merge", "-p", `{"spec":{"retention":"2h"}}`)
		if out := allowed(t, "dave", "get", "flp", "-n", "shop", "-o", "name"); !strings.Contains(out, daveName) {
			t.Errorf("dave lists %q in shop; want %s", out, daveName)
		}
		forbidden(t, "dave", "create", "flowlogpolicies", "payments", "create", "-f", namespaced("payments", "rbac-dave-payments"))
		forbidden(t, "dave", "create", "clusterflowlogpolicies", "", "create", "-f", cluster)
		forbidden(t, "dave", "list", "clusterflowlogpolicies", "", "get", "cflp")
	})

	t.Run("alice views shop's policies", func(t *testing.T) {
		forbidden(t, "alice", "create", "flowlogpolicies", "shop", "create", "-f", namespaced("shop", "rbac-alice"))
		if out := allowed(t, "alice", "get", "flowlogpolicies", "-n", "shop", "-o", "name"); !strings.Contains(out, daveName) {
			t.Errorf("alice lists %q in shop; want %s", out, daveName)
		}
		forbidden(t, "alice", "patch", "flowlogpolicies", "shop", "patch", "flp", daveName, "-n", "shop", "--type=merge", "-p", `{"spec":{"retention":"1h"}}`)
		forbidden(t, "alice", "delete", "flowlogpolicies", "shop", "delete", "flp", daveName, "-n", "shop")
		forbidden(t, "alice", "list", "flowlogpolicies", "payments", "get", "flp", "-n", "payments")
		// A RoleBinding grants nothing cluster-scoped: ClusterFlowLogPolicies
		// are for those who view the whole cluster.
		forbidden(t, "alice", "list", "clusterflowlogpolicies", "", "get", "cflp")
		forbidden(t, "alice", "create", "clusterflowlogpolicies", "", "create", "-f", cluster)
	})

	t.Run("carol views every policy", func(t *testing.T) {
		if out := allowed(t, "carol", "get", "flp", "-A", "-o", "name"); !strings.Contains(out, daveName) {
			t.Errorf("carol lists %q; want %s", out, daveName)
		}
		allowed(t, "carol", "get", "clusterflowlogpolicies")
		forbidden(t, "carol", "create", "clusterflowlogpolicies", "", "create", "-f", cluster)
		forbidden(t, "carol", "create", "flowlogpolicies", "shop", "create", "-f", namespaced("shop", "rbac-carol"))
	})

	t.Run("bob gets cluster policies from flowscope-policy-admin only", func(t *testing.T) {
		forbidden(t, "bob", "list", "flowlogpolicies", "shop", "get", "flp", "-n", "shop")
		forbidden(t, "bob", "create", "clusterflowlogpolicies", "", "create", "-f", cluster)
		t.Cleanup(func() {
			deletePolicy(t, "clusterflowlogpolicy", "", "rbac-cluster")
			kubectl(t, "delete", "clusterrolebinding", "rbac-bob-policy-admin", "--ignore-not-found")
		})
		kubectl(t, "create", "clusterrolebinding", "rbac-bob-policy-admin", "--clusterrole=flowscope-policy-admin", "--user=bob")
		eventually(t, 30*time.Second, "bob to create a ClusterFlowLogPolicy", func() (bool, string) {
			out, stderr, err := kubectlAs("bob", "create", "-f", cluster)
			return err == nil, out + stderr
		})
		allowed(t, "bob", "delete", "cflp", "rbac-cluster")
		// Cluster policies only: not a namespace's, not flows.
		forbidden(t, "bob", "list", "flowlogpolicies", "shop", "get", "flp", "-n", "shop")
	})

	t.Run("aggregation labels", func(t *testing.T) {
		// The local system runs no kube-controller-manager, so admin, edit
		// and view are never filled in: the labels are what a cluster's
		// aggregation controller goes by.
		for _, tt := range []struct {
			role string
			into []string
		}{
			{"flowscope-view", []string{"admin", "edit", "view"}},
			{"flowscope-admin", []string{"admin", "edit"}},
			{"flowscope-policy-admin", nil},
		} {
			var labels map[string]string
			if err := json.Unmarshal([]byte(kubectl(t, "get", "clusterrole", tt.role, "-o", "jsonpath={.metadata.labels}")), &labels); err != nil {
				t.Fatal(err)
			}
			var into []string
			for k, v := range labels {
				if role, ok := strings.CutPrefix(k, "rbac.authorization.k8s.io/aggregate-to-"); ok && v == "true" {
					into = append(into, role)
				}
			}
			slices.Sort(into)
			if !slices.Equal(into, tt.into) {
				t.Errorf("%s is aggregated into %v, want %v", tt.role, into, tt.into)
			}
		}
	})

	t.Run("agents and flowscope-apiserver", func(t *testing.T) {
		for _, tt := range []struct {
			user string // kubeconfig-<user> of the local system
			args []string
			want string
		}{
			{"agent", []string{"watch", "clusterflowlogpolicies.config.flowscope.io"}, "yes"},
			{"agent", []string{"watch", "flowlogpolicies.config.flowscope.io", "-A"}, "yes"},
			{"agent", []string{"patch", "flowlogpolicies.config.flowscope.io", "-n", "shop", "--subresource=status"}, "no"},
			{"agent", []string{"create", "clusterflowlogpolicies.config.flowscope.io"}, "no"},
			{"apiserver", []string{"watch", "clusterflowlogpolicies.config.flowscope.io"}, "yes"},
			{"apiserver", []string{"list", "flowlogpolicies.config.flowscope.io", "-A"}, "yes"},
			{"apiserver", []string{"patch", "clusterflowlogpolicies.config.flowscope.io", "--subresource=status"}, "yes"},
			{"apiserver", []string{"update", "flowlogpolicies.config.flowscope.io", "-n", "shop", "--subresource=status"}, "yes"},
			{"apiserver", []string{"update", "clusterflowlogpolicies.config.flowscope.io"}, "no"},
			{"apiserver", []string{"delete", "flowlogpolicies.config.flowscope.io", "-n", "shop"}, "no"},
		} {
			out, _, _ := kubectlAs(tt.user, append([]string{"auth", "can-i"}, tt.args...)...)
			if got := strings.TrimSpace(out); got != tt.want {
				t.Errorf("%s can-i %v = %q, want %q", tt.user, tt.args, got, tt.want)
			}
		}
	})
}

// policyYAML is a policy of kind in ns ("" for a ClusterFlowLogPolicy)
// with spec, YAML indented by two.
func policyYAML(kind, ns, name, spec string) string {
	meta := "  name: " + name + "\n"
	if ns != "" {
		meta += "  namespace: " + ns + "\n"
	}
	return "apiVersion: config.flowscope.io/v1alpha1\nkind: " + kind + "\nmetadata:\n" + meta + "spec:\n  " + spec + "\n"
}

// policyFile writes yaml to a file of the test's and returns its path.
func policyFile(t *testing.T, yaml string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "policy-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(yaml); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// applyPolicy runs kubectl apply on yaml as admin, as a user applies a
// manifest.
func applyPolicy(t *testing.T, yaml string) (string, string, error) {
	t.Helper()
	return kubectlAs("", "apply", "-f", policyFile(t, yaml))
}

// deletePolicy deletes a policy, if it exists, as admin.
func deletePolicy(t *testing.T, kind, ns, name string) {
	t.Helper()
	args := []string{"delete", strings.ToLower(kind) + ".config.flowscope.io", name, "--ignore-not-found", "--wait=false"}
	if ns != "" {
		args = append(args, "-n", ns)
	}
	kubectl(t, args...)
}
