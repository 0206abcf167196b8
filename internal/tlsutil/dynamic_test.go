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

package tlsutil_test

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"flowscope.io/flowscope/internal/tlsutil"
)

// copyFile replaces dst with src's contents, and moves its modification
// time on, as a Secret volume's update does.
func copyFile(t *testing.T, src, dst string, age time.Duration) {
	t.Helper()
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	mtime := time.Now().Add(age)
	if err := os.Chtimes(dst, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// TestRotationWithoutRestart rotates both sides' files, certificates and
// CAs, between handshakes of configurations built once: the next
// handshake uses the new files, and the old CA's certificates are
// refused once it is gone from the bundle.
func TestRotationWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	oldCA, newCA := newCA(t, dir, "old-ca"), newCA(t, dir, "new-ca")
	files := func(side string) (string, string, string) {
		return filepath.Join(dir, side+".crt"), filepath.Join(dir, side+".key"), filepath.Join(dir, side+"-ca.crt")
	}
	install := func(side string, l leaf, ca string, age time.Duration) {
		cert, key, caFile := files(side)
		copyFile(t, l.certFile, cert, age)
		copyFile(t, l.keyFile, key, age)
		copyFile(t, ca, caFile, age)
	}
	agentName := []string{tlsutil.AgentServerName("node-a")}
	install("agent", oldCA.issue(t, "agent-old", "agent", serverAuth, agentName, nil), oldCA.caFile, -time.Hour)
	install("server", oldCA.issue(t, "server-old", "flowscope-apiserver", clientAuth, nil, nil), oldCA.caFile, -time.Hour)

	agentSrc, err := tlsutil.NewFileSource(files("agent"))
	if err != nil {
		t.Fatal(err)
	}
	serverSrc, err := tlsutil.NewFileSource(files("server"))
	if err != nil {
		t.Fatal(err)
	}
	agent := tlsutil.NewServerConfig(agentSrc, []string{"flowscope-apiserver"})
	client := tlsutil.ForAgent(tlsutil.NewClientConfig(serverSrc), "node-a")
	accepted(t, handshake(t, agent, client), "flowscope-apiserver")

	// Both trust both CAs, then the agent gets a certificate of the new
	// one: accepted.
	both := filepath.Join(dir, "both.crt")
	raw := append(readFile(t, oldCA.caFile), readFile(t, newCA.caFile)...)
	if err := os.WriteFile(both, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	install("agent", newCA.issue(t, "agent-new", "agent", serverAuth, agentName, nil), both, -30*time.Minute)
	install("server", oldCA.issue(t, "server-old2", "flowscope-apiserver", clientAuth, nil, nil), both, -30*time.Minute)
	accepted(t, handshake(t, agent, client), "flowscope-apiserver")

	// The old CA leaves the server's bundle while its client certificate
	// is still of the old one: the agent, trusting both, accepts it.
	install("server", oldCA.issue(t, "server-old3", "flowscope-apiserver", clientAuth, nil, nil), newCA.caFile, -20*time.Minute)
	accepted(t, handshake(t, agent, client), "flowscope-apiserver")

	// The old CA leaves the agent's bundle: the old client certificate is
	// refused, the new one accepted.
	install("agent", newCA.issue(t, "agent-new2", "agent", serverAuth, agentName, nil), newCA.caFile, -10*time.Minute)
	o := handshake(t, agent, client)
	if o.serverErr == nil || !strings.Contains(o.serverErr.Error(), "certificate signed by unknown authority") {
		t.Errorf("agent's error %v; want the old CA's client refused", o.serverErr)
	}
	install("server", newCA.issue(t, "server-new", "flowscope-apiserver", clientAuth, nil, nil), newCA.caFile, -5*time.Minute)
	accepted(t, handshake(t, agent, client), "flowscope-apiserver")

	// An agent certificate of the old CA is refused by the client now.
	install("agent", oldCA.issue(t, "agent-old2", "agent", serverAuth, agentName, nil), newCA.caFile, -time.Minute)
	o = handshake(t, agent, client)
	if o.clientErr == nil || !strings.Contains(o.clientErr.Error(), "x509: certificate signed by unknown authority") {
		t.Errorf("client's error %v; want the agent of the old CA refused", o.clientErr)
	}
}

// TestFileSourceKeepsGoodCredentials: files that stop loading (a
// half-written update) leave the credentials read before in use.
func TestFileSourceKeepsGoodCredentials(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir, "ca")
	l := ca.issue(t, "agent", "agent", serverAuth, []string{"localhost"}, nil)
	src, err := tlsutil.NewFileSource(l.certFile, l.keyFile, ca.caFile)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := src.Current()
	if err := os.WriteFile(l.keyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	after, err := src.Current()
	if err != nil || after != before {
		t.Fatalf("Current after a bad update: %v, same credentials %v", err, after == before)
	}
	if _, err := tlsutil.NewFileSource(l.certFile, l.keyFile, ca.caFile); err == nil {
		t.Fatal("NewFileSource accepted a bad key")
	}
}

// TestCheck names what makes credentials unusable.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	ca, other := newCA(t, dir, "ca"), newCA(t, dir, "other")
	l := ca.issue(t, "agent", "agent", serverAuth, []string{"localhost"}, nil)
	creds, err := tlsutil.NewCredentials(readFile(t, l.certFile), readFile(t, l.keyFile), readFile(t, ca.caFile))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := creds.Check(now, x509.ExtKeyUsageServerAuth, true); err != nil {
		t.Errorf("Check: %v", err)
	}
	if err := creds.Check(now.Add(48*time.Hour), x509.ExtKeyUsageServerAuth, false); err == nil || !strings.Contains(err.Error(), `the certificate "agent" expired at`) {
		t.Errorf("Check in two days: %v", err)
	}
	mismatched, err := tlsutil.NewCredentials(readFile(t, l.certFile), readFile(t, l.keyFile), readFile(t, other.caFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := mismatched.Check(now, x509.ExtKeyUsageServerAuth, true); err == nil || !strings.Contains(err.Error(), `the certificate "agent" does not chain to the CA bundle (other until`) {
		t.Errorf("Check with another CA's bundle: %v", err)
	}
	if err := mismatched.Check(now, x509.ExtKeyUsageServerAuth, false); err != nil {
		t.Errorf("Check with another CA's bundle, for the other side: %v", err)
	}
}

func readFile(t *testing.T, f string) []byte {
	t.Helper()
	raw, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
