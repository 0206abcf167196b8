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

# shellcheck disable=SC2034 # variables are used by the scripts sourcing this file
# Shared by hack/local-up.sh and hack/local-down.sh (sourced): configuration,
# layout of OUT_DIR and process management.
#
# Layout of OUT_DIR:
#   certs/           CAs, certificates, keys, tokens.csv, kas/ (KAS self-signed serving cert).
#                    Created once, kept by local-down.sh so kubeconfigs stay valid.
#   kubeconfig*      admin and per-user/component kubeconfigs (tokens + KAS CA)
#   env              shell-sourcable summary (KUBECONFIG, URLs, ports, nodes) for scripts/tests
#   pids/<c>.pid     one per background component; each runs in its own session/process group
#   pids/<c>.bin     fingerprint of the binary it runs (to restart it when rebuilt)
#   logs/<c>.log     stdout+stderr of each component
#   etcd/ agents/<node>/ replay/<node>.jsonl kubecache/ manifests/   state, removed by local-down.sh
#   prometheus/      prometheus.yml and data/ of the local Prometheus (PROMETHEUS=1), removed by local-down.sh
#   otelcol/         config.yaml and logs.json (what the agents sent over OTLP) of the local
#                    OpenTelemetry Collector (OTEL_COLLECTOR=1), removed by local-down.sh

LOCAL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

OUT_DIR="${OUT_DIR:-${LOCAL_ROOT}/_output/local}"
PORT_BASE="${PORT_BASE:-6440}"
BIN_DIR="${BIN_DIR:-${LOCAL_ROOT}/_output/bin}"
TOOLS_DIR="${TOOLS_DIR:-${LOCAL_ROOT}/_output/tools}"
NODES="${NODES:-node-a node-b}"

# Absolute paths: they end up in pid checks, kubeconfigs and printed commands.
local::abspath() {
  case "$1" in
    /*) printf '%s' "$1" ;;
    *) printf '%s/%s' "${PWD}" "$1" ;;
  esac
}
if [[ -z "${OUT_DIR%/}" ]]; then
  echo "OUT_DIR must not be empty or /" >&2
  exit 1
fi
OUT_DIR="$(local::abspath "${OUT_DIR%/}")"
BIN_DIR="$(local::abspath "${BIN_DIR%/}")"
TOOLS_DIR="$(local::abspath "${TOOLS_DIR%/}")"

read -r -a NODE_LIST <<<"${NODES}"

CERT_DIR="${OUT_DIR}/certs"
KAS_CERT_DIR="${CERT_DIR}/kas"
PID_DIR="${OUT_DIR}/pids"
LOG_DIR="${OUT_DIR}/logs"
TOKEN_FILE="${CERT_DIR}/tokens.csv"

ETCD_PORT=$((PORT_BASE + 0))
ETCD_PEER_PORT=$((PORT_BASE + 1))
KAS_PORT=$((PORT_BASE + 3))
APISERVER_PORT=$((PORT_BASE + 4))
PROMETHEUS_PORT=$((PORT_BASE + 5))
OTELCOL_GRPC_PORT=$((PORT_BASE + 6))
OTELCOL_HTTP_PORT=$((PORT_BASE + 7))
# Agent i listens on AGENT_PORT_BASE+i and AGENT_METRICS_PORT_BASE+i: room
# for MAX_NODES agents, so a scale test (hack/bench-fanout.sh) fits.
AGENT_PORT_BASE=$((PORT_BASE + 100))
AGENT_METRICS_PORT_BASE=$((PORT_BASE + 200))
MAX_NODES=100

FLOWSCOPE_NAMESPACE=flowscope-system
APISERVICE_NAME=v1alpha1.flows.flowscope.io

# local::lock: serializes local-up and local-down on one OUT_DIR (fd 8; the
# components are started with fd 8 closed so they do not hold the lock).
local::lock() {
  command -v flock >/dev/null || return 0
  exec 8>"${OUT_DIR}/.lock"
  if ! flock -n 8; then
    local::log "waiting for another local-up/local-down on ${OUT_DIR}..."
    flock -w 600 8 || { echo "could not lock ${OUT_DIR}/.lock" >&2; exit 1; }
  fi
}

local::log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*"; }
local::warn() { printf '%s WARNING: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# local::pid_of NAME: prints the pid of component NAME if its pid file names a
# live process that belongs to this OUT_DIR (its command line mentions
# OUT_DIR, which guards against pid reuse); fails otherwise.
local::pid_of() {
  local file="${PID_DIR}/$1.pid" pid
  [[ -s "${file}" ]] || return 1
  pid="$(<"${file}")"
  [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/${pid}/cmdline" ]] || return 1
  # A zombie is not running.
  [[ "$(ps -o stat= -p "${pid}" 2>/dev/null)" != Z* ]] || return 1
  tr '\0' ' ' <"/proc/${pid}/cmdline" | grep -qF -- "${OUT_DIR}/" || return 1
  echo "${pid}"
}

# local::components: names of the components with a pid file.
local::components() {
  local f
  [[ -d "${PID_DIR}" ]] || return 0
  for f in "${PID_DIR}"/*.pid; do
    [[ -e "${f}" ]] || continue
    f="${f##*/}"
    echo "${f%.pid}"
  done
}

# local::start NAME CMD...: runs CMD in the background in its own session
# (so its whole process group can be signalled), detached from the terminal,
# output to logs/NAME.log, pid to pids/NAME.pid. Only stdin/stdout/stderr are
# inherited (fds 7 and 8 of the scripts are closed), so a caller reading the
# script's output through a pipe sees EOF when the script exits.
local::start() {
  local name=$1
  shift
  mkdir -p "${PID_DIR}" "${LOG_DIR}"
  # Not a process group leader (no job control in scripts), so setsid execs
  # in place and $! is the component's own pid, which is also its pgid.
  setsid nohup "$@" >"${LOG_DIR}/${name}.log" 2>&1 </dev/null 7>&- 8>&- &
  echo "$!" >"${PID_DIR}/${name}.pid"
  # Which build runs, to tell later whether the binary changed since
  # (`go build` rewrites its output every time, so mtimes do not tell).
  local::binary_id "$1" >"${PID_DIR}/${name}.bin"
}

# local::binary_id FILE: a cheap content fingerprint (CRC and size).
local::binary_id() {
  cksum <"$(readlink -f "$1")" 2>/dev/null || echo missing
}

# local::stop NAME: SIGTERM to the component's process group, up to 10 s,
# then SIGKILL. Removes the pid file. Harmless if not running.
local::stop() {
  local name=$1 pid pgid i
  if pid="$(local::pid_of "${name}")"; then
    pgid="$(ps -o pgid= -p "${pid}" 2>/dev/null | tr -d ' ')"
    local::log "stopping ${name} (pid ${pid})"
    kill -TERM "${pid}" 2>/dev/null || true
    # Signal the group only if the component leads its own (never ours).
    if [[ "${pgid}" == "${pid}" ]]; then
      kill -TERM -- "-${pgid}" 2>/dev/null || true
    fi
    for ((i = 0; i < 100; i++)); do
      kill -0 "${pid}" 2>/dev/null || break
      [[ "$(ps -o stat= -p "${pid}" 2>/dev/null)" == Z* ]] && break
      sleep 0.1
    done
    if kill -0 "${pid}" 2>/dev/null && [[ "$(ps -o stat= -p "${pid}" 2>/dev/null)" != Z* ]]; then
      local::warn "${name} (pid ${pid}) did not exit after 10s, killing"
      kill -KILL "${pid}" 2>/dev/null || true
    fi
    if [[ "${pgid}" == "${pid}" ]]; then
      kill -KILL -- "-${pgid}" 2>/dev/null || true
    fi
  fi
  rm -f "${PID_DIR}/${name}.pid" "${PID_DIR}/${name}.bin"
}

# local::stop_all: stops every component with a pid file, the dependents
# first (flowgen, aggregated server, agents, then kube-apiserver and etcd).
local::stop_all() {
  local c order=() rest=()
  for c in $(local::components); do
    case "${c}" in
      flowgen-*) order+=("${c}") ;;
      *) rest+=("${c}") ;;
    esac
  done
  local pattern
  for pattern in flowscope-apiserver 'agent-*' other kube-apiserver etcd; do
    for c in "${rest[@]}"; do
      case "${c}" in
        flowscope-apiserver | agent-* | kube-apiserver | etcd)
          # shellcheck disable=SC2053 # glob match intended
          if [[ "${c}" == ${pattern} ]]; then order+=("${c}"); fi
          ;;
        *)
          if [[ "${pattern}" == other ]]; then order+=("${c}"); fi
          ;;
      esac
    done
  done
  for c in "${order[@]}"; do
    local::stop "${c}"
  done
  return 0
}

# local::clean_state: removes everything in OUT_DIR except certs/ (and logs/
# when KEEP_LOGS=1). Only known names are removed, never OUT_DIR itself.
local::clean_state() {
  local keep_logs=${KEEP_LOGS:-0} f
  rm -rf "${PID_DIR}" "${OUT_DIR}/etcd" "${OUT_DIR}/agents" "${OUT_DIR}/replay" \
    "${OUT_DIR}/kubecache" "${OUT_DIR}/manifests" "${OUT_DIR}/env" "${OUT_DIR}/prometheus" \
    "${OUT_DIR}/otelcol"
  for f in "${OUT_DIR}"/kubeconfig "${OUT_DIR}"/kubeconfig-*; do
    rm -f "${f}"
  done
  [[ "${keep_logs}" == 1 ]] || rm -rf "${LOG_DIR}"
}

# local::port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
local::port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
