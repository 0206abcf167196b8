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
	"math"
	"slices"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
)

// A paginated list asks each agent for a share of the page, not the whole
// page: at 50 agents and a limit of 500, asking every agent for 500 flows
// reads, encodes, sends and decodes 25,000 flows to return 500.
//
// Round one asks each of the N agents for agentShare(limit, N) flows. Their
// pages merged are exact up to the safe boundary, the earliest last flow
// (in list order) of the agents that have more: an agent that has more
// holds nothing before its own last flow that it did not send, and an agent
// that has no more sent everything. When the boundary leaves fewer than
// limit flows, round two asks again only the agents that can still place a
// flow among the first limit ones, each from after its own last flow and
// for just as many flows as can still fit before it (limit minus the merged
// flows at or before its last flow). That fills the page: afterwards every
// agent that still has more has at least limit merged flows at or before
// its last flow (see secondRound). Only an agent failing in round two
// leaves a page short of limit, and then exact (see fanOutList).
//
// When the agents' flows interleave in list order, as real flows' times
// do, round one settles the page (50 agents, limit 500: 1,600 flows sent).
// Round two costs most when they come one agent after another (agents
// active at different times, or many flows sharing a time, which lists
// node by node): the k-th agent in order of last flow has at least k*share
// merged flows before it, so round two asks at most the sum of limit -
// k*share, about limit²/(2*share): 3,660 more flows at 50 agents and limit
// 500, against the 25,000 of asking every agent for the limit.

// minAgentShare is the least an agent is asked for in round one: below it
// a spread of flows over many agents sends lists to a second round often.
// A variable for tests, which lower it to reach round two with few flows;
// at math.MaxInt64 every agent is asked for the whole limit, as lists did
// before the share, which benchmarks compare with.
var minAgentShare int64 = 32

// agentShare is how many flows each of n agents is asked for in round one
// of a list with this limit: twice its even share, at least minAgentShare,
// at most the limit. 0 (unlimited, the initial list of a watch) stays 0.
func agentShare(limit int64, n int) int64 {
	if limit <= 0 || n <= 1 || limit > math.MaxInt64/2 {
		return limit
	}
	share := (2*limit + int64(n) - 1) / int64(n)
	return min(limit, max(share, minAgentShare))
}

var (
	listAgentFlows = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "flowscope", Subsystem: "apiserver", Name: "list_agent_flows_total",
		Help: "Flows the agents sent to flow lists (initial lists of watches included), by round: 1, or 2 " +
			"when the first round's shares did not fill a page; compare with list_returned_flows_total.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"round"})
	listReturnedFlows = metrics.NewCounter(&metrics.CounterOpts{
		Namespace: "flowscope", Subsystem: "apiserver", Name: "list_returned_flows_total",
		Help:           "Flows returned by flow lists.",
		StabilityLevel: metrics.ALPHA,
	})
	listSecondRounds = metrics.NewCounter(&metrics.CounterOpts{
		Namespace: "flowscope", Subsystem: "apiserver", Name: "list_second_rounds_total",
		Help:           "Paginated flow lists that asked some agents a second time to fill the page.",
		StabilityLevel: metrics.ALPHA,
	})
)

func init() {
	legacyregistry.MustRegister(listAgentFlows, listReturnedFlows, listSecondRounds)
}

// agentPage is what one agent answered a list so far, across rounds.
type agentPage struct {
	agent Agent
	// flows in list order; round two appends to them.
	flows []v1alpha1.Flow
	// more tells whether flows matching the list follow the last one; an
	// agent that says so sent at least one flow (askAgents).
	more bool
	// snapshot is the version the agent listed at, which round two reads
	// again.
	snapshot uint64
}

func (p *agentPage) last() *v1alpha1.Flow { return &p.flows[len(p.flows)-1] }

// agentAnswer is an agent's answer to one round.
type agentAnswer struct {
	resp *agentwire.ListResponse
	err  error
}

// askAgents asks the agents in parallel, each under its own timeout, req(i)
// for agents[i]. An answer that says more without a flow cannot be resumed
// nor bounded, so it counts as a failure.
func (r *REST) askAgents(ctx context.Context, targets []Agent, req func(i int) *agentwire.ListRequest, round string) []agentAnswer {
	answers := make([]agentAnswer, len(targets))
	var wg sync.WaitGroup
	for i, a := range targets {
		wg.Go(func() {
			actx, cancel := context.WithTimeout(ctx, r.opts.AgentTimeout)
			defer cancel()
			q := req(i)
			resp, err := a.List(actx, q)
			if err == nil && resp.More && len(resp.Flows) == 0 && q.Limit > 0 {
				resp, err = nil, status.Error(codes.Internal, "the agent said more flows follow but sent none")
			}
			answers[i] = agentAnswer{resp, err}
		})
	}
	wg.Wait()
	var n int
	for _, a := range answers {
		if a.resp != nil {
			n += len(a.resp.Flows)
		}
	}
	listAgentFlows.WithLabelValues(round).Add(float64(n))
	return answers
}

// settle merges the agents' pages into the first flows of the list, at
// most limit (all when limit is 0), that are final: no flow an agent did
// not send yet can come before them. more tells whether flows follow them.
// merged is the first limit flows of all pages, final or not.
func settle(pages []*agentPage, limit int64) (flows, merged []v1alpha1.Flow, more bool) {
	lists := make([][]v1alpha1.Flow, len(pages))
	var boundary *v1alpha1.Flow
	for i, p := range pages {
		lists[i] = p.flows
		if p.more {
			more = true
			if last := p.last(); boundary == nil || flowfilter.CompareFlows(last, boundary) < 0 {
				boundary = last
			}
		}
	}
	merged, truncated := mergePages(lists, limit)
	safe := len(merged)
	if boundary != nil {
		safe = rank(merged, boundary)
	}
	return merged[:safe], merged, more || truncated
}

// secondRound returns how many more flows each agent of pages could place
// among the first limit flows of the list, by index in pages, given merged,
// the first limit flows of the pages: none for an agent that sent all it
// has, else limit minus the merged flows at or before its last flow, since
// its next flows come after all of those. An agent whose last flow is not
// before the limit-th merged flow can place none.
//
// Asked for exactly that many, an agent either sends all it has or has at
// least limit merged flows at or before its new last flow; an agent not
// asked had that already. So after round two every agent that has more
// bounds at least limit merged flows, and settle fills the page.
func secondRound(pages []*agentPage, merged []v1alpha1.Flow, limit int64) map[int]int64 {
	need := map[int]int64{}
	if limit <= 0 {
		return need
	}
	for i, p := range pages {
		if p.more {
			if n := limit - int64(rank(merged, p.last())); n > 0 {
				need[i] = n
			}
		}
	}
	return need
}

// rank returns how many of flows, sorted in list order, are at or before f.
func rank(flows []v1alpha1.Flow, f *v1alpha1.Flow) int {
	i, found := slices.BinarySearchFunc(flows, f, func(e v1alpha1.Flow, f *v1alpha1.Flow) int { return flowfilter.CompareFlows(&e, f) })
	if found {
		i++
	}
	return i
}
