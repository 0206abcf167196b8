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

// Package certs tests self-managed certificates end to end: a local
// system started with SELF_MANAGED_CERTS=1 and no certificate made for
// Flowscope, in which flowscope-apiserver makes its CA, its own
// certificates and the APIService's caBundle, and signs the agents'
// certificate requests; with one-minute certificates and a three-minute
// CA, so that a rotation of everything happens within a test.
package certs

import (
	"os"
	"testing"

	"flowscope.io/flowscope/test/e2e/framework"
)

var sys *framework.System

// The validities of the suite's certificates: the CA is replaced 66 s
// before it expires (a certificate's validity and 6 s of propagation).
const (
	certValidity = "1m"
	caValidity   = "3m"
)

func TestMain(m *testing.M) {
	os.Exit(framework.Main(m, framework.Options{Env: []string{
		"SELF_MANAGED_CERTS=1", "CERT_VALIDITY=" + certValidity, "CA_VALIDITY=" + caValidity, "OTEL_COLLECTOR=0",
	}}, &sys))
}
