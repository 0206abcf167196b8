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

package observe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/watch"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/cmd/kubectl-flows/internal/printer"
	flowsv1alpha1 "flowscope.io/flowscope/generated/clientset/versioned/typed/flows/v1alpha1"
)

// fakeFlows serves flows as the Flow API does: field selectors over the
// selectable fields, pages of at most pageCap with a continue token, and
// watches fed by the test. It records the requests.
type fakeFlows struct {
	mu       sync.Mutex
	flows    []v1alpha1.Flow
	pageCap  int
	lists    []string
	watchers []*watch.FakeWatcher
	watchRVs []string
}

func (f *fakeFlows) Flows(string) flowsv1alpha1.FlowInterface { return fakeFlowInterface{f} }

type fakeFlowInterface struct{ f *fakeFlows }

func (c fakeFlowInterface) Get(context.Context, string, metav1.GetOptions) (*v1alpha1.Flow, error) {
	return nil, fmt.Errorf("not implemented")
}

func (c fakeFlowInterface) List(_ context.Context, opts metav1.ListOptions) (*v1alpha1.FlowList, error) {
	f := c.f
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists = append(f.lists, opts.FieldSelector)
	sel, err := fields.ParseSelector(opts.FieldSelector)
	if err != nil {
		return nil, err
	}
	var matching []v1alpha1.Flow
	for _, fl := range f.flows {
		set, ok := v1alpha1.FieldSet(&fl), true
		for _, r := range sel.Requirements() { // the window holds every flow
			if r.Field != v1alpha1.FieldSince && r.Field != v1alpha1.FieldUntil && (set[r.Field] == r.Value) == (r.Operator == selection.NotEquals) {
				ok = false
			}
		}
		if ok {
			matching = append(matching, fl)
		}
	}
	start := 0
	if opts.Continue != "" {
		start, _ = strconv.Atoi(opts.Continue)
	}
	end := min(len(matching), start+int(opts.Limit))
	if opts.Limit == 0 || f.pageCap < int(opts.Limit) {
		end = min(len(matching), start+f.pageCap)
	}
	l := &v1alpha1.FlowList{Items: matching[start:end]}
	l.ResourceVersion = "100"
	if end < len(matching) {
		l.Continue = strconv.Itoa(end)
	}
	return l, nil
}

func (c fakeFlowInterface) Watch(_ context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	f := c.f
	f.mu.Lock()
	defer f.mu.Unlock()
	w := watch.NewFakeWithChanSize(10, false)
	f.watchers = append(f.watchers, w)
	f.watchRVs = append(f.watchRVs, opts.FieldSelector+"@"+opts.ResourceVersion)
	return w, nil
}

func newTestCommand(o *Options) *cobra.Command {
	cmd := &cobra.Command{}
	o.AddFlags(cmd)
	return cmd
}

func mkFlows(n int) []v1alpha1.Flow {
	base := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	var out []v1alpha1.Flow
	for i := range n {
		src, dst := "a", "b"
		if i%2 == 1 {
			src, dst = "b", "a"
		}
		if i%3 == 0 {
			dst = src // a pod talking to itself matches --pod on both ends
		}
		out = append(out, v1alpha1.Flow{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-a.%d", i+1), ResourceVersion: strconv.Itoa(i + 1)},
			Time:       metav1.NewMicroTime(base.Add(time.Duration(i) * time.Second)),
			NodeName:   "node-a", Verdict: v1alpha1.VerdictForwarded,
			L4:          &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolTCP, SourcePort: int32(1000 + i), DestinationPort: 80},
			Source:      &v1alpha1.Endpoint{Namespace: "shop", PodName: src},
			Destination: &v1alpha1.Endpoint{Namespace: "shop", PodName: dst},
		})
	}
	return out
}

func runObserve(ctx context.Context, t *testing.T, f *fakeFlows, args ...string) (string, error) {
	t.Helper()
	o := &Options{}
	cmd := newTestCommand(o)
	if err := cmd.Flags().Parse(append(args, "-o", "name")); err != nil {
		t.Fatal(err)
	}
	plan, err := o.Plan()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	p, err := printer.New(&out, printer.Options{Output: "name"})
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{flows: f, namespace: "shop", plan: plan, printer: p, last: o.last(), follow: o.Follow}
	err = r.run(ctx)
	return out.String(), err
}

func names(out string) []string {
	var ns []string
	for _, l := range strings.Fields(out) {
		ns = append(ns, strings.TrimPrefix(l, "flow.flows.flowscope.io/"))
	}
	return ns
}

func TestListPagesMergesAndTakesTheLast(t *testing.T) {
	f := &fakeFlows{flows: mkFlows(12), pageCap: 5}
	out, err := runObserve(context.Background(), t, f, "--all")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(out); len(got) != 12 || got[0] != "node-a.1" || got[11] != "node-a.12" {
		t.Errorf("--all printed %v", got)
	}
	if len(f.lists) != 3 {
		t.Errorf("%d pages listed, want 3 of at most 5", len(f.lists))
	}
	// Either end: two requests; a flow on both ends is printed once, in
	// time order.
	f.lists = nil
	out, err = runObserve(context.Background(), t, f, "--pod", "a", "--all")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, fl := range f.flows {
		if fl.Source.PodName == "a" || fl.Destination.PodName == "a" {
			want = append(want, fl.Name)
		}
	}
	if got := names(out); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("--pod a printed\n%v\nwant\n%v", got, want)
	}
	if got := strings.Join(f.lists, " "); got != "source.podName=a source.podName=a destination.podName=a destination.podName=a" {
		t.Errorf("lists %q", got)
	}
	out, err = runObserve(context.Background(), t, f, "--pod", "a", "--last", "3")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(out); strings.Join(got, " ") != strings.Join(want[len(want)-3:], " ") {
		t.Errorf("--last 3 printed %v, want %v", got, want[len(want)-3:])
	}
	out, err = runObserve(context.Background(), t, f)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(out); len(got) != 12 { // fewer than DefaultLast
		t.Errorf("no time flag printed %v", got)
	}
}

func TestFollowWatchesFromTheListsVersion(t *testing.T) {
	f := &fakeFlows{flows: mkFlows(4), pageCap: 500}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out string
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		out, err = runObserve(ctx, t, f, "--pod", "a", "-f", "--since", "1h")
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		n := len(f.watchers)
		f.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d watches started, want 2", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.mu.Lock()
	// The two requests' watches start concurrently, in either order.
	rvs := strings.Join(slices.Sorted(slices.Values(f.watchRVs)), " ")
	watchers := f.watchers
	f.mu.Unlock()
	// The watches start from the lists' version, without the time bound.
	if rvs != "destination.podName=a@100 source.podName=a@100" {
		t.Errorf("watches %q", rvs)
	}
	newFlow := mkFlows(7)[6] // a -> a: both watches send it
	for _, w := range watchers {
		w.Add(&newFlow)
	}
	other := mkFlows(10)[9] // b -> b: matches neither
	watchers[0].Add(&other)
	time.Sleep(200 * time.Millisecond)
	cancel()
	<-done
	if !errors.Is(err, context.Canceled) {
		t.Errorf("run ended with %v", err)
	}
	if got := names(out); strings.Join(got, " ") != "node-a.1 node-a.2 node-a.3 node-a.7" {
		t.Errorf("printed %v", got)
	}
}
