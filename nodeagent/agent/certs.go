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

package agent

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"flowscope.io/flowscope/nodeagent/agentcerts"
)

// certOptions choose where the serving certificate comes from.
type certOptions struct {
	SelfManaged bool
	CertDir     string
}

func (o *certOptions) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.SelfManaged, "self-managed-certs", o.SelfManaged, "Request the serving certificate from flowscope-apiserver with a CertificateSigningRequest (signer flowscope.io/agent-serving), renew it at 70-90% of its lifetime, and trust the CAs of the ConfigMap flowscope-ca-bundle in --namespace, as flowscope-apiserver's --self-managed-certs keeps them. Replaces --tls-cert-file, --tls-private-key-file and --client-ca-file; needs the Kubernetes API with a token bound to the agent's pod (a DaemonSet's), whose node flowscope-apiserver checks.")
	fs.StringVar(&o.CertDir, "cert-dir", o.CertDir, "With --self-managed-certs: directory of the serving certificate and key, kept across restarts; defaults to <data-dir>/pki.")
}

// credentials returns the agent's TLS credentials, reloaded or renewed
// while the agent runs.
func (o *Options) credentials(ctx context.Context) (*agentcerts.Credentials, error) {
	co := agentcerts.Options{Node: o.NodeName, CertFile: o.TLSCertFile, KeyFile: o.TLSKeyFile, ClientCAFile: o.ClientCAFile,
		SelfManaged: o.Certs.SelfManaged, Namespace: o.Namespace, CertDir: o.Certs.CertDir}
	if co.SelfManaged {
		if co.CertDir == "" {
			co.CertDir = filepath.Join(o.DataDir, "pki")
		}
		cfg, err := restConfig(o.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("self-managed certificates need the Kubernetes API: %w", err)
		}
		if co.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
			return nil, err
		}
	}
	return agentcerts.New(ctx, co)
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return rest.InClusterConfig()
}

// readyz fails while flowscope-apiserver cannot call the agent with its
// certificates, with the reason.
func readyz(ready func() error) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}
}
