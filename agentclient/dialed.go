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
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
)

// Dialed reports whether the Leases were read once and a connection to
// every agent known was attempted, whatever its outcome: from then on a
// list that misses an agent misses it because it is down, and says so,
// not because the server has only just started. It starts the
// connections that have not been.
func (p *Pool) Dialed() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if !p.synced() {
		return false
	}
	dialed := true
	for _, a := range p.agents {
		conn, ok := a.conn.(*grpc.ClientConn)
		if !ok {
			continue
		}
		switch conn.GetState() {
		case connectivity.Idle:
			conn.Connect()
			dialed = false
		case connectivity.Connecting:
			dialed = false
		}
	}
	return dialed
}
