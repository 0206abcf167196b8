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
	"crypto/x509"
	"encoding/pem"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"

	"flowscope.io/flowscope/internal/tlsutil"
)

// FuzzAuthorize feeds requests of any bytes, as any agent may create, to
// the approval: it never panics, and approves only a request for the
// requester's own node's name and nothing else.
func FuzzAuthorize(f *testing.F) {
	a := tlsutil.AgentServerName("node-a")
	good := csrFor(f, "", nil, agentReq(a, a))
	f.Add(good.Spec.Request, "node-a")
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"), "node-a")
	f.Add([]byte{}, "")
	o := testOptions()
	f.Fuzz(func(t *testing.T, request []byte, node string) {
		csr := &certificatesv1.CertificateSigningRequest{Spec: certificatesv1.CertificateSigningRequestSpec{
			Request: request, SignerName: SignerName, Username: o.agentUser(),
			Usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
			Extra:  map[string]certificatesv1.ExtraValue{NodeNameExtra: {node}},
		}}
		got, err := o.authorize(csr)
		if err != nil {
			return
		}
		if got != node {
			t.Fatalf("approved for node %q, the requester is on %q", got, node)
		}
		block, _ := pem.Decode(request)
		req, perr := x509.ParseCertificateRequest(block.Bytes)
		if perr != nil {
			t.Fatalf("approved a request that does not parse: %v", perr)
		}
		want := tlsutil.AgentServerName(node)
		if req.Subject.CommonName != want || len(req.DNSNames) != 1 || req.DNSNames[0] != want {
			t.Fatalf("approved %q %v for node %q", req.Subject.CommonName, req.DNSNames, node)
		}
	})
}
