// Package e2e tests Flowscope end to end with flows replayed from Hubble
// export files: it starts the whole local system (etcd, kube-apiserver,
// flowscope-apiserver through an APIService, two agents) with
// hack/local-up.sh, without capture, and drives it with the pinned kubectl
// and client-go. Capture has its own suite in ./capture.
package e2e

import (
	"os"
	"testing"
	"time"

	"flowscope.io/flowscope/test/e2e/framework"
)

var sys *framework.System

func TestMain(m *testing.M) {
	os.Exit(framework.Main(m, framework.Options{}, &sys))
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
