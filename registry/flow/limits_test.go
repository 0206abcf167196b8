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
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/authentication/user"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
)

// as returns ctx as the request of a user in groups.
func as(ctx context.Context, name string, groups ...string) context.Context {
	return genericapirequest.WithUser(ctx, &user.DefaultInfo{Name: name, Groups: groups})
}

// wantStatus checks that err is an API status error of code whose message
// holds want, with Retry-After retry (0: none).
func wantStatus(t *testing.T, err error, code int32, retry int32, want string) {
	t.Helper()
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		t.Fatalf("error %v, want a %d status", err, code)
	}
	s := st.Status()
	var got int32
	if s.Details != nil {
		got = s.Details.RetryAfterSeconds
	}
	if s.Code != code || got != retry || !strings.Contains(s.Message, want) {
		t.Fatalf("status %d %q, Retry-After %d; want %d with %q, Retry-After %d", s.Code, s.Message, got, code, want, retry)
	}
}

// TestWatchersPerUser: a user's watches beyond MaxWatchersPerUser get 429
// naming the limit, while another user still watches and system:masters
// are held by MaxWatchers only; a user's slot frees when a watch ends.
func TestWatchersPerUser(t *testing.T) {
	opts := testOptions()
	opts.MaxWatchers, opts.MaxWatchersPerUser = 6, 2
	r := NewREST(newFakePool(newFakeAgent("a")), opts)
	open := func(ctx context.Context) (watch.Interface, error) {
		w, err := r.Watch(ctx, &metainternalversion.ListOptions{ResourceVersion: "100"})
		if err == nil {
			t.Cleanup(w.Stop)
		}
		return w, err
	}
	alice, carol, admin := as(context.Background(), "alice"), as(context.Background(), "carol"), as(context.Background(), "admin", user.SystemPrivilegedGroup)
	first, err := open(alice)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open(alice); err != nil {
		t.Fatal(err)
	}
	_, err = open(alice)
	wantStatus(t, err, 429, perUserWatchRetrySeconds, `user "alice" has 2 flow watches open, the most one user may have at once (--max-watchers-per-user)`)
	if _, err := open(carol); err != nil {
		t.Fatalf("carol's watch with alice at her limit: %v", err)
	}
	for i := range 3 {
		if _, err := open(admin); err != nil {
			t.Fatalf("admin's watch %d: %v", i, err)
		}
	}
	_, err = open(carol) // the seventh: over MaxWatchers
	wantStatus(t, err, 429, 1, "too many flow watches are being served")

	first.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for r.userWatches.held("alice") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("alice holds %d watch slots after stopping a watch, want 1", r.userWatches.held("alice"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := open(alice); err != nil {
		t.Fatalf("alice's watch after stopping one: %v", err)
	}
}

// TestConcurrentListsPerUser: a user's lists beyond
// MaxConcurrentListsPerUser wait ListQueueWait, then get 429 naming the
// limit, while another user's list goes ahead.
func TestConcurrentListsPerUser(t *testing.T) {
	c := startCluster(t, "node-a")
	entered, proceed := make(chan struct{}), make(chan struct{})
	c["node-a"].setBeforeList(func(context.Context) error {
		entered <- struct{}{}
		<-proceed
		return nil
	})
	r := NewREST(c, Options{DefaultWindow: time.Minute, AgentTimeout: 10 * time.Second,
		MaxConcurrentLists: 4, MaxConcurrentListsPerUser: 1, ListQueueWait: 200 * time.Millisecond})
	list := func(ctx context.Context) chan error {
		errc := make(chan error, 1)
		go func() {
			_, err := r.List(ctx, nil)
			errc <- err
		}()
		return errc
	}
	alice, carol := as(context.Background(), "alice"), as(context.Background(), "carol")

	held := list(alice)
	<-entered
	start := time.Now()
	err := <-list(alice)
	wantStatus(t, err, 429, 1, `user "alice" has 1 flow lists in progress, the most one user may have at once (--max-concurrent-lists-per-user)`)
	if waited := time.Since(start); waited < 150*time.Millisecond {
		t.Errorf("refused after %v, want a wait of about 200ms first", waited)
	}
	other := list(carol)
	<-entered // carol's list reached the agent while alice's is held
	proceed <- struct{}{}
	proceed <- struct{}{}
	for _, errc := range []chan error{held, other} {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if n := r.userLists.held("alice") + r.userLists.held("carol"); n != 0 {
		t.Errorf("%d list slots held after the lists ended", n)
	}
}

// TestListPageIsCapped: a list without a limit, or above MaxListPage,
// gets a page of MaxListPage and a continue token, and following it
// brings every flow once; the list that asked for none is warned.
func TestListPageIsCapped(t *testing.T) {
	c := startCluster(t, "node-a", "node-b")
	names := c.seed(t, rand.New(rand.NewPCG(3, 3)), 25, time.Now())
	r := NewREST(c, Options{DefaultWindow: time.Hour, AgentTimeout: 10 * time.Second, MaxListPage: 10})
	for _, tt := range []struct {
		limit    int64
		page     int
		warnings int
	}{{0, 10, 1}, {-1, 10, 1}, {11, 10, 0}, {10, 10, 0}, {7, 7, 0}} {
		t.Run(fmt.Sprint("limit=", tt.limit), func(t *testing.T) {
			ctx, warns := requestContext("")
			opts := metainternalversion.ListOptions{Limit: tt.limit}
			obj, err := r.List(ctx, &opts)
			if err != nil {
				t.Fatal(err)
			}
			l := obj.(*v1alpha1.FlowList)
			if len(l.Items) != tt.page || l.Continue == "" {
				t.Fatalf("first page of %d flows, continue %q; want %d and a token", len(l.Items), l.Continue, tt.page)
			}
			if len(warns.text) != tt.warnings || tt.warnings > 0 && !strings.Contains(warns.text[0], "at most 10 flows (--max-list-page") {
				t.Errorf("warnings %q, want %d", warns.text, tt.warnings)
			}
			got, _ := listAll(t, r, "", opts, func(page int, l *v1alpha1.FlowList) {
				if len(l.Items) > tt.page {
					t.Fatalf("page %d of %d flows", page, len(l.Items))
				}
			})
			slices.Sort(got)
			if !slices.Equal(got, names) {
				t.Fatalf("pages brought %d flows, want the %d seeded", len(got), len(names))
			}
		})
	}
	obj, err := r.List(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if l := obj.(*v1alpha1.FlowList); len(l.Items) != 10 || l.Continue == "" {
		t.Fatalf("list without options: %d flows, continue %q", len(l.Items), l.Continue)
	}
}

// TestWatchInitialEventsAreBounded: a watch that more flows than
// MaxWatchInitialEvents match is refused with 400 before it starts; one
// within the bound gets them all, then the bookmark that ends them.
func TestWatchInitialEventsAreBounded(t *testing.T) {
	c := startCluster(t, "node-a", "node-b")
	names := c.seed(t, rand.New(rand.NewPCG(4, 4)), 10, time.Now())
	opts := Options{DefaultWindow: time.Hour, AgentTimeout: 10 * time.Second, WatchBuffer: 100,
		BookmarkInterval: time.Hour, MaxAgentLag: time.Hour, MaxWatchers: 10, MaxWatchInitialEvents: 19}
	r := NewREST(c, opts)
	initial := metainternalversion.ListOptions{SendInitialEvents: new(true), AllowWatchBookmarks: true,
		ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan}
	_, err := r.Watch(context.Background(), &initial)
	wantStatus(t, err, 400, 0, "too many initial events: more than 19 flows match this watch (--max-watch-initial-events)")
	if n := r.watchers.n.Load(); n != 0 {
		t.Errorf("%d watch slots held after the refusal", n)
	}

	opts.MaxWatchInitialEvents = 20
	r = NewREST(c, opts)
	w, err := r.Watch(context.Background(), &initial)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var got []string
	for {
		e := nextEvent(t, w)
		f := e.Object.(*v1alpha1.Flow)
		if e.Type == watch.Bookmark {
			if f.Annotations[metav1.InitialEventsAnnotationKey] != "true" {
				t.Fatalf("bookmark %v without the initial-events-end annotation", f.ObjectMeta)
			}
			break
		}
		got = append(got, f.Name)
	}
	slices.Sort(got)
	if !slices.Equal(got, names) {
		t.Fatalf("initial events %v, want %v", got, names)
	}
}

// TestUnreadInitialEventsAreCutOff: a client that does not read its
// initial events is cut off with 429 after the grace, as in the live
// stream, rather than holding them until the watch times out.
func TestUnreadInitialEventsAreCutOff(t *testing.T) {
	w := &mergedWatch{result: make(chan watch.Event, 3), buffer: 2, grace: 50 * time.Millisecond, merge: newMerger(100, time.Hour)}
	flows := make([]v1alpha1.Flow, 5)
	done := make(chan bool)
	go func() { done <- w.sendInitial(context.Background(), flows) }()
	select {
	case ok := <-done:
		if ok {
			t.Fatal("sendInitial went on without a reader")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("sendInitial still waits for a client that does not read")
	}
	<-w.result
	<-w.result
	e := <-w.result
	if st, ok := e.Object.(*metav1.Status); e.Type != watch.Error || !ok || st.Code != 429 {
		t.Fatalf("last event = %v %#v, want a 429 error", e.Type, e.Object)
	}
}

// TestSelectorsOverTheBoundsGet400: the server refuses selectors over
// flowfilter's bounds before it asks any agent.
func TestSelectorsOverTheBoundsGet400(t *testing.T) {
	c := startCluster(t, "node-a")
	r := NewREST(c, Options{DefaultWindow: time.Hour, AgentTimeout: 10 * time.Second, WatchBuffer: 10, MaxWatchers: 10})
	var terms []string
	for i := range flowfilter.MaxSelectorTerms + 1 {
		terms = append(terms, fmt.Sprintf("l4.sourcePort!=%d", i+1))
	}
	for _, tt := range []struct {
		name   string
		labels string
		fields []string
		want   string
	}{
		{"terms", "", terms, "the label and field selectors have 33 terms together, over the limit of 32 terms"},
		{"a value", "", []string{"l7.dns.query=" + strings.Repeat("a", 1025)}, "the value of field selector l7.dns.query is 1025 bytes, over the limit of 1024 bytes"},
		{"bytes", "app=web", slices.Repeat([]string{"source.podName!=" + strings.Repeat("x", 1010)}, 8),
			"the label and field selectors are 8222 bytes together, over the limit of 8192 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts := listOptions(t, 10, tt.labels, tt.fields...)
			c.asked()
			_, err := r.List(context.Background(), &opts)
			wantStatus(t, err, 400, 0, tt.want)
			_, err = r.Watch(context.Background(), &opts)
			wantStatus(t, err, 400, 0, tt.want)
			if asked := c.asked(); len(asked) != 0 {
				t.Errorf("agents asked: %v", asked)
			}
		})
	}
}
