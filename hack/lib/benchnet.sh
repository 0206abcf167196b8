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

# The datapath benchmarks' common pieces (sourced by hack/bench-capture.sh
# and hack/bench-l7.sh): two network-namespace "pods" whose traffic crosses
# the host through veth pairs, as a CNI wires pods, and flowscope-agent
# started alone (no API server) with its programs on the host sides.
#
# The caller sets ROOT, WORK (a scratch directory it removes), BIN, and
# may set METRICS before sourcing.

NS_A=fsbench-a NS_B=fsbench-b
IF_A=fsbencha IF_B=fsbenchb
IP_A=10.250.0.1 IP_B=10.250.0.2
METRICS=${METRICS:-127.0.0.1:19802}
AGENT_PID=""

# setup_pod NS HOST_IF IP: a namespace with eth0 routed through HOST_IF.
setup_pod() {
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

# setup_pods: both pods, with forwarding on. The names, addresses and
# agent ports are fixed, so one benchmark at a time holds them: the lock
# is held until the calling script exits.
setup_pods() {
  exec {BENCHNET_LOCK}>/tmp/flowscope-benchnet.lock
  if ! flock -n "${BENCHNET_LOCK}"; then
    echo "$(basename "$0"): waiting for another datapath benchmark to finish" >&2
    flock "${BENCHNET_LOCK}"
  fi
  sysctl -qw net.ipv4.ip_forward=1
  setup_pod "${NS_A}" "${IF_A}" "${IP_A}"
  setup_pod "${NS_B}" "${IF_B}" "${IP_B}"
}

# teardown_pods removes the pods (and their veths with them).
teardown_pods() {
  ip netns del "${NS_A}" 2>/dev/null || true
  ip netns del "${NS_B}" 2>/dev/null || true
}

# certs: a CA and the agent's serving certificate in WORK/certs.
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

# start_agent [FLAG...]: the agent on both pods' host sides, with FLAGs
# added; returns once it has attached to both.
start_agent() {
  "${BIN}/flowscope-agent" --node-name=bench --data-dir="${WORK}/agent" --kubeconfig=/nonexistent \
    --listen-address=127.0.0.1:19801 --metrics-bind-address="${METRICS}" \
    --tls-cert-file="${WORK}/certs/agent.crt" --tls-private-key-file="${WORK}/certs/agent.key" \
    --client-ca-file="${WORK}/certs/ca.crt" --interfaces='fsbench*' --attach-default-route=false \
    "$@" >"${WORK}/agent.log" 2>&1 &
  AGENT_PID=$!
  for _ in $(seq 100); do
    if curl -fsS "http://${METRICS}/metrics" 2>/dev/null | grep -q '^flowscope_agent_capture_attached_interfaces 2'; then
      return
    fi
    sleep 0.1
  done
  echo "$(basename "$0"): the agent did not attach to both interfaces" >&2
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

# metric NAME [LABELS]: the agent's value of a sample, labels as written
# in the exposition ({a="b"}), or nothing.
metric() { curl -fsS "http://${METRICS}/metrics" | awk -v m="$1${2:-}" '$1 == m {print $2}' | tail -1; }

# cpu_ticks PID: user+system clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# tcp_gbps SECONDS: iperf3 from pod A to an iperf3 -s in pod B.
tcp_gbps() {
  ip netns exec "${NS_A}" iperf3 -c "${IP_B}" -t "$1" -J | awk -F'[:,]' '/"sum_received"/{f=1} f && /"bits_per_second"/{printf "%.3f\n", $2/1e9; exit}'
}

# udp_kpps SECONDS: 64-byte UDP datagrams from pod A to pod B, thousands
# per second received.
udp_kpps() {
  ip netns exec "${NS_A}" iperf3 -c "${IP_B}" -u -b 0 -l 64 -t "$1" -J |
    awk -F'[:,]' '/"sum"/{f=1} f && /"packets"/{p=$2} f && /"seconds"/{s=$2} END{printf "%.1f\n", p/s/1000}'
}
