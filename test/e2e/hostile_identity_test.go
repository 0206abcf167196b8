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

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"flowscope.io/flowscope/agentlease"
	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
)

// The attacks of the hardening issue, item 2, "one agent identity can rewrite every
// node's Lease", run by a compromised node-a: it holds node-a's agent
// credentials (the Kubernetes identity node-a's agent runs with, and
// node-a's serving certificate and key) and wants to answer for other
// nodes. Before agents had identities of their own, every agent was the
// one ServiceAccount allowed to update any Lease, and the server trusted
// any agent certificate of the CA at any Lease's address, so both attacks
// succeeded. The third attack, an agent returning flows of other nodes or
// namespaces, needs a lying agent: agentclient's TestListDropsForeignFlows,
// TestGetRefusesForeignFlows and TestFeedDropsForeignFlows run it.

// agentKubeconfigUser returns the user of KubectlAs whose kubeconfig is the
// one node's running agent uses: its identity, whatever local-up gave it.
func agentKubeconfigUser(t *testing.T, node string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(sys.Out, "pids", "agent-"+node+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	cmdline, err := os.ReadFile("/proc/" + strings.TrimSpace(string(raw)) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	for _, arg := range strings.Split(string(cmdline), "\x00") {
		if kc, ok := strings.CutPrefix(arg, "--kubeconfig="); ok {
			user, ok := strings.CutPrefix(filepath.Base(kc), "kubeconfig-")
			if !ok || filepath.Dir(kc) != sys.Out {
				t.Fatalf("the agent of %s runs with --kubeconfig=%s, not a kubeconfig of the suite", node, kc)
			}
			return user
		}
	}
	t.Fatalf("the agent of %s runs without --kubeconfig: %q", node, cmdline)
	return ""
}

// getLease reads a Lease as admin.
func getLease(t *testing.T, name string) *coordinationv1.Lease {
	t.Helper()
	var l coordinationv1.Lease
	if err := json.Unmarshal([]byte(kubectl(t, "get", "lease", "-n", "flowscope-system", name, "-o", "json")), &l); err != nil {
		t.Fatal(err)
	}
	return &l
}

// writeLease writes l to a file for kubectl -f.
func writeLease(t *testing.T, l *coordinationv1.Lease) string {
	t.Helper()
	l.APIVersion, l.Kind = "coordination.k8s.io/v1", "Lease"
	raw, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), l.Name+".json")
	if err := os.WriteFile(file, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestAgentMayWriteOnlyItsOwnLease: node-a's agent identity may renew its
// own Lease, and may not point node-b's Lease at node-a, create a Lease for
// another node, or hand its own Lease to another holder: kube-apiserver's
// admission (the ValidatingAdmissionPolicy flowscope-agent-leases) denies
// each. Before, all three succeeded.
func TestAgentMayWriteOnlyItsOwnLease(t *testing.T) {
	agentA := agentKubeconfigUser(t, "node-a")
	t.Logf("node-a's agent runs as the user of kubeconfig-%s", agentA)
	addrA := fmt.Sprintf("127.0.0.1:%d", sys.AgentPort(0))
	denied := func(t *testing.T, what string, out, stderr string, err error, want string) {
		t.Helper()
		if err == nil {
			t.Fatalf("node-a's agent identity %s: %s", what, out)
		}
		if !strings.Contains(stderr, "flowscope-agent-leases") || !strings.Contains(stderr, want) {
			t.Errorf("node-a's agent identity was refused, but not for the policy's reason %q: %s", want, stderr)
		}
		t.Logf("refused: %s", strings.TrimSpace(stderr))
	}
	// replaceAsA replaces the Lease name, changed by change, as node-a's
	// agent. Its agent renews a Lease every 10 s: a write that crossed a
	// renewal gets Conflict before admission sees it, and is made again
	// from the Lease as it is now.
	replaceAsA := func(t *testing.T, name string, change func(*coordinationv1.Lease)) (out, stderr string, err error) {
		t.Helper()
		for range 5 {
			l := getLease(t, name)
			change(l)
			out, stderr, err = kubectlAs(agentA, "replace", "-f", writeLease(t, l))
			if err == nil || !strings.Contains(stderr, "the object has been modified") {
				return out, stderr, err
			}
		}
		return out, stderr, err
	}

	t.Run("point node-b's Lease at node-a", func(t *testing.T) {
		addrB := getLease(t, agentlease.Name("node-b")).Annotations[agentlease.AddressAnnotation]
		t.Cleanup(func() {
			// Had it succeeded, node-b's agent would put its address back
			// at its next renewal, within 10 s.
			eventually(t, 30*time.Second, "node-b's Lease to announce node-b's agent again", func() (bool, string) {
				got := getLease(t, agentlease.Name("node-b")).Annotations[agentlease.AddressAnnotation]
				return got == addrB, got
			})
		})
		out, stderr, err := replaceAsA(t, agentlease.Name("node-b"), func(l *coordinationv1.Lease) {
			l.Annotations[agentlease.AddressAnnotation] = addrA
		})
		denied(t, "rewrote node-b's Lease", out, stderr, err, "may write only the Lease flowscope-agent-node-a, not flowscope-agent-node-b")
	})

	t.Run("create a Lease for another node", func(t *testing.T) {
		now := metav1.NewMicroTime(time.Now())
		l := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: agentlease.Name("node-y"), Namespace: "flowscope-system",
				Labels:      map[string]string{agentlease.ComponentLabel: agentlease.ComponentValue},
				Annotations: map[string]string{agentlease.AddressAnnotation: addrA}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr("node-y"), RenewTime: &now, LeaseDurationSeconds: ptr(int32(30))},
		}
		t.Cleanup(func() {
			kubectl(t, "delete", "lease", "-n", "flowscope-system", l.Name, "--ignore-not-found")
		})
		out, stderr, err := kubectlAs(agentA, "create", "-f", writeLease(t, l))
		denied(t, "created node-y's Lease", out, stderr, err, "may write only the Lease flowscope-agent-node-a, not flowscope-agent-node-y")
	})

	t.Run("hand its own Lease to node-b", func(t *testing.T) {
		out, stderr, err := replaceAsA(t, agentlease.Name("node-a"), func(l *coordinationv1.Lease) {
			l.Spec.HolderIdentity = ptr("node-b")
		})
		denied(t, "made node-b the holder of its Lease", out, stderr, err, "must hold its own Lease: spec.holderIdentity node-a, not node-b")
	})

	t.Run("renew its own Lease", func(t *testing.T) {
		// The agent renews it every 10 s as well: a conflict means it was
		// renewed in between, and the write is tried again.
		eventually(t, 30*time.Second, "node-a's agent identity to renew its own Lease", func() (bool, string) {
			l := getLease(t, agentlease.Name("node-a"))
			now := metav1.NewMicroTime(time.Now())
			l.Spec.RenewTime = &now
			_, stderr, err := kubectlAs(agentA, "replace", "-f", writeLease(t, l))
			return err == nil, stderr
		})
	})
}

// impostor is an agent's gRPC service run by the compromised node with
// node-a's certificate, answering for another node with flows it makes up.
type impostor struct {
	flow  v1alpha1.Flow
	calls atomic.Int64
}

func (i *impostor) List(_ context.Context, req *agentwire.ListRequest) (*agentwire.ListResponse, error) {
	i.calls.Add(1)
	return &agentwire.ListResponse{Flows: []v1alpha1.Flow{i.flow}, SnapshotRV: max(req.SnapshotRV, rvOfFlow(&i.flow))}, nil
}

func (i *impostor) Get(context.Context, *agentwire.GetRequest) (*agentwire.GetResponse, error) {
	i.calls.Add(1)
	return &agentwire.GetResponse{Flow: i.flow}, nil
}

func (i *impostor) Feed(stream agentwire.FeedStream) error {
	i.calls.Add(1)
	<-stream.Context().Done()
	return nil
}

func rvOfFlow(f *v1alpha1.Flow) uint64 {
	rv, _ := strconv.ParseUint(f.ResourceVersion, 10, 64)
	return rv
}

// serveImpostor serves imp with node-a's serving certificate and key, and
// accepts flowscope-apiserver's client certificate as agents do; it
// returns the address.
func serveImpostor(t *testing.T, imp *impostor) string {
	t.Helper()
	certs := filepath.Join(sys.Out, "certs")
	cert, err := tls.LoadX509KeyPair(filepath.Join(certs, "agent-node-a.crt"), filepath.Join(certs, "agent-node-a.key"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(certs, "flowscope-ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	clientCAs := x509.NewCertPool()
	if !clientCAs.AppendCertsFromPEM(caPEM) {
		t.Fatal("no certificate in flowscope-ca.crt")
	}
	creds := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs})
	srv := grpc.NewServer(append(agentwire.ServerOptions(), grpc.Creds(creds))...)
	agentwire.Register(srv, imp)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// TestAgentCertificateAnswersForItsNodeOnly: the compromised node-a serves
// with node-a's certificate at the address of another node's Lease (here
// node-z, which has no agent, so that no real agent renews the Lease
// under the test; the admission policy keeps node-a itself from writing
// it, TestAgentMayWriteOnlyItsOwnLease). flowscope-apiserver refuses the
// handshake: the certificate names node-a, not node-z. Lists say that
// node-z's agent did not answer, and the flows the impostor would have
// given for node-z are listed nowhere. Before, the server took any agent
// certificate of the CA at any address and listed them.
func TestAgentCertificateAnswersForItsNodeOnly(t *testing.T) {
	const node = "node-z"
	rv := uint64(time.Now().Add(-time.Minute).UnixMicro())
	imp := &impostor{flow: v1alpha1.Flow{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.%d", node, rv), Namespace: "shop",
			ResourceVersion: strconv.FormatUint(rv, 10), Labels: map[string]string{"app": "web"}},
		Time: metav1.NewMicroTime(time.UnixMicro(int64(rv))), NodeName: node, Verdict: v1alpha1.VerdictForwarded,
		TrafficDirection: v1alpha1.TrafficDirectionEgress,
		IP:               &v1alpha1.IP{Source: "10.244.0.11", Destination: "10.244.9.9", IPVersion: v1alpha1.IPv4},
		L4:               &v1alpha1.Layer4{Protocol: v1alpha1.ProtocolTCP, SourcePort: 40999, DestinationPort: 5432},
	}}
	addr := serveImpostor(t, imp)

	now := metav1.NewMicroTime(time.Now())
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: agentlease.Name(node), Namespace: "flowscope-system",
			Labels:      map[string]string{agentlease.ComponentLabel: agentlease.ComponentValue},
			Annotations: map[string]string{agentlease.AddressAnnotation: addr}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr(node), RenewTime: &now, LeaseDurationSeconds: ptr(int32(600))},
	}
	kubectl(t, "create", "-f", writeLease(t, l))
	t.Cleanup(func() {
		kubectl(t, "delete", "lease", "-n", "flowscope-system", l.Name, "--ignore-not-found")
		// The server drops node-z's agent with its Lease; other tests
		// expect lists without warnings.
		eventually(t, 30*time.Second, "lists without node-z", func() (bool, string) {
			_, stderr, err := kubectlAs("", "get", "flows", "-n", "shop", "-o", "name")
			return err == nil && !strings.Contains(stderr, node), stderr
		})
	})

	eventually(t, 60*time.Second, "a list to report node-z's agent missing", func() (bool, string) {
		out, stderr, err := kubectlAs("", "get", "flows", "-n", "shop", "-o", "name")
		if strings.Contains(out, imp.flow.Name) {
			t.Fatalf("the server listed %s from an agent holding node-a's certificate at node-z's address:\n%s", imp.flow.Name, out)
		}
		return err == nil && strings.Contains(stderr, "their agents did not answer") && strings.Contains(stderr, node), stderr
	})
	out, stderr, err := kubectlAs("", "get", "flow", "-n", "shop", imp.flow.Name, "-o", "name")
	if err == nil || strings.Contains(out, imp.flow.Name) {
		t.Errorf("get %s answered from the impostor: %s", imp.flow.Name, out)
	}
	t.Logf("get %s: %s", imp.flow.Name, strings.TrimSpace(stderr))
	if n := imp.calls.Load(); n != 0 {
		t.Errorf("the server called the impostor %d times; want the handshake refused", n)
	}
}
