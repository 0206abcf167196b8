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
	"slices"
	"time"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// Pods tells which node a pod runs on.
type Pods interface {
	// Locate returns the node of the pod namespace/name and when the pod
	// was created. ok is false when the pod is unknown, not scheduled or
	// terminating, or when the answer may be stale (not synced yet).
	Locate(namespace, name string) (node string, created time.Time, ok bool)
}

// podRouteGrace covers the agents' view of pods lagging the API: for this
// long after a pod is created, another node's agent may still file flows
// of an earlier pod of the same name under it.
const podRouteGrace = time.Minute

// podRoute is what a query pins of the endpoints at the flows' observation
// point, the requirements pod routing needs.
//
// An agent files every flow under the endpoint at its observation point, a
// pod of its own node (nodeagent/observe, and hubble.localEnd for imported
// flows): for Egress it is the source, for Ingress the destination, the
// other way round for replies. The other end may run anywhere: the ingress
// half of web-0 → db-0 lives on db-0's node and has source.podName=web-0.
// So a pod name alone says nothing about where its flows are; it routes
// only together with a direction that makes that pod the observed end.
// Unknown direction (drops outside any pod) never routes.
type podRoute struct {
	// direction and reply are the values of trafficDirection= and
	// isReply=; "" when not pinned.
	direction, reply string
	// source and destination name the pods of source.podName= and
	// destination.podName=, in the namespace of {source,destination}.namespace=.
	source, destination podRef
}

type podRef struct{ namespace, name string }

// observedEnds returns the endpoints that can be at the observation point
// of the flows the route's query matches, nil when any can.
func (p podRoute) observedEnds() []podRef {
	var request, reply podRef // the observed end of requests, of replies
	switch p.direction {
	case string(v1alpha1.TrafficDirectionEgress):
		request, reply = p.source, p.destination
	case string(v1alpha1.TrafficDirectionIngress):
		request, reply = p.destination, p.source
	default:
		return nil
	}
	switch p.reply {
	case "true":
		return []podRef{reply}
	case "false":
		return []podRef{request}
	}
	return []podRef{request, reply}
}

// podNodes returns the nodes that hold every flow the query matches, as
// found through the pods at its observation point, or ok false when they
// cannot be narrowed down that way. namespace is the request's: the
// observed pod's namespace, since a flow is filed there.
//
// A name is not an identity: a StatefulSet's web-0 deleted on node A and
// recreated on node B leaves its earlier flows on A. So a pod routes only
// when it was created (plus podRouteGrace) before the start of the time
// window: then every flow of the window observed at a pod of that name was
// observed at this pod, on its node. Lists always have a start; pages of a
// list keep the first page's window and snapshot, so a pod recreated
// between pages adds no flows to the list.
func (p podRoute) podNodes(pods Pods, namespace string, since *time.Time) (nodes []string, ok bool) {
	ends := p.observedEnds()
	if pods == nil || since == nil || len(ends) == 0 {
		return nil, false
	}
	for _, end := range ends {
		ns := end.namespace
		if ns == "" {
			ns = namespace
		}
		if end.name == "" || ns == "" {
			return nil, false
		}
		node, created, ok := pods.Locate(ns, end.name)
		if !ok || since.Before(created.Add(podRouteGrace)) {
			return nil, false
		}
		if !slices.Contains(nodes, node) {
			nodes = append(nodes, node)
		}
	}
	return nodes, true
}

// listTargets returns the agents a list asks, and the nodes it should ask
// but has no agent for. A list narrows by node name and flow name (see
// compileQuery) and by the pods at the observation point; watches stream
// from every agent instead (targets), as a pod may be recreated on another
// node while they run.
func (r *REST) listTargets(q *query) (asked []Agent, missing []string) {
	nodes := q.nodes
	if podNodes, ok := q.route.podNodes(r.opts.Pods, q.filter.Namespace, q.filter.Since); ok {
		if nodes == nil {
			nodes = podNodes
		} else {
			nodes = slices.DeleteFunc(slices.Clone(nodes), func(n string) bool { return !slices.Contains(podNodes, n) })
		}
	}
	if nodes == nil {
		if l, ok := r.agents.(lapsedAgents); ok {
			missing = l.Lapsed()
		}
		return r.agents.List(), missing
	}
	nodes = slices.Sorted(slices.Values(nodes))
	for _, n := range nodes {
		if a, ok := r.agents.Get(n); ok {
			asked = append(asked, a)
		} else {
			missing = append(missing, n)
		}
	}
	return asked, missing
}

// pin returns the route's value for a field selector label, nil when the
// route does not use that field.
func (p *podRoute) pin(field string) *string {
	switch field {
	case "trafficDirection":
		return &p.direction
	case "isReply":
		return &p.reply
	case "source.podName":
		return &p.source.name
	case "source.namespace":
		return &p.source.namespace
	case "destination.podName":
		return &p.destination.name
	case "destination.namespace":
		return &p.destination.namespace
	}
	return nil
}
