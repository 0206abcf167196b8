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
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"flowscope.io/flowscope/internal/rusage"
)

// userHZ is the unit of the CPU times in /proc/stat: USER_HZ, which Linux
// fixes at 100 for user space on every architecture it exports it.
const userHZ = 100

// component is a process of the local system, found by its pid file.
type component struct {
	name string
	pids []int
}

// components reads the pid files of the local system (OUT_DIR/pids),
// grouping the agents into one.
func components(pidDir string) ([]component, error) {
	files, err := filepath.Glob(filepath.Join(pidDir, "*.pid"))
	if err != nil {
		return nil, err
	}
	pids := map[string][]int{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		name := strings.TrimSuffix(filepath.Base(f), ".pid")
		if strings.HasPrefix(name, "agent-") {
			name = "agents"
		}
		pids[name] = append(pids[name], pid)
	}
	out := make([]component, 0, len(pids))
	for _, name := range slices.Sorted(maps.Keys(pids)) {
		out = append(out, component{name: name, pids: pids[name]})
	}
	return out, nil
}

// usage is the CPU time and resident memory of a set of processes.
type usage struct {
	cpu time.Duration
	rss int64
}

// usageOf sums the CPU time and /proc/<pid>/status's VmRSS over pids.
func usageOf(pids ...int) (usage, error) {
	var u usage
	for _, pid := range pids {
		cpu, err := rusage.ProcessCPU(pid)
		if err != nil {
			return usage{}, err
		}
		u.cpu += cpu
		rss, err := vmRSS(pid)
		if err != nil {
			return usage{}, err
		}
		u.rss += rss
	}
	return u, nil
}

func vmRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmRSS", pid)
}

// snapshot is the usage of every component, and the harness itself, at a
// point in time.
type snapshot struct {
	at       time.Time
	usage    map[string]usage
	hostBusy time.Duration
}

func takeSnapshot(comps []component) (snapshot, error) {
	s := snapshot{at: time.Now(), usage: map[string]usage{}}
	for _, c := range comps {
		u, err := usageOf(c.pids...)
		if err != nil {
			return snapshot{}, fmt.Errorf("%s: %w", c.name, err)
		}
		s.usage[c.name] = u
	}
	self, err := usageOf(os.Getpid())
	if err != nil {
		return snapshot{}, err
	}
	s.usage["harness"] = self
	if s.hostBusy, err = hostBusy(); err != nil {
		return snapshot{}, err
	}
	return s, nil
}

// hostBusy returns the CPU time the whole machine spent busy, from the cpu
// line of /proc/stat: everything but idle and iowait. The machine may be
// shared; what the others used tells how far the figures can be trusted.
func hostBusy() (time.Duration, error) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var busy time.Duration
	for i, v := range f[1:9] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		ticks, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		busy += time.Duration(ticks) * time.Second / userHZ
	}
	return busy, nil
}

// cores returns the CPU each component used between two snapshots, in
// cores (CPU seconds per second), and what the rest of the machine used.
func cores(from, to snapshot) (components map[string]float64, others float64) {
	wall := to.at.Sub(from.at).Seconds()
	components = map[string]float64{}
	ours := 0.0
	for name, u := range to.usage {
		components[name] = (u.cpu - from.usage[name].cpu).Seconds() / wall
		ours += components[name]
	}
	return components, max((to.hostBusy-from.hostBusy).Seconds()/wall-ours, 0)
}

// metrics is a Prometheus text exposition, as lines.
type metrics []string

func scrape(ctx context.Context, client *http.Client, url, token string) (metrics, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return strings.Split(string(body), "\n"), nil
}

// sum adds the samples of series name whose labels contain every one of
// the label matchers (such as `verb="LIST"`).
func (m metrics) sum(name string, matchers ...string) float64 {
	var total float64
	for _, line := range m {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		labels, value := "", rest
		if rest[0] == '{' {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			labels, value = rest[:end+1], rest[end+1:]
		}
		matched := true
		for _, m := range matchers {
			matched = matched && strings.Contains(labels, m)
		}
		if !matched {
			continue
		}
		fieldsOf := strings.Fields(value)
		if len(fieldsOf) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(fieldsOf[0], 64); err == nil {
			total += v
		}
	}
	return total
}
