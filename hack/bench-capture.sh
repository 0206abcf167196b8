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

# Measures what capture costs the datapath: TCP throughput (iperf3) and
# small-packet UDP rate between two network-namespace "pods" whose traffic
# crosses the host through veth pairs, with flowscope-agent's programs
# attached to the host sides versus not attached, in alternating rounds so
# that the machine's noise hits both alike. Also reports the agent's CPU
# time per million packets and the events the datapath lost.
#
# CAPTURE=floor attaches an empty TCX program (hack/tcxfloor) instead of
# the agent: the floor any TC capture pays on this kernel and machine.
# AGENT=path runs that flowscope-agent binary instead of building one (to
# compare builds side by side). Each round's ratios are printed, and the
# median and spread (min-max) of the ratios over the rounds.
#
# Root only. Usage: [CAPTURE=all|selected|floor] [AGENT=bin] hack/bench-capture.sh [rounds] [seconds per run]
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${1:-3}
SECS=${2:-10}
CAPTURE=${CAPTURE:-all} # selected, with no watch: the programs run but select nothing
BIN=${BIN_DIR:-${ROOT}/_output/bin}
WORK=$(mktemp -d /tmp/flowscope-bench.XXXXXX)
# shellcheck source=hack/lib/benchnet.sh
source "${ROOT}/hack/lib/benchnet.sh"
[[ $(id -u) == 0 ]] || { echo "bench-capture: needs root" >&2; exit 1; }
command -v iperf3 >/dev/null || { apt-get update -qq && apt-get install -y -qq iperf3 >/dev/null; }

cleanup() {
  stop_agent
  pkill -f "iperf3 -s -B ${IP_B}" 2>/dev/null || true
  teardown_pods
  rm -rf "${WORK}"
}
trap cleanup EXIT

# start_floor: the empty program on both pods' host sides.
start_floor() {
  "${WORK}/tcxfloor" "${IF_A}" "${IF_B}" >"${WORK}/floor.log" 2>&1 &
  AGENT_PID=$!
  for _ in $(seq 100); do
    if grep -q '^attached' "${WORK}/floor.log"; then
      return
    fi
    sleep 0.1
  done
  echo "bench-capture: tcxfloor did not attach" >&2
  cat "${WORK}/floor.log" >&2
  exit 1
}

# stats: "median min max" of the numbers given.
stats() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {m = NR % 2 ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2; printf "%.3f %.3f %.3f", m, v[1], v[NR]}'; }

main() {
  if [[ "${CAPTURE}" == floor ]]; then
    go build -o "${WORK}/tcxfloor" "${ROOT}/hack/tcxfloor"
  elif [[ -n "${AGENT:-}" ]]; then
    BIN=$(dirname "${AGENT}")
  else
    go build -o "${BIN}/" "${ROOT}/cmd/flowscope-agent" 2>/dev/null || [[ -x "${BIN}/flowscope-agent" ]]
  fi
  setup_pods
  certs
  ip netns exec "${NS_B}" iperf3 -s -B "${IP_B}" -D
  sleep 0.5

  local r base_tcp=() cap_tcp=() base_udp=() cap_udp=() tcp_ratio=() udp_ratio=() cpu_s=0 pkts=0 lost=0
  for ((r = 1; r <= ROUNDS; r++)); do
    base_tcp+=("$(tcp_gbps "${SECS}")")
    base_udp+=("$(udp_kpps "${SECS}")")
    if [[ "${CAPTURE}" == floor ]]; then
      start_floor
      cap_tcp+=("$(tcp_gbps "${SECS}")")
      cap_udp+=("$(udp_kpps "${SECS}")")
    else
      start_agent --capture="${CAPTURE}"
      local t0 p0
      t0=$(cpu_ticks "${AGENT_PID}")
      p0=$(metric flowscope_agent_capture_packets_total)
      cap_tcp+=("$(tcp_gbps "${SECS}")")
      cap_udp+=("$(udp_kpps "${SECS}")")
      sleep 1 # let the reader drain
      cpu_s=$(awk -v a="${cpu_s}" -v t="$(cpu_ticks "${AGENT_PID}")" -v t0="${t0}" -v hz="$(getconf CLK_TCK)" 'BEGIN{print a + (t - t0) / hz}')
      pkts=$(awk -v a="${pkts}" -v p="$(metric flowscope_agent_capture_packets_total)" -v p0="${p0}" 'BEGIN{print a + p - p0}')
      lost=$(awk -v a="${lost}" -v l="$(metric flowscope_agent_capture_lost_events_total)" 'BEGIN{print a + l}')
    fi
    stop_agent
    tcp_ratio+=("$(awk -v a="${cap_tcp[-1]}" -v b="${base_tcp[-1]}" 'BEGIN{printf "%.3f", a/b}')")
    udp_ratio+=("$(awk -v a="${cap_udp[-1]}" -v b="${base_udp[-1]}" 'BEGIN{printf "%.3f", a/b}')")
    echo "round ${r}: tcp ${base_tcp[-1]} vs ${cap_tcp[-1]} Gbit/s (${tcp_ratio[-1]}), udp ${base_udp[-1]} vs ${cap_udp[-1]} kpps (${udp_ratio[-1]})"
  done

  # shellcheck disable=SC2016 # an awk program: its $i is awk's
  local mean='{s=0; for(i=1;i<=NF;i++) s+=$i; printf "%.3f", s/NF}'
  local bt ct bu cu
  bt=$(echo "${base_tcp[*]}" | awk "${mean}")
  ct=$(echo "${cap_tcp[*]}" | awk "${mean}")
  bu=$(echo "${base_udp[*]}" | awk "${mean}")
  cu=$(echo "${cap_udp[*]}" | awk "${mean}")
  echo
  echo "bench-capture: --capture=${CAPTURE}, ${ROUNDS} rounds x ${SECS}s, $(nproc) CPUs, kernel $(uname -r)"
  printf '  TCP throughput   without %8s Gbit/s   with %8s Gbit/s   ratio %s\n' "${bt}" "${ct}" "$(awk -v a="${ct}" -v b="${bt}" 'BEGIN{printf "%.3f", a/b}')"
  printf '  UDP 64 B rate    without %8s kpps     with %8s kpps     ratio %s\n' "${bu}" "${cu}" "$(awk -v a="${cu}" -v b="${bu}" 'BEGIN{printf "%.3f", a/b}')"
  read -r m lo hi <<<"$(stats "${tcp_ratio[@]}")"
  printf '  TCP ratio per round: median %s, spread %s-%s\n' "${m}" "${lo}" "${hi}"
  read -r m lo hi <<<"$(stats "${udp_ratio[@]}")"
  printf '  UDP ratio per round: median %s, spread %s-%s\n' "${m}" "${lo}" "${hi}"
  [[ "${CAPTURE}" != floor ]] || return 0
  printf '  agent CPU        %.3f s for %d packets seen = %.3f CPU-s per million packets\n' "${cpu_s}" "${pkts}" "$(awk -v c="${cpu_s}" -v p="${pkts}" 'BEGIN{if (p>0) printf "%.4f", c*1e6/p; else print "n/a"}')"
  printf '  events lost      %d\n' "${lost}"
}

main "$@"
