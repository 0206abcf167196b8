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

# Stops everything hack/local-up.sh started from OUT_DIR (same environment
# variables, default <repo>/_output/local) and removes its state.
#
# Each component (pid file in OUT_DIR/pids) gets SIGTERM, to its process and
# its process group, then SIGKILL after 10 s; dependents stop first. Only
# processes whose command line refers to OUT_DIR are signalled, so a stale pid
# file never hits an unrelated process.
#
# Kept:    OUT_DIR/certs/ (CAs, certificates, keys, tokens.csv and the
#          kube-apiserver serving cert), so the next local-up is faster and
#          issues identical kubeconfigs (an exported KUBECONFIG keeps working).
# Removed: etcd data, agent data, replay files, kubeconfigs, kubectl cache,
#          pid files, logs (KEEP_LOGS=1 keeps logs/), the demo pods'
#          network namespaces and veths (forwarding sysctls restored).
# `hack/local-down.sh --all` (or ALL=1) removes OUT_DIR entirely.
#
# Harmless when nothing runs.
set -euo pipefail

ALL="${ALL:-0}"
case "${1:-}" in
  --all) ALL=1 ;;
  "") ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "usage: $0 [--all]" >&2
    exit 2
    ;;
esac

# shellcheck source=hack/lib/local.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/local.sh"
# shellcheck source=hack/lib/pods.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/pods.sh"

if [[ ! -d "${OUT_DIR}" ]]; then
  echo "nothing to stop: ${OUT_DIR} does not exist"
  exit 0
fi

local::lock
running=()
for c in $(local::components); do
  if local::pid_of "${c}" >/dev/null; then running+=("${c}"); fi
done
components="${running[*]}"
local::stop_all
# The demo pods' network namespaces, veths and sysctls (their objects go
# with etcd's data).
pods::down
local::clean_state
if [[ "${ALL}" == 1 ]]; then
  # Only a directory that looks like ours.
  if [[ -d "${OUT_DIR}/certs" || -e "${OUT_DIR}/.lock" ]]; then
    rm -rf "${OUT_DIR}"
  fi
  local::log "stopped (${components:-nothing was running}) and removed ${OUT_DIR}"
else
  local::log "stopped (${components:-nothing was running}); removed state in ${OUT_DIR}, kept certs/"
fi
