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

# Measures what L7 sampling costs, so that --l7's default is chosen by a
# measurement: between two network-namespace pods (hack/lib/benchnet.sh),
# with flowscope-agent attached (--capture=all) and --l7=off, selected
# (nothing selected: the gate is empty) and all, it measures
#   - TCP throughput (iperf3, one stream),
#   - the HTTP/1.1 request rate and p99 latency of a net/http client over
#     4 keep-alive connections to a net/http server (hack/l7load),
#   - the gRPC request rate and p99 latency of grpc-go unary calls
#     (grpc.health.v1.Health/Check) over 4 h2c connections to a grpc-go
#     server (hack/l7load),
#   - the DNS query rate and p99 latency of miekg/dns A queries over UDP,
#     from 4 sockets, to a miekg/dns server (hack/l7load), and
#   - the Kafka produce rate and p99 latency of 4 franz-go clients, one
#     100-byte record at a time (acks all), to a one-broker kfake cluster
#     (hack/l7load),
# plus, per 1,000 requests of each, the agent's CPU (user space: the ring
# reader, stream tracker, parsers, records and ingest) and the time its
# eBPF programs ran (kernel.bpf_stats_enabled, on during the benchmark:
# the capture and the L7 sampling, charged to whichever task sent the
# packet), and the payload samples it took and dropped; and the agent's
# CPU per L7 record, which the per-connection rate limit makes the
# steadier measure of the L7 path (it caps the records, not the
# requests). The modes run side by side in every round, in an order that
# rotates from round to round, so the machine's noise hits them alike;
# ratios are each round's mode over the same round's off, reported as
# median [min, max] over the rounds.
#
# Then the user-space side: the stream tracker and parsers' cost per
# exchange (BenchmarkTracker in nodeagent/l7/stream).
#
# With PROFILE=DIR, each run of --l7=all also writes the agent's CPU
# profile of its HTTP/1.1 and gRPC loads to DIR (pprof; the agent runs
# with --profiling, in every mode alike).
#
# With BASELINE=FILE, an agent binary built from another commit, a mode
# "base" runs it with --l7=all in every round too, so a change to the L7
# path is measured against the agent before it, side by side. L7_MODES
# chooses the modes of this checkout's agent ("off selected all"; off is
# the ratios' reference and always runs), and LOADS the loads ("http grpc
# dns kafka").
#
# Root only. Usage: hack/bench-l7.sh [rounds (5)] [seconds per run (5)]
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${1:-5}
SECS=${2:-5}
read -r -a MODES <<<"${L7_MODES:-off selected all}"
[[ " ${MODES[*]} " == *" off "* ]] || MODES=(off "${MODES[@]}")
BASELINE=${BASELINE:-}
[[ -z ${BASELINE} ]] || MODES+=(base)
BIN=${BIN_DIR:-${ROOT}/_output/bin}
WORK=$(mktemp -d /tmp/flowscope-bench-l7.XXXXXX)
# shellcheck source=hack/lib/benchnet.sh
source "${ROOT}/hack/lib/benchnet.sh"
HTTP_PORT=8080 GRPC_PORT=9090 DNS_PORT=53 KAFKA_PORT=9092
# LOADS chooses the loads (all four by default).
read -r -a LOADS <<<"${LOADS:-http grpc dns kafka}"
PROFILE=${PROFILE:-}
IPERF_PID="" HTTP_PID=""

[[ $(id -u) == 0 ]] || { echo "bench-l7: needs root" >&2; exit 1; }
command -v iperf3 >/dev/null || { apt-get update -qq && apt-get install -y -qq iperf3 >/dev/null; }

BPF_STATS_WAS=$(cat /proc/sys/kernel/bpf_stats_enabled)
cleanup() {
  sysctl -qw kernel.bpf_stats_enabled="${BPF_STATS_WAS}"
  stop_agent
  for p in ${IPERF_PID} ${HTTP_PID}; do kill "$p" 2>/dev/null || true; done
  teardown_pods
  rm -rf "${WORK}"
}
trap cleanup EXIT

# metric_sum NAME: the sum of every series of NAME.
metric_sum() { curl -fsS "http://${METRICS}/metrics" | awk -v m="$1" '$1 == m || index($1, m "{") == 1 {s += $2} END {printf "%d\n", s}'; }

# l7_load http|grpc|dns|kafka: prints "requests rps p50_us p99_us".
l7_load() {
  local target=(-url "http://${IP_B}:${HTTP_PORT}/api/orders?id=42")
  case $1 in
  grpc) target=(-grpc "${IP_B}:${GRPC_PORT}") ;;
  dns) target=(-dns "${IP_B}:${DNS_PORT}") ;;
  kafka) target=(-kafka "${IP_B}:${KAFKA_PORT}") ;;
  esac
  ip netns exec "${NS_A}" "${WORK}/l7load" load "${target[@]}" -conns 4 -duration "${SECS}s"
}

# bpf_ns: the nanoseconds the agent's eBPF programs have run (their file
# descriptors' fdinfo run_time_ns, summed).
bpf_ns() {
  local f t=0
  for f in /proc/"${AGENT_PID}"/fdinfo/*; do
    t=$((t + $(awk '$1 == "prog_type:" {p = 1} $1 == "run_time_ns:" && p {print $2; exit} END {if (!p) print 0}' "$f" 2>/dev/null || echo 0)))
  done
  echo "$t"
}

# measure MODE ROUND KIND: one load of KIND (http, grpc, dns, kafka) against the agent
# in MODE, into rps, p99 and cpu[KIND,MODE,ROUND].
measure() {
  local m=$1 r=$2 k=$3 t0 t1 b0 b1 x0 x1 out n rate q99 prof=""
  if [[ -n ${PROFILE} && $m == all ]]; then
    curl -fsS -o "${PROFILE}/${k}-round${r}.pprof" "http://${METRICS}/debug/pprof/profile?seconds=${SECS}" &
    prof=$!
  fi
  t0=$(cpu_ticks "${AGENT_PID}") b0=$(bpf_ns) x0=$(metric_sum flowscope_agent_l7_records_total)
  out=$(l7_load "$k")
  sleep 1 # let the reader drain
  t1=$(cpu_ticks "${AGENT_PID}") b1=$(bpf_ns) x1=$(metric_sum flowscope_agent_l7_records_total)
  [[ -z ${prof} ]] || wait "${prof}"
  read -r n rate _ q99 <<<"${out}"
  rps[${k},${m},${r}]=${rate}
  p99[${k},${m},${r}]=${q99}
  cpu[${k},${m},${r}]=$(awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" -v n="${n}" 'BEGIN{printf "%.4f", t / hz * 1000 / n * 1000}')
  bpf[${k},${m},${r}]=$(awk -v t="$((b1 - b0))" -v n="${n}" 'BEGIN{printf "%.4f", t / 1e6 / n * 1000}')
  # Per L7 record, all the agent's CPU: the per-connection limit caps the
  # records, so per request it also follows the request rate.
  perrec[${k},${m},${r}]=$(awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" -v x="$((x1 - x0))" 'BEGIN{if (x > 0) printf "%.3f", t / hz * 1e6 / x; else print "nan"}')
}

# stats VALUES...: median [min, max].
stats() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {m = NR % 2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; printf "%.3f [%.3f, %.3f]", m, v[1], v[NR]}'; }

main() {
  go build -o "${BIN}/" "${ROOT}/cmd/flowscope-agent" 2>/dev/null || [[ -x "${BIN}/flowscope-agent" ]]
  if [[ -n ${BASELINE} ]]; then
    mkdir -p "${WORK}/base"
    cp "${BASELINE}" "${WORK}/base/flowscope-agent"
  fi
  go build -o "${WORK}/l7load" "${ROOT}/hack/l7load"
  setup_pods
  certs
  ip netns exec "${NS_B}" iperf3 -s -B "${IP_B}" >/dev/null 2>&1 &
  IPERF_PID=$!
  ip netns exec "${NS_B}" "${WORK}/l7load" serve -listen "${IP_B}:${HTTP_PORT}" -grpc-listen "${IP_B}:${GRPC_PORT}" \
    -dns-listen "${IP_B}:${DNS_PORT}" -kafka-listen "${IP_B}:${KAFKA_PORT}" >/dev/null 2>&1 &
  HTTP_PID=$!
  sleep 0.5
  [[ -z ${PROFILE} ]] || mkdir -p "${PROFILE}"

  sysctl -qw kernel.bpf_stats_enabled=1
  declare -A tcp rps p99 cpu bpf ev drop recs perrec
  local r i m k
  for ((r = 1; r <= ROUNDS; r++)); do
    for ((i = 0; i < ${#MODES[@]}; i++)); do
      m=${MODES[$(((i + r) % ${#MODES[@]}))]}
      # Each agent starts with an empty store. With the last one's, the
      # agent after an --l7=all run (off, in this rotation) inherited its
      # L7 flows, and its first store maintenance, 30 s after its start
      # (in the Kafka load, the last), merged their small blocks into its
      # CPU figures (the README's L7 cost section has the numbers).
      rm -rf "${WORK}/agent"
      if [[ $m == base ]]; then
        BIN=${WORK}/base start_agent --capture=all --l7=all ${PROFILE:+--profiling}
      else
        start_agent --capture=all --l7="${m}" ${PROFILE:+--profiling}
      fi
      sleep 1 # the L7 gate follows --l7 within a second
      local e0 d0 x0
      e0=$(metric_sum flowscope_agent_l7_events_total)
      d0=$(metric_sum flowscope_agent_l7_events_dropped_total)
      x0=$(metric_sum flowscope_agent_l7_records_total)
      tcp[${m},${r}]=$(tcp_gbps "${SECS}")
      for k in "${LOADS[@]}"; do
        measure "$m" "$r" "$k"
      done
      ev[${m},${r}]=$(($(metric_sum flowscope_agent_l7_events_total) - e0))
      drop[${m},${r}]=$(($(metric_sum flowscope_agent_l7_events_dropped_total) - d0))
      recs[${m},${r}]=$(($(metric_sum flowscope_agent_l7_records_total) - x0))
      stop_agent
      printf 'round %d %-8s tcp %6s Gbit/s' "${r}" "${m}" "${tcp[${m},${r}]}"
      for k in "${LOADS[@]}"; do
        printf '  %s %6s req/s p99 %5s µs %s+%s CPU-ms/1k' "${k}" "${rps[${k},${m},${r}]}" "${p99[${k},${m},${r}]}" "${cpu[${k},${m},${r}]}" "${bpf[${k},${m},${r}]}"
      done
      printf '  samples %d dropped %d records %d\n' "${ev[${m},${r}]}" "${drop[${m},${r}]}" "${recs[${m},${r}]}"
    done
  done

  echo
  echo "bench-l7: ${ROUNDS} rounds x ${SECS}s per run, $(nproc) CPUs, kernel $(uname -r); median [min, max] over rounds"
  printf '  %-9s %-9s %-26s\n' "--l7" "load" "TCP ratio to off"
  for m in "${MODES[@]}"; do
    local rt=()
    for ((r = 1; r <= ROUNDS; r++)); do
      rt+=("$(awk -v a="${tcp[${m},${r}]}" -v b="${tcp[off,${r}]}" 'BEGIN{print a/b}')")
    done
    printf '  %-9s %-9s %-26s\n' "${m}" "iperf3" "$(stats "${rt[@]}")"
  done
  printf '  %-9s %-9s %-26s %-26s %-26s %-26s\n' "--l7" "load" "req/s ratio to off" "p99 ratio to off" "agent CPU-ms per 1k req" "eBPF ms per 1k req"
  for k in "${LOADS[@]}"; do
    for m in "${MODES[@]}"; do
      local rr=() rp=() c=() bp=()
      for ((r = 1; r <= ROUNDS; r++)); do
        rr+=("$(awk -v a="${rps[${k},${m},${r}]}" -v b="${rps[${k},off,${r}]}" 'BEGIN{print a/b}')")
        rp+=("$(awk -v a="${p99[${k},${m},${r}]}" -v b="${p99[${k},off,${r}]}" 'BEGIN{print a/b}')")
        c+=("${cpu[${k},${m},${r}]}")
        bp+=("${bpf[${k},${m},${r}]}")
      done
      printf '  %-9s %-9s %-26s %-26s %-26s %-26s\n' "${m}" "${k}" "$(stats "${rr[@]}")" "$(stats "${rp[@]}")" "$(stats "${c[@]}")" "$(stats "${bp[@]}")"
    done
  done
  printf '  %-9s %-9s %-26s\n' "--l7" "load" "agent CPU-µs per L7 record"
  for k in "${LOADS[@]}"; do
    for m in "${MODES[@]}"; do
      [[ $m != off && $m != selected ]] || continue
      local pr=()
      for ((r = 1; r <= ROUNDS; r++)); do
        pr+=("${perrec[${k},${m},${r}]}")
      done
      printf '  %-9s %-9s %-26s\n' "${m}" "${k}" "$(stats "${pr[@]}")"
    done
  done
  # off's absolute medians, for scale.
  printf '  absolute medians for off: TCP %.3f Gbit/s' "$(stats "$(for ((r = 1; r <= ROUNDS; r++)); do echo "${tcp[off,${r}]}"; done)" | cut -d' ' -f1)"
  for k in "${LOADS[@]}"; do
    printf ', %s %.0f req/s p99 %.0f µs' "${k}" \
      "$(stats "$(for ((r = 1; r <= ROUNDS; r++)); do echo "${rps[${k},off,${r}]}"; done)" | cut -d' ' -f1)" \
      "$(stats "$(for ((r = 1; r <= ROUNDS; r++)); do echo "${p99[${k},off,${r}]}"; done)" | cut -d' ' -f1)"
  done
  echo

  echo
  echo "bench-l7: user-space cost per exchange (stream tracker + parser)"
  (cd "${ROOT}" && go test ./nodeagent/l7/stream -run '^$' -bench 'Tracker' -benchmem -count 1)
}

main "$@"
