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
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// TestForgedSnapshotsHideNothing is the attack of issue 17, item 1, as
// alice (flowscope-view in shop) runs it: a snapshot of her choosing, ahead
// of the clocks, in a continue token she made herself and in a
// resourceVersion. Before continue tokens were signed and agents bounded
// snapshots, the token got 200 and moved every agent's clock three minutes
// ahead, so flows committed after it stayed out of every plain list for
// three minutes. Now each request gets a 400 that says why, and a flow
// written a second later is listed by a plain kubectl get flows.
func TestForgedSnapshotsHideNothing(t *testing.T) {
	seedBase(t)
	ahead := func(d time.Duration) string { return strconv.FormatInt(time.Now().Add(d).UnixMicro(), 10) }
	forged := func(body string) string { return base64.RawURLEncoding.EncodeToString([]byte(body)) }
	tokenBody := func(rv string) string {
		return `{"v":2,"rv":` + rv + `,"after":{"time":"2026-01-01T00:00:00Z","node":"node-a","rv":1}}`
	}
	v1Body := `{"v":1,"rv":` + ahead(180*time.Second) + `,"after":{"time":"2026-01-01T00:00:00Z","node":"node-a","rv":1}}`
	attacks := []struct {
		name, query, want string
	}{
		{"unsigned token, as before signing", "continue=" + forged(v1Body), "invalid continue token: not a signed Flowscope continue token"},
		{"token with a made-up signature", "continue=" + forged(tokenBody(ahead(180*time.Second))) + "." + forged("0123456789abcdef0123456789abcdef"), "invalid continue token: its signature does not match"},
		{"resourceVersion 30s ahead, within the server's bound", "resourceVersion=" + ahead(30*time.Second), "ahead of the clock of node"},
		{"resourceVersion 30s ahead, exact", "resourceVersionMatch=Exact&resourceVersion=" + ahead(30*time.Second), "ahead of the clock of node"},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			path := "/apis/flows.flowscope.io/v1alpha1/namespaces/shop/flows?limit=5&" + a.query
			out, stderr, err := kubectlAs("alice", "get", "--raw", path)
			if err == nil {
				t.Fatalf("alice's forged request succeeded: %.300s", out)
			}
			if !strings.Contains(stderr, a.want) || !strings.Contains(stderr, "BadRequest") && !strings.Contains(stderr, "400") {
				t.Errorf("stderr = %s; want a 400 containing %q", stderr, a.want)
			}
		})
	}

	// A signed token from a real first page still works.
	out := kubectl(t, "get", "--raw", "/apis/flows.flowscope.io/v1alpha1/flows?limit=1")
	var page v1alpha1.FlowList
	if err := json.Unmarshal([]byte(out), &page); err != nil {
		t.Fatalf("first page: %v: %.300s", err, out)
	}
	tok := page.Continue
	if tok == "" {
		t.Fatalf("a first page of 1 of the seeded flows has no continue token: %.300s", out)
	}
	kubectl(t, "get", "--raw", "/apis/flows.flowscope.io/v1alpha1/flows?limit=1&continue="+url.QueryEscape(tok))

	time.Sleep(time.Second)
	flow := mkFlow("node-a", 40901, 8080, "TCP", "Egress", "Forwarded", web1, api1)
	replay(t, seed{Node: "node-a", Sport: 40901, Namespace: "shop", Flow: flow})
	eventually(t, 10*time.Second, "the flow written after the attacks in a plain list", func() (bool, string) {
		got, err := listSports("alice", "-n", "shop")
		return err == nil && slices.Contains(got, 40901), fmt.Sprint(got, err)
	})
}
