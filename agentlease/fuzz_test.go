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

package agentlease

import (
	"net"
	"strconv"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// FuzzLease: whatever a Lease's annotations and holder say (any agent, or
// anyone who may write Leases, writes them), Live and Applied never panic;
// a live Lease names its own holder's node and an address the server can
// dial, host:port; Applied reports a map only when it says so.
func FuzzLease(f *testing.F) {
	f.Add("node-a", "flowscope-agent-node-a", "127.0.0.1:6540", `{"uid-1":3}`, int32(15))
	f.Add("node-a", "flowscope-agent-node-a", "[fd00::1]:443", `{}`, int32(-5))
	f.Add("node-a", "flowscope-agent-node-a", "evil", `null`, int32(0))
	f.Add("node-b", "flowscope-agent-node-a", ":80", `{"a":"b"}`, int32(1))
	f.Add("x", "flowscope-agent-x", "host:0", `[`, int32(1<<30))
	f.Fuzz(func(t *testing.T, holder, name, address, applied string, seconds int32) {
		now := time.Now()
		l := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{AddressAnnotation: address, AppliedAnnotation: applied}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(holder), LeaseDurationSeconds: ptr.To(seconds),
				RenewTime: ptr.To(metav1.NewMicroTime(now))},
		}
		node, addr, live := Live(l, now)
		if node != "" || addr != "" {
			if node != holder || name != Name(holder) || addr != address {
				t.Fatalf("Live = %q, %q for holder %q, name %q, address %q", node, addr, holder, name, address)
			}
			host, port, err := net.SplitHostPort(addr)
			if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
				t.Fatalf("Live accepted the address %q", addr)
			}
		} else if live {
			t.Fatal("live without a node")
		}
		if m, ok := Applied(l); ok != (m != nil) {
			t.Fatalf("Applied = %v, %v", m, ok)
		}
	})
}
