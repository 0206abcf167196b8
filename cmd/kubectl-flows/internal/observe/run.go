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
	"cmp"
	"context"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/cmd/kubectl-flows/internal/filter"
	"flowscope.io/flowscope/cmd/kubectl-flows/internal/printer"
	"flowscope.io/flowscope/generated/clientset/versioned"
	flowsv1alpha1 "flowscope.io/flowscope/generated/clientset/versioned/typed/flows/v1alpha1"
)

// pageSize is the server's cap on a page (--max-list-page).
const pageSize = 500

// seenCap bounds the names remembered to print each flow once when
// several requests, or a list and its watch, return it.
const seenCap = 1 << 14

func newClient(config *genericclioptions.ConfigFlags) (flowsv1alpha1.FlowsGetter, error) {
	rc, err := config.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	cs, err := versioned.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return cs.FlowsV1alpha1(), nil
}

// runner lists, prints and follows the flows of a plan.
type runner struct {
	flows     flowsv1alpha1.FlowsGetter
	namespace string
	plan      *filter.Plan
	printer   printer.Printer
	// last is how many of the newest flows to print: 0 all, -1 none.
	last   int
	follow bool
	seen   seenSet
}

func (r *runner) run(ctx context.Context) error {
	reqs := r.plan.Requests
	if len(reqs) == 0 { // the flags contradict each other
		if r.follow {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	r.seen = newSeenSet(seenCap)
	rvs := make([]string, len(reqs))
	var flows []*v1alpha1.Flow
	for i, req := range reqs {
		// Alone and asked for all, a request prints page by page.
		stream := len(reqs) == 1 && r.last == 0
		rv, err := r.list(ctx, req, func(f *v1alpha1.Flow) error {
			if !r.plan.Matches(f) {
				return nil
			}
			if stream {
				return r.printOnce(f)
			}
			flows = append(flows, f)
			if r.last > 0 && len(reqs) == 1 && len(flows) > 2*r.last {
				flows = slices.Delete(flows, 0, len(flows)-r.last)
			}
			return nil
		})
		if err != nil {
			return err
		}
		rvs[i] = rv
	}
	slices.SortStableFunc(flows, func(a, b *v1alpha1.Flow) int {
		return cmp.Or(a.Time.Compare(b.Time.Time), cmp.Compare(a.Name, b.Name))
	})
	flows = slices.CompactFunc(flows, func(a, b *v1alpha1.Flow) bool { return a.Name == b.Name })
	if r.last > 0 && len(flows) > r.last {
		flows = flows[len(flows)-r.last:]
	}
	for _, f := range flows {
		if err := r.printOnce(f); err != nil {
			return err
		}
	}
	if err := r.printer.Flush(); err != nil {
		return err
	}
	if !r.follow {
		return nil
	}
	return r.watch(ctx, rvs)
}

// list lists one request page by page and returns the resourceVersion of
// its first page, from which a watch sees what the list did not. With
// last -1 it only fetches that version.
func (r *runner) list(ctx context.Context, req filter.Request, each func(*v1alpha1.Flow) error) (string, error) {
	opts := metav1.ListOptions{FieldSelector: req.FieldSelector, LabelSelector: req.LabelSelector, Limit: pageSize}
	if r.last < 0 {
		opts.Limit = 1
	}
	rv := ""
	for {
		list, err := r.flows.Flows(r.namespace).List(ctx, opts)
		if err != nil {
			return "", err
		}
		if rv == "" {
			rv = list.ResourceVersion
		}
		if r.last < 0 {
			return rv, nil
		}
		for i := range list.Items {
			if err := each(&list.Items[i]); err != nil {
				return "", err
			}
		}
		if list.Continue == "" {
			return rv, nil
		}
		opts.Continue = list.Continue
	}
}

// watch follows every request from its list's version and prints matching
// flows as they come; RetryWatcher resumes a watch the server ends.
func (r *runner) watch(ctx context.Context, rvs []string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan watch.Event)
	errs := make(chan error, len(rvs))
	for i, req := range r.plan.Requests {
		lw := &cache.ListWatch{WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector, opts.LabelSelector = req.WatchFieldSelector, req.LabelSelector
			return r.flows.Flows(r.namespace).Watch(ctx, opts)
		}}
		w, err := watchtools.NewRetryWatcherWithContext(ctx, rvs[i], lw)
		if err != nil {
			return fmt.Errorf("watch flows: %w", err)
		}
		defer w.Stop()
		go func() {
			for {
				select {
				case ev, ok := <-w.ResultChan():
					if !ok {
						errs <- fmt.Errorf("watch flows: the watch ended")
						return
					}
					select {
					case events <- ev:
					case <-ctx.Done():
						return
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errs:
			return err
		case ev := <-events:
			switch ev.Type {
			case watch.Added, watch.Modified:
				f, ok := ev.Object.(*v1alpha1.Flow)
				if !ok || !r.plan.Matches(f) {
					continue
				}
				if err := r.printOnce(f); err != nil {
					return err
				}
				if err := r.printer.Flush(); err != nil {
					return err
				}
			case watch.Error:
				return apierrors.FromObject(ev.Object)
			}
		}
	}
}

func (r *runner) printOnce(f *v1alpha1.Flow) error {
	if !r.seen.add(f.Name) {
		return nil
	}
	return r.printer.Print(f)
}

// seenSet remembers the last n names added.
type seenSet struct {
	names map[string]bool
	order []string
	next  int
}

func newSeenSet(n int) seenSet {
	return seenSet{names: make(map[string]bool, n), order: make([]string, 0, n)}
}

// add returns false if name was added before (among the last n).
func (s *seenSet) add(name string) bool {
	if s.names[name] {
		return false
	}
	s.names[name] = true
	if len(s.order) < cap(s.order) {
		s.order = append(s.order, name)
		return true
	}
	delete(s.names, s.order[s.next])
	s.order[s.next] = name
	s.next = (s.next + 1) % len(s.order)
	return true
}
