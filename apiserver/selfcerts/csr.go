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
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/internal/tlsutil"
)

// Reasons of the conditions the controller sets on requests.
const (
	reasonApproved = "FlowscopeAgentNode"
	reasonDenied   = "NotTheAgentOfTheNode"
	reasonFailed   = "SigningFailed"
)

// allowedUsages are what an agent's serving certificate may be used for.
var allowedUsages = []certificatesv1.KeyUsage{
	certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageServerAuth,
}

// authorize returns the node whose agent asks, or why the request must be
// denied. The requester must be the agents' ServiceAccount with a token
// bound to a pod (its node is in the token, and so in spec.extra, set by
// kube-apiserver, not by the requester), and may ask for the serving
// certificate of that node's agent only, naming it and nothing else.
func (o Options) authorize(csr *certificatesv1.CertificateSigningRequest) (string, error) {
	spec := csr.Spec
	if spec.Username != o.agentUser() {
		return "", fmt.Errorf("requested by %q, not by the agents' ServiceAccount %s", spec.Username, o.agentUser())
	}
	nodes := spec.Extra[NodeNameExtra]
	if len(nodes) != 1 || nodes[0] == "" {
		return "", fmt.Errorf("the requester's token names no node (%s: %v): only a token bound to the agent's pod does", NodeNameExtra, []string(nodes))
	}
	node := nodes[0]
	block, _ := pem.Decode(spec.Request)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return "", errors.New("the request holds no PEM CERTIFICATE REQUEST")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("parse the request: %w", err)
	}
	if err := req.CheckSignature(); err != nil {
		return "", fmt.Errorf("the request's signature: %w", err)
	}
	want := tlsutil.AgentServerName(node)
	switch {
	case req.Subject.CommonName != want:
		return "", fmt.Errorf("the common name is %q, not %q", req.Subject.CommonName, want)
	case !slices.Equal(req.DNSNames, []string{want}):
		return "", fmt.Errorf("the DNS names are %v, not only %s", req.DNSNames, want)
	case len(req.IPAddresses) > 0 || len(req.EmailAddresses) > 0 || len(req.URIs) > 0:
		return "", errors.New("the request names IP addresses, e-mail addresses or URIs")
	case len(req.Subject.Organization) > 0:
		return "", fmt.Errorf("the request names organizations %v", req.Subject.Organization)
	}
	if !slices.Contains(spec.Usages, certificatesv1.UsageServerAuth) {
		return "", errors.New("the request is not for server auth")
	}
	for _, u := range spec.Usages {
		if !slices.Contains(allowedUsages, u) {
			return "", fmt.Errorf("usage %q is not allowed", u)
		}
	}
	return node, nil
}

// handleCSR approves or denies a request of SignerName, and signs it once
// approved. Requests approved by someone else are signed only if they pass
// the same checks: approval by a cluster admin does not widen what an
// agent's certificate may name.
func (c *Controller) handleCSR(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) error {
	if csr.Spec.SignerName != SignerName || len(csr.Status.Certificate) > 0 ||
		hasCondition(csr, certificatesv1.CertificateDenied) || hasCondition(csr, certificatesv1.CertificateFailed) {
		return nil
	}
	csrs := c.kube.CertificatesV1().CertificateSigningRequests()
	node, err := c.o.authorize(csr)
	if err != nil {
		klog.InfoS("Denying a certificate request: it is not that of an agent for its own node", "csr", csr.Name,
			"requester", csr.Spec.Username, "node", strings.Join(csr.Spec.Extra[NodeNameExtra], ","), "reason", err.Error())
		typ := certificatesv1.CertificateDenied
		if hasCondition(csr, certificatesv1.CertificateApproved) {
			// Approved elsewhere: it cannot be denied now, it fails.
			typ = certificatesv1.CertificateFailed
		}
		return c.setCondition(ctx, csr, typ, reasonDenied, err.Error())
	}
	if !hasCondition(csr, certificatesv1.CertificateApproved) {
		if csr, err = c.setConditionResult(ctx, csr, certificatesv1.CertificateApproved, reasonApproved,
			"the serving certificate of the agent of node "+node); err != nil {
			return err
		}
	}
	cas := c.current()
	if cas == nil {
		return errors.New("no CA yet")
	}
	signer := cas.signer(c.now(), c.o)
	certPEM, err := c.signRequest(csr, node, signer)
	if err != nil {
		klog.ErrorS(err, "Failed signing an agent's certificate", "csr", csr.Name, "node", node)
		return c.setCondition(ctx, csr, certificatesv1.CertificateFailed, reasonFailed, err.Error())
	}
	csr = csr.DeepCopy()
	csr.Status.Certificate = certPEM
	if _, err := csrs.UpdateStatus(ctx, csr, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("write the certificate of %s: %w", csr.Name, err)
	}
	klog.InfoS("Issued an agent's serving certificate", "csr", csr.Name, "node", node, "name", tlsutil.AgentServerName(node),
		"ca", signer.cert.Subject.CommonName)
	return nil
}

// signRequest signs the certificate of node's agent for the request's key;
// everything else it says comes from the node, not from the request.
func (c *Controller) signRequest(csr *certificatesv1.CertificateSigningRequest, node string, signer *authority) ([]byte, error) {
	block, _ := pem.Decode(csr.Spec.Request)
	req, err := x509.ParseCertificateRequest(block.Bytes) // parsed by authorize
	if err != nil {
		return nil, err
	}
	validity := c.o.CertValidity
	if s := csr.Spec.ExpirationSeconds; s != nil {
		validity = min(validity, time.Duration(*s)*time.Second)
	}
	now := c.now()
	name := tlsutil.AgentServerName(node)
	return signer.sign(leafSpec{commonName: name, dnsNames: []string{name}, usage: x509.ExtKeyUsageServerAuth},
		req.PublicKey, now, validity)
}

func hasCondition(csr *certificatesv1.CertificateSigningRequest, typ certificatesv1.RequestConditionType) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == typ && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func (c *Controller) setCondition(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, typ certificatesv1.RequestConditionType, reason, msg string) error {
	_, err := c.setConditionResult(ctx, csr, typ, reason, msg)
	return err
}

// setConditionResult adds a condition: Approved and Denied through the
// approval subresource, Failed through status.
func (c *Controller) setConditionResult(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, typ certificatesv1.RequestConditionType, reason, msg string) (*certificatesv1.CertificateSigningRequest, error) {
	csr = csr.DeepCopy()
	now := metav1.NewTime(c.now())
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: typ, Status: corev1.ConditionTrue, Reason: reason, Message: msg, LastUpdateTime: now, LastTransitionTime: now,
	})
	csrs := c.kube.CertificatesV1().CertificateSigningRequests()
	var (
		updated *certificatesv1.CertificateSigningRequest
		err     error
	)
	if typ == certificatesv1.CertificateFailed {
		updated, err = csrs.UpdateStatus(ctx, csr, metav1.UpdateOptions{})
	} else {
		updated, err = csrs.UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("set %s on %s: %w", typ, csr.Name, err)
	}
	return updated, nil
}
