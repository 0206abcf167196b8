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

// Package agentwire is the contract between flowscope-apiserver and the node
// agents: the request and response messages of the agent's gRPC service,
// their codec, the service description and a client stub. Flows travel in
// package flowcodec's encoding, filters and cursors are package flowfilter's.
//
// Resource versions are decimal microsecond timestamps from a hybrid logical
// clock on each agent: strictly increasing per agent, comparable across
// agents, and increasing across restarts. A list is taken at a snapshot
// resource version chosen by the caller; the agent first raises its clock
// past it, so everything a later watch from that version sees is newer than
// everything the list returned.
package agentwire

import (
	"time"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/flowfilter"
)

// ListRequest asks an agent for flows at a snapshot.
type ListRequest struct {
	Filter flowfilter.Filter `json:"filter"`
	// SnapshotRV excludes flows newer than it; 0 means the agent's current
	// state. The agent never assigns a version at or below it afterwards.
	SnapshotRV uint64 `json:"snapshotRV,omitempty"`
	// After resumes a paginated list.
	After *flowfilter.Cursor `json:"after,omitempty"`
	// Limit caps the number of flows returned; 0 asks for no limit, but an
	// agent answers at most its own cap (10,000) and says More.
	Limit int64 `json:"limit,omitempty"`
}

// ListResponse carries one agent's page.
type ListResponse struct {
	Flows []v1alpha1.Flow `json:"flows"`
	// More is true when flows matching the request follow the last one.
	More bool `json:"more,omitempty"`
	// SnapshotRV is the snapshot the list was taken at.
	SnapshotRV uint64 `json:"snapshotRV"`
}

// GetRequest asks for one flow by resource version, in a namespace.
type GetRequest struct {
	RV        uint64 `json:"rv"`
	Namespace string `json:"namespace,omitempty"`
}

// GetResponse carries one flow.
type GetResponse struct {
	Flow v1alpha1.Flow `json:"flow"`
}

// EventType is the kind of a watch or feed event.
type EventType string

// Watch event types.
const (
	// Added carries a new flow.
	Added EventType = "ADDED"
	// Deleted carries a flow that left the store.
	Deleted EventType = "DELETED"
	// Progress says that every flow with a version at or below RV has been
	// sent: the agent's watermark, sent when the stream is idle.
	Progress EventType = "PROGRESS"
)

// Event is one event of one subscription: what the agent's hub hands the
// agent's end of a Feed, what the aggregated server's session hands a
// watch, and what the watch merges. It is not a message of its own on the
// wire, where a FeedEvent carries it.
type Event struct {
	Type EventType      `json:"type"`
	RV   uint64         `json:"rv"`
	Flow *v1alpha1.Flow `json:"flow,omitempty"`
	// Err says why an ENDED subscription ended; the aggregated server's
	// session sets it from the event's gRPC code and message.
	Err error `json:"-"`
}

// The Feed call carries every watch one aggregated server has on one agent
// over a single stream, so that the agent sends one watermark per tick for
// all of them rather than one per watch, and a flow that several watches
// select once, tagged with their subscription IDs.
//
// The server sends FeedRequests: subscribe ID to Filter from FromRV, or
// cancel ID. For each subscription the agent sends, in this order, the
// flows after FromRV already in its store (ADDED, tagged with that ID
// only), then CAUGHT_UP with a version R: every flow the subscription
// selects at or below R has been sent. From then on the subscription is
// live: its new flows, ADDED and DELETED, carry its ID, and PROGRESS W
// (not tagged) says that every live subscription has been sent every flow
// at or below W. A subscription that fails gets ENDED with a gRPC code and
// message; IDs the agent does not know are ignored, so a cancel may cross
// events in flight. If the server falls behind the agent's buffer, the
// agent ends the whole Feed with ResourceExhausted; the server opens a new
// one and resubscribes from the last versions it received.

// FeedRequest is one message from the aggregated server on a Feed.
type FeedRequest struct {
	ID uint64 `json:"id"`
	// Cancel ends subscription ID; the other fields are then unused.
	Cancel bool              `json:"cancel,omitempty"`
	Filter flowfilter.Filter `json:"filter"`
	// FromRV: send the flows with a larger version. 0 means from now.
	FromRV uint64 `json:"fromRV,omitempty"`
	// Progress, when not 0, asks for a PROGRESS at or above it soon (the
	// other fields are then unused): a watch holds flows up to it and
	// waits for this agent's watermark. Unasked, the agent sends its
	// watermark only every --progress-interval, as a heartbeat.
	Progress uint64 `json:"progress,omitempty"`
	// Heartbeat, when not 0, asks the agent to send its watermark
	// unasked at most this often on this Feed (the other fields are then
	// unused): a server of many agents thins out their heartbeats. The
	// agent still answers every Progress ask at once, and never beats
	// more often than its --progress-interval. Send it only to an agent
	// that announced FeatureHeartbeat (FeedClient.Features): older agents
	// refuse the field.
	Heartbeat time.Duration `json:"heartbeat,omitempty"`
}

// Features an agent announces in the header of a Feed call, so that a
// server sends only what the agent understands.
const (
	// FeaturesHeader is the header's metadata key; its values are
	// features.
	FeaturesHeader = "flowscope-feed-features"
	// FeatureHeartbeat: the agent takes FeedRequest.Heartbeat.
	FeatureHeartbeat = "heartbeat"
)

// MaxHeartbeat bounds FeedRequest.Heartbeat: an agent silent for longer
// is taken for gone.
const MaxHeartbeat = time.Hour

// Feed event types, beyond Added, Deleted and Progress.
const (
	// CaughtUp ends a subscription's replay from the store: every flow it
	// selects at or below RV has been sent, and it is live from now on.
	CaughtUp EventType = "CAUGHT_UP"
	// Ended ends a subscription with Code and Message.
	Ended EventType = "ENDED"
	// Reset never goes over the wire: the aggregated server's session
	// says with it that its Feed broke, and that the subscription
	// replays from its last position and is not live until its next
	// CAUGHT_UP.
	Reset EventType = "RESET"
)

// FeedEvent is one message from the agent on a Feed.
type FeedEvent struct {
	Type EventType `json:"type"`
	RV   uint64    `json:"rv"`
	// IDs are the subscriptions the event is for: every subscription that
	// selects the flow of an ADDED or DELETED event, the one subscription
	// of CAUGHT_UP and ENDED, none for PROGRESS.
	IDs  []uint64       `json:"ids,omitempty"`
	Flow *v1alpha1.Flow `json:"flow,omitempty"`
	// Code and Message say why a subscription ENDED (a gRPC status).
	Code    uint32 `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}
