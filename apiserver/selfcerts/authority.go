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
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"time"

	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
)

// authority is one CA: its certificate and key, as parsed and as PEM.
type authority struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
	keyPEM  []byte
}

// newKey returns a new ECDSA P-256 key and its PEM.
func newKey() (crypto.Signer, []byte, error) {
	keyPEM, err := keyutil.MakeEllipticPrivateKeyPEM()
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	key, err := parseKey(keyPEM)
	return key, keyPEM, err
}

func parseKey(keyPEM []byte) (crypto.Signer, error) {
	k, err := keyutil.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("parse key: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("a key of type %T cannot sign", k)
	}
	return signer, nil
}

// newAuthority makes a self-signed CA valid for validity from now. Its
// common name carries the time it was made, so that generations of the CA
// are told apart in logs and bundles (kube-apiserver's self-signed CAs do
// the same). client-go's NewSelfSignedCACert makes CAs of ten years only:
// rotation, and its tests, need the validity chosen.
func newAuthority(now time.Time, validity time.Duration) (*authority, error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("flowscope-ca@%d", now.Unix())},
		NotBefore:             now.Add(-backdate(validity)).UTC(),
		NotAfter:              now.Add(validity).UTC(),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	certPEM, err := certutil.EncodeCertificates(cert)
	if err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key, certPEM: certPEM, keyPEM: keyPEM}, nil
}

// parseAuthority reads a CA from PEM; it returns nil, nil when there is
// none.
func parseAuthority(certPEM, keyPEM []byte) (*authority, error) {
	if len(certPEM) == 0 && len(keyPEM) == 0 {
		return nil, nil
	}
	certs, err := certutil.ParseCertsPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	if !certs[0].IsCA {
		return nil, fmt.Errorf("%q is no CA", certs[0].Subject.CommonName)
	}
	return &authority{cert: certs[0], key: key, certPEM: certPEM, keyPEM: keyPEM}, nil
}

// backdate is how long before now certificates start to be valid, for
// clocks that are behind: a tenth of the validity, at most five minutes
// (kube-controller-manager's signer backdates by five). Short validities
// of tests get a short backdate, or renewal at a share of the lifetime
// would fall in the past.
func backdate(validity time.Duration) time.Duration {
	return min(validity/10, 5*time.Minute)
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

// leafSpec is what a certificate the CA issues says.
type leafSpec struct {
	commonName string
	dnsNames   []string
	ips        []net.IP
	usage      x509.ExtKeyUsage
}

// sign issues a certificate of spec for pub, valid for validity from now
// but never beyond the CA itself: a certificate that outlived its CA
// would fail on every verifier anyway, and its holder renews at a share
// of the lifetime it was given.
func (a *authority) sign(spec leafSpec, pub crypto.PublicKey, now time.Time, validity time.Duration) ([]byte, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: spec.commonName},
		DNSNames:              spec.dnsNames,
		NotBefore:             now.Add(-backdate(validity)).UTC(),
		NotAfter:              minTime(now.Add(validity), a.cert.NotAfter).UTC(),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{spec.usage},
		BasicConstraintsValid: true,
	}
	tmpl.IPAddresses = spec.ips
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, pub, a.key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %q: %w", spec.commonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return certutil.EncodeCertificates(cert)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// bundle is the PEM of the CAs, in order.
func bundle(cas ...*authority) []byte {
	var b bytes.Buffer
	for _, ca := range cas {
		if ca != nil {
			b.Write(ca.certPEM)
		}
	}
	return b.Bytes()
}
