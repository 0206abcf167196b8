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

package agentcerts

import (
	"crypto/tls"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
	"k8s.io/klog/v2"
)

// ServerCredentials returns gRPC's TLS credentials for cfg that log the
// handshakes they refuse: a client of another CA, of a name not allowed,
// or a serving certificate missing. gRPC keeps those to itself unless its
// own logging is turned up. At most logBurst lines every logWindow, then
// one with the count of those not logged, so that a flood of bad clients
// cannot flood the log.
func ServerCredentials(cfg *tls.Config) credentials.TransportCredentials {
	return &loggingCredentials{TransportCredentials: credentials.NewTLS(cfg)}
}

const (
	logBurst  = 10
	logWindow = 10 * time.Second
)

type loggingCredentials struct {
	credentials.TransportCredentials

	mu          sync.Mutex
	windowStart time.Time
	logged      int
	suppressed  int
}

func (c *loggingCredentials) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	out, info, err := c.TransportCredentials.ServerHandshake(conn)
	if err != nil {
		c.log(conn.RemoteAddr(), err)
	}
	return out, info, err
}

func (c *loggingCredentials) log(remote net.Addr, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.windowStart) >= logWindow {
		c.windowStart, c.logged = now, 0
	}
	if c.logged == logBurst {
		c.suppressed++
		return
	}
	klog.InfoS("Refused a TLS handshake", "remote", remote.String(), "err", err.Error(), "suppressedBefore", c.suppressed)
	c.logged++
	c.suppressed = 0
}

func (c *loggingCredentials) Clone() credentials.TransportCredentials {
	return &loggingCredentials{TransportCredentials: c.TransportCredentials.Clone()}
}
