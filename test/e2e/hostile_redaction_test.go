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
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// TestImportedCredentialsStayHidden is the hardening issue's "sensitive
// data" item as alice (flowscope-view in shop) meets it: an HTTP request of
// a shop pod, imported from a Hubble export file, carries credentials in
// its headers (Authorization, Proxy-Authorization, Cookie, Set-Cookie, a
// custom API key, a Referer with a token) and in its URL (user:password@,
// ?token=, #fragment). Before the agents redacted L7 records, kubectl get
// flows showed alice every one of them, secrets that view would never show
// her in a Secret. Now none appears anywhere in her output, while what she
// needs to debug the request does: method, code, scheme, host and path,
// every header's name, and the values of the allow-listed headers.
func TestImportedCredentialsStayHidden(t *testing.T) {
	const sport = 40910
	flow := mkFlow("node-a", sport, 8080, "TCP", "Egress", "Forwarded", web1, api1)
	flow.L7 = &v1alpha1.Layer7{
		Type:    v1alpha1.L7TypeHTTP,
		Latency: &metav1.Duration{Duration: 3 * time.Millisecond},
		HTTP: &v1alpha1.HTTP{
			Code:     200,
			Method:   "GET",
			URL:      "http://alice-e2e:s3cr3t-userinfo@api.payments.svc:8080/v1/orders?token=s3cr3t-query&page=2#s3cr3t-fragment",
			Protocol: "HTTP/1.1",
			Headers: []v1alpha1.HTTPHeader{
				{Key: "Authorization", Value: "Bearer s3cr3t-bearer"},
				{Key: "Proxy-Authorization", Value: "Basic s3cr3t-proxy"},
				{Key: "Cookie", Value: "session=s3cr3t-cookie"},
				{Key: "Set-Cookie", Value: "id=s3cr3t-set-cookie; HttpOnly"},
				{Key: "X-Api-Key", Value: "s3cr3t-api-key"},
				{Key: "Referer", Value: "http://web.shop.svc/checkout?reset=s3cr3t-referer"},
				{Key: "User-Agent", Value: "benign-agent/1.0"},
				{Key: "Content-Type", Value: "application/json"},
			},
		},
	}
	replay(t, seed{Node: "node-a", Sport: sport, Namespace: "shop", Flow: flow})

	var out string
	eventually(t, 15*time.Second, "the imported HTTP flow in alice's list", func() (bool, string) {
		o, stderr, err := kubectlAs("alice", "get", "flows", "-n", "shop", "-o", "json",
			"--field-selector", fmt.Sprintf("l4.sourcePort=%d", sport))
		if err != nil {
			return false, fmt.Sprint(err, stderr)
		}
		out = o
		return strings.Contains(o, fmt.Sprintf(`"sourcePort": %d`, sport)), o
	})

	// Every secret above holds "s3cr3t"; name each, so a failure says which.
	for _, secret := range []string{
		"s3cr3t-userinfo", "alice-e2e", "s3cr3t-query", "token=", "s3cr3t-fragment",
		"s3cr3t-bearer", "s3cr3t-proxy", "s3cr3t-cookie", "s3cr3t-set-cookie",
		"s3cr3t-api-key", "s3cr3t-referer", "s3cr3t",
	} {
		if strings.Contains(out, secret) {
			t.Errorf("alice's kubectl get flows -o json shows %q", secret)
		}
	}

	var list v1alpha1.FlowList
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("decode alice's list: %v\n%.2000s", err, out)
	}
	if len(list.Items) != 1 || list.Items[0].L7 == nil || list.Items[0].L7.HTTP == nil {
		t.Fatalf("want the one HTTP flow, got:\n%.2000s", out)
	}
	h := list.Items[0].L7.HTTP
	if h.Method != "GET" || h.Code != 200 || h.Protocol != "HTTP/1.1" {
		t.Errorf("method, code, protocol = %q, %d, %q; want GET, 200, HTTP/1.1", h.Method, h.Code, h.Protocol)
	}
	if want := "http://api.payments.svc:8080/v1/orders"; h.URL != want {
		t.Errorf("url = %q, want %q", h.URL, want)
	}
	got := map[string]string{}
	for _, hdr := range h.Headers {
		got[hdr.Key] = hdr.Value
	}
	want := map[string]string{
		"Authorization":       "HUBBLE_REDACTED",
		"Proxy-Authorization": "HUBBLE_REDACTED",
		"Cookie":              "HUBBLE_REDACTED",
		"Set-Cookie":          "HUBBLE_REDACTED",
		"X-Api-Key":           "HUBBLE_REDACTED",
		"Referer":             "HUBBLE_REDACTED",
		"User-Agent":          "benign-agent/1.0",
		"Content-Type":        "application/json",
	}
	if len(h.Headers) != len(want) || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("headers = %v\nwant      %v", h.Headers, want)
	}
}
