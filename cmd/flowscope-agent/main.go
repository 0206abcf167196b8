// Command flowscope-agent is Flowscope's node agent: it captures or imports
// the node's flows, stores them, and serves them to flowscope-apiserver.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/nodeagent/agent"
)

func main() {
	o := agent.NewOptions()
	fs := pflag.NewFlagSet("flowscope-agent", pflag.ExitOnError)
	o.AddFlags(fs)
	klogFlags := flag.NewFlagSet("klog", flag.ExitOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags)
	_ = fs.Parse(os.Args[1:])
	if err := utilerrors.NewAggregate(o.Validate()); err != nil {
		fmt.Fprintf(os.Stderr, "flowscope-agent: %v\n", err)
		os.Exit(2)
	}
	if err := agent.Run(genericapiserver.SetupSignalContext(), o); err != nil {
		klog.ErrorS(err, "Agent failed")
		klog.FlushAndExit(klog.ExitFlushTimeout, 1)
	}
	klog.Flush()
}
