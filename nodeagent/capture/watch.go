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
	"context"
	"path"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// DefaultInterfacePatterns are the host sides of pod veths of the common
// CNIs (Cilium lxc*, Calico cali*, bridge/flannel/kindnet veth*).
var DefaultInterfacePatterns = []string{"lxc*", "veth*", "cali*"}

// WatchOptions configures WatchInterfaces.
type WatchOptions struct {
	// Patterns are path.Match globs on interface names; nil means
	// DefaultInterfacePatterns.
	Patterns []string
	// NoDefaultRoute leaves out the interfaces of the default routes.
	NoDefaultRoute bool
	// Resync is how often the full list is reconciled in case a netlink
	// notification was lost (default 30s).
	Resync time.Duration
	// OnError is told about attach/detach failures (default: logged).
	OnError func(ifname string, err error)
}

// WatchInterfaces keeps the programs attached to the interfaces that
// match until ctx is done: it reconciles on every link notification and
// every Resync, so interfaces that appear are attached and those that go
// are detached. It runs in the calling goroutine's network namespace and
// returns ctx.Err() (after detaching nothing: Close does that).
func (d *Datapath) WatchInterfaces(ctx context.Context, o WatchOptions) error {
	if o.Patterns == nil {
		o.Patterns = DefaultInterfacePatterns
	}
	if o.Resync <= 0 {
		o.Resync = 30 * time.Second
	}
	if o.OnError == nil {
		o.OnError = func(ifname string, err error) {
			klog.ErrorS(err, "Attaching capture programs failed", "interface", ifname)
		}
	}
	if err := RemoveStaleFilters(); err != nil {
		klog.ErrorS(err, "Removing stale tc filters failed")
	}
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	subscribed := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) { klog.V(2).InfoS("Link subscription error", "err", err) },
	}) == nil
	if !subscribed {
		updates = nil // resync alone
	}
	t := time.NewTicker(o.Resync)
	defer t.Stop()
	for {
		d.reconcile(o)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case _, ok := <-updates:
			if !ok {
				updates = nil
				continue
			}
			// Coalesce a burst (a pod start sends several messages).
			drain(updates)
		}
	}
}

func drain(ch chan netlink.LinkUpdate) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// reconcile attaches to wanted interfaces that are up and detaches from
// the rest.
func (d *Datapath) reconcile(o WatchOptions) {
	links, err := netlink.LinkList()
	if err != nil {
		o.OnError("", err)
		return
	}
	want := map[int]string{}
	defaults := map[int]bool{}
	if !o.NoDefaultRoute {
		defaults = defaultRouteLinks()
	}
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&unix.IFF_UP == 0 && a.OperState != netlink.OperUp {
			continue
		}
		if defaults[a.Index] || matchAny(o.Patterns, a.Name) {
			want[a.Index] = a.Name
		}
	}
	for ifindex, name := range want {
		if err := d.AttachTCX(ifindex); err != nil {
			o.OnError(name, err)
		}
	}
	for _, ifindex := range d.Attached() {
		if _, ok := want[ifindex]; !ok {
			if err := d.Detach(ifindex); err != nil {
				o.OnError("", err)
			}
		}
	}
}

func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// defaultRouteLinks returns the interfaces of IPv4 and IPv6 default
// routes (the host's uplink).
func defaultRouteLinks() map[int]bool {
	out := map[int]bool{}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := netlink.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err != nil {
			continue
		}
		for _, r := range routes {
			if r.Dst == nil || r.Dst.IP.IsUnspecified() && isZeroMask(r.Dst.Mask) {
				if r.LinkIndex > 0 {
					out[r.LinkIndex] = true
				}
				for _, nh := range r.MultiPath {
					out[nh.LinkIndex] = true
				}
			}
		}
	}
	return out
}

func isZeroMask(m []byte) bool {
	for _, b := range m {
		if b != 0 {
			return false
		}
	}
	return true
}
