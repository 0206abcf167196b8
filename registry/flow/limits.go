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
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apiserver/pkg/authentication/user"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/warning"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
)

// The limits of this file bound what one request, and one user, may make
// the server and the agents do, on top of the global MaxWatchers and
// MaxConcurrentLists:
//
//   - per user, MaxWatchersPerUser watches and MaxConcurrentListsPerUser
//     lists fanning out at once, so that no user takes every slot;
//   - per list, a page of at most MaxListPage flows, whatever the limit
//     asked (none included): the rest follows the continue token;
//   - per watch, at most MaxWatchInitialEvents initial events, which it
//     holds until its client has read them;
//   - per request, selectors within flowfilter's bounds (compileQuery).
//
// The user is the one kube-apiserver authenticated and passed on.
// Members of system:masters are not counted per user: kube-apiserver's API
// Priority and Fairness exempts them too, and they are held by the global
// limits alone.

// Limits refusals count, by limit: the label of limitRefusals.
const (
	limitWatchersPerUser     = "max_watchers_per_user"
	limitListsPerUser        = "max_concurrent_lists_per_user"
	limitWatchInitialEvents  = "max_watch_initial_events"
	limitSelectorBounds      = "selector_bounds"
	perUserWatchRetrySeconds = 5
)

var limitRefusals = metrics.NewCounterVec(&metrics.CounterOpts{
	Namespace: "flowscope", Subsystem: "apiserver", Name: "limit_refusals_total",
	Help: "Flow requests refused by a limit: max_watchers_per_user and max_concurrent_lists_per_user (429), " +
		"max_watch_initial_events and selector_bounds (400).",
	StabilityLevel: metrics.ALPHA,
}, []string{"limit"})

func init() {
	legacyregistry.MustRegister(limitRefusals)
}

// requester returns the user that per-user limits count a request for,
// and false when they do not apply: a request made in this process (no
// user), or one of system:masters.
func requester(ctx context.Context) (string, bool) {
	u, ok := genericapirequest.UserFrom(ctx)
	if !ok || u == nil || slices.Contains(u.GetGroups(), user.SystemPrivilegedGroup) {
		return "", false
	}
	return u.GetName(), true
}

// errNoSlot is a userSlots' refusal: the user holds every slot.
var errNoSlot = errors.New("every slot of the user is taken")

// userSlots counts slots per user, each user's up to a limit. A user's
// entry lives while it holds or waits for a slot.
type userSlots struct {
	mu    sync.Mutex
	users map[string]*userSlot
}

type userSlot struct {
	held chan struct{}
	refs int // holders and waiters
}

// acquire takes one of the limit slots of name, waiting at most wait for
// one to free. It returns errNoSlot, or the context's error.
func (u *userSlots) acquire(ctx context.Context, name string, limit int, wait time.Duration) (release func(), err error) {
	u.mu.Lock()
	if u.users == nil {
		u.users = map[string]*userSlot{}
	}
	s := u.users[name]
	if s == nil || cap(s.held) != limit {
		// A new user, or a limit that changed (tests): the entry's
		// holders keep the old channel and release into it.
		s = &userSlot{held: make(chan struct{}, limit)}
		u.users[name] = s
	}
	s.refs++
	u.mu.Unlock()
	done := func() {
		u.mu.Lock()
		defer u.mu.Unlock()
		if s.refs--; s.refs == 0 && u.users[name] == s {
			delete(u.users, name)
		}
	}

	select {
	case s.held <- struct{}{}:
		return func() { <-s.held; done() }, nil
	default:
	}
	if wait <= 0 {
		done()
		return nil, errNoSlot
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case s.held <- struct{}{}:
		return func() { <-s.held; done() }, nil
	case <-t.C:
		done()
		return nil, errNoSlot
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	}
}

// held returns how many slots name holds.
func (u *userSlots) held(name string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if s := u.users[name]; s != nil {
		return len(s.held)
	}
	return 0
}

// acquireListSlots takes a list slot of the requester, then one of the
// server's (acquireList), each waiting at most ListQueueWait: the user's
// first, so that a user over the limit waits without holding a slot that
// others could use.
func (r *REST) acquireListSlots(ctx context.Context) (release func(), err error) {
	releaseUser := func() {}
	if name, ok := requester(ctx); ok && r.opts.MaxConcurrentListsPerUser > 0 {
		releaseUser, err = r.userLists.acquire(ctx, name, r.opts.MaxConcurrentListsPerUser, r.opts.ListQueueWait)
		if errors.Is(err, errNoSlot) {
			limitRefusals.WithLabelValues(limitListsPerUser).Inc()
			return nil, apierrors.NewTooManyRequests(fmt.Sprintf("user %q has %d flow lists in progress, the most one user may have at once (--max-concurrent-lists-per-user); try again later",
				name, r.opts.MaxConcurrentListsPerUser), 1)
		}
		if err != nil {
			return nil, apierrors.NewTimeoutError("the list was canceled while waiting for the user's other lists to finish", 1)
		}
	}
	releaseServer, err := r.acquireList(ctx)
	if err != nil {
		releaseUser()
		return nil, err
	}
	return func() { releaseServer(); releaseUser() }, nil
}

// acquireWatchSlots takes a watch slot of the requester, then one of the
// server's; neither waits, since watches free theirs only when they end.
func (r *REST) acquireWatchSlots(ctx context.Context) (release func(), err error) {
	releaseUser := func() {}
	if name, ok := requester(ctx); ok && r.opts.MaxWatchersPerUser > 0 {
		releaseUser, err = r.userWatches.acquire(ctx, name, r.opts.MaxWatchersPerUser, 0)
		if err != nil {
			limitRefusals.WithLabelValues(limitWatchersPerUser).Inc()
			return nil, apierrors.NewTooManyRequests(fmt.Sprintf("user %q has %d flow watches open, the most one user may have at once (--max-watchers-per-user); stop one or try again later",
				name, r.opts.MaxWatchersPerUser), perUserWatchRetrySeconds)
		}
	}
	if !r.watchers.acquire(r.opts.MaxWatchers) {
		releaseUser()
		watchesEnded.WithLabelValues(endTooManyWatchers).Inc()
		return nil, apierrors.NewTooManyRequests("too many flow watches are being served; try again later", 1)
	}
	return func() { r.watchers.release(); releaseUser() }, nil
}

// pageLimit returns the limit a list is served with: the one asked, at
// most MaxListPage, which also bounds a list that asks none (0 or less).
// Such a list's client may not expect a continue token: when its page is
// capped, the response warns that the rest follows it.
func (r *REST) pageLimit(asked int64) (limit int64, unlimited bool) {
	maxPage := r.opts.MaxListPage
	if maxPage <= 0 || asked > 0 && asked <= maxPage {
		return asked, false
	}
	return maxPage, asked <= 0
}

// warnCappedPage tells a client that asked for every flow that it got a
// page, kubectl and client-go's pager follow the token without it.
func (r *REST) warnCappedPage(ctx context.Context, list *v1alpha1.FlowList) {
	if list.Continue != "" {
		warning.AddWarning(ctx, "", fmt.Sprintf("a flow list returns at most %d flows (--max-list-page of flowscope-apiserver); "+
			"list again with metadata.continue for the rest", r.opts.MaxListPage))
	}
}

// selectorBoundsOff turns the server's check of selector bounds off, for
// the benchmark that compares lists with and without the limits.
var selectorBoundsOff bool

// checkSelectorBounds refuses with 400 selectors over flowfilter's bounds,
// as the agents would receive them: they refuse the same.
func checkSelectorBounds(f flowfilter.Filter) error {
	if selectorBoundsOff {
		return nil
	}
	if err := f.CheckBounds(); err != nil {
		limitRefusals.WithLabelValues(limitSelectorBounds).Inc()
		return apierrors.NewBadRequest(err.Error())
	}
	return nil
}

// tooManyInitialEvents is a watch's answer when more flows than
// MaxWatchInitialEvents match it. A 400, like an over-large selector: the
// request as made is refused by a server limit and must change. Not 429,
// which client-go retries as is, nor 410, after which an informer's
// watch-list asks again from resourceVersion "": an informer (client-go's
// reflector) falls back on any other error to a LIST, paginated, and a
// WATCH from the list's resourceVersion, which sends no initial events.
func (r *REST) tooManyInitialEvents() error {
	limitRefusals.WithLabelValues(limitWatchInitialEvents).Inc()
	return apierrors.NewBadRequest(fmt.Sprintf("too many initial events: more than %d flows match this watch (--max-watch-initial-events); "+
		"list them with a limit, then watch from the list's resourceVersion, or narrow the watch's selectors or since", r.opts.MaxWatchInitialEvents))
}
