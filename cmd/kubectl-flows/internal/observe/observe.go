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

// Package observe is `kubectl flows observe`: hubble observe's flags over
// the Flow API, answered by lists (page by page) and, with --follow, by
// watches from the lists' resourceVersions.
package observe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"flowscope.io/flowscope/cmd/kubectl-flows/internal/filter"
	"flowscope.io/flowscope/cmd/kubectl-flows/internal/printer"
)

// DefaultLast is how many flows observe prints when no time flag is given,
// as `hubble observe` does.
const DefaultLast = 20

// Options are observe's flags.
type Options struct {
	AllNamespaces bool

	Pods, FromPods, ToPods                []string
	Services, FromServices, ToServices    []string
	Workloads, FromWorkloads, ToWorkloads []string
	FromNamespaces, ToNamespaces          []string
	LabelSelector                         string
	FromLabels, ToLabels                  []string
	IPs, FromIPs, ToIPs                   []string
	Ports, FromPorts, ToPorts             []string
	Protocols, Verdicts, DropReasons      []string
	Types, HTTPStatus, HTTPMethods, DNS   []string
	HTTPURLs                              []string
	Nodes, Directions                     []string
	NodeNames                             []string

	Since, Until string
	Last         int
	All          bool
	Follow       bool

	Output     string
	Color      string
	NodeName   bool
	TimeFormat string
	Verbose    bool
}

// AddFlags registers observe's flags.
func (o *Options) AddFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "Flows observed in every namespace (needs list on flows cluster-wide).")
	f.StringArrayVar(&o.Pods, "pod", nil, "Flows from or to the pod [namespace/]name (two requests, merged).")
	f.StringArrayVar(&o.FromPods, "from-pod", nil, "Flows from the pod [namespace/]name.")
	f.StringArrayVar(&o.ToPods, "to-pod", nil, "Flows to the pod [namespace/]name.")
	f.StringArrayVar(&o.Services, "service", nil, "Flows from or to the service [namespace/]name (two requests, merged).")
	f.StringArrayVar(&o.FromServices, "from-service", nil, "Flows from the service [namespace/]name.")
	f.StringArrayVar(&o.ToServices, "to-service", nil, "Flows to the service [namespace/]name.")
	f.StringArrayVar(&o.Workloads, "workload", nil, "Flows from or to pods of the workload [namespace/]name, such as a Deployment (two requests, merged).")
	f.StringArrayVar(&o.FromWorkloads, "from-workload", nil, "Flows from pods of the workload [namespace/]name.")
	f.StringArrayVar(&o.ToWorkloads, "to-workload", nil, "Flows to pods of the workload [namespace/]name.")
	f.StringArrayVar(&o.FromNamespaces, "from-namespace", nil, "Flows from pods in the namespace.")
	f.StringArrayVar(&o.ToNamespaces, "to-namespace", nil, "Flows to pods in the namespace.")
	f.StringVarP(&o.LabelSelector, "selector", "l", "", "Label selector over the labels of the observed pod (the end in the flow's namespace), as kubectl get flows -l.")
	f.StringArrayVar(&o.FromLabels, "from-label", nil, "Label selector over the source pod's labels (checked by the plugin).")
	f.StringArrayVar(&o.ToLabels, "to-label", nil, "Label selector over the destination pod's labels (checked by the plugin).")
	f.StringArrayVar(&o.IPs, "ip", nil, "Flows from or to the IP address (two requests), or CIDR (checked by the plugin).")
	f.StringArrayVar(&o.FromIPs, "from-ip", nil, "Flows from the IP address, or CIDR (checked by the plugin).")
	f.StringArrayVar(&o.ToIPs, "to-ip", nil, "Flows to the IP address, or CIDR (checked by the plugin).")
	f.StringArrayVar(&o.Ports, "port", nil, "Flows with the source or destination port (two requests, merged).")
	f.StringArrayVar(&o.FromPorts, "from-port", nil, "Flows with the source port.")
	f.StringArrayVar(&o.ToPorts, "to-port", nil, "Flows with the destination port.")
	f.StringArrayVar(&o.Protocols, "protocol", nil, "L4 (tcp, udp, sctp, icmp, icmpv4, icmpv6) or L7 (http, dns, grpc, kafka) protocol.")
	f.StringArrayVar(&o.Verdicts, "verdict", nil, "Verdict: FORWARDED, DROPPED, ERROR, AUDIT, REDIRECTED, TRACED, TRANSLATED.")
	f.StringArrayVar(&o.DropReasons, "drop-reason", nil, "Drop reason name, such as POLICY_DENIED.")
	f.StringArrayVarP(&o.Types, "type", "t", nil, "Event type: l7, drop or trace (trace: the plugin leaves out L7 records).")
	f.StringArrayVar(&o.HTTPStatus, "http-status", nil, "HTTP status code such as 404, or prefix such as 5+ (a prefix is checked by the plugin).")
	f.StringArrayVar(&o.HTTPMethods, "http-method", nil, "HTTP request method.")
	f.StringArrayVar(&o.HTTPURLs, "http-url", nil, "HTTP request URL, exact (Hubble: a regexp).")
	f.StringArrayVar(&o.DNS, "dns-query", nil, "DNS query name, exact, with or without its trailing dot (Hubble: a regexp).")
	f.StringArrayVar(&o.Nodes, "node", nil, "Node that observed the flow; a glob such as node-* is checked by the plugin.")
	f.StringArrayVar(&o.NodeNames, "node-name", nil, "The same as --node, under hubble observe's name.")
	f.StringArrayVar(&o.Directions, "traffic-direction", nil, "ingress or egress, seen from the observed pod.")

	f.StringVar(&o.Since, "since", "", "Flows since a duration ago (5m) or an RFC 3339 time. Default: the server's window (10m) for --all and --last.")
	f.StringVar(&o.Until, "until", "", "Flows until a duration ago or an RFC 3339 time.")
	f.IntVar(&o.Last, "last", 0, fmt.Sprintf("The last N flows of the window (default %d when no --since, --until, --all or --follow).", DefaultLast))
	f.BoolVar(&o.All, "all", false, "Every flow of the window.")
	f.BoolVarP(&o.Follow, "follow", "f", false, "After the flows asked for, print new flows as they come (a watch).")

	f.StringVarP(&o.Output, "output", "o", "compact", "compact, dict, table, wide, json (Kubernetes objects, one a line), jsonpb (Hubble's lines), or kubectl's yaml, name, jsonpath=..., go-template=...")
	f.StringVar(&o.Color, "color", "auto", "Colour verdicts: auto (on a terminal), always or never.")
	f.BoolVar(&o.NodeName, "print-node-name", false, "Print the node in compact, dict and table output.")
	f.StringVar(&o.TimeFormat, "time-format", "StampMilli", "StampMilli, RFC3339, RFC3339Milli, RFC3339Micro or RFC3339Nano.")
	f.BoolVar(&o.Verbose, "verbose", false, "Print the requests' selectors and the flags the plugin checks itself to stderr.")
}

// Plan compiles the selection flags.
func (o *Options) Plan() (*filter.Plan, error) {
	bounds, err := filter.Bounds(o.Since, o.Until)
	if err != nil {
		return nil, err
	}
	type build func() (*filter.Condition, error)
	builds := []build{
		func() (*filter.Condition, error) {
			return filter.Pod("--pod", o.Pods, filter.Source, filter.Destination)
		},
		func() (*filter.Condition, error) { return filter.Pod("--from-pod", o.FromPods, filter.Source) },
		func() (*filter.Condition, error) { return filter.Pod("--to-pod", o.ToPods, filter.Destination) },
		func() (*filter.Condition, error) {
			return filter.Service("--service", o.Services, filter.Source, filter.Destination)
		},
		func() (*filter.Condition, error) {
			return filter.Service("--from-service", o.FromServices, filter.Source)
		},
		func() (*filter.Condition, error) {
			return filter.Service("--to-service", o.ToServices, filter.Destination)
		},
		func() (*filter.Condition, error) {
			return filter.Workload("--workload", o.Workloads, filter.Source, filter.Destination)
		},
		func() (*filter.Condition, error) {
			return filter.Workload("--from-workload", o.FromWorkloads, filter.Source)
		},
		func() (*filter.Condition, error) {
			return filter.Workload("--to-workload", o.ToWorkloads, filter.Destination)
		},
		func() (*filter.Condition, error) {
			return filter.Namespace("--from-namespace", o.FromNamespaces, filter.Source)
		},
		func() (*filter.Condition, error) {
			return filter.Namespace("--to-namespace", o.ToNamespaces, filter.Destination)
		},
		func() (*filter.Condition, error) { return filter.Label("--from-label", o.FromLabels, filter.Source) },
		func() (*filter.Condition, error) { return filter.Label("--to-label", o.ToLabels, filter.Destination) },
		func() (*filter.Condition, error) { return filter.IP("--ip", o.IPs, filter.Source, filter.Destination) },
		func() (*filter.Condition, error) { return filter.IP("--from-ip", o.FromIPs, filter.Source) },
		func() (*filter.Condition, error) { return filter.IP("--to-ip", o.ToIPs, filter.Destination) },
		func() (*filter.Condition, error) {
			return filter.Port("--port", o.Ports, filter.Source, filter.Destination)
		},
		func() (*filter.Condition, error) { return filter.Port("--from-port", o.FromPorts, filter.Source) },
		func() (*filter.Condition, error) { return filter.Port("--to-port", o.ToPorts, filter.Destination) },
		func() (*filter.Condition, error) { return filter.Protocol("--protocol", o.Protocols) },
		func() (*filter.Condition, error) { return filter.Field("--verdict", "verdict", o.Verdicts) },
		func() (*filter.Condition, error) { return filter.DropReason("--drop-reason", o.DropReasons) },
		func() (*filter.Condition, error) { return filter.Type("--type", o.Types) },
		func() (*filter.Condition, error) { return filter.HTTPStatus("--http-status", o.HTTPStatus) },
		func() (*filter.Condition, error) {
			return filter.Field("--http-method", "l7.http.method", o.HTTPMethods)
		},
		func() (*filter.Condition, error) { return filter.Field("--http-url", "l7.http.url", o.HTTPURLs) },
		func() (*filter.Condition, error) { return filter.DNSQuery("--dns-query", o.DNS) },
		func() (*filter.Condition, error) {
			return filter.Node("--node", append(slices.Clone(o.Nodes), o.NodeNames...))
		},
		func() (*filter.Condition, error) {
			return filter.Field("--traffic-direction", "trafficDirection", o.Directions)
		},
	}
	var conds []filter.Condition
	for _, b := range builds {
		c, err := b()
		if err != nil {
			return nil, err
		}
		if c != nil {
			conds = append(conds, *c)
		}
	}
	return filter.Build(o.LabelSelector, bounds, conds)
}

var timeFormats = map[string]string{
	"StampMilli":   time.StampMilli,
	"RFC3339":      time.RFC3339,
	"RFC3339Milli": "2006-01-02T15:04:05.000Z07:00",
	"RFC3339Micro": "2006-01-02T15:04:05.000000Z07:00",
	"RFC3339Nano":  time.RFC3339Nano,
}

// Validate checks what the flags' types do not.
func (o *Options) Validate() error {
	if o.Last < 0 {
		return fmt.Errorf("--last must not be negative")
	}
	if o.Follow && o.Until != "" {
		return fmt.Errorf("--follow and --until exclude each other")
	}
	if o.All && o.Last > 0 {
		return fmt.Errorf("--all and --last exclude each other")
	}
	if _, ok := timeFormats[o.TimeFormat]; !ok {
		return fmt.Errorf("unknown --time-format %q", o.TimeFormat)
	}
	if !slices.Contains([]string{"auto", "always", "never"}, o.Color) {
		return fmt.Errorf("--color must be auto, always or never, not %q", o.Color)
	}
	for _, n := range append(slices.Clone(o.FromNamespaces), o.ToNamespaces...) {
		if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
			return fmt.Errorf("invalid namespace %q: %s", n, strings.Join(errs, "; "))
		}
	}
	return nil
}

// last returns how many of the newest flows of the window to print; 0 is
// all of them, -1 none (follow only).
func (o *Options) last() int {
	switch {
	case o.Last > 0:
		return o.Last
	case o.All || o.Since != "" || o.Until != "":
		return 0
	case o.Follow:
		return -1
	}
	return DefaultLast
}

func (o *Options) printer(out io.Writer) (printer.Printer, error) {
	color := o.Color == "always"
	if o.Color == "auto" {
		if f, ok := out.(interface{ Fd() uintptr }); ok {
			color = term.IsTerminal(int(f.Fd()))
		}
	}
	return printer.New(out, printer.Options{Output: o.Output, Color: color, NodeName: o.NodeName,
		TimeFormat: timeFormats[o.TimeFormat]})
}

// NewCommand returns `kubectl flows observe`.
func NewCommand(config *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{}
	cmd := &cobra.Command{
		Use:   "observe [flags]",
		Short: "Print flows, like hubble observe, within your RBAC",
		Long: `Print flows like "hubble observe", from the Flow API: past flows from the
agents' stores, then with --follow new ones, within the namespaces you may
list flows in.

The namespace of a flow is that of the pod where it was observed: -n names
it (kubectl's current namespace by default), -A lists every namespace.
Values of one flag are alternatives, different flags must all hold.

Server side, as field and label selectors: --from-pod, --to-pod,
--from-service, --to-service, --from-workload, --to-workload,
--from-namespace, --to-namespace, -l, --from-ip, --to-ip (addresses),
--from-port, --to-port, --protocol, --verdict, --drop-reason, --type l7|drop,
--http-status (codes), --http-method, --http-url, --dns-query, --node
(names), --traffic-direction, --since, --until.
Either end (--pod, --service, --workload, --ip, --port) and several values
of one flag: one request per combination (at most 8, past that the plugin
filters), merged by flow name.
Client side (the plugin receives a superset and filters): --from-label,
--to-label, CIDRs, --http-status 5+, --type trace, node globs.`,
		Example: `  # The last 20 flows of namespace shop
  kubectl flows observe -n shop

  # Drops to or from a pod over the last hour, then new ones as they come
  kubectl flows observe -n shop --pod shop/web-1 --verdict DROPPED --since 1h -f

  # HTTP 5xx answers everywhere you may look, as Hubble jsonpb lines
  kubectl flows observe -A --http-status 5+ --all -o jsonpb`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			plan, err := o.Plan()
			if err != nil {
				return err
			}
			p, err := o.printer(streams.Out)
			if err != nil {
				return err
			}
			ns, _, err := config.ToRawKubeConfigLoader().Namespace()
			if err != nil {
				return err
			}
			if o.AllNamespaces {
				ns = ""
			}
			if o.Verbose {
				for _, r := range plan.Requests {
					fmt.Fprintf(streams.ErrOut, "request: namespace=%q fieldSelector=%q labelSelector=%q\n", ns, r.FieldSelector, r.LabelSelector)
				}
				if len(plan.ClientSide) > 0 {
					fmt.Fprintf(streams.ErrOut, "checked by the plugin: %s\n", strings.Join(plan.ClientSide, ", "))
				}
			}
			client, err := newClient(config)
			if err != nil {
				return err
			}
			r := &runner{flows: client, namespace: ns, plan: plan, printer: p, last: o.last(), follow: o.Follow}
			err = r.run(cmd.Context())
			if errors.Is(err, context.Canceled) {
				return nil // interrupted
			}
			return err
		},
	}
	o.AddFlags(cmd)
	return cmd
}
