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
	"net/netip"

	"flowscope.io/flowscope/bpf"
)

// Port selects an L4 port at either end; Protocol 0 means any of TCP,
// UDP, UDP-Lite and SCTP.
type Port struct {
	Port     uint16
	Protocol uint8
}

// Selection is what --capture=selected captures: packets matching any
// selector (ORed). In "all" mode it is ignored.
type Selection struct {
	// All captures everything; the selectors below are then unused.
	All        bool
	Interfaces []int
	// Prefixes match either address; a single address is a /32 or /128.
	Prefixes []netip.Prefix
	Ports    []Port
}

// SetSelection reprograms the filter maps. The maps are updated before
// the mode flips to selected, so a packet never sees an empty selection
// while switching; entries no longer selected are removed afterwards.
// Packets of connections that stop being selected stop counting, and
// their records end by idle expiry.
func (d *Datapath) SetSelection(sel Selection) error {
	d.mu.Lock()
	defer d.mu.Unlock()

	ifaces := map[uint32]bool{}
	for _, i := range sel.Interfaces {
		if i <= 0 {
			return fmt.Errorf("set selection: bad ifindex %d", i)
		}
		ifaces[uint32(i)] = true
	}
	addrs := map[bpf.FlowSelAddrKey]bool{}
	for _, p := range sel.Prefixes {
		if !p.IsValid() {
			return fmt.Errorf("set selection: invalid prefix %v", p)
		}
		p = p.Masked()
		bits := p.Bits()
		if p.Addr().Is4() {
			bits += 96 // stored IPv4-mapped, as the datapath does
		}
		addrs[bpf.FlowSelAddrKey{Prefixlen: uint32(bits), Addr: addr16(p.Addr())}] = true
	}
	ports := map[bpf.FlowSelPortKey]bool{}
	for _, p := range sel.Ports {
		ports[bpf.FlowSelPortKey{Port: p.Port, Proto: p.Protocol}] = true
	}

	var errs []error
	one := uint8(1)
	for k := range ifaces {
		errs = append(errs, d.objs.SelIfaces.Put(k, one))
	}
	for k := range addrs {
		errs = append(errs, d.objs.SelAddrs.Put(k, one))
	}
	for k := range ports {
		errs = append(errs, d.objs.SelPorts.Put(k, one))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("set selection: %w", err)
	}
	d.selMode = captureSelected
	if sel.All {
		d.selMode = captureAll
	}
	// The union of old and new kinds until the stale entries are pruned
	// would be as correct; the new kinds alone only skip maps whose
	// entries are all about to go.
	d.selKinds = 0
	for bit, n := range map[uint32]int{1: len(ifaces), 2: len(addrs), 4: len(ports)} { // SEL_IFACES, SEL_ADDRS, SEL_PORTS
		if n > 0 {
			d.selKinds |= bit
		}
	}
	if err := d.writeConfig(); err != nil {
		return fmt.Errorf("set selection: %w", err)
	}
	errs = append(errs, prune(d.objs.SelIfaces, ifaces))
	errs = append(errs, prune(d.objs.SelAddrs, addrs))
	errs = append(errs, prune(d.objs.SelPorts, ports))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("set selection: %w", err)
	}
	return nil
}

type mapLike interface {
	Delete(key any) error
}

// prune deletes the keys of m that are not in keep.
func prune[K comparable](m interface {
	mapLike
	NextKey(key, nextKeyOut any) error
}, keep map[K]bool) error {
	var stale []K
	var k, next K
	var cur any // nil: start from the first key
	for {
		if err := m.NextKey(cur, &next); err != nil {
			break // ErrKeyNotExist: end of map
		}
		if !keep[next] {
			stale = append(stale, next)
		}
		k = next
		cur = k
	}
	var errs []error
	for _, s := range stale {
		errs = append(errs, m.Delete(s))
	}
	return errors.Join(errs...)
}
