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

package capture

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"flowscope.io/flowscope/bpf"
)

// L7Protocols is a set of L7 protocols. The datapath only carries it from
// the gate to the samples: which parsers run is user space's decision.
type L7Protocols uint8

// L7 protocols.
const (
	L7DNS   L7Protocols = L7Protocols(bpf.FlowL7ProtoL7DNS)
	L7HTTP  L7Protocols = L7Protocols(bpf.FlowL7ProtoL7HTTP)
	L7HTTP2 L7Protocols = L7Protocols(bpf.FlowL7ProtoL7HTTP2)
	L7Kafka L7Protocols = L7Protocols(bpf.FlowL7ProtoL7KAFKA)

	l7AllProtocols = L7DNS | L7HTTP | L7HTTP2 | L7Kafka
)

func (p L7Protocols) String() string {
	var names []string
	for _, n := range []struct {
		bit  L7Protocols
		name string
	}{{L7DNS, "dns"}, {L7HTTP, "http"}, {L7HTTP2, "http2"}, {L7Kafka, "kafka"}} {
		if p&n.bit != 0 {
			names = append(names, n.name)
		}
	}
	if rest := p &^ l7AllProtocols; rest != 0 {
		names = append(names, fmt.Sprintf("%#x", uint8(rest)))
	}
	return strings.Join(names, "|")
}

const (
	// L7MaxBudget is the most payload bytes one sample carries (the
	// kernel's L7_MAX_BUDGET).
	L7MaxBudget = 1024
	// L7DefaultBudget is the budget of a gate entry that sets none: a
	// DNS message, an HTTP/1 request line and headers, a Kafka request
	// header with its first topic.
	L7DefaultBudget = 512
)

// L7GateEntry asks for payload samples of the packets through one
// interface, or only of those from or to one port of it.
type L7GateEntry struct {
	// Ifindex is the interface (a pod's host-side veth) in the agent's
	// network namespace.
	Ifindex int
	// Port narrows the entry to TCP and UDP packets whose source or
	// destination port it is; 0 means every port.
	Port uint16
	// Protocols are passed on in each sample (L7Event.Protocols).
	Protocols L7Protocols
	// Budget is how many payload bytes of each packet to copy, at most
	// L7MaxBudget; 0 means L7DefaultBudget.
	Budget int
}

// SetL7Gate replaces the whole L7 gate with entries. Entries for the same
// interface and port are merged (protocols ORed, the larger budget), and
// a port entry also takes the protocols and budget of its interface's
// all-ports entry, so a packet gets everything any entry asked for.
//
// An empty gate switches sampling off: the TC programs then skip the
// gate altogether. Otherwise a packet through an interface without an
// entry costs one hash lookup, and an interface with port entries up to
// two more. Pure TCP ACKs never reach the gate. Sampling follows the
// capture: in selected mode, only packets the Selection takes are
// sampled, so gated interfaces should be selected too.
func (d *Datapath) SetL7Gate(entries []L7GateEntry) error {
	type key = bpf.FlowL7GateKey
	want := map[key]bpf.FlowL7Gate{}
	for _, e := range entries {
		switch {
		case e.Ifindex <= 0 || e.Ifindex > math.MaxInt32:
			return fmt.Errorf("set l7 gate: bad ifindex %d", e.Ifindex)
		case e.Budget < 0 || e.Budget > L7MaxBudget:
			return fmt.Errorf("set l7 gate: ifindex %d port %d: budget %d not in [0, %d]", e.Ifindex, e.Port, e.Budget, L7MaxBudget)
		case e.Protocols == 0:
			return fmt.Errorf("set l7 gate: ifindex %d port %d: no protocols", e.Ifindex, e.Port)
		case e.Protocols&^l7AllProtocols != 0:
			return fmt.Errorf("set l7 gate: ifindex %d port %d: unknown protocols %v", e.Ifindex, e.Port, e.Protocols)
		}
		budget := e.Budget
		if budget == 0 {
			budget = L7DefaultBudget
		}
		k := key{Ifindex: uint32(e.Ifindex), Port: e.Port}
		g := want[k]
		g.Protos |= uint8(e.Protocols)
		g.Budget = max(g.Budget, uint16(budget))
		want[k] = g
	}
	// Port entries inherit their interface's all-ports entry; interface
	// entries learn that port entries exist (an all-ports entry with
	// budget 0 is "these ports only").
	for k, g := range want {
		if k.Port == 0 {
			continue
		}
		all := want[key{Ifindex: k.Ifindex}]
		g.Protos |= all.Protos
		g.Budget = max(g.Budget, all.Budget)
		want[k] = g
	}
	for k := range want {
		if k.Port == 0 {
			continue
		}
		ik := key{Ifindex: k.Ifindex}
		all := want[ik]
		all.Flags |= uint8(bpf.FlowL7GateFlagL7GATE_PORTS)
		want[ik] = all
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	// Port entries before interface entries, so an interface entry never
	// sends lookups to port entries that are not there yet.
	var errs []error
	for _, ports := range []bool{true, false} {
		for k, g := range want {
			if (k.Port != 0) == ports {
				errs = append(errs, d.objs.L7Gate.Put(k, g))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("set l7 gate: %w", err)
	}
	keep := make(map[key]bool, len(want))
	for k := range want {
		keep[k] = true
	}
	pruneErr := prune(d.objs.L7Gate, keep)
	if len(want) > 0 {
		d.cfgFlags |= cfgL7
	} else {
		d.cfgFlags &^= cfgL7
	}
	// Records keep the answer they copied from the map until the
	// generation moves on: once the map is as wanted, it sends them all
	// back to it.
	d.nextL7GateGen()
	if err := errors.Join(pruneErr, d.writeConfig()); err != nil {
		return fmt.Errorf("set l7 gate: %w", err)
	}
	return nil
}

// nextL7GateGen moves the gate's generation on, past 0, which a new
// connection record holds. Callers hold d.mu and write the config.
func (d *Datapath) nextL7GateGen() {
	d.l7GateGen++
	if d.l7GateGen == 0 {
		d.l7GateGen = 1
	}
}

// L7Limits bound the payload samples the datapath sends. 0 means
// unlimited. Bytes are payload bytes copied (at most the budget per
// sample), so a byte limit below a budget lets no full sample through.
// Samples over a limit are dropped and counted (Stats.L7DropCPURate,
// Stats.L7DropConnRate); user space sees the gap in the sequence numbers.
type L7Limits struct {
	// CPUEventsPerSecond and CPUBytesPerSecond are token buckets per CPU,
	// with a burst of one second's worth.
	CPUEventsPerSecond uint32
	CPUBytesPerSecond  uint32
	// ConnEventsPerSecond and ConnBytesPerSecond hold per connection and
	// direction in windows of one second, so that one busy connection
	// cannot use up a CPU's budget. Connections are tracked in an LRU
	// table of 16384 only while one of them is set.
	ConnEventsPerSecond uint32
	ConnBytesPerSecond  uint32
}

// DefaultL7Limits are the limits when Options.L7Limits is nil: at most
// about 20 MB/s of samples per CPU (16 MiB of payload and the headers of
// 50000 records), and no connection direction above 1000 samples or
// 512 KiB a second.
var DefaultL7Limits = L7Limits{
	CPUEventsPerSecond:  50000,
	CPUBytesPerSecond:   16 << 20,
	ConnEventsPerSecond: 1000,
	ConnBytesPerSecond:  512 << 10,
}

// SetL7Limits changes the sampling limits.
func (d *Datapath) SetL7Limits(l L7Limits) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.l7Limits = l
	if err := d.writeConfig(); err != nil {
		return fmt.Errorf("set l7 limits: %w", err)
	}
	return nil
}
