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

// Package disruptive tests what Flowscope does when its components die,
// restart, run out of disk or face a reader that does not read: each test
// kills, restarts or starves a component, or floods the system with flows.
// They would disturb the tests of ../ (package e2e), so they run on a
// local system of their own, started by this package's TestMain, one
// after another in the order TestDisruptive gives.
package disruptive

import (
	"os"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"flowscope.io/flowscope/generated/clientset/versioned"
	"flowscope.io/flowscope/test/e2e/framework"
)

var sys *framework.System

func TestMain(m *testing.M) {
	os.Exit(framework.Main(m, framework.Options{}, &sys))
}

func kubectlAs(user string, args ...string) (string, string, error) {
	return sys.KubectlAs(user, args...)
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
	pod     = framework.Pod
	mkFlow  = framework.MkFlow
	web1    = framework.Web1
	api1    = framework.API1
	inRange = framework.InRange
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
