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

package apiserver

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/spf13/pflag"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericfeatures "k8s.io/apiserver/pkg/features"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	utilcompatibility "k8s.io/apiserver/pkg/util/compatibility"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"flowscope.io/flowscope/agentclient"
	"flowscope.io/flowscope/apis/flows/v1alpha1"
	"flowscope.io/flowscope/apiserver/selfcerts"
	"flowscope.io/flowscope/generated/clientset/versioned"
	generatedopenapi "flowscope.io/flowscope/generated/openapi"
	"flowscope.io/flowscope/registry/flow"
)

// Options are flowscope-apiserver's flags.
type Options struct {
	Recommended *genericoptions.RecommendedOptions

	Kubeconfig          string
	StaticAgents        []string
	AgentNamespace      string
	AgentCAFile         string
	AgentClientCertFile string
	AgentClientKeyFile  string
	ContinueKeysFile    string
	PolicyStatus        bool
	Storage             flow.Options
	Certs               CertOptions

	// CompressWatchLists keeps k8s.io/apiserver's WatchListCompression
	// (see Config).
	CompressWatchLists bool
}

// NewOptions returns the defaults. The server keeps no state of its own, so
// etcd, admission and the core API informers are off.
func NewOptions() *Options {
	ro := genericoptions.NewRecommendedOptions("", Codecs.LegacyCodec(v1alpha1.SchemeGroupVersion))
	ro.Etcd = nil
	ro.Admission = nil
	ro.CoreAPI = nil
	ro.Features.EnablePriorityAndFairness = false
	ro.SecureServing.BindPort = 8443
	return &Options{
		Recommended:    ro,
		AgentNamespace: "flowscope-system",
		PolicyStatus:   true,
		Certs:          CertOptions{Options: selfcerts.DefaultOptions("flowscope-system")},
		Storage: flow.Options{
			DefaultWindow:    10 * time.Minute,
			AgentTimeout:     10 * time.Second,
			WatchBuffer:      1000,
			BookmarkInterval: time.Minute,
			MaxAgentLag:      5 * time.Second,
			MaxWatchers:      1000,

			MaxConcurrentLists: 32,
			ListQueueWait:      time.Second,

			// README "Limits" gives the reasons.
			MaxWatchersPerUser:        100,
			MaxConcurrentListsPerUser: 8,
			MaxListPage:               500,
			MaxWatchInitialEvents:     1000,
		},
	}
}

// AddFlags registers the options on fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.Recommended.AddFlags(fs)
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Kubeconfig used to discover agents through their Leases; empty means in-cluster, \"-\" disables Lease discovery.")
	fs.StringSliceVar(&o.StaticAgents, "agents", o.StaticAgents, "Agents to use besides those with Leases, as node=host:port (development).")
	fs.StringVar(&o.AgentNamespace, "agent-namespace", o.AgentNamespace, "Namespace of the agents' Leases.")
	fs.StringVar(&o.AgentCAFile, "agent-ca-file", o.AgentCAFile, "CA bundle that signs the agents' serving certificates (required); each must name its node as the DNS name <node>.agents.flowscope.io, and no other node.")
	fs.StringVar(&o.AgentClientCertFile, "agent-client-cert-file", o.AgentClientCertFile, "Client certificate presented to the agents (required).")
	fs.StringVar(&o.AgentClientKeyFile, "agent-client-key-file", o.AgentClientKeyFile, "Key of the agent client certificate (required).")
	fs.StringVar(&o.ContinueKeysFile, "continue-token-keys-file", o.ContinueKeysFile, "File of the keys that sign continue tokens, one per line (at least 32 bytes), the first signing, read again every 10s so keys rotate without a restart; every replica must mount the same file. Empty means a random key per process: tokens then fail (400) on another replica or after a restart.")
	fs.BoolVar(&o.PolicyStatus, "policy-status", o.PolicyStatus, "Write the status of ClusterFlowLogPolicies and FlowLogPolicies from what the agents' Leases report; one replica writes, elected with the Lease flowscope-policy-status in --agent-namespace. Off when --kubeconfig is \"-\".")
	fs.DurationVar(&o.Storage.DefaultWindow, "default-list-window", o.Storage.DefaultWindow, "How far back a list or an initial watch goes when its field selector names neither since nor until.")
	fs.DurationVar(&o.Storage.AgentTimeout, "agent-timeout", o.Storage.AgentTimeout, "How long each agent may take to answer a list or get.")
	fs.IntVar(&o.Storage.WatchBuffer, "watch-buffer", o.Storage.WatchBuffer, "Events buffered per watcher; a watcher that falls further behind is cut off.")
	fs.DurationVar(&o.Storage.BookmarkInterval, "bookmark-interval", o.Storage.BookmarkInterval, "How often watchers that allow bookmarks get one.")
	fs.DurationVar(&o.Storage.MaxAgentLag, "max-agent-lag", o.Storage.MaxAgentLag, "How long a silent agent may hold back watch events of the others before watches go on without it. Past 1,000 agents, their heartbeats are thinned out to at most a third of it.")
	fs.IntVar(&o.Storage.MaxWatchers, "max-watchers", o.Storage.MaxWatchers, "Watches served at once; more are refused with 429. Each holds at most --watch-buffer flows for its client and --watch-buffer per agent in memory.")
	fs.IntVar(&o.Storage.MaxConcurrentLists, "max-concurrent-lists", o.Storage.MaxConcurrentLists, "Lists fanning out to the agents at once, initial lists of watches included; each holds up to a page per agent in memory. 0 means no limit.")
	fs.DurationVar(&o.Storage.ListQueueWait, "list-queue-wait", o.Storage.ListQueueWait, "How long a list beyond --max-concurrent-lists (or --max-concurrent-lists-per-user) waits before it is refused with 429.")
	fs.IntVar(&o.Storage.MaxWatchersPerUser, "max-watchers-per-user", o.Storage.MaxWatchersPerUser, "Watches one user may have open at once, within --max-watchers; more are refused with 429. Members of system:masters are held by --max-watchers only. 0 means no per-user limit.")
	fs.IntVar(&o.Storage.MaxConcurrentListsPerUser, "max-concurrent-lists-per-user", o.Storage.MaxConcurrentListsPerUser, "Lists of one user fanning out at once, within --max-concurrent-lists; more wait --list-queue-wait, then get 429. Members of system:masters are held by --max-concurrent-lists only. 0 means no per-user limit.")
	fs.Int64Var(&o.Storage.MaxListPage, "max-list-page", o.Storage.MaxListPage, "Most flows in one list response, whatever its limit, none included: the rest follows its continue token. 0 means no limit.")
	o.Certs.AddFlags(fs)
	fs.BoolVar(&o.CompressWatchLists, "compress-watch-lists", o.CompressWatchLists, "Gzip the streams of watches that ask for their initial events (informers' watch-lists) when the client accepts gzip. Each such stream then holds a 1.2 MiB gzip writer whenever it writes, and every write pays a gzip header and trailer; plain watches are never compressed.")
	fs.Int64Var(&o.Storage.MaxWatchInitialEvents, "max-watch-initial-events", o.Storage.MaxWatchInitialEvents, "Most initial events of a watch (resourceVersion \"\" or \"0\", or sendInitialEvents); a watch that more flows match is refused with 400, and informers fall back to a paginated list. 0 means no limit.")
}

// Validate checks the options.
func (o *Options) Validate() []error {
	errs := o.Recommended.Validate()
	errs = append(errs, o.Certs.validate(o.Kubeconfig)...)
	for _, req := range []struct{ flag, value string }{{"--agent-ca-file", o.AgentCAFile}, {"--agent-client-cert-file", o.AgentClientCertFile}, {"--agent-client-key-file", o.AgentClientKeyFile}} {
		if req.value == "" && !o.Certs.SelfManaged {
			errs = append(errs, fmt.Errorf("%s is required", req.flag))
		}
	}
	if _, err := agentclient.ParseStatic(o.StaticAgents); err != nil {
		errs = append(errs, fmt.Errorf("--agents: %w", err))
	}
	if o.Storage.DefaultWindow <= 0 || o.Storage.AgentTimeout <= 0 || o.Storage.WatchBuffer <= 0 || o.Storage.MaxWatchers <= 0 {
		errs = append(errs, errors.New("--default-list-window, --agent-timeout, --watch-buffer and --max-watchers must be positive"))
	}
	if o.Storage.MaxConcurrentLists < 0 || o.Storage.ListQueueWait < 0 {
		errs = append(errs, errors.New("--max-concurrent-lists and --list-queue-wait must not be negative"))
	}
	if o.Storage.MaxWatchersPerUser < 0 || o.Storage.MaxConcurrentListsPerUser < 0 || o.Storage.MaxListPage < 0 || o.Storage.MaxWatchInitialEvents < 0 {
		errs = append(errs, errors.New("--max-watchers-per-user, --max-concurrent-lists-per-user, --max-list-page and --max-watch-initial-events must not be negative"))
	}
	return errs
}

// Config builds the server configuration.
func (o *Options) Config() (*Config, error) {
	certs, err := o.newSelfManaged()
	if err != nil {
		return nil, err
	}
	if certs != nil && certs.loader != nil {
		// Served from the Secret the elected replica keeps, reloaded.
		o.Recommended.SecureServing.ServerCert.GeneratedCert = certs.loader
	} else if err := o.Recommended.SecureServing.MaybeDefaultWithSelfSignedCerts("localhost",
		[]string{"api.flowscope-system.svc"}, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
		return nil, fmt.Errorf("create self-signed certificates: %w", err)
	}
	// k8s.io/apiserver gzips a watch-list stream with a gzip writer taken
	// from a pool for each write and flushed at once: 1.2 MiB per writer,
	// held while the write waits on the aggregator's HTTP/2 flow control,
	// and a gzip header and trailer per batch of events. With 190 of 500
	// watchers started (half informers), gzip writers were a third of this
	// server's live heap; bench-fanout at 50 watchers: 285 KiB of RSS per
	// watcher without them (282-308) against 354 KiB (305-388), medians of
	// 5 alternating rounds.
	if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(map[string]bool{string(genericfeatures.WatchListCompression): o.CompressWatchLists}); err != nil {
		return nil, err
	}
	// The aggregator multiplexes every user's watches over few HTTP/2
	// connections to this server.
	o.Recommended.SecureServing.HTTP2MaxStreamsPerConnection = 1000

	gc := genericapiserver.NewRecommendedConfig(Codecs)
	namer := openapinamer.NewDefinitionNamer(Scheme)
	gc.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(generatedopenapi.GetOpenAPIDefinitions, namer)
	gc.OpenAPIConfig.Info.Title = "Flowscope"
	gc.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(generatedopenapi.GetOpenAPIDefinitions, namer)
	gc.OpenAPIV3Config.Info.Title = "Flowscope"
	gc.EffectiveVersion = utilcompatibility.DefaultBuildEffectiveVersion()
	if err := o.Recommended.ApplyTo(gc); err != nil {
		return nil, err
	}

	tlsConfig, certCheck, err := o.agentTLS(certs)
	if err != nil {
		return nil, err
	}
	static, _ := agentclient.ParseStatic(o.StaticAgents) // checked by Validate
	var keys *keyFile
	if o.ContinueKeysFile != "" {
		if keys, err = loadKeyFile(o.ContinueKeysFile); err != nil {
			return nil, err
		}
		o.Storage.ContinueKeys = keys.Keys
	}
	pool := agentclient.NewPool(tlsConfig, static)
	pool.SetMaxAgentLag(o.Storage.MaxAgentLag)
	cfg := &Config{
		GenericConfig:  gc,
		Agents:         pool,
		LeaseNamespace: o.AgentNamespace,
		Storage:        o.Storage,
		continueKeys:   keys,
		certificates:   certs,
		certCheck:      certCheck,
	}
	if o.Kubeconfig != "-" {
		var rc *rest.Config
		if o.Kubeconfig != "" {
			rc, err = clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
		} else {
			rc, err = rest.InClusterConfig()
		}
		if err != nil {
			return nil, fmt.Errorf("kubernetes client for agent discovery: %w", err)
		}
		if cfg.LeaseClient, err = kubernetes.NewForConfig(rc); err != nil {
			return nil, err
		}
		if o.PolicyStatus {
			if cfg.PolicyClient, err = versioned.NewForConfig(rc); err != nil {
				return nil, err
			}
		}
	}
	return cfg, nil
}
