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

// Command flowscope-flowgen appends made-up but realistic Hubble export
// lines to a file, for demos and tests of the agent's Hubble import:
//
//	flowscope-flowgen --node-name node-a --out /var/log/acns/hubble/events.log --rate 5
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"flowscope.io/flowscope/internal/flowgen"
)

func main() {
	var cfg flowgen.Config
	cfg.AddFlags(flag.CommandLine)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := flowgen.Run(ctx, cfg)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "flowscope-flowgen:", err)
		os.Exit(1)
	}
}
