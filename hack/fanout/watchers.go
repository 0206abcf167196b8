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
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/generated/clientset/versioned"
	"flowscope.io/flowscope/generated/informers/externalversions"
	informers "flowscope.io/flowscope/generated/informers/externalversions/flows/v1alpha1"
)

// filter is what a watcher selects: the request's namespace and selectors,
// and their evaluation on the harness's side, to know what must arrive.
type filter struct {
	namespace string // "" for all namespaces
	label     labels.Selector
	field     fields.Selector
}

func (f filter) matches(namespace string, l labels.Set, fs fields.Set) bool {
	return (f.namespace == "" || f.namespace == namespace) && f.label.Matches(l) && f.field.Matches(fs)
}

func (f filter) listOptions() metav1.ListOptions {
	return metav1.ListOptions{LabelSelector: f.label.String(), FieldSelector: f.field.String()}
}

// String is the filter as kubectl arguments.
func (f filter) String() string {
	s := "-A"
	if f.namespace != "" {
		s = "-n " + f.namespace
	}
	if !f.label.Empty() {
		s += " -l " + f.label.String()
	}
	if !f.field.Empty() {
		s += " --field-selector " + f.field.String()
	}
	return s
}

// kind is a family of watch filters; watcher i of a kind is given node
// i/len(kinds) (modulo the nodes) to vary what the watchers select.
type kind struct {
	Name string `json:"name"`
	// Pattern describes the filter with <k> for the node.
	Pattern string `json:"pattern"`
	// FanOut tells whether the watch reaches every agent or one.
	FanOut bool `json:"fanOut"`
	// filterFor makes the filter of the watcher given node k.
	filterFor func(node string, pods nodePods, k int) filter
}

// kinds are the watchers' filters: selective, as a namespace's owners would
// watch their own pods, so that 200 watchers stay within what two cores
// can encode; three of the four reach every agent.
var kinds = []kind{{
	Name:    "pod-port",
	Pattern: "-n shop --field-selector source.podName=<cart pod of node k>,l4.destinationPort=5432",
	FanOut:  true,
	filterFor: func(_ string, pods nodePods, _ int) filter {
		return filter{namespace: "shop", label: labels.Everything(), field: fields.SelectorFromSet(fields.Set{
			"source.podName": pods.pods["shop/cart"], "l4.destinationPort": "5432"})}
	},
}, {
	Name:    "pod",
	Pattern: "-n payments --field-selector destination.podName=<api pod of node k>",
	FanOut:  true,
	filterFor: func(_ string, pods nodePods, _ int) filter {
		return filter{namespace: "payments", label: labels.Everything(), field: fields.OneTermEqualSelector(
			"destination.podName", pods.pods["payments/api"])}
	},
}, {
	Name:    "drops-to-ip",
	Pattern: "-n shop --field-selector verdict=Dropped,destination.ip=<external address k>",
	FanOut:  true,
	filterFor: func(_ string, pods nodePods, k int) filter {
		return filter{namespace: "shop", label: labels.Everything(), field: fields.SelectorFromSet(fields.Set{
			"verdict": string(v1alpha1.VerdictDropped), "destination.ip": pods.droppedTo[k%len(pods.droppedTo)]})}
	},
}, {
	Name:    "node-label",
	Pattern: "-n shop -l app=web --field-selector nodeName=<node k>",
	filterFor: func(node string, _ nodePods, _ int) filter {
		return filter{namespace: "shop", label: labels.SelectorFromSet(labels.Set{"app": "web"}),
			field: fields.OneTermEqualSelector("nodeName", node)}
	},
}}

// watcher is one informer or plain watch and what it received.
type watcher struct {
	id       int
	kind     int
	filter   filter
	informer bool
	tracker  *tracker
	// ready is set before the measurement when the watcher started in
	// time; only those are measured.
	ready bool

	mu        sync.Mutex
	seen      map[types.UID]int
	received  []time.Time     // handler time of each tracked flow
	latency   []time.Duration // handler time − resourceVersion (ingest)
	endToEnd  []time.Duration // handler time − line written
	untracked int             // flows written before the measurement
	updates   int             // informer updates: a relist delivered a flow again
	errors    []string        // watch errors and failed (re)starts
	restarts  int             // plain watches started again after closing
}

// onAdd is the handler of both kinds of watcher.
func (w *watcher) onAdd(f *v1alpha1.Flow) {
	now := time.Now()
	s := w.tracker.lookup(f.UID)
	w.mu.Lock()
	defer w.mu.Unlock()
	if s == nil {
		w.untracked++
		return
	}
	w.seen[f.UID]++
	if w.seen[f.UID] > 1 || !s.selected(w.id) {
		return // counted at the end
	}
	w.tracker.delivered.Add(1)
	rv, err := strconv.ParseUint(f.ResourceVersion, 10, 64)
	if err != nil {
		w.errors = append(w.errors, fmt.Sprintf("flow %s has resourceVersion %q", f.Name, f.ResourceVersion))
		return
	}
	s.rv.CompareAndSwap(0, rv)
	// The agent assigns resourceVersions from its hybrid logical clock in
	// microseconds since the epoch at ingest, on this same machine.
	w.received = append(w.received, now)
	w.latency = append(w.latency, now.Sub(time.UnixMicro(int64(rv))))
	w.endToEnd = append(w.endToEnd, now.Sub(s.written))
}

func (w *watcher) fail(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.errors = append(w.errors, fmt.Sprintf(format, args...))
}

func (w *watcher) lastError() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errors) == 0 {
		return "no error"
	}
	return w.errors[len(w.errors)-1]
}

// ownConnection gives a client a connection of its own, as separate
// programs would have: client-go shares one HTTP/2 connection between
// clients of equal configuration, which would put every watcher behind one
// TCP window.
func ownConnection(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	// A config with a Dial function is not cached by client-go's transport
	// cache.
	cfg.Dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return cfg
}

// start starts the watcher; ready is closed when its informer has synced
// or its watch is established.
func (w *watcher) start(ctx context.Context, cfg *rest.Config, ready chan<- struct{}) error {
	cs, err := versioned.NewForConfig(ownConnection(cfg))
	if err != nil {
		return err
	}
	if w.informer {
		return w.startInformer(ctx, cs, ready)
	}
	go w.runWatch(ctx, cs, ready)
	return nil
}

func (w *watcher) startInformer(ctx context.Context, cs versioned.Interface, ready chan<- struct{}) error {
	factory := externalversions.NewSharedInformerFactoryWithOptions(cs, 0,
		externalversions.WithNamespace(w.filter.namespace),
		externalversions.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector, o.FieldSelector = w.filter.label.String(), w.filter.field.String()
		}))
	inf := factory.Flows().V1alpha1().Flows().TypedInformer()
	if _, err := inf.AddTypedEventHandler(informers.FlowHandlerFuncs{
		AddFunc: w.onAdd,
		UpdateFunc: func(_, _ *v1alpha1.Flow) {
			w.mu.Lock()
			w.updates++
			w.mu.Unlock()
		},
	}); err != nil {
		return err
	}
	if err := inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, _ *cache.Reflector, err error) {
		if ctx.Err() == nil { // not our own stop
			w.fail("informer watch: %v", err)
		}
	}); err != nil {
		return err
	}
	factory.StartWithContext(ctx)
	go func() {
		defer factory.Shutdown()
		if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			close(ready)
		}
		<-ctx.Done()
	}()
	return nil
}

// runWatch is the plain client's loop: list for a resourceVersion, watch
// from it, and watch again from the last version seen when the watch ends.
func (w *watcher) runWatch(ctx context.Context, cs versioned.Interface, ready chan<- struct{}) {
	flows := cs.FlowsV1alpha1().Flows(w.filter.namespace)
	rv := ""
	for ctx.Err() == nil {
		if rv == "" {
			opts := w.filter.listOptions()
			opts.Limit = 1
			l, err := flows.List(ctx, opts)
			if err != nil {
				w.fail("list: %v", err)
				sleep(ctx, time.Second)
				continue
			}
			rv = l.ResourceVersion
		}
		opts := w.filter.listOptions()
		opts.ResourceVersion, opts.AllowWatchBookmarks = rv, true
		wi, err := flows.Watch(ctx, opts)
		if err != nil {
			w.fail("watch: %v", err)
			if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
				rv = ""
			}
			sleep(ctx, time.Second)
			continue
		}
		if ready != nil {
			close(ready)
			ready = nil
		}
		rv = w.consume(ctx, wi, rv)
		wi.Stop()
		if ctx.Err() == nil {
			w.mu.Lock()
			w.restarts++
			w.mu.Unlock()
		}
	}
}

// consume handles a watch's events until it ends and returns the version to
// resume from: "" when the watch said that version is gone.
func (w *watcher) consume(ctx context.Context, wi watch.Interface, rv string) string {
	for e := range wi.ResultChan() {
		switch e.Type {
		case watch.Added:
			f := e.Object.(*v1alpha1.Flow)
			w.onAdd(f)
			rv = f.ResourceVersion
		case watch.Bookmark:
			rv = e.Object.(*v1alpha1.Flow).ResourceVersion
		case watch.Error:
			if ctx.Err() != nil {
				return rv // our own stop
			}
			err := apierrors.FromObject(e.Object)
			w.fail("watch event: %v", err)
			if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
				return ""
			}
			return rv
		}
	}
	return rv
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
