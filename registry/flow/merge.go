package flow

import (
	"container/heap"
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
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
	h := make(pageHeap, 0, len(pages))
	total := 0
	for _, p := range pages {
		if len(p) > 0 {
			h = append(h, p)
			total += len(p)
		}
	}
	if limit > 0 && int64(total) > limit {
		total, truncated = int(limit), true
	}
	heap.Init(&h)
	flows = make([]v1alpha1.Flow, 0, total)
	for len(flows) < total {
		flows = append(flows, h[0][0])
		if h[0] = h[0][1:]; len(h[0]) == 0 {
			heap.Pop(&h)
		} else {
			heap.Fix(&h, 0)
		}
	}
	return flows, truncated
}

// pageHeap orders what is left of each agent's page by its first flow.
type pageHeap [][]v1alpha1.Flow

func (h pageHeap) Len() int           { return len(h) }
func (h pageHeap) Less(i, j int) bool { return flowfilter.CompareFlows(&h[i][0], &h[j][0]) < 0 }
func (h pageHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *pageHeap) Push(x any)        { *h = append(*h, x.([]v1alpha1.Flow)) }
func (h *pageHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	*h = old[:len(old)-1]
	return p
}
