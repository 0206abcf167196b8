// Command flowscope-traffic generates real traffic between the local
// system's demo pods (hack/lib/pods.sh). Run in a pod's network namespace,
// it serves TCP and UDP and sends TCP, UDP and ICMP to other pods, logging
// the totals per destination every 10 s:
//
//	ip netns exec fs-node-a-shop-web-0 flowscope-traffic --name shop/web-0 \
//	  --listen tcp:8080,udp:5353 --connect tcp:10.244.1.3:5432,icmp:10.244.2.2
//
// See package flowscope.io/flowscope/internal/traffic for the specs.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"flowscope.io/flowscope/internal/traffic"
)

func main() {
	var cfg traffic.Config
	cfg.AddFlags(flag.CommandLine)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := traffic.Run(ctx, cfg)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "flowscope-traffic:", err)
		os.Exit(1)
	}
}
