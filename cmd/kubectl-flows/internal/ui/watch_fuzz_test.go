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
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzFlowQuery: whatever the browser sends, the query it becomes has no
// time bound once a watch drops them, keeps every other term in order,
// and asks for at most one page.
func FuzzFlowQuery(f *testing.F) {
	f.Add("verdict=Dropped,since=5m", "app=web", "5m", "", "100")
	f.Add("source.podName=a\\,b,until=1h", "", "", "2026-12-06T08:00:00Z", "")
	f.Add(",,since=,", "", "1h", "30m", "-1")
	f.Fuzz(func(t *testing.T, fieldSelector, labelSelector, since, until, limit string) {
		q := url.Values{"fieldSelector": {fieldSelector}, "labelSelector": {labelSelector}, "since": {since}, "until": {until}, "limit": {limit}}
		fq, err := parseFlowQuery(httptest.NewRequest("GET", "/api/flows?"+q.Encode(), nil))
		if err != nil {
			return
		}
		if fq.opts.Limit <= 0 || fq.opts.Limit > maxPage {
			t.Fatalf("limit %d from %q", fq.opts.Limit, limit)
		}
		w := withoutTimeBounds(fq.opts.FieldSelector)
		var kept []string
		for _, term := range strings.Split(fq.opts.FieldSelector, ",") {
			k := strings.TrimSpace(term)
			if k == "" || strings.HasPrefix(k, "since=") || strings.HasPrefix(k, "until=") {
				continue
			}
			kept = append(kept, term)
		}
		if w != strings.Join(kept, ",") {
			t.Fatalf("withoutTimeBounds(%q) = %q, want %q", fq.opts.FieldSelector, w, strings.Join(kept, ","))
		}
	})
}
