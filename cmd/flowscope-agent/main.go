// Command flowscope-agent is Flowscope's node agent: it captures or imports
// the node's flows, stores them, and serves them to flowscope-apiserver.
package main

import (
	"context"

	"flowscope.io/flowscope/internal/cli"
	"flowscope.io/flowscope/nodeagent/agent"
)

func main() {
	o := agent.NewOptions()
	cli.Main("flowscope-agent", o, func(ctx context.Context) error { return agent.Run(ctx, o) })
}
