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
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/warning"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/flowfilter"
)

// Scatter is a request that other resources computed from flows (such as
// FlowSummary) make of the agents, with the rules of a flow list: the same
// selectors compiled into the same filter and default window, the same
// agents asked (routing.go), the same list slots held (limits.go), the
// same timeout per agent, and the same partial failure: agents that do not
// answer are named in a warning, and only when none answers does the
// request fail.
type Scatter struct {
	// Filter is what the agents are asked for, its window always bounded
	// below: since, or the default window.
	Filter flowfilter.Filter
	// Snapshot is the version the agents read at, now in microseconds.
	Snapshot uint64
	// Now is the time the request was compiled at.
	Now time.Time
}

// ScatterAgents asks every agent that a flow list with opts, in the
// request's namespace, would ask: call(ctx, agent) in parallel, under the
// per-agent timeout. window, when positive, replaces the server's default
// window of lists for requests that name neither since nor until. It returns the agents that answered, in the order of
// their nodes. A call's error that says the request is wrong (an agent's
// InvalidArgument, say) fails the whole request, as it does a list.
func (r *REST) ScatterAgents(ctx context.Context, opts *metainternalversion.ListOptions, window time.Duration, call func(ctx context.Context, a Agent, s *Scatter) error) (answered []Agent, s *Scatter, err error) {
	if opts != nil && opts.Continue != "" {
		return nil, nil, apierrors.NewBadRequest("continue is not supported: this resource is computed whole on each request")
	}
	now := r.now()
	q, err := compileQuery(genericapirequest.NamespaceValue(ctx), opts, now)
	if err != nil {
		return nil, nil, err
	}
	if window <= 0 {
		window = r.opts.DefaultWindow
	}
	if !q.bounded && q.filter.Since == nil {
		since := now.Add(-window)
		q.filter.Since = &since
	}
	s = &Scatter{Filter: q.filter, Snapshot: uint64(now.UnixMicro()), Now: now}

	release, err := r.acquireListSlots(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer release()
	targets, missing := r.listTargets(q)
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, a := range targets {
		wg.Go(func() {
			actx, cancel := context.WithTimeout(ctx, r.opts.AgentTimeout)
			defer cancel()
			errs[i] = call(actx, a, s)
		})
	}
	wg.Wait()
	if err := r.checkAnswers(ctx, targets, missing, errs); err != nil {
		return nil, nil, err
	}
	for i, a := range targets {
		if errs[i] == nil {
			answered = append(answered, a)
		}
	}
	return answered, s, nil
}

// checkAnswers judges the agents' answers to one fan-out, errs[i] being
// targets[i]'s error (nil for an answer), and missing the nodes asked for
// that have no agent. An error that is not the agent's unavailability is
// the request's fault and is returned as is. The nodes of failed agents
// are named in a warning; when every agent asked failed, the request fails
// with 503.
func (r *REST) checkAnswers(ctx context.Context, targets []Agent, missing []string, errs []error) error {
	var (
		failed   []string
		lastErr  error
		answered bool
	)
	for _, n := range missing {
		failed = append(failed, n+" (no agent)")
	}
	for i, err := range errs {
		if err == nil {
			answered = true
			continue
		}
		if apiErr := r.agentError(err, targets[i].Node(), ""); !isUnavailable(apiErr) {
			return apiErr // the request itself is wrong
		}
		klog.ErrorS(err, "Failed asking an agent", "node", targets[i].Node())
		failed = append(failed, fmt.Sprintf("%s (%s)", targets[i].Node(), status.Code(err)))
		lastErr = err
	}
	if lastErr != nil && !answered {
		return apierrors.NewServiceUnavailable(fmt.Sprintf("no flow agent answered: %v", lastErr))
	}
	if len(failed) > 0 {
		warning.AddWarning(ctx, "", "flows from these nodes are missing, their agents did not answer: "+strings.Join(failed, ", "))
	}
	return nil
}
