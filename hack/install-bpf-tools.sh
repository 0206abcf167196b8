#!/usr/bin/env bash
# Installs what hack/generate-bpf.sh needs (clang-19, llvm-19 for
# llvm-strip-19, libbpf-dev for the pinned headers' source, bpftool for
# vmlinux.h) with apt-get, if missing. Building the agent needs none of
# it: the generated objects are committed.
set -euo pipefail

need=()
command -v clang-19 >/dev/null || need+=(clang-19)
command -v llvm-strip-19 >/dev/null || need+=(llvm-19)
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
command -v bpftool >/dev/null || need+=(bpftool)
if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
