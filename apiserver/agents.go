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
	"flowscope.io/flowscope/agentclient"
	"flowscope.io/flowscope/flowfilter"
	"flowscope.io/flowscope/registry/flow"
)

// agentSet gives the flow storage the pool's agents through the interfaces
// the storage defines, so that the registry never imports the client.
type agentSet struct{ *agentclient.Pool }

var _ flow.Agents = agentSet{}

func (s agentSet) List() []flow.Agent {
	agents := s.Pool.List()
	out := make([]flow.Agent, len(agents))
	for i, a := range agents {
		out[i] = agent{a}
	}
	return out
}

func (s agentSet) Get(node string) (flow.Agent, bool) {
	a, ok := s.Pool.Get(node)
	if !ok {
		return nil, false
	}
	return agent{a}, true
}

// agent is comparable: two values are equal when they wrap the same
// connection, which is how a watch tells that an agent was replaced.
type agent struct{ *agentclient.Agent }

func (a agent) Subscribe(filter flowfilter.Filter, from uint64, limit int, notify chan<- struct{}) flow.Subscription {
	return a.Agent.Subscribe(filter, from, limit, notify)
}
