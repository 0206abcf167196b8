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

// Package cli is the shared main of Flowscope's commands: flags (with
// klog's), validation, and a run under a context that ends on SIGTERM or
// SIGINT.
package cli

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/klog/v2"

	"flowscope.io/flowscope/internal/version"
)

// Options is what a command provides.
type Options interface {
	AddFlags(*pflag.FlagSet)
	Validate() []error
}

// Main parses the arguments into o, validates them, and runs run until it
// returns or a signal arrives; it exits the process.
func Main(name string, o Options, run func(context.Context) error) {
	MainArgs(name, os.Args[1:], o, run)
}

// MainArgs is Main with the arguments given, such as those after a
// subcommand's name.
func MainArgs(name string, args []string, o Options, run func(context.Context) error) {
	fs := pflag.NewFlagSet(name, pflag.ExitOnError)
	o.AddFlags(fs)
	klogFlags := flag.NewFlagSet("klog", flag.ExitOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags)
	printVersion := fs.Bool("version", false, "Print the version and exit.")
	_ = fs.Parse(args) // ExitOnError: never returns an error
	if *printVersion {
		fmt.Println(version.String(name))
		os.Exit(0)
	}
	if err := utilerrors.NewAggregate(o.Validate()); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	if err := run(genericapiserver.SetupSignalContext()); err != nil {
		klog.ErrorS(err, "Exiting", "command", name)
		klog.FlushAndExit(klog.ExitFlushTimeout, 1)
	}
	klog.Flush()
}
