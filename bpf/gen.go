// Package bpf holds Flowscope's eBPF programs (flow.c) and the Go bindings
// bpf2go generates for them. The generated *_bpfel.go/.o files are committed
// so that building the agent never needs clang; hack/generate-bpf.sh
// regenerates them. nodeagent/capture wraps them.
package bpf

// -mcpu=v3 for atomics (CAS/fetch-or, kernel >= 5.12) and bounded loops;
// -target bpfel only: every architecture we ship (amd64, arm64) is little
// endian. -type lists types the maps do not pull in by themselves.
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -mcpu=v3" -tags linux -target bpfel -type event -type flow_config -type sel_addr_key -type sel_port_key Flow flow.c -- -I./include
