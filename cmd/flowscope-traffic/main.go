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

// Command flowscope-traffic generates real traffic between the local
// system's demo pods (hack/lib/pods.sh). Run in a pod's network namespace,
// it serves TCP and UDP and sends TCP, UDP and ICMP to other pods, and
// speaks real HTTP/1.1, gRPC (h2c), DNS and Kafka as server and client,
// logging the totals per destination every 10 s:
//
//	ip netns exec fs-node-a-shop-web-0 flowscope-traffic --name shop/web-0 \
//	  --listen tcp:8080,udp:5353,http:80 \
//	  --connect tcp:10.244.1.3:5432,icmp:10.244.2.2,grpc:10.244.2.2:50051,dns:10.244.1.4:53 \
//	  --dns-table _output/local/pods/dns-hosts
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
