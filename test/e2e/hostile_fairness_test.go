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

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/pager"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/generated/clientset/versioned"
)

// The attacks of the hardening issue, item 3 ("no per-user fairness, and
// unbounded work per request"), as alice (flowscope-view in shop) runs
// them against flowscope-apiserver's default limits (README "Limits"):
// before them, alice could hold every watch slot, a list without a limit
// returned every flow of every agent in one response, and selectors of any
// size were matched against every flow on the agents.
const (
	defaultMaxWatchersPerUser = 100 // --max-watchers-per-user
	defaultMaxListPage        = 500 // --max-list-page
)

const flowsPath = "/apis/flows.flowscope.io/v1alpha1"

// userHTTP is a user's HTTP client to kube-apiserver.
type userHTTP struct {
	client *http.Client
	host   string
}

func httpAs(t *testing.T, user string) userHTTP {
	t.Helper()
	cfg := restConfigAs(t, user)
	c, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return userHTTP{c, strings.TrimSuffix(cfg.Host, "/")}
}

func restConfigAs(t *testing.T, user string) *rest.Config {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(sys.Out, "kubeconfig-"+user))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// get sends a GET; the caller closes the body.
func (u userHTTP) get(ctx context.Context, t *testing.T, path string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.host+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := u.client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp
}

// refusal reads a response that should be a refusal: its code,
// Retry-After and message. A watch served (200) is closed unread.
func refusal(t *testing.T, resp *http.Response) (code int, retryAfter, message string) {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, "", ""
	}
	body, _ := io.ReadAll(resp.Body)
	var st metav1.Status
	_ = json.Unmarshal(body, &st)
	return resp.StatusCode, resp.Header.Get("Retry-After"), st.Message
}

// listRV returns the resourceVersion of a list of shop as alice: watches
// from it send no initial events.
func listRV(ctx context.Context, t *testing.T, alice userHTTP) string {
	t.Helper()
	resp := alice.get(ctx, t, flowsPath+"/namespaces/shop/flows?limit=1")
	defer resp.Body.Close()
	var l v1alpha1.FlowList
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("list as alice: %s, %v", resp.Status, err)
	}
	return l.ResourceVersion
}

// TestWatchersPerUserHoldAliceNotCarol: alice opens as many watches as
// one user may, and her next one is refused with 429 and Retry-After,
// naming the limit; carol still watches. Before per-user limits, alice's
// watches counted only against the server's 1,000, all of which she could
// take. Once alice's watches end, she may watch again.
func TestWatchersPerUserHoldAliceNotCarol(t *testing.T) {
	alice, carol := httpAs(t, "alice"), httpAs(t, "carol")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watchPath := func(ns string) string {
		return fmt.Sprintf("%s/namespaces/%s/flows?watch=1&timeoutSeconds=120&resourceVersion=%s", flowsPath, ns, listRV(ctx, t, alice))
	}
	shop := watchPath("shop")

	var (
		mu     sync.Mutex
		bodies []io.Closer
		failed []string
		wg     sync.WaitGroup
	)
	defer func() {
		for _, b := range bodies {
			_ = b.Close()
		}
	}()
	for range defaultMaxWatchersPerUser {
		wg.Go(func() {
			resp := alice.get(ctx, t, shop)
			mu.Lock()
			defer mu.Unlock()
			if resp.StatusCode != http.StatusOK {
				code, _, msg := refusal(t, resp)
				failed = append(failed, fmt.Sprintf("%d %s", code, msg))
				return
			}
			bodies = append(bodies, resp.Body)
		})
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d of alice's first %d watches failed: %v", len(failed), defaultMaxWatchersPerUser, failed[0])
	}

	resp := alice.get(ctx, t, shop)
	if resp.StatusCode == http.StatusOK {
		resp.Body.Close()
		t.Fatalf("alice's watch %d was served: one user holds %d watches", defaultMaxWatchersPerUser+1, defaultMaxWatchersPerUser+1)
	}
	code, retry, msg := refusal(t, resp)
	if code != http.StatusTooManyRequests || retry == "" || !strings.Contains(msg, `user "alice" has 100 flow watches open`) || !strings.Contains(msg, "--max-watchers-per-user") {
		t.Fatalf("alice's watch %d: %d, Retry-After %q, %q; want 429 with Retry-After naming the per-user limit", defaultMaxWatchersPerUser+1, code, retry, msg)
	}

	resp = carol.get(ctx, t, watchPath("payments"))
	if resp.StatusCode != http.StatusOK {
		code, _, msg := refusal(t, resp)
		t.Fatalf("carol's watch while alice holds her limit: %d %s", code, msg)
	}
	resp.Body.Close()

	for _, b := range bodies {
		_ = b.Close()
	}
	bodies = nil
	eventually(t, 30*time.Second, "alice to watch again once her watches ended", func() (bool, string) {
		resp := alice.get(ctx, t, shop)
		if resp.StatusCode == http.StatusOK {
			resp.Body.Close()
			return true, ""
		}
		code, _, msg := refusal(t, resp)
		return false, fmt.Sprintf("%d %s", code, msg)
	})
}

// TestListWithoutLimitIsPaged: a list with no limit, or limit=0, gets at
// most --max-list-page flows and a continue token (with a warning), and
// following the tokens brings every flow once; client-go's pager asking
// for no limit, and kubectl, which pages by default, get every flow. Before
// the bound, such a list returned every flow of every agent at once, up to
// 256 MiB per agent.
func TestListWithoutLimitIsPaged(t *testing.T) {
	const first, n = 42000, defaultMaxListPage + 100
	// 15 minutes ago, outside the default list window (10 minutes): the
	// other tests' lists do not see them, and they list with since=20m.
	const since = "since=20m"
	at := metav1.NewMicroTime(time.Now().Add(-15 * time.Minute))
	var seeds []seed
	var want []int32
	for i := range int32(n) {
		node := sys.Nodes[i%2]
		f := mkFlow(node, first+i, 8080, "TCP", "Ingress", "Forwarded", host("198.51.100.77"), web1)
		f.Time = at
		seeds = append(seeds, seed{Node: node, Sport: first + i, Namespace: "shop", Flow: f})
		want = append(want, first+i)
	}
	replay(t, seeds...)
	// kubectl pages by 500, and follows the tokens.
	eventually(t, 60*time.Second, "kubectl get flows -n shop to list every seeded flow", func() (bool, string) {
		got, err := listSports("alice", "-n", "shop", "--field-selector", since)
		got = inRange(got, first, first+n-1)
		return err == nil && slices.Equal(got, want), fmt.Sprintf("%d of %d, %v", len(got), n, err)
	})
	got, err := listSports("carol", "-A", "--field-selector", since)
	if got = inRange(got, first, first+n-1); err != nil || !slices.Equal(got, want) {
		t.Errorf("carol's kubectl get flows -A: %d of the %d, %v", len(got), n, err)
	}
	if got, err := listSports("alice", "-n", "shop"); len(inRange(got, first, first+n-1)) != 0 || err != nil {
		t.Errorf("the default window lists %d of the seeded flows (%v); the other tests would see them", len(inRange(got, first, first+n-1)), err)
	}

	alice := httpAs(t, "alice")
	ctx := context.Background()
	for _, query := range []string{"", "&limit=0"} {
		t.Run("raw list"+query, func(t *testing.T) {
			path := flowsPath + "/namespaces/shop/flows?fieldSelector=" + url.QueryEscape(since) + query
			var ports []int32
			for page := 0; ; page++ {
				resp := alice.get(ctx, t, path)
				var l v1alpha1.FlowList
				err := json.NewDecoder(resp.Body).Decode(&l)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("page %d: %s, %v", page, resp.Status, err)
				}
				if len(l.Items) > defaultMaxListPage {
					t.Fatalf("page %d has %d flows, over --max-list-page (%d)", page, len(l.Items), defaultMaxListPage)
				}
				if page == 0 {
					if l.Continue == "" {
						t.Fatalf("the first page (%d flows) has no continue token, with %d seeded flows in shop", len(l.Items), n)
					}
					if w := resp.Header.Get("Warning"); !strings.Contains(w, "--max-list-page") {
						t.Errorf("first page's warning %q; want one naming --max-list-page", w)
					}
				}
				for _, f := range l.Items {
					ports = append(ports, f.L4.SourcePort)
				}
				if l.Continue == "" {
					break
				}
				path = flowsPath + "/namespaces/shop/flows?fieldSelector=" + url.QueryEscape(since) + "&continue=" + url.QueryEscape(l.Continue)
			}
			slices.Sort(ports)
			if got := inRange(ports, first, first+n-1); !slices.Equal(got, want) { // each once
				t.Errorf("the pages brought %d of the %d seeded flows (%d flows in all)", len(got), n, len(ports))
			}
		})
	}

	t.Run("client-go pager without a page size", func(t *testing.T) {
		cs, err := versioned.NewForConfig(restConfigAs(t, "alice"))
		if err != nil {
			t.Fatal(err)
		}
		p := pager.New(pager.SimplePageFunc(func(opts metav1.ListOptions) (runtime.Object, error) {
			return cs.FlowsV1alpha1().Flows("shop").List(ctx, opts)
		}))
		p.PageSize = 0 // limit=0, as a reflector's relist from a resourceVersion asks
		obj, paginated, err := p.List(ctx, metav1.ListOptions{FieldSelector: since})
		if err != nil {
			t.Fatal(err)
		}
		var ports []int32
		if err := meta.EachListItem(obj, func(o runtime.Object) error {
			ports = append(ports, o.(*v1alpha1.Flow).L4.SourcePort)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		slices.Sort(ports)
		if got := inRange(ports, first, first+n-1); !paginated || !slices.Equal(got, want) {
			t.Errorf("pager (paginated %t) brought %d of the %d seeded flows", paginated, len(got), n)
		}
	})
}

// TestOversizeSelectorsGet400: selectors over the bounds every agent holds
// to (32 terms, 1 KiB a value, 8 KiB in all) are refused with 400 naming
// the limit, for lists and watches, before any agent is asked. Before
// them, any selector was pushed to every agent and matched against every
// flow ingested, for as long as the watch lasted.
func TestOversizeSelectorsGet400(t *testing.T) {
	var terms []string
	for i := range 33 {
		terms = append(terms, fmt.Sprintf("l4.sourcePort!=%d", i+1))
	}
	long := "source.podName!=" + strings.Repeat("x", 1000)
	for _, tt := range []struct {
		name, selector, want string
	}{
		{"33 terms", strings.Join(terms, ","), "over the limit of 32 terms"},
		{"a value over 1 KiB", "source.podName=" + strings.Repeat("x", 1025), "over the limit of 1024 bytes"},
		{"over 8 KiB", strings.Join(slices.Repeat([]string{long}, 9), ","), "over the limit of 8192 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, err := kubectlAs("alice", "get", "flows", "-n", "shop", "--field-selector", tt.selector)
			if err == nil || !strings.Contains(stderr, "BadRequest") || !strings.Contains(stderr, tt.want) {
				t.Errorf("kubectl get flows with the selector: err=%v, stderr=%.300s; want a 400 saying %q", err, stderr, tt.want)
			}
			alice := httpAs(t, "alice")
			resp := alice.get(context.Background(), t, flowsPath+"/namespaces/shop/flows?watch=1&timeoutSeconds=10&fieldSelector="+url.QueryEscape(tt.selector))
			if code, _, msg := refusal(t, resp); code != http.StatusBadRequest || !strings.Contains(msg, tt.want) {
				t.Errorf("watch with the selector: %d %q; want 400 saying %q", code, msg, tt.want)
			}
		})
	}
}
