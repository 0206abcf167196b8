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
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// attachment is what holds one interface's programs in place: two TCX
// links, or two clsact filters on kernels without TCX.
type attachment struct {
	links   []link.Link
	filters []*netlink.BpfFilter
}

// filterPriority and filterHandle are fixed so that a restarted agent
// replaces its own clsact filters instead of stacking a second pair.
const (
	filterPriority = 0xf10
	filterHandle   = 0xf10
	filterPrefix   = "flowscope_"
)

// AttachTCX attaches the ingress and egress programs to the interface in
// the calling thread's network namespace, first in the TCX chain
// (link.Head) so other programs' verdicts never hide packets from us.
// Interfaces without an Ethernet header get the L3 variants. Attaching an
// attached interface is a no-op. Without TCX (kernel < 6.6) it falls back
// to a clsact qdisc and direct-action filters.
func (d *Datapath) AttachTCX(ifindex int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.attached[ifindex]; ok {
		return nil
	}
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return fmt.Errorf("attach %d: %w", ifindex, err)
	}
	ingress, egress := d.objs.FlowscopeIngress, d.objs.FlowscopeEgress
	if isL3(l) {
		ingress, egress = d.objs.FlowscopeL3Ingress, d.objs.FlowscopeL3Egress
	}
	var a *attachment
	if !d.opts.ForceNetlink {
		a, err = attachTCX(ifindex, ingress, egress)
		if err == nil {
			d.attached[ifindex] = a
			return nil
		}
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("attach %s: %w", l.Attrs().Name, err)
		}
	}
	if a, err = attachClsact(ifindex, ingress, egress); err != nil {
		return fmt.Errorf("attach %s: %w", l.Attrs().Name, err)
	}
	d.attached[ifindex] = a
	return nil
}

// isL3 tells devices whose packets start at the IP header (tun,
// wireguard, ipip, ...) from Ethernet-framed ones. Loopback carries a
// (zero) Ethernet header.
func isL3(l netlink.Link) bool {
	switch l.Attrs().EncapType {
	case "ether", "loopback", "":
		return false
	}
	return true
}

func attachTCX(ifindex int, ingress, egress *ebpf.Program) (*attachment, error) {
	a := &attachment{}
	for _, p := range []struct {
		prog *ebpf.Program
		at   ebpf.AttachType
	}{{ingress, ebpf.AttachTCXIngress}, {egress, ebpf.AttachTCXEgress}} {
		l, err := link.AttachTCX(link.TCXOptions{
			Interface: ifindex,
			Program:   p.prog,
			Attach:    p.at,
			Anchor:    link.Head(),
		})
		if err != nil {
			a.close()
			return nil, err
		}
		a.links = append(a.links, l)
	}
	return a, nil
}

// attachClsact uses vishvananda/netlink: cilium/ebpf has no tc netlink
// code, and the agent needs netlink for the interface watcher anyway.
func attachClsact(ifindex int, ingress, egress *ebpf.Program) (*attachment, error) {
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: ifindex,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
	// Replace keeps an existing clsact (and other tools' filters on it).
	if err := netlink.QdiscReplace(qdisc); err != nil {
		return nil, fmt.Errorf("add clsact: %w", err)
	}
	a := &attachment{}
	for _, p := range []struct {
		prog   *ebpf.Program
		parent uint32
		name   string
	}{
		{ingress, netlink.HANDLE_MIN_INGRESS, filterPrefix + "ingress"},
		{egress, netlink.HANDLE_MIN_EGRESS, filterPrefix + "egress"},
	} {
		f := &netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{
				LinkIndex: ifindex,
				Parent:    p.parent,
				Handle:    filterHandle,
				Protocol:  unix.ETH_P_ALL,
				Priority:  filterPriority,
			},
			Fd:           p.prog.FD(),
			Name:         p.name,
			DirectAction: true,
		}
		if err := netlink.FilterReplace(f); err != nil {
			a.close()
			return nil, fmt.Errorf("add %s filter: %w", p.name, err)
		}
		a.filters = append(a.filters, f)
	}
	return a, nil
}

func (a *attachment) close() error {
	var errs []error
	for _, l := range a.links {
		errs = append(errs, l.Close())
	}
	for _, f := range a.filters {
		// The interface may be gone already, taking its filters along.
		if err := netlink.FilterDel(f); err != nil && !errors.Is(err, unix.ENODEV) &&
			!errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Detach removes the programs from the interface. Detaching an interface
// that is not attached is a no-op.
func (d *Datapath) Detach(ifindex int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.detachLocked(ifindex)
}

func (d *Datapath) detachLocked(ifindex int) error {
	a, ok := d.attached[ifindex]
	if !ok {
		return nil
	}
	delete(d.attached, ifindex)
	if err := a.close(); err != nil {
		return fmt.Errorf("detach %d: %w", ifindex, err)
	}
	return nil
}

// Attached returns the attached interfaces' indexes.
func (d *Datapath) Attached() []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]int, 0, len(d.attached))
	for i := range d.attached {
		out = append(out, i)
	}
	return out
}

// RemoveStaleFilters deletes clsact filters a previous agent left behind
// (TCX links die with their process; tc filters do not). Call it once at
// start, before attaching.
func RemoveStaleFilters() error {
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	var errs []error
	for _, l := range links {
		for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
			filters, err := netlink.FilterList(l, parent)
			if err != nil {
				continue // no clsact on this link
			}
			for _, f := range filters {
				bf, ok := f.(*netlink.BpfFilter)
				if ok && strings.HasPrefix(bf.Name, filterPrefix) {
					errs = append(errs, netlink.FilterDel(bf))
				}
			}
		}
	}
	return errors.Join(errs...)
}
