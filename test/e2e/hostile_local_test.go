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
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestLocalSystemHostileLocalUser: another user of the machine that runs
// `make run` finds no way in: etcd, which holds RBAC, refuses a client
// without a certificate of its CA, over plain HTTP and over TLS alike; the
// agents serve no pprof; and the replay files, every namespace's flows,
// are readable by their owner only.
func TestLocalSystemHostileLocalUser(t *testing.T) {
	etcd := fmt.Sprintf("127.0.0.1:%d", sys.PortBase) // PORT_BASE+0 (hack/lib/local.sh)
	client := &http.Client{Timeout: 5 * time.Second}
	if resp, err := client.Get("http://" + etcd + "/v2/keys"); err == nil {
		resp.Body.Close()
		t.Errorf("etcd answers plain HTTP: %s", resp.Status)
	}
	ca, err := os.ReadFile(filepath.Join(sys.Out, "certs", "etcd-ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	noCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if resp, err := noCert.Get("https://" + etcd + "/health"); err == nil {
		resp.Body.Close()
		t.Errorf("etcd answers a client without a certificate: %s", resp.Status)
	}
	for i := range sys.Nodes {
		url := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/", sys.AgentPort(i)+100) // metrics: PORT_BASE+200+i
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("agent %d serves %s: %s, want 404", i, url, resp.Status)
		}
	}
	for _, n := range sys.Nodes {
		info, err := os.Stat(filepath.Join(sys.Out, "replay", n+".jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		if mode := info.Mode().Perm(); mode != 0o600 {
			t.Errorf("replay file of %s has mode %v, want 0600", n, mode)
		}
	}
}
