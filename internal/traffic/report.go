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

package traffic

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Stats are the totals of one destination (client) or listener (server)
// since the start. A message is a TCP request or response, a UDP datagram
// or an ICMP echo request or reply. Bytes are application payload (TCP,
// UDP) or the whole ICMP message (8-byte header and data); IPBytes adds the
// IP and UDP headers where one message is one packet (UDP and ICMP sent by
// clients), which is what a flow record of those packets counts. TCP's
// packets on the wire (handshake, ACKs, FINs, segmentation) are not counted.
//
// For the L7 protocols a message is an HTTP request or response (bytes:
// their bodies), a gRPC call or its answer, a DNS query or answer (bytes:
// the DNS messages), a Kafka record produced (sent) or consumed (received)
// by a client (bytes: the values), a Kafka request received by a server;
// Results has the exchanges by outcome.
type Stats struct {
	Role      string `json:"role"` // "client" or "server"
	Spec      string `json:"spec"` // the --connect or --listen item
	Conns     uint64 `json:"conns"`
	Sent      uint64 `json:"sent"`
	SentBytes uint64 `json:"sentBytes"`
	// SentIPBytes is only counted for UDP and ICMP clients.
	SentIPBytes uint64 `json:"sentIPBytes,omitempty"`
	Recv        uint64 `json:"recv"`
	RecvBytes   uint64 `json:"recvBytes"`
	// Timeouts are exchanges without an answer in time, Refused those
	// answered by a reset or an ICMP unreachable (ECONNREFUSED).
	Timeouts  uint64 `json:"timeouts"`
	Refused   uint64 `json:"refused"`
	Errors    uint64 `json:"errors"`
	LastError string `json:"lastError,omitempty"`
	// Results count the exchanges of L7 clients and servers by outcome,
	// e.g. "GET /api/orders 200" (see the package doc).
	Results map[string]Result `json:"results,omitempty"`
}

// Result counts the L7 exchanges of one outcome.
type Result struct {
	Count uint64 `json:"count"`
	// MaxRoundTrip is the longest a client waited for one of them, from
	// just before sending the request to the response read (nanoseconds
	// in JSON); servers leave it zero.
	MaxRoundTrip time.Duration `json:"maxRoundTrip,omitempty"`
}

// counter is a Stats shared by the goroutines of one destination or
// listener.
type counter struct {
	mu sync.Mutex
	s  Stats
}

func (c *counter) add(f func(*Stats)) {
	c.mu.Lock()
	f(&c.s)
	c.mu.Unlock()
}

func (c *counter) snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.s
	s.Results = maps.Clone(s.Results)
	return s
}

// result counts one L7 exchange of an outcome and its round trip (zero
// for servers).
func (c *counter) result(outcome string, rtt time.Duration) {
	c.add(func(s *Stats) {
		if s.Results == nil {
			s.Results = map[string]Result{}
		}
		r := s.Results[outcome]
		r.Count++
		r.MaxRoundTrip = max(r.MaxRoundTrip, rtt)
		s.Results[outcome] = r
	})
}

// fail counts an error of an exchange: a timeout, a refusal or another.
// Our own shutdown closing a socket is none.
func (c *counter) fail(err error) {
	if errors.Is(err, net.ErrClosed) {
		return
	}
	c.add(func(s *Stats) {
		switch {
		case isTimeout(err):
			s.Timeouts++
		case isRefused(err):
			s.Refused++
		default:
			s.Errors++
		}
		s.LastError = err.Error()
	})
}

// report is what --stats-file holds.
type report struct {
	Name    string    `json:"name"`
	Started time.Time `json:"started"`
	Time    time.Time `json:"time"`
	Stats   []Stats   `json:"stats"`
}

// reporter logs and writes the totals of all counters.
type reporter struct {
	name     string
	file     string
	started  time.Time
	counters []*counter
}

func (r *reporter) newCounter(role, spec string) *counter {
	c := &counter{s: Stats{Role: role, Spec: spec}}
	r.counters = append(r.counters, c)
	return c
}

// report logs one line per counter, e.g.
//
//	report shop/web-0 client udp:10.244.2.2:5353 conns=0 sent=60 sent_bytes=3840 sent_ip_bytes=5520 recv=60 recv_bytes=3840 timeouts=0 refused=0 errors=0
//	report shop/web-0 client http:10.244.2.2:80 conns=1 sent=60 ... errors=0 "GET /api/missing 404"=8 "GET /api/orders 200"=41 "POST /api/fail 500"=11
//
// and rewrites the stats file.
func (r *reporter) report() {
	rep := report{Name: r.name, Started: r.started, Time: time.Now().UTC()}
	for _, c := range r.counters {
		s := c.snapshot()
		rep.Stats = append(rep.Stats, s)
		var b strings.Builder
		fmt.Fprintf(&b, "report %s %s %s conns=%d sent=%d sent_bytes=%d", r.name, s.Role, s.Spec, s.Conns, s.Sent, s.SentBytes)
		if s.SentIPBytes > 0 {
			fmt.Fprintf(&b, " sent_ip_bytes=%d", s.SentIPBytes)
		}
		fmt.Fprintf(&b, " recv=%d recv_bytes=%d timeouts=%d refused=%d errors=%d", s.Recv, s.RecvBytes, s.Timeouts, s.Refused, s.Errors)
		for _, k := range slices.Sorted(maps.Keys(s.Results)) {
			fmt.Fprintf(&b, " %q=%d", k, s.Results[k].Count)
		}
		if s.LastError != "" {
			fmt.Fprintf(&b, " last_error=%q", s.LastError)
		}
		log.Print(b.String())
	}
	if r.file == "" {
		return
	}
	if err := writeJSON(r.file, rep); err != nil {
		log.Printf("writing %s: %v", r.file, err)
	}
}

// writeJSON replaces file atomically, so that a reader never sees half.
func writeJSON(file string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".stats-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(append(data, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), file)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}
