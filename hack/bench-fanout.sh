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

# The fan-out benchmark (make bench-fanout): starts a local system of its
# own (hack/local-up.sh) with AGENTS agents, each with its own store and
# replay file, in a temporary OUT_DIR on free ports, without demo pods or
# demo flow generators; runs hack/fanout, which writes RATE flows/s into the
# replay files, measures lists through kube-apiserver, then WATCHERS
# informers and plain watches, and the components' memory and CPU; prints
# its report and stops everything.
#
# Environment (defaults in brackets):
#   AGENTS         [50]    agents (node-00, node-01, ...), at most 100
#   WATCHERS       [200]   concurrent watchers, half informers, half plain watches
#   RATE           [2000]  flows per second across all agents
#   DURATION       [60s]   how long the watchers are measured
#   WARMUP         [30s]   flows written before the lists start
#   LIST_REQUESTS  [200]   requests of each list benchmark (4 concurrent clients)
#   REPORT         [<repo>/_output/bench-fanout-<AGENTS>x<WATCHERS>.json]  the report as JSON;
#                  client-go's log of the watchers goes next to it (<REPORT>-client-go.log)
#   KEEP           [0]     1 leaves the system running (its OUT_DIR is printed)
#   AGENT_GOMAXPROCS [unset] GOMAXPROCS of each agent: on one machine standing in for
#                  many nodes, 1 keeps 50 agents from running 100 schedulers on 2 cores
#   AGENT_ARGS     [none]  more flags for every agent, e.g. --progress-interval=50ms
# The logs of a failed run are kept in its OUT_DIR.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AGENTS="${AGENTS:-50}"
WATCHERS="${WATCHERS:-200}"
RATE="${RATE:-2000}"
DURATION="${DURATION:-60s}"
WARMUP="${WARMUP:-30s}"
LIST_REQUESTS="${LIST_REQUESTS:-200}"
REPORT="${REPORT:-${ROOT}/_output/bench-fanout-${AGENTS}x${WATCHERS}.json}"
KEEP="${KEEP:-0}"

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port_base: a PORT_BASE whose ports (see hack/lib/local.sh: agents at
# +100 and +200) are all free, away from make run's 6440 and below the
# ephemeral port range: with a hundred listening ports, some connection's
# source port would otherwise take one of them before its agent starts.
free_port_base() {
  local base p i attempt ephemeral slots
  read -r ephemeral _ </proc/sys/net/ipv4/ip_local_port_range
  slots=$(((ephemeral - 10000) / 300 - 1))
  for ((attempt = 0; attempt < 20; attempt++)); do
    base=$((10000 + 300 * (RANDOM % slots)))
    local busy=0
    for p in 0 1 3 4; do
      port_open $((base + p)) && busy=1
    done
    for ((i = 0; i < AGENTS; i++)); do
      port_open $((base + 100 + i)) && busy=1
      port_open $((base + 200 + i)) && busy=1
    done
    if ((!busy)); then
      echo "${base}"
      return 0
    fi
  done
  log "no free PORT_BASE found"
  return 1
}

NODES="$(for ((i = 0; i < AGENTS; i++)); do printf 'node-%02d ' "${i}"; done)"
PORT_BASE="$(free_port_base)"
OUT_DIR="$(mktemp -d "${TMPDIR:-/tmp}/flowscope-bench-fanout-XXXXXX")"
export OUT_DIR PORT_BASE NODES FLOWGEN=0 DEMO_PODS=0

status=1
cleanup() {
  if [[ "${KEEP}" == 1 ]]; then
    log "left running: stop it with OUT_DIR=${OUT_DIR} ${ROOT}/hack/local-down.sh --all"
  elif ((status == 0)); then
    "${ROOT}/hack/local-down.sh" --all >/dev/null
  else
    KEEP_LOGS=1 "${ROOT}/hack/local-down.sh" >/dev/null || true
    log "failed; the components' logs are in ${OUT_DIR}/logs"
  fi
}
trap cleanup EXIT

log "building hack/fanout"
go build -o "${OUT_DIR}/fanout" "${ROOT}/hack/fanout"
log "starting ${AGENTS} agents in ${OUT_DIR} (PORT_BASE=${PORT_BASE})"
"${ROOT}/hack/local-up.sh" >"${OUT_DIR}/local-up.log" 2>&1 || {
  tail -n 30 "${OUT_DIR}/local-up.log" >&2
  exit 1
}
# shellcheck source=/dev/null
source "${OUT_DIR}/env"
mkdir -p "$(dirname "${REPORT}")"
"${OUT_DIR}/fanout" \
  --kubeconfig="${KUBECONFIG}" \
  --replay-dir="${OUT_DIR}/replay" \
  --pid-dir="${OUT_DIR}/pids" \
  --nodes="${NODES}" \
  --agent-metrics-port-base="${AGENT_METRICS_PORT_BASE}" \
  --apiserver-url="${FLOWSCOPE_APISERVER_URL}" \
  --apiserver-ca-file="${FLOWSCOPE_CA_FILE}" \
  --watchers="${WATCHERS}" \
  --rate="${RATE}" \
  --warmup="${WARMUP}" \
  --duration="${DURATION}" \
  --list-requests="${LIST_REQUESTS}" \
  --report="${REPORT}" \
  --client-log="${REPORT%.json}-client-go.log"
status=0
