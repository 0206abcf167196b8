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

package tlsutil

// Names both sides of self-managed certificates use: flowscope-apiserver
// signs, agents ask and trust.
const (
	// AgentSignerName is the signerName of the CertificateSigningRequests
	// with which agents ask for their serving certificates.
	AgentSignerName = "flowscope.io/agent-serving"
	// CABundleConfigMap, in the agents' namespace, holds under
	// CABundleKey the CAs that sign the aggregated server's client
	// certificate, and the agents' own.
	CABundleConfigMap = "flowscope-ca-bundle"
	CABundleKey       = "ca.crt"
)
