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

package cli

import (
	"github.com/spf13/cobra"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"flowscope.io/flowscope/cmd/kubectl-flows/internal/ui"
)

// newUICommand returns `kubectl flows ui`: the web UI on a loopback
// address, calling kube-apiserver with the user's own kubeconfig, so that
// RBAC holds for every request it makes.
func newUICommand(config *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := ui.Options{Address: "127.0.0.1", Port: 7070, OpenBrowser: true, Out: streams.Out}
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Serve the web UI (service map, live flows) on 127.0.0.1 with your credentials",
		Long: `Serve Flowscope's web UI: a service map, a live flow table and filters
with the meanings of "observe". Every request it makes to kube-apiserver
carries your kubeconfig's credentials, so it shows what you may list and
nothing else. It prints the URL, and opens a browser where there is a
display (DISPLAY, WAYLAND_DISPLAY or BROWSER).`,
		Example: `  # Serve on http://127.0.0.1:7070 and open a browser
  kubectl flows ui

  # Another port, no browser
  kubectl flows ui --port 8080 --open=false`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rc, err := config.ToRESTConfig()
			if err != nil {
				return err
			}
			if o.Namespace, _, err = config.ToRawKubeConfigLoader().Namespace(); err != nil {
				return err
			}
			o.Config = rc
			return ui.Run(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.Address, "address", o.Address, "Address to listen on; keep it loopback unless you know who else can reach it.")
	cmd.Flags().IntVar(&o.Port, "port", o.Port, "Port to listen on; 0 picks a free one.")
	cmd.Flags().BoolVar(&o.OpenBrowser, "open", o.OpenBrowser, "Open a browser where there is a display.")
	return cmd
}
