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

package ui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/watch"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// The live stream sends flows in batches: one event per flushInterval
// costs the browser one render whatever the rate, and at most
// maxBatch flows wait between two, the oldest giving way (the browser
// is told how many it missed).
const (
	flushInterval  = 100 * time.Millisecond
	maxBatch       = 2000
	heartbeatEvery = 15 * time.Second
	initialFlows   = 200
)

// streamEvent is the data of one Server-Sent Event.
type streamEvent struct {
	Flows []*v1alpha1.Flow `json:"flows"`
	// Skipped counts flows left out because the browser fell behind.
	Skipped int `json:"skipped,omitempty"`
}

// watchFlows streams flows as Server-Sent Events: first the last flows
// (event "init", ?initial= a duration, 30s by default), then each batch
// the watch delivers (event "flows"). It lists, then watches from the
// list's resourceVersion, as informers do, and lists again when the
// watch expires (410).
func (s *server) watchFlows(w http.ResponseWriter, r *http.Request) {
	fq, err := parseFlowQuery(r)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ctx := r.Context()
	client := s.flows.FlowsV1alpha1().Flows(fq.namespace)
	initial := r.URL.Query().Get("initial")
	if initial == "" {
		initial = "30s"
	}
	relist := func(since string) (*v1alpha1.FlowList, error) {
		opts := fq.opts
		opts.Limit = initialFlows
		opts.FieldSelector = joinSelector(opts.FieldSelector, v1alpha1.FieldSince+"="+since)
		return client.List(ctx, opts)
	}
	list, err := relist(initial)
	if err != nil {
		// Nothing sent yet: the browser gets kube-apiserver's status.
		writeError(w, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	send := func(event string, v any) bool {
		b, err := json.Marshal(v)
		if err != nil {
			return false
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return false
		}
		flusher.Flush()
		return true
	}
	fail := func(err error) {
		send("failure", apiError{Error: err.Error(), Reason: string(apierrors.ReasonForError(err))})
	}
	first := make([]*v1alpha1.Flow, len(list.Items))
	for i := range list.Items {
		first[i] = &list.Items[i]
	}
	if !send("init", streamEvent{Flows: first}) {
		return
	}
	rv := list.ResourceVersion
	var (
		batch   []*v1alpha1.Flow
		skipped int
	)
	flush := time.NewTicker(flushInterval)
	defer flush.Stop()
	heartbeat := time.NewTicker(heartbeatEvery)
	defer heartbeat.Stop()
	for {
		opts := fq.opts
		opts.Limit, opts.Continue = 0, ""
		opts.ResourceVersion, opts.AllowWatchBookmarks = rv, true
		// A watch follows flows from rv on: time bounds would only
		// narrow it.
		opts.FieldSelector = withoutTimeBounds(opts.FieldSelector)
		wi, err := client.Watch(ctx, opts)
		if err != nil {
			if ctx.Err() == nil {
				fail(err)
			}
			return
		}
		expired := false
	pump:
		for {
			select {
			case <-ctx.Done():
				wi.Stop()
				return
			case ev, ok := <-wi.ResultChan():
				if !ok {
					break pump
				}
				switch ev.Type {
				case watch.Added, watch.Modified:
					f, ok := ev.Object.(*v1alpha1.Flow)
					if !ok {
						continue
					}
					rv = f.ResourceVersion
					if len(batch) == maxBatch {
						batch, skipped = batch[1:], skipped+1
					}
					batch = append(batch, f)
				case watch.Bookmark:
					if m, err := metaOf(ev.Object); err == nil {
						rv = m
					}
				case watch.Error:
					err := apierrors.FromObject(ev.Object)
					if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
						expired = true
						break pump
					}
					wi.Stop()
					fail(err)
					return
				}
			case <-flush.C:
				if len(batch) > 0 || skipped > 0 {
					if !send("flows", streamEvent{Flows: batch, Skipped: skipped}) {
						wi.Stop()
						return
					}
					batch, skipped = nil, 0
				}
			case <-heartbeat.C:
				if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
					wi.Stop()
					return
				}
				flusher.Flush()
			}
		}
		wi.Stop()
		if expired {
			// The flows between are lost to the live view; the
			// table says so rather than pretend.
			list, err := relist("1s")
			if err != nil {
				fail(err)
				return
			}
			rv = list.ResourceVersion
			send("expired", struct{}{})
		}
	}
}

func metaOf(obj any) (string, error) {
	type versioned interface{ GetResourceVersion() string }
	if v, ok := obj.(versioned); ok {
		return v.GetResourceVersion(), nil
	}
	return "", fmt.Errorf("no resourceVersion in %T", obj)
}

// joinSelector ANDs two field selectors.
func joinSelector(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "," + b
}

// withoutTimeBounds drops since= and until= terms from a field selector.
func withoutTimeBounds(sel string) string {
	var keep []string
	for _, t := range strings.Split(sel, ",") {
		k := strings.TrimSpace(t)
		if strings.HasPrefix(k, v1alpha1.FieldSince+"=") || strings.HasPrefix(k, v1alpha1.FieldUntil+"=") || k == "" {
			continue
		}
		keep = append(keep, t)
	}
	return strings.Join(keep, ",")
}
