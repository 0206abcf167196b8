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

package selfcerts

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"net"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	certutil "k8s.io/client-go/util/cert"

	"flowscope.io/flowscope/internal/tlsutil"
)

const ns = "flowscope-system"

func testOptions() Options {
	o := DefaultOptions(ns)
	o.CertValidity = time.Minute
	o.CAValidity = 3 * time.Minute
	return o
}

// clock is a settable time.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestController(t *testing.T, o Options) (*Controller, *kubefake.Clientset, *clock) {
	t.Helper()
	kube := kubefake.NewClientset()
	svc := map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": map[string]any{"name": o.APIService},
		"spec":     map[string]any{"group": "flows.flowscope.io", "version": "v1alpha1"},
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{apiServices: "APIServiceList"}, unstructuredObj(svc))
	c := NewController(kube, dyn, o)
	clk := &clock{t: time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)}
	c.now = clk.now
	return c, kube, clk
}

func secretData(t *testing.T, kube *kubefake.Clientset, name string) map[string][]byte {
	t.Helper()
	s, err := kube.CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Data
}

func certsOf(t *testing.T, pemBytes []byte) []*x509.Certificate {
	t.Helper()
	certs, err := certutil.ParseCertsPEM(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

func names(certs []*x509.Certificate) string {
	var out []string
	for _, c := range certs {
		out = append(out, c.Subject.CommonName)
	}
	return strings.Join(out, ",")
}

// syncAt syncs at t.
func syncAt(t *testing.T, c *Controller, clk *clock, at time.Time) {
	t.Helper()
	clk.t = at
	if err := c.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestRotation follows a CA through its life with a one-minute certificate
// validity and a three-minute CA: made at the first sync, the bundle
// everywhere (Secrets, ConfigMap, APIService); rotated 66 s before it
// expires (validity and 6 s of propagation), the new CA trusted at once
// and signing 6 s later, the old one trusted until it expires; and the
// certificates renewed at two thirds of their lifetime, never outliving
// their CA.
func TestRotation(t *testing.T) {
	o := testOptions()
	c, kube, clk := newTestController(t, o)
	start := clk.t
	syncAt(t, c, clk, start)

	ca := certsOf(t, secretData(t, kube, CASecret)["tls.crt"])[0]
	for _, name := range []string{ServingSecret, AgentClientSecret} {
		d := secretData(t, kube, name)
		if got := names(certsOf(t, d["ca.crt"])); got != ca.Subject.CommonName {
			t.Errorf("%s: bundle %s, want %s", name, got, ca.Subject.CommonName)
		}
		leaf := certsOf(t, d["tls.crt"])[0]
		if err := leaf.CheckSignatureFrom(ca); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	serving := certsOf(t, secretData(t, kube, ServingSecret)["tls.crt"])[0]
	if got := strings.Join(serving.DNSNames, ","); got != "api.flowscope-system.svc,api.flowscope-system.svc.cluster.local,localhost" {
		t.Errorf("serving DNS names %s", got)
	}
	if len(serving.IPAddresses) != 1 || !serving.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("serving IPs %v", serving.IPAddresses)
	}
	cm, err := kube.CoreV1().ConfigMaps(ns).Get(context.Background(), BundleConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(certsOf(t, []byte(cm.Data[BundleKey]))); got != ca.Subject.CommonName {
		t.Errorf("ConfigMap bundle %s", got)
	}

	// 30 s: nothing to renew yet (a third of 66 s is left at 44 s).
	syncAt(t, c, clk, start.Add(30*time.Second))
	if again := certsOf(t, secretData(t, kube, ServingSecret)["tls.crt"])[0]; !again.Equal(serving) {
		t.Error("renewed the serving certificate at 30s")
	}
	// 45 s: renewed.
	syncAt(t, c, clk, start.Add(45*time.Second))
	if again := certsOf(t, secretData(t, kube, ServingSecret)["tls.crt"])[0]; again.Equal(serving) {
		t.Error("did not renew the serving certificate at 45s")
	}

	// 1m55s: the CA is rotated (3m - 66 s = 1m54s).
	syncAt(t, c, clk, start.Add(115*time.Second))
	d := secretData(t, kube, CASecret)
	next := certsOf(t, d["tls.crt"])[0]
	if next.Equal(ca) {
		t.Fatal("the CA was not rotated at 1m55s")
	}
	if prev := certsOf(t, d["previous.crt"])[0]; !prev.Equal(ca) {
		t.Errorf("previous CA %s, want %s", prev.Subject.CommonName, ca.Subject.CommonName)
	}
	wantBundle := next.Subject.CommonName + "," + ca.Subject.CommonName
	if got := names(certsOf(t, secretData(t, kube, AgentClientSecret)["ca.crt"])); got != wantBundle {
		t.Errorf("bundle after rotation %s, want %s", got, wantBundle)
	}
	// Within the propagation delay the old CA signs, and its certificates
	// end with it.
	cas := c.current()
	if s := cas.signer(clk.t, o); s.cert.Equal(next) {
		t.Error("the new CA signs before it propagated")
	}
	// 2m05s: the new CA signs.
	syncAt(t, c, clk, start.Add(125*time.Second))
	if s := c.current().signer(clk.t, o); !s.cert.Equal(next) {
		t.Error("the new CA does not sign after the propagation delay")
	}
	// 3m01s: the old CA expired and left the bundle; every certificate
	// chains to the new one.
	syncAt(t, c, clk, start.Add(181*time.Second))
	for _, name := range []string{ServingSecret, AgentClientSecret} {
		d := secretData(t, kube, name)
		if got := names(certsOf(t, d["ca.crt"])); got != next.Subject.CommonName {
			t.Errorf("%s: bundle %s after the old CA expired", name, got)
		}
		leaf := certsOf(t, d["tls.crt"])[0]
		if err := leaf.CheckSignatureFrom(next); err != nil {
			t.Errorf("%s after the old CA expired: %v", name, err)
		}
		if leaf.NotAfter.After(next.NotAfter) {
			t.Errorf("%s outlives its CA", name)
		}
	}
	if _, ok := secretData(t, kube, CASecret)["previous.crt"]; ok {
		t.Error("the expired CA is still kept")
	}
}

// TestAPIServiceCABundle checks the caBundle kube-apiserver verifies the
// server with.
func TestAPIServiceCABundle(t *testing.T) {
	c, kube, clk := newTestController(t, testOptions())
	syncAt(t, c, clk, clk.t)
	svc, err := c.dynamic.Resource(apiServices).Get(context.Background(), c.o.APIService, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, _, _ := unstructuredNested(svc.Object, "spec", "caBundle")
	if want := secretData(t, kube, CASecret)["ca.crt"]; got != encode(want) {
		t.Errorf("caBundle %q, want the bundle %q", got, encode(want))
	}
}

// TestTamperedSecretsAreRepaired: a certificate replaced by one of another
// CA, or a Secret deleted, is issued again at the next sync.
func TestTamperedSecretsAreRepaired(t *testing.T) {
	c, kube, clk := newTestController(t, testOptions())
	syncAt(t, c, clk, clk.t)
	ctx := context.Background()
	other, err := newAuthority(clk.t, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, keyPEM, err := newKey()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := other.sign(c.o.clientSpec(), key.Public(), clk.t, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := kube.CoreV1().Secrets(ns).Get(ctx, AgentClientSecret, metav1.GetOptions{})
	s.Data["tls.crt"], s.Data["tls.key"] = certPEM, keyPEM
	if _, err := kube.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := kube.CoreV1().Secrets(ns).Delete(ctx, ServingSecret, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	syncAt(t, c, clk, clk.t.Add(time.Second))
	ca := certsOf(t, secretData(t, kube, CASecret)["tls.crt"])[0]
	for _, name := range []string{ServingSecret, AgentClientSecret} {
		if err := certsOf(t, secretData(t, kube, name)["tls.crt"])[0].CheckSignatureFrom(ca); err != nil {
			t.Errorf("%s was not repaired: %v", name, err)
		}
	}
}

// csrFor makes a request as the kubelet's certificate manager would, with
// the requester's identity as kube-apiserver records it.
func csrFor(t testing.TB, user string, extra map[string]certificatesv1.ExtraValue, tmpl *x509.CertificateRequest, usages ...certificatesv1.KeyUsage) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	if usages == nil {
		usages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}
	}
	return &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "csr-" + strings.ReplaceAll(t.Name(), "/", "-")},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: SignerName, Usages: usages, Username: user, Extra: extra,
		},
	}
}

func agentReq(name string, dns ...string) *x509.CertificateRequest {
	return &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}, DNSNames: dns}
}

func TestAuthorize(t *testing.T) {
	o := testOptions()
	agent := "system:serviceaccount:flowscope-system:flowscope-agent"
	onNode := func(n ...string) map[string]certificatesv1.ExtraValue {
		return map[string]certificatesv1.ExtraValue{NodeNameExtra: n}
	}
	a := tlsutil.AgentServerName("node-a")
	for _, tc := range []struct {
		name    string
		csr     *certificatesv1.CertificateSigningRequest
		wantErr string
	}{
		{"the agent of node-a for node-a", csrFor(t, agent, onNode("node-a"), agentReq(a, a)), ""},
		{"another user", csrFor(t, "alice", onNode("node-a"), agentReq(a, a)),
			`requested by "alice", not by the agents' ServiceAccount system:serviceaccount:flowscope-system:flowscope-agent`},
		{"another namespace's agent", csrFor(t, "system:serviceaccount:other:flowscope-agent", onNode("node-a"), agentReq(a, a)),
			`requested by "system:serviceaccount:other:flowscope-agent"`},
		{"a token bound to no pod", csrFor(t, agent, nil, agentReq(a, a)),
			"the requester's token names no node (authentication.kubernetes.io/node-name: [])"},
		{"the agent of node-b for node-a", csrFor(t, agent, onNode("node-b"), agentReq(a, a)),
			`the common name is "node-a.agents.flowscope.io", not "node-b.agents.flowscope.io"`},
		{"node-b's name under node-a's common name", csrFor(t, agent, onNode("node-b"),
			agentReq(tlsutil.AgentServerName("node-b"), a)), "the DNS names are [node-a.agents.flowscope.io], not only node-b.agents.flowscope.io"},
		{"a second name", csrFor(t, agent, onNode("node-a"), agentReq(a, a, "localhost")),
			"the DNS names are [node-a.agents.flowscope.io localhost], not only node-a.agents.flowscope.io"},
		{"a wildcard", csrFor(t, agent, onNode("node-a"), agentReq(a, "*.agents.flowscope.io")),
			"the DNS names are [*.agents.flowscope.io], not only node-a.agents.flowscope.io"},
		{"an IP address", csrFor(t, agent, onNode("node-a"), &x509.CertificateRequest{Subject: pkix.Name{CommonName: a},
			DNSNames: []string{a}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}),
			"the request names IP addresses, e-mail addresses or URIs"},
		{"an organization", csrFor(t, agent, onNode("node-a"), &x509.CertificateRequest{Subject: pkix.Name{CommonName: a,
			Organization: []string{"system:masters"}}, DNSNames: []string{a}}), "the request names organizations [system:masters]"},
		{"client auth", csrFor(t, agent, onNode("node-a"), agentReq(a, a), certificatesv1.UsageDigitalSignature,
			certificatesv1.UsageServerAuth, certificatesv1.UsageClientAuth), `usage "client auth" is not allowed`},
		{"no server auth", csrFor(t, agent, onNode("node-a"), agentReq(a, a), certificatesv1.UsageDigitalSignature),
			"the request is not for server auth"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node, err := o.authorize(tc.csr)
			if tc.wantErr == "" {
				if err != nil || node != "node-a" {
					t.Fatalf("authorize: %q, %v; want node-a", node, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("authorize: %v; want %q", err, tc.wantErr)
			}
		})
	}
}

// TestHandleCSR approves, signs, and denies through the fake API.
func TestHandleCSR(t *testing.T) {
	c, kube, clk := newTestController(t, testOptions())
	syncAt(t, c, clk, clk.t)
	ctx := context.Background()
	agent := "system:serviceaccount:flowscope-system:flowscope-agent"
	a := tlsutil.AgentServerName("node-a")
	good := csrFor(t, agent, map[string]certificatesv1.ExtraValue{NodeNameExtra: {"node-a"}}, agentReq(a, a))
	good.Name = "good"
	bad := csrFor(t, agent, map[string]certificatesv1.ExtraValue{NodeNameExtra: {"node-b"}}, agentReq(a, a))
	bad.Name = "bad"
	for _, csr := range []*certificatesv1.CertificateSigningRequest{good, bad} {
		created, err := kube.CertificatesV1().CertificateSigningRequests().Create(ctx, csr, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.handleCSR(ctx, created); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := kube.CertificatesV1().CertificateSigningRequests().Get(ctx, "good", metav1.GetOptions{})
	if !hasCondition(got, certificatesv1.CertificateApproved) || len(got.Status.Certificate) == 0 {
		t.Fatalf("good: %+v", got.Status)
	}
	leaf := certsOf(t, got.Status.Certificate)[0]
	ca := certsOf(t, secretData(t, kube, CASecret)["tls.crt"])[0]
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		t.Error(err)
	}
	if leaf.Subject.CommonName != a || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != a ||
		len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("issued %s %v %v", leaf.Subject.CommonName, leaf.DNSNames, leaf.ExtKeyUsage)
	}
	if d := leaf.NotAfter.Sub(clk.t); d != time.Minute {
		t.Errorf("valid for %s from now, want 1m", d)
	}
	got, _ = kube.CertificatesV1().CertificateSigningRequests().Get(ctx, "bad", metav1.GetOptions{})
	if !hasCondition(got, certificatesv1.CertificateDenied) || len(got.Status.Certificate) != 0 {
		t.Fatalf("bad: %+v", got.Status)
	}
	// Approved by someone else, still the wrong node: it fails, unsigned.
	bad2 := bad.DeepCopy()
	bad2.Name = "bad2"
	bad2.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue}}
	created, err := kube.CertificatesV1().CertificateSigningRequests().Create(ctx, bad2, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.handleCSR(ctx, created); err != nil {
		t.Fatal(err)
	}
	got, _ = kube.CertificatesV1().CertificateSigningRequests().Get(ctx, "bad2", metav1.GetOptions{})
	if !hasCondition(got, certificatesv1.CertificateFailed) || len(got.Status.Certificate) != 0 {
		t.Fatalf("bad2: %+v", got.Status)
	}
}

// TestLoader serves what the Secrets hold, and follows their rotation.
func TestLoader(t *testing.T) {
	c, kube, clk := newTestController(t, testOptions())
	clk.t = time.Now()
	syncAt(t, c, clk, clk.t)
	l := NewLoader(kube, ns)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := l.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	cert, key := l.CurrentCertKeyContent()
	if _, err := tls.X509KeyPair(cert, key); err != nil {
		t.Fatal(err)
	}
	if err := l.Check(time.Now()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if err := l.Check(time.Now().Add(2 * time.Minute)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("Check two minutes on: %v; want expired", err)
	}
	first, _ := l.Current()
	syncAt(t, c, clk, clk.t.Add(45*time.Second))
	deadline := time.Now().Add(10 * time.Second)
	for {
		now, _ := l.Current()
		if !now.Certificate.Leaf.Equal(first.Certificate.Leaf) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the loader did not follow the renewed client certificate")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func unstructuredObj(obj map[string]any) runtime.Object {
	return &unstructured.Unstructured{Object: obj}
}

func unstructuredNested(obj map[string]any, fields ...string) (string, bool, error) {
	return unstructured.NestedString(obj, fields...)
}

func encode(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// TestExternalCA: with a CA Secret cert-manager keeps, the controller
// writes no certificate of its own, publishes the CA, keeps a replaced one
// published until it expires, and signs with the current one.
func TestExternalCA(t *testing.T) {
	o := testOptions()
	o.ExternalCA = "flowscope-ca"
	c, kube, clk := newTestController(t, o)
	ctx := context.Background()
	put := func(ca *authority) {
		t.Helper()
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "flowscope-ca", Namespace: ns}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{"tls.crt": ca.certPEM, "tls.key": ca.keyPEM, "ca.crt": ca.certPEM}}
		if _, err := kube.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			if _, err := kube.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	published := func() string {
		t.Helper()
		cm, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, BundleConfigMap, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return names(certsOf(t, []byte(cm.Data[BundleKey])))
	}
	if err := c.sync(ctx); err == nil {
		t.Fatal("sync without the CA Secret succeeded")
	}
	first, err := newAuthority(clk.t, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	put(first)
	syncAt(t, c, clk, clk.t)
	if got := published(); got != first.cert.Subject.CommonName {
		t.Errorf("published %s", got)
	}
	for _, name := range []string{ServingSecret, AgentClientSecret} {
		if _, err := kube.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
			t.Errorf("wrote Secret %s, which cert-manager keeps", name)
		}
	}
	second, err := newAuthority(clk.t.Add(2*time.Second), 10*time.Minute) // another name: made two seconds on
	if err != nil {
		t.Fatal(err)
	}
	put(second)
	syncAt(t, c, clk, clk.t.Add(time.Minute))
	want := second.cert.Subject.CommonName + "," + first.cert.Subject.CommonName
	if got := published(); got != want {
		t.Errorf("published %s after the CA was replaced, want %s", got, want)
	}
	if s := c.current().signer(clk.t, o); !s.cert.Equal(second.cert) {
		t.Error("the replaced CA still signs")
	}
	syncAt(t, c, clk, first.cert.NotAfter.Add(time.Second))
	if got := published(); got != second.cert.Subject.CommonName {
		t.Errorf("published %s after the old CA expired", got)
	}
}
