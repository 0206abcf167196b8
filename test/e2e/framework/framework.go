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

// Package framework starts the local system of hack/local-up.sh for an
// end-to-end suite, in a temporary directory on ports of its own, and
// drives it with the pinned kubectl.
package framework

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// System is a running local system.
type System struct {
	Root     string // the repository
	Out      string // OUT_DIR
	PortBase int
	Kubectl  string
	Nodes    []string
	env      []string
	replayMu sync.Mutex // serialises appends to the replay files
	seedOnce sync.Once  // SeedBase's replay
}

// The local system's ports relative to PORT_BASE (hack/lib/local.sh): agent
// i serves gRPC on agentPortOffset+i and metrics on agentMetricsPortOffset+i.
const (
	agentPortOffset        = 100
	agentMetricsPortOffset = 200
	portSpan               = 300
)

// AgentPort returns the gRPC port of the i-th agent.
func (s *System) AgentPort(i int) int { return s.PortBase + agentPortOffset + i }

// Demo pods the capture suites drive (hack/lib/pods.sh): web-0 and db-0
// of shop and coredns-0 of kube-system on node-a, api-0 of payments on
// node-b.
const (
	DemoWebNetns     = "fs-node-a-shop-web-0"
	DemoDBNetns      = "fs-node-a-shop-db-0"
	DemoCoreDNSNetns = "fs-node-a-kube-system-coredns-0"
	DemoAPINetns     = "fs-node-b-payments-api-0"
	DemoAPIIPv4      = "10.244.2.2"
	DemoAPIIPv6      = "fd00:10:244:2::2"
)

// Options choose what the suite's system runs.
type Options struct {
	// DemoPods creates the network-namespace pods with live traffic and
	// turns capture on; it needs root.
	DemoPods bool
	// Capture is the agents' --capture with demo pods.
	Capture string
	// Env adds environment variables for hack/local-up.sh.
	Env []string
}

// Main is a suite's TestMain: it starts the system into *sys, runs the
// tests, prints the components' logs when a test failed, and stops it.
// Where the suite cannot run it skips loudly, or fails under CI=true.
func Main(m *testing.M, opts Options, sys **System) int {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped in -short mode")
		return 0
	}
	root, err := filepath.Abs(moduleRoot())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	skip := func(msg string) int {
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "e2e: cannot run under CI: "+msg)
			return 1
		}
		fmt.Println("SKIPPING the end-to-end suite: " + msg)
		return 0
	}
	for _, bin := range []string{"_output/tools/kube-apiserver", "_output/tools/kubectl", "_output/tools/etcd",
		"_output/bin/flowscope-apiserver", "_output/bin/flowscope-agent"} {
		if _, err := os.Stat(filepath.Join(root, bin)); err != nil {
			return skip(bin + " is missing: run `make build tools` (make test does)")
		}
	}
	if opts.DemoPods && os.Geteuid() != 0 {
		return skip("capture needs root for network namespaces and eBPF")
	}
	if opts.DemoPods {
		// The demo pods have fixed names and addresses: one set per host.
		// `go test ./...` runs packages in parallel, so the suites that
		// need them (capture, dashboards) take turns.
		unlock, err := lockDemoPods()
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		defer unlock()
		if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), "fs-node-") {
			fmt.Fprintln(os.Stderr, "e2e: demo pods of another local system exist; stop it first (make stop)")
			return 1
		}
	}
	s := &System{Root: root, Kubectl: filepath.Join(root, "_output/tools/kubectl"), Nodes: []string{"node-a", "node-b"}}
	if s.Out, err = os.MkdirTemp("", "flowscope-e2e-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Ports far from make run's 6440, different for concurrent suites: each
	// system spans portSpan ports, all below the kernel's ephemeral range,
	// where any outgoing connection may hold one (an agent once failed to
	// bind its metrics port for that).
	if s.PortBase, err = reservePortBase(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	demo, capture := "0", opts.Capture
	if opts.DemoPods {
		demo = "1"
	}
	s.env = append(os.Environ(), "OUT_DIR="+s.Out, fmt.Sprintf("PORT_BASE=%d", s.PortBase),
		"NODES="+strings.Join(s.Nodes, " "), "FLOWGEN=0", "EXAMPLE_POLICY=0", "PROMETHEUS=0", "OTEL_COLLECTOR=0", "DEMO_PODS="+demo, "CAPTURE="+capture)
	s.env = append(s.env, opts.Env...)
	start := time.Now()
	if out, err := s.script("hack/local-up.sh"); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: hack/local-up.sh failed: %v\n%s", err, out)
		s.stop()
		return 1
	}
	fmt.Printf("e2e: local system up in %s (OUT_DIR=%s, PORT_BASE=%d)\n", time.Since(start).Round(time.Second), s.Out, s.PortBase)
	*sys = s
	code := m.Run()
	if code != 0 {
		s.dumpLogs()
	}
	s.stop()
	if code == 0 {
		_ = os.RemoveAll(s.Out)
	}
	return code
}

// demoPodsLock serialises the suites with demo pods within one host. It
// is not /tmp/flowscope-demopods.lock, which people take around a whole
// `go test` run (flock(1)): this process would wait for its own parent.
const demoPodsLock = "/tmp/flowscope-e2e-demopods.lock"

// lockDemoPods waits until no other suite of this host has demo pods and
// returns the function that lets the next one go.
func lockDemoPods() (func(), error) {
	f, err := os.OpenFile(demoPodsLock, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fmt.Println("e2e: waiting for another suite's demo pods to go (" + demoPodsLock + ")")
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", demoPodsLock, err)
		}
	}
	return func() { _ = f.Close() }, nil
}

// moduleRoot finds the repository from the test's directory.
func moduleRoot() string {
	dir, _ := os.Getwd()
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	return dir
}

func (s *System) script(path string) (string, error) {
	cmd := exec.Command(filepath.Join(s.Root, path))
	cmd.Env = s.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (s *System) stop() {
	if out, err := s.script("hack/local-down.sh"); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: hack/local-down.sh failed: %v\n%s", err, out)
	}
}

// dumpLogs prints the tail of every component's log.
func (s *System) dumpLogs() {
	logs, _ := filepath.Glob(filepath.Join(s.Out, "logs", "*.log"))
	for _, l := range logs {
		f, err := os.Open(l)
		if err != nil {
			continue
		}
		var lines []string
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		_ = f.Close()
		if len(lines) > 30 {
			lines = lines[len(lines)-30:]
		}
		fmt.Printf("---- %s ----\n%s\n", filepath.Base(l), strings.Join(lines, "\n"))
	}
}

// KubectlAs runs the pinned kubectl as a user of the local system ("" is
// admin).
func (s *System) KubectlAs(user string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kc := filepath.Join(s.Out, "kubeconfig")
	if user != "" {
		kc += "-" + user
	}
	cmd := exec.CommandContext(ctx, s.Kubectl, append([]string{"--kubeconfig", kc, "--cache-dir", filepath.Join(s.Out, "kubecache-"+user)}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// Eventually polls cond until it holds or the timeout passes.
func Eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
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

// AgentMetric reads one sample from the i-th agent's /metrics; absent is 0.
func (s *System) AgentMetric(t *testing.T, i int, series string) float64 {
	t.Helper()
	name, labels, _ := strings.Cut(series, "{")
	if labels != "" {
		labels = "{" + labels
	}
	return s.AgentSeries(t, i, name)[labels]
}

// AgentSeries returns the series of metric name that the i-th agent
// exports, by their labels as exposed ("" for none), e.g.
// `{reason="table_full"}`.
func (s *System) AgentSeries(t *testing.T, i int, name string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", s.PortBase+agentMetricsPortOffset+i))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	series := map[string]float64{}
	for _, l := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(l, name)
		if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		labels, value := "", rest[1:]
		if end := strings.LastIndex(rest, "} "); rest[0] == '{' && end > 0 {
			labels, value = rest[:end+1], rest[end+2:]
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", l, err)
		}
		series[labels] = v
	}
	return series
}

// Kill kills a component with SIGKILL and returns a function that starts
// it again with the same command line and waits until flows can be listed
// through kube-apiserver with no agent missing.
func (s *System) Kill(t *testing.T, component string) func() {
	t.Helper()
	args := s.signal(t, component, syscall.SIGKILL)
	return func() {
		t.Helper()
		s.start(t, component, args)
	}
}

// Restart kills a component and starts it with its command line passed
// through edit; it returns the command line it had.
func (s *System) Restart(t *testing.T, component string, edit func([]string) []string) []string {
	t.Helper()
	args := s.signal(t, component, syscall.SIGKILL)
	s.start(t, component, edit(slices.Clone(args)))
	return args
}

// Stop stops a component with SIGTERM, so that it shuts down cleanly, and
// returns a function that starts it again like Kill's.
func (s *System) Stop(t *testing.T, component string) func() {
	t.Helper()
	args := s.signal(t, component, syscall.SIGTERM)
	return func() {
		t.Helper()
		s.start(t, component, args)
	}
}

func (s *System) pidFile(component string) string {
	return filepath.Join(s.Out, "pids", component+".pid")
}

// signal sends sig to a component, waits until it has exited and returns
// its command line.
func (s *System) signal(t *testing.T, component string, sig syscall.Signal) []string {
	t.Helper()
	raw, err := os.ReadFile(s.pidFile(component))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatal(err)
	}
	// Wait until it has let go of its files (store lock, ports): every
	// thread must be gone or a zombie, since the leader turns zombie before
	// the last thread closes the shared files.
	for deadline := time.Now().Add(time.Minute); !exited(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) has not exited a minute after %v", component, pid, sig)
		}
	}
	return strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
}

// Spawn starts args in a session of its own, as local-up.sh starts the
// components, with its output appended to logs/<name>.log. exited is
// closed once it has been reaped.
func (s *System) Spawn(t *testing.T, name string, args []string) (cmd *exec.Cmd, exited <-chan struct{}) {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(s.Out, "logs", name+".log"), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd = exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	return cmd, done
}

// start starts a component with args, records its pid where local-down
// looks, and waits until flows can be listed with no agent missing.
func (s *System) start(t *testing.T, component string, args []string) {
	t.Helper()
	cmd, _ := s.Spawn(t, component, args)
	if err := os.WriteFile(s.pidFile(component), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 60*time.Second, component+" to serve again", func() (bool, string) {
		_, stderr, err := s.KubectlAs("", "get", "flows", "-A", "--field-selector", "until=2000-01-01T00:00:00Z")
		return err == nil && !strings.Contains(stderr, "Warning"), stderr
	})
}

// exited reports whether every thread of pid has finished its exit.
func exited(pid int) bool {
	stats, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	for _, st := range stats {
		raw, err := os.ReadFile(st)
		if err == nil && !strings.Contains(string(raw), ") Z ") && !strings.Contains(string(raw), ") X ") {
			return false
		}
	}
	return true
}

// ephemeralPortsStart returns the first port the kernel hands out to
// outgoing connections (Linux's default where it cannot be read).
func ephemeralPortsStart() int {
	const linuxDefault = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return linuxDefault
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return linuxDefault
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil || low < 20000+2*portSpan {
		return linuxDefault
	}
	return low
}

// reservePortBase picks a PORT_BASE that no other suite of this machine
// holds: a random one, taken by an exclusive lock on a file of its own that
// the process keeps until it exits. go test runs suites in parallel, and
// two that drew the same base failed in local-up's port check.
func reservePortBase() (int, error) {
	slots := (ephemeralPortsStart()-20000)/portSpan - 1
	for _, i := range rand.Perm(slots) {
		base := 20000 + portSpan*i
		f, err := os.OpenFile(filepath.Join(os.TempDir(), fmt.Sprintf("flowscope-e2e-port-%d.lock", base)), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return 0, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		reservedPorts = append(reservedPorts, f) // held until the process exits
		return base, nil
	}
	return 0, fmt.Errorf("no free PORT_BASE: %d suites of this machine hold them all", slots)
}

// reservedPorts keeps the lock files of reservePortBase open.
var reservedPorts []*os.File
