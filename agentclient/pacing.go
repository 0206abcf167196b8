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

import "time"

// Pacing is how often a session asks its agent for watermarks, and how
// often the agent sends one unasked. Both widen with the number of
// agents, so that the watermarks a server handles per second stay about
// the same as a cluster grows: every flow a watch holds waits for every
// agent's watermark, and at thousands of agents a fixed pace asks and
// hears more than the server can take.
type Pacing struct {
	// Ask is the least time between two asks for a watermark.
	Ask time.Duration
	// Heartbeat is how often the agent sends its watermark unasked; 0
	// leaves it to the agent (--progress-interval, 1 s by default).
	Heartbeat time.Duration
}

// Pacing's parts. Up to paceAgents agents the pace is fixed: asks at
// most every askInterval per agent, and the agents' own heartbeats. Past
// it both grow in proportion to the number of agents, heartbeats up to a
// third of the longest an agent may stay silent (--max-agent-lag) and
// half of keepaliveTime (so a healthy agent's connection is never
// pinged; the agents' ping policy would close it).
const (
	paceAgents = 1000
	// askInterval and heartbeatFloor are the pace up to paceAgents.
	askInterval    = 5 * time.Millisecond
	heartbeatFloor = time.Second
)

// PacingFor returns the pacing of a server with n agents, maxLag its
// --max-agent-lag.
func PacingFor(n int, maxLag time.Duration) Pacing {
	if n <= paceAgents {
		return Pacing{Ask: askInterval}
	}
	p := Pacing{
		Ask:       askInterval * time.Duration(n) / paceAgents,
		Heartbeat: min(heartbeatFloor*time.Duration(n)/paceAgents, maxLag/3, keepaliveTime/2),
	}
	if p.Heartbeat <= heartbeatFloor {
		p.Heartbeat = 0
	}
	return p
}
