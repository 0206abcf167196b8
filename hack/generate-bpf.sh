#!/usr/bin/env bash

# Copyright The Flowscope Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

# Regenerates bpf/flow_bpfel.{go,o} from bpf/flow.c with clang-19 and
# bpf2go (pinned in go.mod as a tool). The output depends only on the
# sources and the compiler version, so `git diff --exit-code` after this
# script verifies the committed objects.
#
#   --update-vmlinux   also refresh enum skb_drop_reason in
#                      bpf/include/vmlinux.h from this machine's kernel.
#                      Not part of verify: it depends on the running kernel
#                      (CO-RE relocates the values at load time anyway).
#   --update-libbpf    re-copy the libbpf headers from libbpf-dev.
set -euo pipefail
cd "$(dirname "$0")/.."

hack/install-bpf-tools.sh

for arg in "$@"; do
	case "$arg" in
	--update-libbpf)
		for h in bpf_helpers.h bpf_helper_defs.h bpf_tracing.h bpf_core_read.h bpf_endian.h; do
			cp "/usr/include/bpf/$h" "bpf/include/$h"
		done
		dpkg-query -W -f='libbpf-dev ${Version}\n' libbpf-dev > bpf/include/LIBBPF_VERSION
		;;
	--update-vmlinux)
		full=$(mktemp)
		trap 'rm -f "$full"' EXIT
		bpftool btf dump file /sys/kernel/btf/vmlinux format c > "$full"
		python3 - "$full" bpf/include/vmlinux.h <<'PY'
import re, sys
full = open(sys.argv[1]).read()
enum = re.search(r"^enum skb_drop_reason \{.*?^\};", full, re.S | re.M).group(0)
path = sys.argv[2]
cur = open(path).read()
cur = re.sub(r"^enum skb_drop_reason \{.*?^\};", lambda _: enum, cur, flags=re.S | re.M)
open(path, "w").write(cur)
PY
		;;
	*)
		echo "unknown option $arg" >&2
		exit 2
		;;
	esac
done

go generate ./bpf/...
