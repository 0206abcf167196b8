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
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/test/e2e/framework"
)

// l7Seeds are HTTP and DNS exchanges on top of the framework's base
// flows, so that the map shows L7 error rates: web calls cart (one of
// four requests fails with 500), and cart resolves a name. Source ports
// 47001 to 47099.
func l7Seeds() []framework.Seed {
	var seeds []framework.Seed
	web, cart := framework.Web1, framework.Cart1
	for i, code := range []int32{200, 200, 200, 500} {
		sport := int32(47001 + i)
		f := framework.MkFlow("node-a", sport, 8080, "TCP", "Egress", "Forwarded", web, cart)
		method, url := "GET", "/api/cart"
		if code == 500 {
			method, url = "POST", "/api/checkout"
		}
		f.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, Latency: &metav1.Duration{Duration: 3 * time.Millisecond},
			HTTP: &v1alpha1.HTTP{Code: code, Method: method, URL: url, Protocol: "HTTP/1.1"}}
		seeds = append(seeds, framework.Seed{Node: "node-a", Sport: sport, Namespace: "shop", Flow: f})
	}
	dns := framework.MkFlow("node-a", 47010, 53, "UDP", "Egress", "Forwarded", cart, framework.Host("10.96.0.10"))
	dns.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeDNS, DNS: &v1alpha1.DNS{Query: "db.shop.svc.cluster.local.", RCode: 0}}
	seeds = append(seeds, framework.Seed{Node: "node-a", Sport: 47010, Namespace: "shop", Flow: dns})
	return seeds
}

var seedOnce sync.Once

// seed replays the base and L7 flows once and waits until they are listed.
func seed(t *testing.T) {
	t.Helper()
	sys.SeedBase(t)
	seedOnce.Do(func() { sys.Replay(t, l7Seeds()...) })
	want := framework.Sports(l7Seeds())
	framework.Eventually(t, 30*time.Second, "the L7 flows to be listed", func() (bool, string) {
		got, err := sys.ListSports("", "-A")
		return err == nil && slices.Equal(framework.InRange(got, 47001, 47099), want), fmt.Sprint(got, err)
	})
}

// mapEdge is an edge as the page's cytoscape holds it.
type mapEdge struct {
	Source, Target string
	Port           int32
	Dropped        int64
	L7Errors       int64
	Color          string
}

const edgesJS = `window.__flowscope.cy.edges().map(e => ({source: e.data('source'), target: e.data('target'),
	port: e.data('edge').port || 0, dropped: e.data('dropped'), l7Errors: e.data('l7Errors'), color: e.style('line-color')}))`

func findEdge(edges []mapEdge, src, dst string, port int32) *mapEdge {
	for i, e := range edges {
		if e.Source == src && e.Target == dst && e.Port == port {
			return &edges[i]
		}
	}
	return nil
}

// waitMap opens the UI and waits until the map holds at least n edges.
func waitMap(t *testing.T, b *browser, n int) []mapEdge {
	t.Helper()
	poll[bool](b, 30*time.Second, fmt.Sprintf(`window.__flowscope.cy && window.__flowscope.cy.edges().length >= %d && window.__flowscope.stats.map.length > 0`, n))
	return eval[[]mapEdge](b, edgesJS)
}

func TestServiceMapShowsWorkloadsAndEdges(t *testing.T) {
	seed(t)
	b := newBrowser(t)
	b.open(startUI(t, ""))
	if ns := eval[string](b, `document.querySelector('#namespace').value`); ns != "*" {
		t.Fatalf("admin's first namespace choice is %q, want all namespaces", ns)
	}
	edges := waitMap(t, b, 7)
	for _, want := range []struct {
		src, dst string
		port     int32
	}{
		{"shop/Deployment/web", "payments/Deployment/api", 8080},
		{"shop/Deployment/cart", "shop/Deployment/db", 5432},
		{"monitoring/Deployment/prometheus", "payments/Deployment/api", 9090},
		{"external/1.2.3.0/24", "shop/Deployment/web", 443},
		{"payments/Deployment/api", "external/10.96.0.0/24", 53},
		{"shop/Deployment/web", "shop/Deployment/cart", 8080},
	} {
		if findEdge(edges, want.src, want.dst, want.port) == nil {
			t.Errorf("no edge %s -> %s:%d in %+v", want.src, want.dst, want.port, edges)
		}
	}
	cards := eval[[]string](b, `window.__flowscope.cy.nodes('[node]').map(n => n.id())`)
	for _, want := range []string{"shop/Deployment/web", "shop/Deployment/cart", "shop/Deployment/db", "payments/Deployment/api", "monitoring/Deployment/prometheus"} {
		if !slices.Contains(cards, want) {
			t.Errorf("no card %s in %v", want, cards)
		}
	}
	if e := findEdge(edges, "shop/Deployment/web", "shop/Deployment/cart", 8080); e != nil && e.L7Errors != 1 {
		t.Errorf("web -> cart: %d L7 errors, want the one 500", e.L7Errors)
	}
	shot := b.screenshot("map")
	if os.Getenv("FLOWSCOPE_UI_DOCS") != "" {
		copyFile(t, shot, filepath.Join(sys.Root, "docs/images/ui-service-map.png"))
	}

	// A click on an edge lists its flows.
	eval[bool](b, `window.__flowscope.cy.edges().filter(e => e.data('source') === 'shop/Deployment/cart' && e.data('target') === 'shop/Deployment/db')[0].emit('tap'), true`)
	poll[bool](b, 10*time.Second, `[...document.querySelectorAll('#view-flows .row')].some(r => r.textContent.includes('shop/cart-1:40003'))`)
	rows := eval[[]string](b, `[...document.querySelectorAll('#view-flows .row')].map(r => r.textContent)`)
	for _, r := range rows {
		if !strings.Contains(r, "shop/cart-1") || !strings.Contains(r, "shop/db-0") {
			t.Errorf("the edge cart -> db lists a flow of another edge: %s", r)
		}
	}

	// A click on a card lists the flows at either end of it.
	b.do(chromedp.Click(chromedp.ID("tab-map")))
	eval[bool](b, `window.__flowscope.cy.getElementById('shop/Deployment/web').emit('tap'), true`)
	poll[bool](b, 10*time.Second, `(() => { const r = [...document.querySelectorAll('#view-flows .row')].map(r => r.textContent);
		return r.some(x => x.includes('shop/web-1:40001')) && r.some(x => x.includes('1.2.3.4:40005')) && r.some(x => x.includes('shop/web-2:40008')); })()`)
	for _, r := range rowsText(b) {
		if !strings.Contains(r, "shop/web-") {
			t.Errorf("the card web lists a flow with web at neither end: %s", r)
		}
	}
}

func TestDropIsARedEdge(t *testing.T) {
	seed(t)
	b := newBrowser(t)
	b.open(startUI(t, ""))
	edges := waitMap(t, b, 7)
	drop := findEdge(edges, "shop/Deployment/cart", "shop/Deployment/db", 5432)
	if drop == nil {
		t.Fatalf("no edge cart -> db: %+v", edges)
	}
	const red = "rgb(220,38,38)"
	if drop.Dropped == 0 || strings.ReplaceAll(drop.Color, " ", "") != red {
		t.Errorf("cart -> db (dropped %d) has colour %s, want %s", drop.Dropped, drop.Color, red)
	}
	// An edge with L7 errors and no drops is amber.
	const amber = "rgb(217,119,6)"
	if e := findEdge(edges, "shop/Deployment/web", "shop/Deployment/cart", 8080); e == nil || strings.ReplaceAll(e.Color, " ", "") != amber {
		t.Errorf("web -> cart, one HTTP 500 of four: %+v, want colour %s", e, amber)
	}
	for _, e := range edges {
		if e.Dropped == 0 && strings.ReplaceAll(e.Color, " ", "") == red {
			t.Errorf("edge %s -> %s:%d has no drops but is red", e.Source, e.Target, e.Port)
		}
	}
	b.screenshot("map")
}

func TestLiveTableShowsANewFlowWithinTwoSeconds(t *testing.T) {
	seed(t)
	b := newBrowser(t)
	b.open(startUI(t, ""))
	b.do(chromedp.Click(chromedp.ID("tab-flows")))
	poll[bool](b, 20*time.Second, `window.__flowscope.stats.inits > 0`)
	// Let the watch start after the first list.
	time.Sleep(500 * time.Millisecond)
	f := framework.MkFlow("node-b", 47101, 8080, "TCP", "Egress", "Forwarded", framework.Web2, framework.Cart1)
	f.L7 = &v1alpha1.Layer7{Type: v1alpha1.L7TypeHTTP, HTTP: &v1alpha1.HTTP{Code: 201, Method: "PUT", URL: "/api/cart/42"}}
	start := time.Now()
	sys.Replay(t, framework.Seed{Node: "node-b", Sport: 47101, Namespace: "shop", Flow: f})
	poll[bool](b, 10*time.Second, `[...document.querySelectorAll('#view-flows .row')].some(r => r.textContent.includes('shop/web-2:47101'))`)
	took := time.Since(start)
	t.Logf("the appended flow was in the live table %s after it was written to the replay file", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("the flow took %s to appear, want within 2s", took)
	}
	// Its row opens the detail drawer.
	b.do(chromedp.Click(chromedp.CSS(`#view-flows .row[data-name]`)))
	poll[bool](b, 5*time.Second, `!!document.querySelector('.drawer') && document.querySelector('.drawer').textContent.includes('/api/cart/42')`)
	shot := b.screenshot("live")
	if os.Getenv("FLOWSCOPE_UI_DOCS") != "" {
		copyFile(t, shot, filepath.Join(sys.Root, "docs/images/ui-live-table.png"))
	}
}

// TestAliceSeesShopOnly: alice may list flows in shop and nothing else,
// and may not list namespaces. Her browser gets shop's flows and nothing
// observed elsewhere: every response body the browser received is read,
// not only the page.
func TestAliceSeesShopOnly(t *testing.T) {
	seed(t)
	b := newBrowser(t)
	b.open(startUI(t, "alice"))
	poll[bool](b, 10*time.Second, `document.querySelector('.user').textContent.includes('alice')`)
	// She cannot list namespaces: she names hers.
	for _, ns := range []string{"payments", "shop"} {
		b.do(chromedp.SendKeys(chromedp.CSS(`.check input`), ns+"\r"))
		if ns == "payments" {
			poll[bool](b, 10*time.Second, `(document.querySelector('.error')||{textContent:''}).textContent.includes('may not list flows in namespace payments')`)
		}
	}
	poll[bool](b, 10*time.Second, `document.querySelector('#namespace').value === 'shop'`)
	if opts := eval[[]string](b, `[...document.querySelector('#namespace').options].map(o => o.value)`); !slices.Equal(opts, []string{"shop"}) {
		t.Fatalf("alice's namespaces: %v, want [shop]", opts)
	}
	edges := waitMap(t, b, 3)
	for _, e := range edges {
		if !strings.HasPrefix(e.Source, "shop/") && !strings.HasPrefix(e.Target, "shop/") {
			t.Errorf("alice sees an edge outside shop: %s -> %s", e.Source, e.Target)
		}
	}
	b.screenshot("map")
	b.do(chromedp.Click(chromedp.ID("tab-flows")))
	poll[bool](b, 20*time.Second, `window.__flowscope.stats.inits > 0`)
	time.Sleep(500 * time.Millisecond) // the watch starts after the first list
	// A flow observed in payments while she watches must not reach her.
	sys.Replay(t, framework.Seed{Node: "node-b", Sport: 47201, Namespace: "payments",
		Flow: framework.MkFlow("node-b", 47201, 8080, "TCP", "Ingress", "Forwarded", framework.Web1, framework.API1)})
	mine := framework.MkFlow("node-a", 47202, 8080, "TCP", "Egress", "Forwarded", framework.Web1, framework.Cart1)
	sys.Replay(t, framework.Seed{Node: "node-a", Sport: 47202, Namespace: "shop", Flow: mine})
	poll[bool](b, 10*time.Second, `[...document.querySelectorAll('#view-flows .row')].some(r => r.textContent.includes(':47202'))`)
	time.Sleep(time.Second) // 47201 was written first; give it every chance
	b.screenshot("flows")

	var flows, apiBodies int
	for _, r := range b.responses() {
		if !strings.Contains(r.URL, "/api/") {
			continue
		}
		apiBodies++
		var body struct {
			Items      []v1alpha1.Flow `json:"items"`
			Stream     json.RawMessage `json:"flows"` // a stream message's flows; a map's count
			Namespaces []string        `json:"namespaces"`
			All        bool            `json:"all"`
			Edges      []struct {
				Source, Target string
			} `json:"edges"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Errorf("%s: %v: %s", r.URL, err, r.Body)
			continue
		}
		if body.All || len(body.Namespaces) > 0 && !slices.Equal(body.Namespaces, []string{"shop"}) {
			t.Errorf("%s: alice was offered namespaces %v (all: %v)", r.URL, body.Namespaces, body.All)
		}
		var streamed []*v1alpha1.Flow
		if len(body.Stream) > 0 && body.Stream[0] == '[' {
			must(t, json.Unmarshal(body.Stream, &streamed))
		}
		all := streamed
		for i := range body.Items {
			all = append(all, &body.Items[i])
		}
		for _, f := range all {
			flows++
			if f.Namespace != "shop" {
				t.Errorf("%s: a flow observed in %s reached alice's browser: %s", r.URL, f.Namespace, f.Name)
			}
			if p := f.L4.SourcePort; p == 40002 || p == 40004 || p == 40007 || p == 47201 {
				t.Errorf("%s: flow %d, observed outside shop, reached alice's browser", r.URL, p)
			}
		}
		for _, e := range body.Edges {
			if !strings.HasPrefix(e.Source, "shop/") && !strings.HasPrefix(e.Target, "shop/") {
				t.Errorf("%s: an edge outside shop reached alice's browser: %s -> %s", r.URL, e.Source, e.Target)
			}
		}
	}
	t.Logf("alice's browser received %d API bodies and stream messages with %d flows, all observed in shop", apiBodies, flows)
	if flows == 0 {
		t.Fatal("no flows recorded: the recording is broken")
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	raw, err := os.ReadFile(from)
	must(t, err)
	must(t, os.MkdirAll(filepath.Dir(to), 0o755))
	must(t, os.WriteFile(to, raw, 0o644))
	t.Logf("copied %s to %s", from, to)
}

// TestTheSessionStaysLocal: the server lends the user's credentials, so
// it answers only its own address with its token. A name that resolves
// to 127.0.0.1 (DNS rebinding: a site's page reading the UI as the same
// origin) is refused even with the token, and so is the UI's own address
// without it.
func TestTheSessionStaysLocal(t *testing.T) {
	url := startUI(t, "")
	// The browser resolves evil.example to the loopback, as a rebinding
	// DNS server would make it.
	b := newBrowser(t, chromedp.Flag("host-resolver-rules", "MAP evil.example 127.0.0.1"))
	b.open(url)
	port := strings.TrimPrefix(strings.Split(strings.TrimPrefix(url, "http://127.0.0.1:"), "/")[0], ":")
	token := url[strings.Index(url, "token=")+len("token="):]
	for _, u := range []string{
		"http://evil.example:" + port + "/api/namespaces",
		"http://evil.example:" + port + "/?token=" + token,
	} {
		b.do(chromedp.Navigate(u))
		if body := eval[string](b, `document.body.innerText`); !strings.Contains(body, "unexpected Host header") {
			t.Errorf("%s answered %q, want the Host refused", u, body)
		}
	}
	// Another browser, which never opened the printed URL, has no
	// session.
	other := newBrowser(t)
	other.do(chromedp.Navigate("http://127.0.0.1:" + port + "/api/namespaces"))
	if body := eval[string](other, `document.body.innerText`); !strings.Contains(body, "no session") {
		t.Errorf("without the token: %q, want no session", body)
	}
	// The page itself, from the UI's own origin, still works.
	b.do(chromedp.Navigate("http://127.0.0.1:" + port + "/"))
	poll[bool](b, 10*time.Second, `document.querySelector('.user') && document.querySelector('.user').textContent.includes('admin')`)
	b.screenshot("own-origin")
}

// rowsText returns the text of the flow table's rows.
func rowsText(b *browser) []string {
	b.t.Helper()
	return eval[[]string](b, `[...document.querySelectorAll('#view-flows .row')].map(r => r.textContent)`)
}

// TestPauseAndResume: a paused table holds still and counts what waits;
// Resume shows it.
func TestPauseAndResume(t *testing.T) {
	seed(t)
	b := newBrowser(t)
	b.open(startUI(t, ""))
	b.do(chromedp.Click(chromedp.ID("tab-flows")))
	poll[bool](b, 20*time.Second, `window.__flowscope.stats.inits > 0`)
	time.Sleep(500 * time.Millisecond)
	b.do(chromedp.Click(chromedp.ID("pause")))
	sys.Replay(t, framework.Seed{Node: "node-a", Sport: 47301, Namespace: "shop",
		Flow: framework.MkFlow("node-a", 47301, 8080, "TCP", "Egress", "Forwarded", framework.Web1, framework.Cart1)})
	poll[bool](b, 10*time.Second, `document.querySelector('#pause').textContent.includes('1 new')`)
	for _, r := range rowsText(b) {
		if strings.Contains(r, ":47301") {
			t.Fatalf("a paused table shows a new flow: %s", r)
		}
	}
	b.screenshot("paused")
	b.do(chromedp.Click(chromedp.ID("pause")))
	poll[bool](b, 5*time.Second, `[...document.querySelectorAll('#view-flows .row')].some(r => r.textContent.includes('shop/web-1:47301'))`)
}

// TestExportJSON: Export JSON saves the table's flows as a FlowList.
func TestExportJSON(t *testing.T) {
	seed(t)
	b := newBrowser(t)
	b.open(startUI(t, ""))
	dir := t.TempDir()
	if _, err := chromedp.CallBrowser(b.ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
		Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dir}); err != nil {
		t.Fatal(err)
	}
	// The store's last 15 minutes: the live table starts 30 s back, and
	// the seeds may be older by now.
	b.do(chromedp.Click(chromedp.ID("tab-flows")))
	eval[bool](b, `(() => { const s = document.querySelector('#range'); s.value = '15m'; s.dispatchEvent(new Event('change', {bubbles: true})); return true; })()`)
	poll[bool](b, 20*time.Second, `[...document.querySelectorAll('#view-flows .row')].some(r => r.textContent.includes(':40003'))`)
	shown := eval[int](b, `document.querySelector('#row-count').textContent.split(' ')[0] | 0`)
	b.do(chromedp.Click(chromedp.ID("export")))
	var file string
	framework.Eventually(t, 10*time.Second, "the exported file", func() (bool, string) {
		m, _ := filepath.Glob(filepath.Join(dir, "flowscope-flows-*.json"))
		if len(m) == 1 {
			file = m[0]
		}
		return file != "", fmt.Sprint(m)
	})
	raw, err := os.ReadFile(file)
	must(t, err)
	var list v1alpha1.FlowList
	must(t, json.Unmarshal(raw, &list))
	var sports []int32
	for _, f := range list.Items {
		sports = append(sports, f.L4.SourcePort)
	}
	if len(list.Items) != shown || !slices.Contains(sports, 40003) || list.Kind != "FlowList" {
		t.Errorf("%s: %s with %d flows (source ports %v), want the %d shown, 40003 among them", file, list.Kind, len(list.Items), sports, shown)
	}
	b.screenshot("exported")
}

// TestFiltersHaveObservesMeanings: over the store's last 15 minutes,
// --verdict becomes a field selector and --pod (either end) a test in the
// browser.
func TestFiltersHaveObservesMeanings(t *testing.T) {
	seed(t)
	b := newBrowser(t)
	b.open(startUI(t, ""))
	b.do(chromedp.Click(chromedp.ID("tab-flows")))
	eval[bool](b, `(() => { const s = document.querySelector('#range'); s.value = '15m'; s.dispatchEvent(new Event('change', {bubbles: true})); return true; })()`)
	b.do(chromedp.Click(chromedp.ID("filters-toggle")), chromedp.SendKeys(chromedp.CSS(`.filters input[name=verdict]`), "Dropped"),
		chromedp.Click(chromedp.CSS(`.filters button.primary`)))
	poll[bool](b, 15*time.Second, `(() => { const r = [...document.querySelectorAll('#view-flows .row')].map(r => r.textContent);
		return r.length > 0 && r.every(x => x.includes('Dropped')) && r.some(x => x.includes('shop/cart-1:40003')); })()`)
	b.screenshot("verdict")
	b.do(chromedp.Click(chromedp.CSS(`.filters button[type=button]`)), chromedp.SendKeys(chromedp.CSS(`.filters input[name=pod]`), "shop/web-1"),
		chromedp.Click(chromedp.CSS(`.filters button.primary`)))
	// Every row of the unfiltered table is there until the filtered list
	// replaces it, web-1's among them: wait for a table of web-1's flows
	// only, which a filter that lets others through never shows.
	poll[bool](b, 15*time.Second, `(() => { const r = [...document.querySelectorAll('#view-flows .row')].map(r => r.textContent);
		return r.length > 0 && r.every(x => x.includes('shop/web-1')) &&
			r.some(x => x.includes('shop/web-1:40001')) && r.some(x => x.includes('1.2.3.4:40005')); })()`)
	b.screenshot("pod")
}

// responsiveness is what TestResponsiveness measured, written to the
// artifact directory as ui-responsiveness.json.
type responsiveness struct {
	MapCards      int     `json:"mapCards"`      // workloads and other cards in the window
	MapDrawnCards int     `json:"mapDrawnCards"` // the busiest, drawn by default
	MapTotalMs    float64 `json:"mapTotalMs"`    // request, FlowSummary, layout and the painted frame
	MapDrawMs     float64 `json:"mapDrawMs"`     // layout and the painted frame in the browser
	MapAllDrawMs  float64 `json:"mapAllDrawMs"`  // the same for every card, after "Show all"
	MapAllEdges   int     `json:"mapAllEdges"`
	LiveRate      int     `json:"liveFlowsPerSecond"`
	LiveSeconds   int     `json:"liveSeconds"`
	LiveReceived  int     `json:"liveFlowsReceived"`
	LiveBatches   int     `json:"liveBatches"`
	LiveDrainMs   float64 `json:"liveDrainMs"` // after the last write, until the browser had every flow
	LiveRows      int     `json:"liveRowsHeld"`
	UpdateP50Ms   float64 `json:"updateP50Ms"` // a batch's arrival to its rows on screen
	UpdateP95Ms   float64 `json:"updateP95Ms"`
	UpdateMaxMs   float64 `json:"updateMaxMs"`
	FrameP50Ms    float64 `json:"frameP50Ms"` // interval between animation frames
	FrameP95Ms    float64 `json:"frameP95Ms"`
	FrameMaxMs    float64 `json:"frameMaxMs"`
	FramesOver50  int     `json:"framesOver50Ms"`
	ScrollP95Ms   float64 `json:"scrollFrameP95Ms"`
}

// TestResponsiveness measures, and does not assert, how the UI copes with
// 3,000 workloads on the map and 1,000 flows/s on the live table. It runs
// last: its flows (namespace load) would crowd the other tests' maps.
func TestResponsiveness(t *testing.T) {
	const workloads, rate, seconds = 3000, 1000, 10
	load := func(i int) *v1alpha1.Endpoint {
		return framework.Pod("load", fmt.Sprintf("w-%04d-0", i), fmt.Sprintf("w-%04d", i), fmt.Sprintf("10.250.%d.%d", i/250, i%250+1))
	}
	sinks := func(i int) *v1alpha1.Endpoint {
		return framework.Pod("load", fmt.Sprintf("sink-%02d-0", i%30), fmt.Sprintf("sink-%02d", i%30), fmt.Sprintf("10.251.0.%d", i%30+1))
	}
	var seeds []framework.Seed
	for i := range workloads {
		node := sys.Nodes[i%2]
		seeds = append(seeds, framework.Seed{Node: node, Sport: int32(20000 + i), Namespace: "load",
			Flow: framework.MkFlow(node, int32(20000+i), 8080, "TCP", "Egress", "Forwarded", load(i), sinks(i))})
	}
	sys.Replay(t, seeds...)
	cs := sys.Clientset(t)
	framework.Eventually(t, 60*time.Second, "the load flows to be listed", func() (bool, string) {
		l, err := framework.ListAll(t.Context(), cs, "load", metav1.ListOptions{FieldSelector: "since=10m"})
		if err != nil {
			return false, err.Error()
		}
		return len(l.Items) >= workloads, fmt.Sprint(len(l.Items))
	})

	b := newBrowser(t)
	b.open(startUI(t, ""))
	var m responsiveness
	type mapStat struct {
		Cards, Of, Edges int
		TotalMs, DrawMs  float64
	}
	ms := poll[mapStat](b, 120*time.Second, fmt.Sprintf(`window.__flowscope.stats.map.find(m => m.of >= %d)`, workloads))
	m.MapCards, m.MapDrawnCards, m.MapTotalMs, m.MapDrawMs = ms.Of, ms.Cards, ms.TotalMs, ms.DrawMs
	b.screenshot("map-3000")
	b.do(chromedp.Click(chromedp.ID("show-all")))
	all := poll[mapStat](b, 180*time.Second, fmt.Sprintf(`window.__flowscope.stats.map.find(m => m.cards >= %d)`, workloads))
	m.MapAllDrawMs, m.MapAllEdges = all.DrawMs, all.Edges
	b.screenshot("map-3000-all")
	b.do(chromedp.Click(chromedp.ID("show-busiest")))

	b.do(chromedp.Click(chromedp.ID("tab-flows")))
	poll[bool](b, 20*time.Second, `window.__flowscope.stats.inits > 0`)
	time.Sleep(500 * time.Millisecond)
	eval[bool](b, `window.__flowscope.resetFrames(), true`)
	// rate flows a second for seconds, in tenths, across both nodes.
	start := time.Now()
	for tick := range seconds * 10 {
		batch := map[string][]framework.Seed{}
		for j := range rate / 10 {
			i := tick*rate/10 + j
			node := sys.Nodes[i%2]
			sport := int32(30000 + i%30000)
			batch[node] = append(batch[node], framework.Seed{Node: node, Sport: sport, Namespace: "load",
				Flow: framework.MkFlow(node, sport, 8080, "TCP", "Egress", "Forwarded", load(i%workloads), sinks(i))})
		}
		for _, s := range batch {
			sys.Replay(t, s...)
		}
		time.Sleep(time.Until(start.Add(time.Duration(tick+1) * 100 * time.Millisecond)))
	}
	// Every flow reaches the table, however long the browser takes here.
	fed := time.Now()
	poll[bool](b, 120*time.Second, fmt.Sprintf(`window.__flowscope.stats.flows >= %d`, rate*seconds))
	m.LiveDrainMs = float64(time.Since(fed).Milliseconds())
	type liveStat struct {
		Flows, Batches, Rows int
		Updates, Frames      []float64
	}
	ls := eval[liveStat](b, `({flows: window.__flowscope.stats.flows, batches: window.__flowscope.stats.batches,
		rows: document.querySelector('#row-count').textContent.split(' ')[0] | 0,
		updates: window.__flowscope.stats.updates, frames: window.__flowscope.stats.frames})`)
	b.screenshot("live-1000")
	m.LiveRate, m.LiveSeconds, m.LiveReceived, m.LiveBatches, m.LiveRows = rate, seconds, ls.Flows, ls.Batches, ls.Rows
	m.UpdateP50Ms, m.UpdateP95Ms, m.UpdateMaxMs = percentile(ls.Updates, 50), percentile(ls.Updates, 95), percentile(ls.Updates, 100)
	m.FrameP50Ms, m.FrameP95Ms, m.FrameMaxMs = percentile(ls.Frames, 50), percentile(ls.Frames, 95), percentile(ls.Frames, 100)
	for _, f := range ls.Frames {
		if f > 50 {
			m.FramesOver50++
		}
	}
	// Scrolling the full table while flows still arrive is the other
	// half of "responsive": frame intervals during a scroll of 2 s.
	eval[bool](b, `window.__flowscope.resetFrames(), true`)
	eval[bool](b, `(() => { const el = document.querySelector('.tbody'); let n = 0;
		const step = () => { el.scrollTop = (n * 997) % Math.max(1, el.scrollHeight); if (++n < 120) requestAnimationFrame(step); };
		requestAnimationFrame(step); return true; })()`)
	time.Sleep(2500 * time.Millisecond)
	m.ScrollP95Ms = percentile(eval[[]float64](b, `window.__flowscope.stats.frames`), 95)

	raw, _ := json.MarshalIndent(m, "", "  ")
	path := filepath.Join(artifactDir(t), "ui-responsiveness.json")
	must(t, os.WriteFile(path, raw, 0o644))
	t.Logf("responsiveness (measured, not asserted; %s; load average %s):\n%s", path, loadAverage(), raw)
}

func percentile(v []float64, p int) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := (len(s) - 1) * p / 100
	return float64(int(s[i]*10)) / 10
}

func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(raw))[:3], " ")
}
