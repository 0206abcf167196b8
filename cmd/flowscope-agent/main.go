// Command flowscope-agent is Flowscope's node agent: it captures or imports
// the node's flows, stores them, and serves them to flowscope-apiserver.
//
//	flowscope-agent check --data-dir DIR
//
// verifies the store of a stopped agent instead, and exits 1 when it has
// problems.
package main

import (
	"context"
	"os"

	"flowscope.io/flowscope/internal/cli"
	"flowscope.io/flowscope/nodeagent/agent"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "check" {
		o := agent.NewCheckOptions()
		cli.MainArgs("flowscope-agent check", os.Args[2:], o, func(context.Context) error { return agent.Check(o, os.Stdout) })
		return
	}
	o := agent.NewOptions()
	cli.Main("flowscope-agent", o, func(ctx context.Context) error { return agent.Run(ctx, o) })
}
