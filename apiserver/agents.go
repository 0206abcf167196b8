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
