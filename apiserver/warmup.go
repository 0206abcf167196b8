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
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// maxWarmup bounds the wait for the agents at startup: an agent whose
// address does not answer at all holds its connection attempt for up to
// gRPC's 20 s connect timeout.
const maxWarmup = 30 * time.Second

// warmup holds flow requests back until the agents are known and dialed
// (or maxWarmup has passed): a list answered before would silently miss
// the nodes not dialed yet. It answers them 429 with Retry-After, which
// client-go and kubectl retry, and informers treat as retriable. Once
// warm, it stays warm; agents that join later are ordinary changes.
type warmup struct {
	ready    func() bool
	deadline time.Time
	warm     atomic.Bool
}

func newWarmup(ready func() bool, bound time.Duration) *warmup {
	return &warmup{ready: ready, deadline: time.Now().Add(bound)}
}

// Warm reports whether flow requests are served.
func (w *warmup) Warm() bool {
	if w.warm.Load() {
		return true
	}
	switch {
	case w.ready():
		klog.InfoS("Agents dialed, serving flows")
	case time.Now().After(w.deadline):
		klog.InfoS("Serving flows although some agents are still being dialed", "waited", maxWarmup)
	default:
		return false
	}
	w.warm.Store(true)
	return true
}

// Name implements healthz.HealthChecker: readyz says what the flow
// requests see.
func (w *warmup) Name() string { return "flowscope-agents-dialed" }

// Check implements healthz.HealthChecker.
func (w *warmup) Check(*http.Request) error {
	if !w.Warm() {
		return errors.New("agent Leases not read or agents not dialed yet")
	}
	return nil
}

// wrap answers requests for flows 429 until warm. It runs inside the
// generic handler chain, after authentication and authorization, so
// nobody learns more from it than from the request itself.
func (w *warmup) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		info, ok := genericapirequest.RequestInfoFrom(req.Context())
		if ok && info.IsResourceRequest && info.APIGroup == v1alpha1.GroupName && !w.Warm() {
			err := apierrors.NewTooManyRequests("flowscope-apiserver is still connecting to the node agents", 1)
			gv := schema.GroupVersion{Group: info.APIGroup, Version: info.APIVersion}
			responsewriters.ErrorNegotiated(err, Codecs, gv, rw, req)
			return
		}
		h.ServeHTTP(rw, req)
	})
}
