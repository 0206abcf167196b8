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

// Package cli assembles `kubectl flows` and reports its errors the way
// kubectl does.
package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"flowscope.io/flowscope/cmd/kubectl-flows/internal/observe"
	"flowscope.io/flowscope/cmd/kubectl-flows/internal/top"
	"flowscope.io/flowscope/internal/version"
)

// NewCommand returns the root command of the plugin.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "flows",
		Short: "Observe network flows through the Flowscope Flow API, within your RBAC",
		Long: `kubectl flows reads the flows.flowscope.io API with your kubeconfig, so
you see the flows of the namespaces you may list flows in, and nothing else.`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl flows"},
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.SetVersionTemplate(version.String("kubectl-flows") + "\n")
	config := genericclioptions.NewConfigFlags(true)
	config.AddFlags(cmd.PersistentFlags())
	cmd.AddCommand(observe.NewCommand(config, streams), top.NewCommand(config, streams), newUICommand(config, streams))
	return cmd
}

// PrintError writes err as kubectl does: "Error from server (Reason): ..."
// for API errors, "error: ..." for others, never a stack.
func PrintError(w io.Writer, err error) {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		s := status.Status()
		if s.Reason != "" {
			fmt.Fprintf(w, "Error from server (%s): %s\n", s.Reason, s.Message)
			return
		}
		fmt.Fprintf(w, "Error from server: %s\n", s.Message)
		return
	}
	fmt.Fprintf(w, "error: %v\n", err)
}
