// Package e2e tests Flowscope end to end: it starts the whole local system
// with hack/local-up.sh (etcd, kube-apiserver, flowscope-apiserver through
// an APIService, two agents) in a temporary directory on its own ports, and
// drives it with the pinned kubectl and with client-go.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sys describes the running local system.
var sys struct {
	root     string // repository
	out      string // OUT_DIR
	portBase int
	kubectl  string
	nodes    []string
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped in -short mode")
		return 0
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sys.root = root
	sys.kubectl = filepath.Join(root, "_output/tools/kubectl")
	sys.nodes = []string{"node-a", "node-b"}
	for _, bin := range []string{"_output/tools/kube-apiserver", "_output/tools/kubectl", "_output/tools/etcd",
		"_output/bin/flowscope-apiserver", "_output/bin/flowscope-agent"} {
		if _, err := os.Stat(filepath.Join(root, bin)); err != nil {
			msg := fmt.Sprintf("e2e: %s is missing: run `make build tools` (make test does)", bin)
			if os.Getenv("CI") == "true" {
				fmt.Fprintln(os.Stderr, msg)
				return 1
			}
			fmt.Println("SKIPPING the end-to-end suite: " + msg)
			return 0
		}
	}
	sys.out, err = os.MkdirTemp("", "flowscope-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Ports far from make run's 6440, different for concurrent suites.
	sys.portBase = 20000 + 100*rand.IntN(400)
	env := append(os.Environ(),
		"OUT_DIR="+sys.out,
		fmt.Sprintf("PORT_BASE=%d", sys.portBase),
		"NODES="+strings.Join(sys.nodes, " "),
		"FLOWGEN=0", // the tests write the replay files themselves
	)
	up := exec.Command(filepath.Join(root, "hack/local-up.sh"))
	up.Env = env
	var upOut bytes.Buffer
	up.Stdout, up.Stderr = &upOut, &upOut
	start := time.Now()
	if err := up.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: hack/local-up.sh failed: %v\n%s", err, upOut.String())
		down(env)
		return 1
	}
	fmt.Printf("e2e: local system up in %s (OUT_DIR=%s, PORT_BASE=%d)\n", time.Since(start).Round(time.Second), sys.out, sys.portBase)
	code := m.Run()
	if code != 0 {
		dumpLogs()
	}
	down(env)
	if code == 0 {
		_ = os.RemoveAll(sys.out)
	}
	return code
}

func down(env []string) {
	cmd := exec.Command(filepath.Join(sys.root, "hack/local-down.sh"))
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: hack/local-down.sh failed: %v\n%s", err, out)
	}
}

// dumpLogs prints the tail of every component's log after a failure.
func dumpLogs() {
	logs, _ := filepath.Glob(filepath.Join(sys.out, "logs", "*.log"))
	for _, l := range logs {
		f, err := os.Open(l)
		if err != nil {
			continue
		}
		var lines []string
		s := bufio.NewScanner(f)
		s.Buffer(make([]byte, 1<<20), 1<<20)
		for s.Scan() {
			lines = append(lines, s.Text())
		}
		_ = f.Close()
		if len(lines) > 30 {
			lines = lines[len(lines)-30:]
		}
		fmt.Printf("---- %s ----\n%s\n", filepath.Base(l), strings.Join(lines, "\n"))
	}
}

// kubectlAs runs the pinned kubectl with a user's kubeconfig ("" is admin).
func kubectlAs(user string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kc := filepath.Join(sys.out, "kubeconfig")
	if user != "" {
		kc += "-" + user
	}
	cmd := exec.CommandContext(ctx, sys.kubectl, append([]string{"--kubeconfig", kc, "--cache-dir", filepath.Join(sys.out, "kubecache-"+user)}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// kubectl runs kubectl as admin and fails the test on error.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, err := kubectlAs("", args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, last)
}
