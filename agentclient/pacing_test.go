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

package agentclient

import (
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"flowscope.io/flowscope/agentwire"
)

func TestPacingFor(t *testing.T) {
	for _, tt := range []struct {
		agents int
		maxLag time.Duration
		want   Pacing
	}{
		{1, 5 * time.Second, Pacing{Ask: 5 * time.Millisecond}},
		{1000, 5 * time.Second, Pacing{Ask: 5 * time.Millisecond}},
		// A third of the default --max-agent-lag.
		{2000, 5 * time.Second, Pacing{Ask: 10 * time.Millisecond, Heartbeat: 5 * time.Second / 3}},
		{5000, 30 * time.Second, Pacing{Ask: 25 * time.Millisecond, Heartbeat: 5 * time.Second}},
		// Never so rare that the connection's keepalive would ping.
		{20000, time.Minute, Pacing{Ask: 100 * time.Millisecond, Heartbeat: keepaliveTime / 2}},
		// Without a lag to stay under, the agents keep their own pace.
		{5000, 0, Pacing{Ask: 25 * time.Millisecond}},
		// Not below the agents' default second.
		{5000, 3 * time.Second, Pacing{Ask: 25 * time.Millisecond}},
	} {
		if got := PacingFor(tt.agents, tt.maxLag); got != tt.want {
			t.Errorf("PacingFor(%d, %v) = %+v, want %+v", tt.agents, tt.maxLag, got, tt.want)
		}
	}
}

// nextHeartbeat waits for the server's next request for a heartbeat.
func nextHeartbeat(t *testing.T, feed *fakeFeed) time.Duration {
	t.Helper()
	return feed.nextWhere(t, func(req *agentwire.FeedRequest) bool { return req.Heartbeat != 0 }).Heartbeat
}

// TestHeartbeatAsked: an agent that announced heartbeats is asked for the
// pacing's, on every stream, and for its own pace again (1 ms: never more
// often than its --progress-interval) when the pacing says 0.
func TestHeartbeatAsked(t *testing.T) {
	fake := newFakeAgent()
	a := serveFake(t, fake, new(Broadcast))
	a.SetPacing(Pacing{Ask: askInterval, Heartbeat: 3 * time.Second})
	subscribe(a, all, 10, 100)
	feed := fake.next(t)
	if got := nextHeartbeat(t, feed); got != 3*time.Second {
		t.Errorf("asked for a heartbeat of %v, want 3s", got)
	}
	a.SetPacing(Pacing{Ask: askInterval})
	if got := nextHeartbeat(t, feed); got != time.Millisecond {
		t.Errorf("asked for a heartbeat of %v, want 1ms (the agent's own)", got)
	}
	a.SetPacing(Pacing{Ask: askInterval, Heartbeat: 2 * time.Second})
	if got := nextHeartbeat(t, feed); got != 2*time.Second {
		t.Errorf("asked for a heartbeat of %v, want 2s", got)
	}
	// A new stream is asked again.
	feed.end <- status.Error(codes.Unavailable, "connection reset")
	feed = fake.next(t)
	if got := nextHeartbeat(t, feed); got != 2*time.Second {
		t.Errorf("on a new stream: asked for a heartbeat of %v, want 2s", got)
	}
}

// TestHeartbeatNotAskedOfOlderAgents: an agent that announces no features
// (as agents before heartbeats, which refuse the request) is never asked
// for one, before or after its first event.
func TestHeartbeatNotAskedOfOlderAgents(t *testing.T) {
	reqs := make(chan *agentwire.FeedRequest, 100)
	events := make(chan *agentwire.FeedEvent, 10)
	older := grpc.ServiceDesc{
		ServiceName: "flowscope.agent.v1alpha1.Agent",
		HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{{StreamName: "Feed", ServerStreams: true, ClientStreams: true,
			Handler: func(_ any, stream grpc.ServerStream) error {
				go func() {
					for e := range events {
						if stream.SendMsg(e) != nil {
							return
						}
					}
				}()
				for {
					req := new(agentwire.FeedRequest)
					if err := stream.RecvMsg(req); err != nil {
						return nil
					}
					reqs <- req
				}
			}}},
	}
	a := serveOn(t, new(Broadcast), func(srv *grpc.Server) { srv.RegisterService(&older, struct{}{}) })
	t.Cleanup(func() { close(events) })
	a.SetPacing(Pacing{Ask: askInterval, Heartbeat: 3 * time.Second})
	subscribe(a, all, 10, 100)
	expectNoHeartbeat := func(when string) {
		t.Helper()
		deadline := time.After(500 * time.Millisecond)
		for {
			select {
			case req := <-reqs:
				if req.Heartbeat != 0 {
					t.Fatalf("%s: asked an older agent for a heartbeat of %v", when, req.Heartbeat)
				}
				continue
			case <-deadline:
			}
			return
		}
	}
	expectNoHeartbeat("before its first event")
	events <- &agentwire.FeedEvent{Type: agentwire.CaughtUp, RV: 20, IDs: []uint64{1}} // sends the header
	a.SetPacing(Pacing{Ask: askInterval, Heartbeat: 4 * time.Second})
	expectNoHeartbeat("after its header")
}
