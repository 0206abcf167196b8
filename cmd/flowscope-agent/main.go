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
