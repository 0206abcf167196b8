// Command flowscope-apiserver serves flows.flowscope.io, registered with
// kube-apiserver through an APIService, from the node agents.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/apiserver"
)

func main() {
	o := apiserver.NewOptions()
	fs := pflag.NewFlagSet("flowscope-apiserver", pflag.ExitOnError)
	o.AddFlags(fs)
	klogFlags := flag.NewFlagSet("klog", flag.ExitOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags)
	_ = fs.Parse(os.Args[1:])
	if err := utilerrors.NewAggregate(o.Validate()); err != nil {
		fmt.Fprintf(os.Stderr, "flowscope-apiserver: %v\n", err)
		os.Exit(2)
	}
	if err := apiserver.Run(genericapiserver.SetupSignalContext(), o); err != nil {
		klog.ErrorS(err, "Server failed")
		klog.FlushAndExit(klog.ExitFlushTimeout, 1)
	}
	klog.Flush()
}
