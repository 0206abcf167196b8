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
