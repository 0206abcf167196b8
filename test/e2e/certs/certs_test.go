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

package certs

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"

	"flowscope.io/flowscope/agentwire"
	"flowscope.io/flowscope/internal/tlsutil"
	"flowscope.io/flowscope/test/e2e/framework"
)

const ns = "flowscope-system"

// The objects flowscope-apiserver keeps (apiserver/selfcerts); the test
// names them itself, as a user would.
const (
	caSecret      = "flowscope-ca"
	servingSecret = "flowscope-apiserver-tls"
	clientSecret  = "flowscope-agent-client-tls"
	bundleMap     = "flowscope-ca-bundle"
	signer        = "flowscope.io/agent-serving"
	apiService    = "v1alpha1.flows.flowscope.io"
)

// kube returns a client as user ("" is admin).
func kube(t *testing.T, user string) kubernetes.Interface {
	t.Helper()
	kc := filepath.Join(sys.Out, "kubeconfig")
	if user != "" {
		kc += "-" + user
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func secret(t *testing.T, name string) *corev1.Secret {
	t.Helper()
	s, err := kube(t, "").CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func parseCerts(t *testing.T, what string, pemBytes []byte) []*x509.Certificate {
	t.Helper()
	certs, err := certutil.ParseCertsPEM(pemBytes)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return certs
}

// bundle returns the CA bundle the agents read.
func bundle(t *testing.T) ([]byte, *x509.CertPool) {
	t.Helper()
	cm, err := kube(t, "").CoreV1().ConfigMaps(ns).Get(context.Background(), bundleMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(cm.Data["ca.crt"])) {
		t.Fatal("no certificate in the bundle")
	}
	return []byte(cm.Data["ca.crt"]), pool
}

// apiServiceCABundle returns the APIService's caBundle and whether it is
// Available.
func apiServiceCABundle(t *testing.T) ([]byte, bool) {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(sys.Out, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := dyn.Resource(schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}).
		Get(context.Background(), apiService, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b64, _, _ := unstructured.NestedString(svc.Object, "spec", "caBundle")
	ca, err := decodeBase64(b64)
	if err != nil {
		t.Fatal(err)
	}
	conds, _, _ := unstructured.NestedSlice(svc.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Available" && m["status"] == "True" {
			return ca, true
		}
	}
	return ca, false
}

// peerCertificate returns the serving certificate at port for serverName,
// unverified: with TLS 1.3 the client's part of the handshake completes
// before the server has looked at the client's certificate, if any.
func peerCertificate(t *testing.T, port int, serverName string) *x509.Certificate {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", fmt.Sprintf("127.0.0.1:%d", port),
		&tls.Config{ServerName: serverName, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}) //nolint:gosec // inspected, not trusted
	if err != nil {
		t.Fatalf("TLS to 127.0.0.1:%d: %v", port, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// TestFirstStart: the system was started with no certificate for Flowscope;
// flowscope-apiserver made the CA, its certificates and the caBundle, the
// agents' requests were approved for their own nodes, and flows are
// listed through kube-apiserver.
func TestFirstStart(t *testing.T) {
	for _, name := range []string{caSecret, servingSecret, clientSecret} {
		s := secret(t, name)
		if s.Labels["app.kubernetes.io/managed-by"] != "flowscope-apiserver" {
			t.Errorf("Secret %s was not made by flowscope-apiserver: labels %v", name, s.Labels)
		}
	}
	framework.Eventually(t, 30*time.Second, "the APIService Available with the bundle as caBundle", func() (bool, string) {
		ca, available := apiServiceCABundle(t)
		want, _ := bundle(t)
		return available && string(ca) == string(want), fmt.Sprintf("available %v, caBundle equal %v", available, string(ca) == string(want))
	})
	_, pool := bundle(t)
	serving := peerCertificate(t, sys.PortBase+4, "api.flowscope-system.svc")
	if _, err := serving.Verify(x509.VerifyOptions{Roots: pool, DNSName: "api.flowscope-system.svc"}); err != nil {
		t.Errorf("flowscope-apiserver's serving certificate: %v", err)
	}
	for i, node := range sys.Nodes {
		name := tlsutil.AgentServerName(node)
		cert := peerCertificate(t, sys.AgentPort(i), name)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("agent %s: %v", node, err)
		}
		if err := tlsutil.CheckAgentCertificate(cert, node); err != nil {
			t.Errorf("agent %s: %v", node, err)
		}
	}
	csrs, err := kube(t, "").CertificatesV1().CertificateSigningRequests().List(context.Background(),
		metav1.ListOptions{FieldSelector: "spec.signerName=" + signer})
	if err != nil {
		t.Fatal(err)
	}
	issued := map[string]bool{}
	for _, csr := range csrs.Items {
		if csr.Spec.Username != "system:serviceaccount:flowscope-system:flowscope-agent" {
			continue // other tests' requests
		}
		for _, c := range csr.Status.Conditions {
			if c.Type == certificatesv1.CertificateApproved && len(csr.Status.Certificate) > 0 {
				issued[strings.Join(csr.Spec.Extra["authentication.kubernetes.io/node-name"], ",")] = true
			}
		}
	}
	for _, node := range sys.Nodes {
		if !issued[node] {
			t.Errorf("no issued request of the agent of %s among %d", node, len(csrs.Items))
		}
	}
	sys.SeedBase(t)
}

// csrPEM is a request for the serving certificate of node's agent.
func csrPEM(t *testing.T, node string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	name := tlsutil.AgentServerName(node)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// TestForeignRequestsDenied: the agent of node-a asking for node-b's
// certificate, and an administrator asking for node-a's, are denied: only
// an agent's token bound to its pod says which node it is on.
func TestForeignRequestsDenied(t *testing.T) {
	for _, tc := range []struct{ name, user, node, reason string }{
		{"agent of node-a for node-b", "agent-node-a", "node-b", `the common name is "node-b.agents.flowscope.io", not "node-a.agents.flowscope.io"`},
		{"admin for node-a", "", "node-a", "not by the agents' ServiceAccount"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := kube(t, tc.user).CertificatesV1().CertificateSigningRequests()
			csr, err := c.Create(context.Background(), &certificatesv1.CertificateSigningRequest{
				ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-foreign-"},
				Spec: certificatesv1.CertificateSigningRequestSpec{Request: csrPEM(t, tc.node), SignerName: signer,
					Usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			framework.Eventually(t, 30*time.Second, "the request denied", func() (bool, string) {
				got, err := kube(t, "").CertificatesV1().CertificateSigningRequests().Get(context.Background(), csr.Name, metav1.GetOptions{})
				if err != nil {
					return false, err.Error()
				}
				for _, c := range got.Status.Conditions {
					if c.Type == certificatesv1.CertificateDenied && strings.Contains(c.Message, tc.reason) {
						return len(got.Status.Certificate) == 0, "denied, with a certificate"
					}
				}
				return false, fmt.Sprintf("%+v", got.Status.Conditions)
			})
		})
	}
}

// selfSignedClient is a client certificate with the allowed name
// flowscope-apiserver, from a CA of its own.
func selfSignedClient(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "flowscope-apiserver"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// agentClient returns the aggregated server's TLS configuration toward
// node's agent, presenting cert.
func agentClient(pool *x509.CertPool, node string, cert tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: pool, ServerName: tlsutil.AgentServerName(node), MinVersion: tls.VersionTLS13,
		NextProtos:           []string{"h2"},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }}
}

// handshakeAlert returns the agent's answer to a handshake: nil when it
// accepted the client, else the alert it sent.
func handshakeAlert(t *testing.T, port int, cfg *tls.Config) error {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", fmt.Sprintf("127.0.0.1:%d", port), cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	var b [1]byte
	_, err = conn.Read(b[:])
	var nerr net.Error
	if err == nil || errors.As(err, &nerr) && nerr.Timeout() {
		return nil
	}
	return err
}

// TestAgentRefusesAnotherCA: a client certificate with the allowed name
// from a CA of its own is refused at the handshake, and the agent logs
// it; the aggregated server's own certificate, from the Secret, is
// accepted and may list.
func TestAgentRefusesAnotherCA(t *testing.T) {
	_, pool := bundle(t)
	node := sys.Nodes[0]
	port := sys.AgentPort(0)
	alert := handshakeAlert(t, port, agentClient(pool, node, selfSignedClient(t)))
	if alert == nil || !strings.Contains(alert.Error(), "remote error: tls: unknown certificate authority") {
		t.Errorf("handshake with a client of another CA: %v; want the agent's alert unknown certificate authority", alert)
	}
	logFile := filepath.Join(sys.Out, "logs", "agent-"+node+".log")
	framework.Eventually(t, 10*time.Second, "the agent to log the refused handshake", func() (bool, string) {
		raw, _ := os.ReadFile(logFile)
		return strings.Contains(string(raw), `"Refused a TLS handshake"`) &&
			strings.Contains(string(raw), "certificate signed by unknown authority"), "no such line in " + logFile
	})

	s := secret(t, clientSecret)
	own, err := tls.X509KeyPair(s.Data["tls.crt"], s.Data["tls.key"])
	if err != nil {
		t.Fatal(err)
	}
	if alert := handshakeAlert(t, port, agentClient(pool, node, own)); alert != nil {
		t.Fatalf("the agent refused the aggregated server's certificate: %v", alert)
	}
	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", port),
		append(agentwire.DialOptions(), grpc.WithTransportCredentials(credentials.NewTLS(agentClient(pool, node, own))))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := agentwire.NewClient(conn).List(ctx, &agentwire.ListRequest{Limit: 1}); err != nil {
		t.Fatalf("List with the aggregated server's certificate: %v", err)
	}
}

// adminToken reads admin's bearer token from the local system's token file.
func adminToken(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(sys.Out, "certs", "tokens.csv"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if f := strings.Split(l, ","); len(f) > 1 && f[1] == "admin" {
			return f[0]
		}
	}
	t.Fatal("no token of admin")
	return ""
}

// TestSecondReplica starts another flowscope-apiserver with the same
// flags: it does not lead, writes nothing, and serves with the
// certificates the first one keeps, verified by the bundle, and is ready
// (its check flowscope-certificates included).
func TestSecondReplica(t *testing.T) {
	pid, err := os.ReadFile(filepath.Join(sys.Out, "pids", "flowscope-apiserver.pid"))
	if err != nil {
		t.Fatal(err)
	}
	cmdline, err := os.ReadFile("/proc/" + strings.TrimSpace(string(pid)) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	for i, a := range args {
		if strings.HasPrefix(a, "--secure-port=") {
			args[i] = "--secure-port=" + strconv.Itoa(port)
		}
	}
	const name = "flowscope-apiserver-replica"
	cmd, exited := sys.Spawn(t, name, args)
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	})
	token := adminToken(t)
	framework.Eventually(t, 60*time.Second, "the second replica ready, serving a certificate of the bundle", func() (bool, string) {
		select {
		case <-exited:
			t.Fatalf("the second replica exited; see %s", filepath.Join(sys.Out, "logs", name+".log"))
		default:
		}
		_, pool := bundle(t)
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: pool, ServerName: "api.flowscope-system.svc", MinVersion: tls.VersionTLS12}}}
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/readyz?verbose", port), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && strings.Contains(string(body), "[+]flowscope-certificates ok"), string(body)
	})
	raw, _ := os.ReadFile(filepath.Join(sys.Out, "logs", name+".log"))
	if strings.Contains(string(raw), `"Managing the certificates"`) {
		t.Error("the second replica leads the certificates while the first runs")
	}
	if !strings.Contains(string(raw), `"Loaded the agent client certificate and CA bundle"`) {
		t.Error("the second replica did not log loading the agent client certificate")
	}
}

// agentReadyz returns the status and body of the i-th agent's /readyz.
func agentReadyz(t *testing.T, i int) (int, string) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", sys.PortBase+200+i))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// TestExpiredCertificateFailsReadiness stops flowscope-apiserver for
// longer than a certificate lives: the agents' certificates expire, and
// their readiness fails saying so, with a log line; once the server is
// back it signs the requests that waited, and the agents are ready and
// listed again without a restart.
func TestExpiredCertificateFailsReadiness(t *testing.T) {
	for i := range sys.Nodes {
		if code, body := agentReadyz(t, i); code != http.StatusOK {
			t.Fatalf("agent %d not ready before the test: %d %s", i, code, body)
		}
	}
	restart := sys.Stop(t, "flowscope-apiserver")
	restarted := false
	t.Cleanup(func() { // for the next tests, when this one fails
		if !restarted {
			restart()
		}
	})
	framework.Eventually(t, 2*time.Minute, "the agents' readiness to fail on their expired certificates", func() (bool, string) {
		var last string
		for i := range sys.Nodes {
			code, body := agentReadyz(t, i)
			last = fmt.Sprintf("%d %s", code, body)
			if code != http.StatusServiceUnavailable || !strings.Contains(body, "expired at") {
				return false, last
			}
		}
		return true, last
	})
	raw, _ := os.ReadFile(filepath.Join(sys.Out, "logs", "agent-"+sys.Nodes[0]+".log"))
	if !strings.Contains(string(raw), `"Not ready: flowscope-apiserver cannot call this agent with these certificates"`) {
		t.Error("the agent did not log why it is not ready")
	}
	restart() // waits until flows are listed with no agent missing
	restarted = true
	for i := range sys.Nodes {
		if code, body := agentReadyz(t, i); code != http.StatusOK {
			t.Errorf("agent %d not ready after the server came back: %d %s", i, code, body)
		}
	}
}

// watcher runs `kubectl get flows -A -w` and collects the source ports it
// prints.
type watcher struct {
	cmd    *exec.Cmd
	stderr strings.Builder
	done   chan struct{}

	mu   sync.Mutex
	seen map[int32]bool
}

func startWatch(t *testing.T) *watcher {
	t.Helper()
	w := &watcher{seen: map[int32]bool{}, done: make(chan struct{})}
	w.cmd = exec.Command(sys.Kubectl, "--kubeconfig", filepath.Join(sys.Out, "kubeconfig"), "get", "flows", "-A", "-w",
		"--field-selector", "since=1m", "-o", "custom-columns=SPORT:.l4.sourcePort", "--no-headers")
	w.cmd.Stderr = &w.stderr
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if p, err := strconv.ParseInt(strings.TrimSpace(sc.Text()), 10, 32); err == nil {
				w.mu.Lock()
				w.seen[int32(p)] = true
				w.mu.Unlock()
			}
		}
		_ = w.cmd.Wait()
		close(w.done)
	}()
	t.Cleanup(func() {
		_ = w.cmd.Process.Kill()
		<-w.done
	})
	return w
}

func (w *watcher) saw(port int32) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen[port]
}

func (w *watcher) running() error {
	select {
	case <-w.done:
		return fmt.Errorf("kubectl get flows -w exited: %v: %s", w.cmd.ProcessState, w.stderr.String())
	default:
		return nil
	}
}

// caName returns the common name of the CA that signs now and whether a
// previous one is still trusted.
func caName(t *testing.T) (string, bool) {
	t.Helper()
	s := secret(t, caSecret)
	_, previous := s.Data["previous.crt"]
	return parseCerts(t, "CA", s.Data["tls.crt"])[0].Subject.CommonName, previous
}

// TestRotationKeepsWatch keeps `kubectl get flows -w` running while the CA
// is replaced, the old one expires and every certificate is reissued by
// the new one (a rotation of the CA every two minutes, of the
// certificates every 40 to 54 s): a flow replayed every second must reach
// the watch within 15 s, and the watch must not end or print an error.
func TestRotationKeepsWatch(t *testing.T) {
	w := startWatch(t)
	first, _ := caName(t)
	t.Logf("the CA is %s", first)

	var (
		sent      []int32
		sentAt    = map[int32]time.Time{}
		sport     = int32(45000)
		rotatedTo string
		done      bool
	)
	deadline := time.Now().Add(7 * time.Minute)
	for !done {
		if time.Now().After(deadline) {
			t.Fatalf("no complete rotation within 7 minutes (CA %s, rotated to %q)", first, rotatedTo)
		}
		node := sys.Nodes[int(sport)%len(sys.Nodes)]
		sys.Replay(t, framework.Seed{Node: node, Sport: sport,
			Flow: framework.MkFlow(node, sport, 8080, "TCP", "Egress", "Forwarded", framework.Web1, framework.API1)})
		sent, sentAt[sport] = append(sent, sport), time.Now()
		sport++
		for _, p := range sent {
			if !w.saw(p) && time.Since(sentAt[p]) > 15*time.Second {
				t.Fatalf("the flow of source port %d, replayed %s ago, has not reached the watch (CA %s, rotated to %q)",
					p, time.Since(sentAt[p]).Round(time.Second), first, rotatedTo)
			}
		}
		if err := w.running(); err != nil {
			t.Fatal(err)
		}
		cur, previous := caName(t)
		if cur != first && rotatedTo == "" {
			rotatedTo = cur
			t.Logf("%s: the CA rotated to %s", time.Now().Format(time.TimeOnly), cur)
		}
		// Done once the old CA is gone and everything chains to the new
		// one alone.
		if rotatedTo != "" && !previous {
			_, pool := bundle(t)
			done = true
			for i, node := range sys.Nodes {
				name := tlsutil.AgentServerName(node)
				if _, err := peerCertificate(t, sys.AgentPort(i), name).Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
					done = false
				}
			}
			client := parseCerts(t, "client", secret(t, clientSecret).Data["tls.crt"])[0]
			if _, err := client.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				done = false
			}
			if done {
				t.Logf("%s: the old CA expired and every certificate chains to %s", time.Now().Format(time.TimeOnly), rotatedTo)
			}
		}
		time.Sleep(time.Second)
	}
	// The last flows, sent just now.
	framework.Eventually(t, 15*time.Second, "every replayed flow in the watch", func() (bool, string) {
		for _, p := range sent {
			if !w.saw(p) {
				return false, fmt.Sprintf("source port %d missing", p)
			}
		}
		return true, ""
	})
	if err := w.running(); err != nil {
		t.Fatal(err)
	}
	if s := w.stderr.String(); s != "" {
		t.Errorf("kubectl get flows -w printed to stderr: %s", s)
	}
	t.Logf("%d flows reached the watch across the rotation", len(sent))
}

func decodeBase64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }
