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

// Package e2e tests Flowscope end to end with flows replayed from Hubble
// export files: it starts the whole local system (etcd, kube-apiserver,
// flowscope-apiserver through an APIService, two agents) with
// hack/local-up.sh, without capture, and drives it with the pinned kubectl
// and client-go. Its tests leave the system as they found it, and may run
// in any order. Tests that kill, restart or starve components, or flood
// the system, have their own system and suite in ./disruptive; capture has
// its own in ./capture.
package e2e

import (
	"os"
	"strconv"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"flowscope.io/flowscope/generated/clientset/versioned"
	"flowscope.io/flowscope/test/e2e/framework"
)

var sys *framework.System

func TestMain(m *testing.M) {
	os.Exit(framework.Main(m, framework.Options{
		// A cap TestFlowMetrics can pass with a thousand flows, and
		// Hubble's names, which it checks too.
		Env: []string{"AGENT_ARGS=--flow-metrics-hubble --flow-metrics-max-series=" + strconv.Itoa(flowMetricsMaxSeries),
			// The agents and flowscope-apiserver get the flags the Helm
			// chart renders with its default values (hack/chart-args.sh,
			// less the local ones), so the suite runs the chart's settings.
			"CHART_ARGS=1"},
	}, &sys))
}

func kubectlAs(user string, args ...string) (string, string, error) {
	return sys.KubectlAs(user, args...)
}

// kubectl runs kubectl as admin and fails the test on error.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, err := sys.KubectlAs("", args...)
	if err != nil {
		t.Fatalf("kubectl %v: %v\n%s%s", args, err, out, stderr)
	}
	return out
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	framework.Eventually(t, timeout, what, cond)
}

func agentMetric(t *testing.T, i int, series string) float64 {
	t.Helper()
	return sys.AgentMetric(t, i, series)
}

func clientset(t *testing.T) versioned.Interface {
	t.Helper()
	return sys.Clientset(t)
}

var everything = labels.Everything()

// Seeded flows (framework/flows.go).
type seed = framework.Seed

var (
	host      = framework.Host
	mkFlow    = framework.MkFlow
	web1      = framework.Web1
	api1      = framework.API1
	baseSeeds = framework.BaseSeeds
	sports    = framework.Sports
	inRange   = framework.InRange
)

func appendLines(t *testing.T, node string, lines ...string) {
	t.Helper()
	sys.AppendLines(t, node, lines...)
}

func replay(t *testing.T, seeds ...seed) {
	t.Helper()
	sys.Replay(t, seeds...)
}

func seedBase(t *testing.T) []seed {
	t.Helper()
	return sys.SeedBase(t)
}

func listSports(user string, args ...string) ([]int32, error) {
	return sys.ListSports(user, args...)
}
