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
	"time"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/flowfilter"
)

// Agents is the set of node agents the storage fans out to.
type Agents interface {
	// List returns the agents in order of node name.
	List() []Agent
	Get(node string) (Agent, bool)
	// Changed returns a channel closed at the next change of the set, so
	// running watches follow agents that join and leave.
	Changed() <-chan struct{}
	// Progressed returns a channel closed after some agent's watermark
	// advanced, so running watches release the flows it passed.
	Progressed() <-chan struct{}
}

// lapsedAgents is an Agents that also knows the agents that went away: a
// list that asks every agent names them among those that did not answer.
type lapsedAgents interface {
	Lapsed() []string
}

// Agent is one node's agent. Values must be comparable: a watch tells by
// == that an agent was replaced.
type Agent interface {
	Node() string
	List(context.Context, *agentwire.ListRequest) (*agentwire.ListResponse, error)
	Get(context.Context, *agentwire.GetRequest) (*agentwire.GetResponse, error)
	// Subscribe subscribes to the agent's flows that filter selects after
	// from, in the order agentwire.FeedRequest describes. Up to limit
	// flows wait for Take; notify is signalled, without blocking, when
	// events arrive.
	Subscribe(filter flowfilter.Filter, from uint64, limit int, notify chan<- struct{}) Subscription
	// Watermark returns the agent's last watermark: every subscription
	// that has caught up (and not been Reset since) has received every
	// flow at or below it. Read it before taking the events it applies to.
	Watermark() uint64
	// Heard returns when the agent last sent anything; zero before then.
	Heard() time.Time
	// AskProgress asks the agent for a watermark at or above rv soon.
	AskProgress(rv uint64)
}

// Subscription is one watch's subscription on one agent.
type Subscription interface {
	// Take returns the events that arrived since the last Take, reusing
	// buf's memory, and whether events were dropped: the subscription
	// then has a gap and must be cancelled.
	Take(buf []agentwire.Event) (events []agentwire.Event, overflowed bool)
	Cancel()
}
