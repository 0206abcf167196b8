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

package apiserver

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
)

func TestWarmupAnswers429UntilTheAgentsAreDialed(t *testing.T) {
	var dialed atomic.Bool
	w := newWarmup(dialed.Load, time.Hour)
	served := 0
	h := w.wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served++ }))
	request := func(info *genericapirequest.RequestInfo) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/apis/flows.flowscope.io/v1alpha1/flows", nil)
		req = req.WithContext(genericapirequest.WithRequestInfo(req.Context(), info))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	flows := &genericapirequest.RequestInfo{IsResourceRequest: true, APIGroup: "flows.flowscope.io", APIVersion: "v1alpha1", Resource: "flows", Verb: "list"}
	discovery := &genericapirequest.RequestInfo{Path: "/apis/flows.flowscope.io/v1alpha1"}

	rec := request(flows)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" ||
		!strings.Contains(rec.Body.String(), "still connecting to the node agents") {
		t.Errorf("cold list: %d, Retry-After %q, %s; want 429 with Retry-After 1", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	if err := w.Check(nil); err == nil {
		t.Error("readyz passes while flow requests are refused")
	}
	if request(discovery); served != 1 {
		t.Errorf("discovery held back while warming up")
	}

	dialed.Store(true)
	if rec := request(flows); rec.Code != http.StatusOK || served != 2 {
		t.Errorf("warm list: %d, served %d", rec.Code, served)
	}
	if err := w.Check(nil); err != nil {
		t.Errorf("readyz once warm: %v", err)
	}
	dialed.Store(false) // an agent joins later
	if rec := request(flows); rec.Code != http.StatusOK {
		t.Errorf("list after an agent joined: %d, want it served", rec.Code)
	}
}

func TestWarmupEndsAfterItsBound(t *testing.T) {
	w := newWarmup(func() bool { return false }, 50*time.Millisecond)
	if w.Warm() {
		t.Fatal("warm before the bound with no agent dialed")
	}
	time.Sleep(60 * time.Millisecond)
	if !w.Warm() {
		t.Error("still cold after the bound")
	}
}
