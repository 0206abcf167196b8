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
