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
	"net/netip"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/generated/clientset/versioned"
	"flowscope.io/flowscope/nodeagent/enrich"
	"flowscope.io/flowscope/nodeagent/selection"
)

type kubeClients struct {
	client   kubernetes.Interface
	metadata metadata.Interface
	config   versioned.Interface
}

// newKubeClients connects to the Kubernetes API from a kubeconfig, or from
// the pod's service account when kubeconfig is empty.
func newKubeClients(kubeconfig string) (*kubeClients, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, err
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	m, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	cc, err := versioned.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &kubeClients{client: c, metadata: m, config: cc}, nil
}

// enricher adapts enrich.Enricher to what observe and the selection need;
// without a Kubernetes API it knows addresses only.
type enricher struct{ e *enrich.Enricher }

func newEnricher(ctx context.Context, kube *kubeClients, node string) enricher {
	if kube == nil {
		return enricher{}
	}
	e := enrich.New(kube.client, kube.metadata, enrich.Options{NodeName: node})
	e.Start(ctx)
	return enricher{e}
}

func (a enricher) Endpoint(ip netip.Addr, port uint16) v1alpha1.Endpoint {
	if a.e == nil {
		return v1alpha1.Endpoint{IP: ip.String(), Port: int32(port)}
	}
	ep, _ := a.e.Endpoint(ip, port)
	return ep
}

func (a enricher) IsLocalPod(ip netip.Addr) bool {
	if a.e == nil {
		return false
	}
	_, ok := a.e.LocalPod(ip)
	return ok
}

func (a enricher) LocalPods() []selection.Pod {
	if a.e == nil {
		return nil
	}
	var out []selection.Pod
	for _, p := range a.e.LocalPods() {
		out = append(out, selection.Pod{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels, IPs: p.IPs})
	}
	return out
}
