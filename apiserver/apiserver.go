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

// Package apiserver is flowscope-apiserver: an aggregated API server that
// serves the flows.flowscope.io group from the node agents, with delegated
// authentication and authorization.
package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/agentclient"
	"flowscope.io/flowscope/apis/flows/install"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/apiserver/policystatus"
	"flowscope.io/flowscope/generated/clientset/versioned"
	"flowscope.io/flowscope/registry/flow"
	"flowscope.io/flowscope/registry/flowsummary"
)

var (
	// Scheme holds the served types.
	Scheme = runtime.NewScheme()
	// Codecs encode and decode them.
	Codecs = serializer.NewCodecFactory(Scheme)
)

func init() {
	install.Install(Scheme)
	// GetOptions, ListOptions and friends at the empty group, version v1:
	// the installer instantiates them for every resource.
	metav1.AddToGroupVersion(Scheme, schema.GroupVersion{Version: "v1"})
	unversioned := schema.GroupVersion{Group: "", Version: "v1"}
	Scheme.AddUnversionedTypes(unversioned,
		&metav1.Status{}, &metav1.APIVersions{}, &metav1.APIGroupList{}, &metav1.APIGroup{}, &metav1.APIResourceList{})
}

// Config is the server's configuration.
type Config struct {
	GenericConfig *genericapiserver.RecommendedConfig
	Agents        *agentclient.Pool
	// LeaseClient and LeaseNamespace, when set, discover agents by Lease;
	// LeaseClient also tells lists where pods run.
	LeaseClient    kubernetes.Interface
	LeaseNamespace string
	// PolicyClient, when set with LeaseClient, writes the status of the
	// flow log policies (package policystatus).
	PolicyClient versioned.Interface
	Storage      flow.Options
	// continueKeys, when set, is reloaded while the server runs.
	continueKeys *keyFile
	// certificates, when set, are managed by this server (selfcerts);
	// certCheck tells readiness whether they can be used.
	certificates *selfManaged
	certCheck    func(time.Time) error
}

// CompletedConfig is a Config after Complete.
type CompletedConfig struct {
	generic genericapiserver.CompletedConfig
	cfg     *Config
	warmup  *warmup
}

// Complete fills in defaults, and holds flow requests back until the
// agents are dialed.
func (c *Config) Complete() CompletedConfig {
	w := newWarmup(c.Agents.Dialed, maxWarmup)
	c.GenericConfig.BuildHandlerChainFunc = func(h http.Handler, gc *genericapiserver.Config) http.Handler {
		return genericapiserver.DefaultBuildHandlerChain(w.wrap(h), gc)
	}
	return CompletedConfig{generic: c.GenericConfig.Complete(), cfg: c, warmup: w}
}

// Server is a running-ready flowscope-apiserver.
type Server struct {
	GenericAPIServer *genericapiserver.GenericAPIServer
	cfg              *Config
}

// New builds the server and installs the flows group.
func (c CompletedConfig) New() (*Server, error) {
	generic, err := c.generic.New("flowscope-apiserver", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, err
	}
	storage := c.cfg.Storage
	var pods *podLocator
	if c.cfg.LeaseClient != nil {
		pods = newPodLocator(c.cfg.LeaseClient)
		storage.Pods = pods
	}
	info := genericapiserver.NewDefaultAPIGroupInfo(v1alpha1.GroupName, Scheme, metav1.ParameterCodec, Codecs)
	flows := flow.NewREST(agentSet{c.cfg.Agents}, storage)
	info.VersionedResourcesStorageMap[v1alpha1.SchemeGroupVersion.Version] = map[string]rest.Storage{
		"flows":         flows,
		"flowsummaries": flowsummary.NewREST(flows, flowsummary.Options{}),
	}
	if err := generic.InstallAPIGroup(&info); err != nil {
		return nil, fmt.Errorf("install the flows API group: %w", err)
	}
	s := &Server{GenericAPIServer: generic, cfg: c.cfg}
	// The graceful shutdown waits for every request to end, and a watch
	// does not end by itself: ending them first lets their clients (kube-
	// apiserver's proxy, informers) watch again, through another replica.
	generic.AddPreShutdownHookOrDie("flowscope-stop-watches", func() error {
		flows.StopWatches()
		return nil
	})
	if c.cfg.LeaseClient != nil {
		generic.AddPostStartHookOrDie("flowscope-agent-discovery", func(ctx genericapiserver.PostStartHookContext) error {
			go c.cfg.Agents.WatchLeases(ctx, c.cfg.LeaseClient, c.cfg.LeaseNamespace)
			go pods.Run(ctx.Done())
			return nil
		})
	}
	if c.cfg.LeaseClient != nil && c.cfg.PolicyClient != nil {
		generic.AddPostStartHookOrDie("flowscope-policy-status", func(ctx genericapiserver.PostStartHookContext) error {
			go func() {
				o := policystatus.Options{Namespace: c.cfg.LeaseNamespace}
				if err := policystatus.Run(ctx, c.cfg.PolicyClient, c.cfg.LeaseClient, o); err != nil {
					klog.ErrorS(err, "Failed writing the status of flow log policies")
				}
			}()
			return nil
		})
	}
	if keys := c.cfg.continueKeys; keys != nil {
		generic.AddPostStartHookOrDie("flowscope-continue-token-keys", func(ctx genericapiserver.PostStartHookContext) error {
			go keys.run(ctx)
			return nil
		})
	}
	if c.cfg.certCheck != nil {
		if err := generic.AddReadyzChecks(newCertCheck(c.cfg.certCheck)); err != nil {
			return nil, err
		}
	}
	if err := generic.AddReadyzChecks(c.warmup); err != nil {
		return nil, err
	}
	return s, nil
}

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	defer s.cfg.Agents.Close()
	if sm := s.cfg.certificates; sm != nil {
		// Before serving: the serving certificate comes from it.
		go sm.run(ctx)
	}
	return s.GenericAPIServer.PrepareRun().RunWithContext(ctx)
}

// Run builds the server from options and serves until ctx ends.
func Run(ctx context.Context, o *Options) error {
	cfg, err := o.Config()
	if err != nil {
		return err
	}
	s, err := cfg.Complete().New()
	if err != nil {
		return err
	}
	return s.Run(ctx)
}
