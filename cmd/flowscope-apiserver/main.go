// Command flowscope-apiserver serves flows.flowscope.io, registered with
// kube-apiserver through an APIService, from the node agents.
package main

import (
	"context"

	"flowscope.io/flowscope/apiserver"
	"flowscope.io/flowscope/internal/cli"
)

func main() {
	o := apiserver.NewOptions()
	cli.Main("flowscope-apiserver", o, func(ctx context.Context) error { return apiserver.Run(ctx, o) })
}
