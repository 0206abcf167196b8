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

// Command tcxfloor attaches an empty TCX program (return TC_ACT_UNSPEC)
// to the ingress and egress of the named interfaces, as flowscope-agent
// attaches its programs, and holds them until it is signalled: the floor
// of what any TC capture can cost, for hack/bench-capture.sh
// (CAPTURE=floor).
//
//	go run ./hack/tcxfloor IFNAME...
package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "tcxfloor:", err)
		os.Exit(1)
	}
}

func run(ifnames []string) error {
	if len(ifnames) == 0 {
		return errors.New("usage: tcxfloor IFNAME [IFNAME]")
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "floor",
		Type:    ebpf.SchedCLS,
		License: "Apache-2.0",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, -1), // TC_ACT_UNSPEC: TCX "next"
			asm.Return(),
		},
	})
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	defer prog.Close()
	for _, name := range ifnames {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
			l, err := link.AttachTCX(link.TCXOptions{Interface: ifc.Index, Program: prog, Attach: at, Anchor: link.Head()})
			if err != nil {
				return fmt.Errorf("attach to %s: %w", name, err)
			}
			defer l.Close()
		}
	}
	fmt.Println("attached")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return nil
}
