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
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/generated/clientset/versioned"
	flowsv1alpha1 "flowscope.io/flowscope/generated/clientset/versioned/typed/flows/v1alpha1"
	"flowscope.io/flowscope/generated/informers/externalversions"
	"flowscope.io/flowscope/test/e2e/framework"
)

// commandLine returns the command line of a running component.
func commandLine(t *testing.T, component string) []string {
	t.Helper()
	pid := strings.TrimSpace(pidOf(t, component))
	raw, err := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
}

// flagValue returns the value of --name=value in args.
func flagValue(t *testing.T, args []string, name string) string {
	t.Helper()
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	t.Fatalf("no --%s in %v", name, args)
	return ""
}

// frontProxyConfig returns a client of the flowscope-apiserver on port that
// authenticates the way kube-apiserver's aggregator does: with the front
// proxy's client certificate and the user in X-Remote-* headers, here admin
// in system:masters.
func frontProxyConfig(port string) *rest.Config {
	certs := filepath.Join(sys.Out, "certs")
	cfg := &rest.Config{
		Host: "https://127.0.0.1:" + port,
		TLSClientConfig: rest.TLSClientConfig{
			CAFile:   filepath.Join(certs, "flowscope-ca.crt"),
			CertFile: filepath.Join(certs, "front-proxy-client.crt"),
			KeyFile:  filepath.Join(certs, "front-proxy-client.key"),
		},
	}
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			r = r.Clone(r.Context())
			r.Header.Set("X-Remote-User", "admin")
			r.Header.Set("X-Remote-Group", "system:masters")
			return rt.RoundTrip(r)
		})
	}
	return cfg
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// apiserverMetric reads one sample from the /metrics of the flowscope-apiserver
// on port; absent is 0.
func apiserverMetric(t *testing.T, port, series string) float64 {
	t.Helper()
	hc, err := rest.HTTPClientFor(frontProxyConfig(port))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get("https://127.0.0.1:" + port + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s %v", resp.Status, err)
	}
	for _, l := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(l, series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", series, err)
			}
			return v
		}
	}
	return 0
}

// destinationPortFlows returns the source ports of the flows to dport that
// a list shows now.
func destinationPortFlows(t *testing.T, cs versioned.Interface, dport int) map[string]int32 {
	t.Helper()
	l, err := framework.ListAll(context.Background(), cs, "", metav1.ListOptions{FieldSelector: fmt.Sprintf("l4.destinationPort=%d", dport)})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int32{}
	for _, f := range l.Items {
		out[f.Name] = f.L4.SourcePort
	}
	return out
}

// watchRecorder sees every watch a client opens, and checks what this
// design promises of each: after the initial events, flows in strictly
// increasing resourceVersion order, and no error but 410 Expired.
type watchRecorder struct {
	mu       sync.Mutex
	watches  int
	expired  int
	problems []string
}

func (r *watchRecorder) wrap(opts metav1.ListOptions, w watch.Interface) watch.Interface {
	r.mu.Lock()
	r.watches++
	id := r.watches
	r.mu.Unlock()
	live := opts.SendInitialEvents == nil || !*opts.SendInitialEvents
	var last uint64
	// expired: after a 410 the reflector stops the watch, and client-go may
	// still report the body it closed ("http2: response body closed").
	var expired bool
	return watch.Filter(w, func(e watch.Event) (watch.Event, bool) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if expired {
			return e, true
		}
		switch e.Type {
		case watch.Bookmark:
			if f, ok := e.Object.(*v1alpha1.Flow); ok && f.Annotations[metav1.InitialEventsAnnotationKey] == "true" {
				live = true
				last, _ = strconv.ParseUint(f.ResourceVersion, 10, 64)
			}
		case watch.Added:
			f := e.Object.(*v1alpha1.Flow)
			rv, _ := strconv.ParseUint(f.ResourceVersion, 10, 64)
			if live && rv <= last {
				r.problems = append(r.problems, fmt.Sprintf("watch %d: flow %s (rv %d) after rv %d", id, f.Name, rv, last))
			}
			if live {
				last = rv
			}
		case watch.Error:
			if err := apierrors.FromObject(e.Object); apierrors.IsResourceExpired(err) {
				r.expired++
				expired = true
			} else {
				r.problems = append(r.problems, fmt.Sprintf("watch %d: error %v", id, err))
			}
		default:
			r.problems = append(r.problems, fmt.Sprintf("watch %d: unexpected %s event", id, e.Type))
		}
		return e, true
	})
}

func (r *watchRecorder) check(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	t.Logf("%d watches, %d ended with 410 Expired", r.watches, r.expired)
	for _, p := range r.problems {
		t.Error(p)
	}
}

// recordingClientset passes every flows watch through a watchRecorder.
type recordingClientset struct {
	versioned.Interface
	rec *watchRecorder
}

func (c recordingClientset) FlowsV1alpha1() flowsv1alpha1.FlowsV1alpha1Interface {
	return recordingGroup{c.Interface.FlowsV1alpha1(), c.rec}
}

type recordingGroup struct {
	flowsv1alpha1.FlowsV1alpha1Interface
	rec *watchRecorder
}

func (g recordingGroup) Flows(namespace string) flowsv1alpha1.FlowInterface {
	return recordingFlows{g.FlowsV1alpha1Interface.Flows(namespace), g.rec}
}

type recordingFlows struct {
	flowsv1alpha1.FlowInterface
	rec *watchRecorder
}

func (f recordingFlows) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	w, err := f.FlowInterface.Watch(ctx, opts)
	if err != nil {
		return nil, err
	}
	return f.rec.wrap(opts, w), nil
}

// flowsTo makes flows to dport from web-1 on alternating nodes, numbered
// from sport, and returns them with their source ports.
func flowsTo(dport int32, sport int32, n int) ([]seed, []int32) {
	var seeds []seed
	var ports []int32
	for i := range n {
		node := sys.Nodes[i%len(sys.Nodes)]
		p := sport + int32(i)
		seeds = append(seeds, seed{Node: node, Sport: p, Flow: mkFlow(node, p, dport, "TCP", "Egress", "Forwarded", web1, api1)})
		ports = append(ports, p)
	}
	return seeds, ports
}

func sortedValues(m map[string]int32) []int32 {
	var out []int32
	for _, v := range m {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// startRecordingInformer starts an informer of the flows to dport, through
// kube-apiserver, that records its lists and watches, and waits for it to
// sync. cached returns its cache, flow name to source port.
func startRecordingInformer(ctx context.Context, t *testing.T, dport int) (rec *watchRecorder, cached func() map[string]int32) {
	t.Helper()
	rec = &watchRecorder{}
	factory := externalversions.NewSharedInformerFactoryWithOptions(recordingClientset{clientset(t), rec}, 0,
		externalversions.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = fmt.Sprintf("l4.destinationPort=%d", dport) }))
	inf := factory.Flows().V1alpha1().Flows()
	informer := inf.Informer()
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		t.Fatal("informer did not sync")
	}
	return rec, func() map[string]int32 {
		flows, _ := inf.Lister().List(everything)
		out := map[string]int32{}
		for _, f := range flows {
			out[f.Name] = f.L4.SourcePort
		}
		return out
	}
}
