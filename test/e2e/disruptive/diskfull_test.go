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

package disruptive

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/nodeagent/hubble/format"
)

// requireRoot skips a test that needs root, loudly, or fails it under
// CI=true, where every test is expected to run.
func requireRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("needs root under CI: %s", why)
	}
	t.Skipf("SKIPPING: needs root: %s", why)
}

// testDiskFull runs node-b's agent on a 64 MiB tmpfs and fills it. Badger
// itself would die of SIGBUS on the first page of its memory-mapped log it
// cannot allocate (and on tmpfs, even reopening the store needs free pages),
// so the agent stops writing below --min-free-disk: flows are dropped and
// counted as disk_full, lists and watches go on serving what the store
// holds, and ingest resumes by itself when space returns.
func testDiskFull(t *testing.T) {
	requireRoot(t, "mounts a tmpfs")
	const (
		node      = "node-b"
		component = "agent-" + node
		minFree   = 16 << 20
		batch     = 300
	)
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	dataDir := filepath.Join(mnt, "data")
	orig := sys.Restart(t, component, func(args []string) []string {
		args = slices.DeleteFunc(args, func(a string) bool { return strings.HasPrefix(a, "--data-dir=") })
		return append(args, "--data-dir="+dataDir, fmt.Sprintf("--min-free-disk=%d", minFree))
	})
	// Runs before the unmount.
	t.Cleanup(func() { sys.Restart(t, component, func([]string) []string { return orig }) })
	pid := pidOf(t, component)

	// Flows of three rounds, told apart by their source ports, in a
	// namespace of this run's: the agent on the new data directory reads
	// node-b's replay file from its beginning, earlier runs' lines too.
	ns := fmt.Sprintf("diskfull-%d", time.Now().UnixMilli())
	rounds := map[string][]string{}
	for r, name := range []string{"before", "during", "after"} {
		for i := range batch {
			f := mkFlow(node, int32(20000+r*batch+i), 8080, "TCP", "Egress", "Forwarded",
				pod(ns, "client-0", "client", "10.244.1.77"), api1)
			line, err := format.ExportLine(f)
			if err != nil {
				t.Fatal(err)
			}
			rounds[name] = append(rounds[name], string(line))
		}
	}
	portsOf := func(round string) []int32 {
		r := slices.Index([]string{"before", "during", "after"}, round)
		var ports []int32
		for i := range batch {
			ports = append(ports, int32(20000+r*batch+i))
		}
		return ports
	}
	stored := func() []int32 {
		got, err := listSports("", "-n", ns)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	dropped := func() float64 {
		return agentMetric(t, 1, `flowscope_agent_flows_dropped_total{reason="disk_full"}`)
	}

	appendLines(t, node, rounds["before"]...)
	eventually(t, 2*time.Minute, "the first round to be listed", func() (bool, string) {
		got := stored()
		return slices.Equal(got, portsOf("before")), fmt.Sprintf("%d flows", len(got))
	})

	// Fill the disk to half the threshold, and watch from now on.
	filler := filepath.Join(mnt, "filler")
	fill(t, filler, mnt, minFree/2)
	cs := clientset(t)
	list, err := cs.FlowsV1alpha1().Flows(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := cs.FlowsV1alpha1().Flows(ns).Watch(context.Background(), metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	// The guard looks once a second, so the flows of the first moments
	// after the fill may still be written, into the room left; the rest
	// are dropped. Spread the round over a few seconds.
	for chunk := range slices.Chunk(rounds["during"], 10) {
		appendLines(t, node, chunk...)
		time.Sleep(100 * time.Millisecond)
	}
	var during []int32
	eventually(t, 2*time.Minute, "the second round to be stored or dropped", func() (bool, string) {
		during = inRange(stored(), portsOf("during")[0], portsOf("during")[batch-1])
		return len(during)+int(dropped()) == batch, fmt.Sprintf("%d stored, %v dropped", len(during), dropped())
	})
	if dropped() == 0 {
		t.Fatal("no flow was dropped for a full disk")
	}
	t.Logf("with a full disk %d flows were stored, %v dropped", len(during), dropped())
	if got := inRange(stored(), portsOf("before")[0], portsOf("before")[batch-1]); !slices.Equal(got, portsOf("before")) {
		t.Errorf("with a full disk the first round lists %d flows, want %d", len(got), batch)
	}
	logs, err := os.ReadFile(filepath.Join(sys.Out, "logs", component+".log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logs), "Dropping flows: the flow store's disk is nearly full") {
		t.Error("the agent did not log the drops")
	}

	// Space returns: ingest resumes by itself, and the watch sees it.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	appendLines(t, node, rounds["after"]...)
	eventually(t, 2*time.Minute, "the third round to be listed", func() (bool, string) {
		got := inRange(stored(), portsOf("after")[0], portsOf("after")[batch-1])
		return slices.Equal(got, portsOf("after")), fmt.Sprintf("%d flows", len(got))
	})
	seen := map[int32]bool{}
	for len(seen) < batch {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("the watch ended after %d flows of the third round", len(seen))
			}
			if ev.Type == watch.Error {
				t.Fatalf("watch: %v", ev.Object)
			}
			if f, ok := ev.Object.(*v1alpha1.Flow); ok && ev.Type == watch.Added && f.L4.SourcePort >= portsOf("after")[0] {
				seen[f.L4.SourcePort] = true
			}
		case <-time.After(time.Minute):
			t.Fatalf("the watch delivered %d flows of the third round, want %d", len(seen), batch)
		}
	}
	if pidOf(t, component) != pid {
		t.Fatal("the agent was restarted")
	}

	// Stopped cleanly, the agent leaves a sound store.
	start := sys.Stop(t, component)
	t.Logf("store after a full disk: %+v", checkStore(t, dataDir))
	start()
}

// fill writes a file at path until the filesystem of dir has about left
// bytes available.
func fill(t *testing.T, path, dir string, left int64) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	size := int64(st.Bavail)*st.Bsize - left
	if size <= 0 {
		t.Fatalf("%s has only %d bytes available", dir, int64(st.Bavail)*st.Bsize)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Written, not truncated: a sparse file takes no space.
	if _, err := f.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
}
