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

package flow

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/internal/minheap"
)

// acquireList takes one of the MaxConcurrentLists slots, waiting at most
// ListQueueWait: a burst queues briefly, an overload is told to come back
// (client-go retries a 429 after its Retry-After) instead of piling up
// pages in memory.
func (r *REST) acquireList(ctx context.Context) (release func(), err error) {
	if r.lists == nil {
		return func() {}, nil
	}
	release = func() { <-r.lists }
	select {
	case r.lists <- struct{}{}:
		return release, nil
	default:
	}
	t := time.NewTimer(r.opts.ListQueueWait)
	defer t.Stop()
	select {
	case r.lists <- struct{}{}:
		return release, nil
	case <-t.C:
		return nil, apierrors.NewTooManyRequests("too many flow lists in progress, please try again later", 1)
	case <-ctx.Done():
		return nil, apierrors.NewTimeoutError("the list was canceled while waiting for others to finish", 1)
	}
}

// mergePages merges pages sorted in list order into their first limit
// flows (all of them when limit is 0) with a heap over the pages' heads,
// so a page of limit flows costs O(limit log pages) whatever the number of
// agents. truncated tells whether flows were left out.
func mergePages(pages [][]v1alpha1.Flow, limit int64) (flows []v1alpha1.Flow, truncated bool) {
	heads := make([][]v1alpha1.Flow, 0, len(pages))
	total := 0
	for _, p := range pages {
		if len(p) > 0 {
			heads = append(heads, p)
			total += len(p)
		}
	}
	if limit > 0 && int64(total) > limit {
		total, truncated = int(limit), true
	}
	// What is left of each agent's page, by its first flow.
	h := minheap.New(func(a, b []v1alpha1.Flow) bool { return flowfilter.CompareFlows(&a[0], &b[0]) < 0 }, heads)
	flows = make([]v1alpha1.Flow, 0, total)
	for len(flows) < total {
		p := h.Min()
		flows = append(flows, p[0])
		if p = p[1:]; len(p) == 0 {
			h.Pop()
		} else {
			h.ReplaceMin(p)
		}
	}
	return flows, truncated
}
