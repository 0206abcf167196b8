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
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// maxPage is the most flows one /api/flows answer holds: the server's own
// --max-list-page default.
const maxPage = 500

// writeJSON answers v as JSON, never cached.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// apiError is the body of every failed API answer.
type apiError struct {
	Error string `json:"error"`
	// Reason is kube-apiserver's reason, such as Forbidden.
	Reason string `json:"reason,omitempty"`
}

// writeError answers err with kube-apiserver's code and message, so the
// browser shows what kubectl would.
func writeError(w http.ResponseWriter, err error) {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		st := status.Status()
		code := int(st.Code)
		if code == 0 {
			code = http.StatusInternalServerError
		}
		writeJSON(w, code, apiError{Error: st.Message, Reason: string(st.Reason)})
		return
	}
	if errors.Is(err, context.Canceled) {
		return
	}
	writeJSON(w, http.StatusBadGateway, apiError{Error: err.Error()})
}

func badRequest(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, apiError{Error: msg, Reason: string(metav1.StatusReasonBadRequest)})
}

// whoamiResponse names the user the UI acts as.
type whoamiResponse struct {
	User   string   `json:"user"`
	Groups []string `json:"groups,omitempty"`
}

func (s *server) whoami(w http.ResponseWriter, r *http.Request) {
	rev, err := s.kube.AuthenticationV1().SelfSubjectReviews().Create(r.Context(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, whoamiResponse{User: rev.Status.UserInfo.Username, Groups: rev.Status.UserInfo.Groups})
}

// namespacesResponse lists the namespaces whose flows the user may list.
type namespacesResponse struct {
	Namespaces []string `json:"namespaces"`
	// All is true when the user may list flows in every namespace at once.
	All bool `json:"all"`
	// Listed is false when the user may not list namespaces: then only
	// the namespaces the UI was told of were checked.
	Listed bool `json:"listed"`
	// Default is the namespace to show first.
	Default string `json:"default,omitempty"`
	// Truncated is set when there were more namespaces than were checked.
	Truncated bool `json:"truncated,omitempty"`
}

// maxNamespaceChecks bounds the access reviews one answer makes.
const maxNamespaceChecks = 500

// namespaces answers the namespaces whose flows the user may list. It
// lists namespaces as the user; where that is forbidden (alice may view
// flows in shop and nothing cluster-wide) it checks the namespace the UI
// was started with and those the browser asks about (?check=) with
// SelfSubjectAccessReviews.
func (s *server) namespaces(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	all, err := s.canListFlows(ctx, "")
	if err != nil {
		writeError(w, err)
		return
	}
	resp := namespacesResponse{All: all, Default: s.opts.Namespace}
	var candidates []string
	list, err := s.kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	switch {
	case err == nil:
		resp.Listed = true
		for _, ns := range list.Items {
			candidates = append(candidates, ns.Name)
		}
	case apierrors.IsForbidden(err):
		if s.opts.Namespace != "" {
			candidates = append(candidates, s.opts.Namespace)
		}
	default:
		writeError(w, err)
		return
	}
	for _, ns := range r.URL.Query()["check"] {
		if len(validation.IsDNS1123Label(ns)) > 0 {
			badRequest(w, "not a namespace name: "+strconv.Quote(ns))
			return
		}
		candidates = append(candidates, ns)
	}
	slices.Sort(candidates)
	candidates = slices.Compact(candidates)
	if all && resp.Listed {
		resp.Namespaces = candidates
		writeJSON(w, http.StatusOK, resp)
		return
	}
	if len(candidates) > maxNamespaceChecks {
		candidates, resp.Truncated = candidates[:maxNamespaceChecks], true
	}
	allowed := make([]bool, len(candidates))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		sem      = make(chan struct{}, 8)
	)
	for i, ns := range candidates {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ok, err := s.canListFlows(ctx, ns)
			if err != nil {
				mu.Lock()
				firstErr = cmpErr(firstErr, err)
				mu.Unlock()
				return
			}
			allowed[i] = ok
		}()
	}
	wg.Wait()
	if firstErr != nil {
		writeError(w, firstErr)
		return
	}
	resp.Namespaces = []string{}
	for i, ns := range candidates {
		if allowed[i] {
			resp.Namespaces = append(resp.Namespaces, ns)
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// canListFlows asks kube-apiserver whether the user may list flows in ns
// ("" for all namespaces at once).
func (s *server) canListFlows(ctx context.Context, ns string) (bool, error) {
	rev, err := s.kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Verb: "list", Group: v1alpha1.GroupName, Resource: "flows",
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return rev.Status.Allowed, nil
}

// flowQuery is what the browser asks of flows: a namespace ("" for all)
// and selectors with the meanings of kubectl get flows.
type flowQuery struct {
	namespace string
	opts      metav1.ListOptions
}

// parseFlowQuery reads namespace, fieldSelector, labelSelector, since,
// until, limit and continue. since and until join the field selector as
// the API's since= and until= terms.
func parseFlowQuery(r *http.Request) (flowQuery, error) {
	q := r.URL.Query()
	fq := flowQuery{namespace: q.Get("namespace")}
	if fq.namespace != "" && len(validation.IsDNS1123Label(fq.namespace)) > 0 {
		return fq, errors.New("not a namespace name: " + strconv.Quote(fq.namespace))
	}
	terms := []string{}
	if fs := strings.TrimSpace(q.Get("fieldSelector")); fs != "" {
		terms = append(terms, fs)
	}
	for _, b := range []string{v1alpha1.FieldSince, v1alpha1.FieldUntil} {
		if v := strings.TrimSpace(q.Get(b)); v != "" {
			terms = append(terms, b+"="+v)
		}
	}
	fq.opts.FieldSelector = strings.Join(terms, ",")
	fq.opts.LabelSelector = strings.TrimSpace(q.Get("labelSelector"))
	fq.opts.Continue = q.Get("continue")
	fq.opts.Limit = maxPage
	if l := q.Get("limit"); l != "" {
		n, err := strconv.ParseInt(l, 10, 64)
		if err != nil || n <= 0 {
			return fq, errors.New("limit must be a positive number")
		}
		fq.opts.Limit = min(n, maxPage)
	}
	return fq, nil
}

// flowsResponse is one page of flows.
type flowsResponse struct {
	Items           []v1alpha1.Flow `json:"items"`
	Continue        string          `json:"continue,omitempty"`
	ResourceVersion string          `json:"resourceVersion,omitempty"`
}

func (s *server) listFlows(w http.ResponseWriter, r *http.Request) {
	fq, err := parseFlowQuery(r)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	list, err := s.flows.FlowsV1alpha1().Flows(fq.namespace).List(r.Context(), fq.opts)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, flowsResponse{Items: list.Items, Continue: list.Continue, ResourceVersion: list.ResourceVersion})
}
