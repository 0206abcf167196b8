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

// Package bpf holds Flowscope's eBPF programs (flow.c) and the Go bindings
// bpf2go generates for them. The generated *_bpfel.go/.o files are committed
// so that building the agent never needs clang; hack/generate-bpf.sh
// regenerates them. nodeagent/capture wraps them.
package bpf

// -mcpu=v3 for atomics (CAS/fetch-or, kernel >= 5.12) and bounded loops;
// -target bpfel only: every architecture we ship (amd64, arm64) is little
// endian. -type lists types the maps do not pull in by themselves.
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -mcpu=v3" -tags linux -target bpfel -type event -type flow_config -type sel_addr_key -type sel_port_key -type l7_event Flow flow.c -- -I./include
