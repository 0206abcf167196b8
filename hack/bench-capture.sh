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
# Root only. Usage: [CAPTURE=all|selected] hack/bench-capture.sh [rounds] [seconds per run]
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${1:-3}
SECS=${2:-10}
CAPTURE=${CAPTURE:-all} # selected, with no watch: the programs run but select nothing
BIN=${BIN_DIR:-${ROOT}/_output/bin}
WORK=$(mktemp -d /tmp/flowscope-bench.XXXXXX)
NS_A=fsbench-a NS_B=fsbench-b
IF_A=fsbencha IF_B=fsbenchb
IP_A=10.250.0.1 IP_B=10.250.0.2
METRICS=127.0.0.1:19802
AGENT_PID=""

[[ $(id -u) == 0 ]] || { echo "bench-capture: needs root" >&2; exit 1; }
command -v iperf3 >/dev/null || { apt-get update -qq && apt-get install -y -qq iperf3 >/dev/null; }

cleanup() {
  stop_agent
  pkill -f "iperf3 -s -B ${IP_B}" 2>/dev/null || true
  ip netns del "${NS_A}" 2>/dev/null || true
  ip netns del "${NS_B}" 2>/dev/null || true
  rm -rf "${WORK}"
}
trap cleanup EXIT

setup_pod() { # ns host-if ip
  ip netns add "$1"
  ip link add "$2" type veth peer name eth0 netns "$1"
  ip link set "$2" up
  ip -n "$1" link set lo up
  ip -n "$1" link set eth0 up
  ip -n "$1" addr add "$3/32" dev eth0
  ip -n "$1" route add 169.254.1.1 dev eth0 scope link
  ip -n "$1" route add default via 169.254.1.1 dev eth0 onlink
  sysctl -qw "net.ipv4.conf.$2.proxy_arp=1"
  ip route add "$3/32" dev "$2"
}

certs() {
  local d=${WORK}/certs
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench-ca \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=bench-agent \
    -keyout "$d/agent.key" -out "$d/agent.csr" 2>/dev/null
  openssl x509 -req -in "$d/agent.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 1 \
    -extfile <(printf 'subjectAltName=IP:127.0.0.1') -out "$d/agent.crt" 2>/dev/null
}

start_agent() {
  "${BIN}/flowscope-agent" --node-name=bench --data-dir="${WORK}/agent" --kubeconfig=/nonexistent \
    --listen-address=127.0.0.1:19801 --metrics-bind-address="${METRICS}" \
    --tls-cert-file="${WORK}/certs/agent.crt" --tls-private-key-file="${WORK}/certs/agent.key" \
    --client-ca-file="${WORK}/certs/ca.crt" --capture="${CAPTURE}" --interfaces='fsbench*' --attach-default-route=false \
    >"${WORK}/agent.log" 2>&1 &
  AGENT_PID=$!
  for _ in $(seq 100); do
    if curl -fsS "http://${METRICS}/metrics" 2>/dev/null | grep -q '^flowscope_agent_capture_attached_interfaces 2'; then
      return
    fi
    sleep 0.1
  done
  echo "bench-capture: the agent did not attach to both interfaces" >&2
  tail -20 "${WORK}/agent.log" >&2
  exit 1
}

stop_agent() {
  if [[ -n "${AGENT_PID}" ]]; then
    kill "${AGENT_PID}" 2>/dev/null || true
    wait "${AGENT_PID}" 2>/dev/null || true
    AGENT_PID=""
  fi
}

metric() { curl -fsS "http://${METRICS}/metrics" | awk -v m="$1" '$1 == m {print $2}' | tail -1; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

tcp_gbps() {
  ip netns exec "${NS_A}" iperf3 -c "${IP_B}" -t "${SECS}" -J | awk -F'[:,]' '/"sum_received"/{f=1} f && /"bits_per_second"/{printf "%.3f\n", $2/1e9; exit}'
}

udp_kpps() {
  ip netns exec "${NS_A}" iperf3 -c "${IP_B}" -u -b 0 -l 64 -t "${SECS}" -J |
    awk -F'[:,]' '/"sum"/{f=1} f && /"packets"/{p=$2} f && /"seconds"/{s=$2} END{printf "%.1f\n", p/s/1000}'
}

main() {
  go build -o "${BIN}/" "${ROOT}/cmd/flowscope-agent" 2>/dev/null || [[ -x "${BIN}/flowscope-agent" ]]
  sysctl -qw net.ipv4.ip_forward=1
  setup_pod "${NS_A}" "${IF_A}" "${IP_A}"
  setup_pod "${NS_B}" "${IF_B}" "${IP_B}"
  certs
  ip netns exec "${NS_B}" iperf3 -s -B "${IP_B}" -D
  sleep 0.5

  local r base_tcp=() cap_tcp=() base_udp=() cap_udp=() cpu_s=0 pkts=0 lost=0
  for ((r = 1; r <= ROUNDS; r++)); do
    base_tcp+=("$(tcp_gbps)")
    base_udp+=("$(udp_kpps)")
    start_agent
    local t0 p0
    t0=$(cpu_ticks "${AGENT_PID}")
    p0=$(metric flowscope_agent_capture_packets_total)
    cap_tcp+=("$(tcp_gbps)")
    cap_udp+=("$(udp_kpps)")
    sleep 1 # let the reader drain
    cpu_s=$(awk -v a="${cpu_s}" -v t="$(cpu_ticks "${AGENT_PID}")" -v t0="${t0}" -v hz="$(getconf CLK_TCK)" 'BEGIN{print a + (t - t0) / hz}')
    pkts=$(awk -v a="${pkts}" -v p="$(metric flowscope_agent_capture_packets_total)" -v p0="${p0}" 'BEGIN{print a + p - p0}')
    lost=$(awk -v a="${lost}" -v l="$(metric flowscope_agent_capture_lost_events_total)" 'BEGIN{print a + l}')
    stop_agent
    echo "round ${r}: tcp ${base_tcp[-1]} vs ${cap_tcp[-1]} Gbit/s, udp ${base_udp[-1]} vs ${cap_udp[-1]} kpps"
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
  printf '  agent CPU        %.3f s for %d packets seen = %.3f CPU-s per million packets\n' "${cpu_s}" "${pkts}" "$(awk -v c="${cpu_s}" -v p="${pkts}" 'BEGIN{if (p>0) printf "%.4f", c*1e6/p; else print "n/a"}')"
  printf '  events lost      %d\n' "${lost}"
}

main "$@"
