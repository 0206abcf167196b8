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
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
)

// attachDrops attaches the tp_btf/kfree_skb program. tp_btf (rather than
// the classic tracepoint) gives typed access to the skb and the reason
// argument; it needs kernel BTF, which CO-RE needs anyway.
func attachDrops(prog *ebpf.Program) (link.Link, error) {
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		return nil, fmt.Errorf("attach kfree_skb: %w", err)
	}
	return l, nil
}

// dropReasons names enum skb_drop_reason values from the running kernel's
// BTF: the numbering changes between kernel versions, so a table compiled
// into the agent would lie.
type dropReasons struct {
	once  sync.Once
	names map[uint32]string
}

const dropReasonPrefix = "SKB_DROP_REASON_"

func (r *dropReasons) load() {
	r.names = map[uint32]string{}
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return
	}
	var enum *btf.Enum
	if err := spec.TypeByName("skb_drop_reason", &enum); err != nil {
		return
	}
	r.names = reasonNames(enum)
}

func reasonNames(enum *btf.Enum) map[uint32]string {
	names := make(map[uint32]string, len(enum.Values))
	for _, v := range enum.Values {
		names[uint32(v.Value)] = strings.TrimPrefix(v.Name, dropReasonPrefix)
	}
	return names
}

// name returns the reason's name, or its number when the kernel has none.
func (r *dropReasons) name(reason uint32) string {
	if r == nil {
		return strconv.FormatUint(uint64(reason), 10)
	}
	r.once.Do(r.load)
	if n, ok := r.names[reason]; ok {
		return n
	}
	return strconv.FormatUint(uint64(reason), 10)
}
