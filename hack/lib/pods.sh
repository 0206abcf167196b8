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

# Demo pods for the local system: network namespaces wired like a CNI plugin
# would, the matching Kubernetes objects, and a flowscope-traffic process in
# each pod, so the agents capture real traffic. Root only.
#
# Sourced by hack/local-up.sh (pods::up after the agents) and
# hack/local-down.sh (pods::down), after hack/lib/local.sh. Also runs on its own against a running local system
# (same OUT_DIR, BIN_DIR, TOOLS_DIR, NODES environment as local-up.sh):
#   hack/lib/pods.sh up       (re)create pods, objects and traffic
#   hack/lib/pods.sh down     stop the traffic, delete the pods' namespaces and
#                             veths, restore the sysctls, delete the objects
#   hack/lib/pods.sh status   what exists, and the generators' last reports
#
# Scheme. The node at (0-based) position i of NODES has the letter L = a+i
# and the number N = i+1; its k-th pod in PODS_TABLE (k = 0, 1, ...) the host
# number X = k+2. That pod gets:
#   network namespace  fs-<node>-<namespace>-<pod>   e.g. fs-node-a-shop-web-0
#   addresses          10.244.N.X/32 and fd00:10:244:N::X/128 on its eth0
#   host-side veth     fs<L><X>                      e.g. fsa2 (<= 15 characters)
# so the agent of node i selects its pods' interfaces with
# --interfaces='fs<L>[0-9]*' ("fsa[0-9]*" for node-a, "fsb[0-9]*" for
# node-b; the digit keeps other veths out, such as hack/bench-capture.sh's
# fsbencha). Routing is Calico's: the pod has only its /32 and /128, and
# default routes via the link-local gateways 169.254.1.1 and fe80::1 on
# eth0; the host answers for 169.254.1.1 by proxy ARP on the veth, owns
# fe80::1 on every veth, and routes each pod address to its veth (the pod
# also has permanent neighbour entries for both gateways, so proxy ARP needs
# no host default route). Pods of all nodes
# reach each other through the host's forwarding (IPv4 and IPv6), which is
# turned on while pods exist; the previous values of every
# net.ipv{4,6}.conf.*.forwarding and net.ipv4.ip_forward are saved in
# OUT_DIR/pods/sysctl.saved and restored by pods::down. The node numbers are
# not those of flowscope-flowgen's made-up flows (10.244.<hash of the node
# name>.0/24: 118, 119, 237, 238 for node-a and node-b).
#
# Kernel drops: the one intended is the UDP of monitoring/prometheus-0 to
# payments/api-0:9999, where nobody listens (reason NO_SOCKET, UdpNoPorts in
# that pod's namespace, about 1/s). The generators ping with ICMP datagram
# sockets (net.ipv4.ping_group_range is opened in each pod): with raw
# sockets every echo reply would be freed as NO_SOCKET too. Not drops of
# traffic but seen by kfree_skb: the active closer of every TCP connection
# frees the peer's FIN with reason QUEUE_PURGE when its socket goes.
#
# Application protocols, for the agents' L7 records: the generators also
# run real servers and clients (HTTP/1.1, gRPC over h2c, DNS, Kafka; see
# PODS_TRAFFIC). The DNS server (the first pod listening on dns:53,
# kube-system/coredns-0) answers the names of OUT_DIR/pods/dns-hosts, a
# hosts file written from PODS_SERVICES: <service>.<ns>.svc.cluster.local
# with the addresses of the Service's pods, <pod>.<service>.<ns>.svc...
# for StatefulSet pods. Every pod uses it as its resolver: pods::up
# writes /etc/netns/<netns>/resolv.conf, which `ip netns exec` mounts on
# /etc/resolv.conf, so `ip netns exec fs-node-a-shop-web-0 getent hosts
# api.payments.svc.cluster.local` asks it; pods::down removes it.
#
# Kubernetes objects (applied, so running again is harmless): the Nodes of
# NODES (InternalIP 127.0.0.1, podCIDRs, Ready), the namespaces' default
# ServiceAccounts, the workloads of PODS_TABLE (Deployments with one
# ReplicaSet each, StatefulSets), the Pods (spec.nodeName, owner references
# with the UIDs read back, labels; status Running with podIP/podIPs through
# the status subresource), PODS_SERVICES and their EndpointSlices (nothing
# reconciles them: there is no controller-manager, kubelet or scheduler).
#
# One host, one set of pods: the names and addresses are fixed, so two
# local systems (two OUT_DIRs) on one host would fight over them.
#
# Environment (defaults in brackets):
#   DEMO_PODS       [1]   0: no demo pods
#   PODS_INTERVAL   [1s]  time between two exchanges of a generator with one destination
#   CAPTURE         [all] the agents' --capture with demo pods
#   L7              [all] the agents' --l7 with demo pods (all, selected or off)

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  # shellcheck source=hack/lib/local.sh
  source "$(dirname "${BASH_SOURCE[0]}")/local.sh"
fi

# Demo pods, one a line: node, namespace, pod, owning workload
# (Deployment/NAME, through a ReplicaSet, or StatefulSet/NAME; the pod is
# labelled app=NAME) and what it serves (flowscope-traffic --listen, "-" for
# nothing). Pods of nodes not in NODES are left out. New pods go at the end
# of their node's: a pod's address is its position on its node.
PODS_TABLE=(
  # node  namespace   pod           workload               listen
  "node-a shop        web-0         Deployment/web         tcp:8080,udp:5353,http:80"
  "node-a shop        db-0          StatefulSet/db         tcp:5432"
  "node-b payments    api-0         Deployment/api         tcp:8080,udp:5353,http:80,grpc:50051"
  "node-b monitoring  prometheus-0  StatefulSet/prometheus tcp:9090"
  "node-b shop        web-1         Deployment/web         tcp:8080,udp:5353,http:80"
  "node-a kube-system coredns-0     Deployment/coredns     dns:53"
  "node-b payments    kafka-0       StatefulSet/kafka      kafka:9092"
)

# Traffic, one destination a line: the client pod and a flowscope-traffic
# --connect spec, in which {ns/pod} stands for the pod's IPv4 address and
# [ns/pod] for its IPv6 address in brackets. tcp: a short connection per
# interval; tcplong: one long-lived connection; udp: request and echo;
# icmp: echo request and reply. The L7 protocols (see package
# internal/traffic): http: GET /api/orders (200), POST /api/fail (500),
# GET /api/missing (404) on a keep-alive connection; grpc: health Check
# (OK, NotFound) and Watch; dns: A, AAAA (NOERROR with the names of
# OUT_DIR/pods/dns-hosts), NXDOMAIN, SERVFAIL, over UDP and every 10th
# query over TCP; kafka: produce to and consume the topic orders. Each
# protocol goes within a node and across nodes.
PODS_TRAFFIC=(
  # from                   to
  "shop/web-0              tcp:{shop/db-0}:5432"          # same node
  "shop/web-0              tcp:{payments/api-0}:8080"     # across nodes
  "shop/web-0              udp:{payments/api-0}:5353"
  "shop/web-0              icmp:{shop/web-1}"
  "shop/web-1              tcp:{shop/db-0}:5432"
  "shop/web-1              udp:[shop/web-0]:5353"         # IPv6
  "payments/api-0          tcp:{shop/db-0}:5432"
  "payments/api-0          tcp:[shop/web-0]:8080"         # IPv6
  "payments/api-0          icmp:[shop/db-0]"              # ICMPv6
  "monitoring/prometheus-0 tcplong:{shop/web-0}:8080"     # scrapes: long-lived connections
  "monitoring/prometheus-0 tcplong:{shop/web-1}:8080"
  "monitoring/prometheus-0 tcplong:{payments/api-0}:8080"
  "monitoring/prometheus-0 icmp:{shop/db-0}"
  "monitoring/prometheus-0 udp:{payments/api-0}:9999"     # nobody listens: kernel drop, NO_SOCKET
  "shop/web-0              http:{payments/api-0}:80"              # L7: across nodes
  "shop/web-1              http:{payments/api-0}:80"              # same node
  "shop/web-0              grpc:{payments/api-0}:50051"
  "shop/web-1              grpc:[payments/api-0]:50051"           # IPv6
  "shop/web-0              dns:{kube-system/coredns-0}:53"        # same node
  "payments/api-0          dns:{kube-system/coredns-0}:53"
  "payments/api-0          kafka:{payments/kafka-0}:9092"         # same node
  "shop/web-0              kafka:{payments/kafka-0}:9092"
)

# ClusterIP Services, selecting app=NAME: namespace, name, ports
# (port/protocol, comma-separated). Nothing routes their ClusterIPs (no
# kube-proxy): the demo DNS answers their names with the pods' addresses,
# as for headless Services.
PODS_SERVICES=(
  "shop        web     8080/TCP,80/TCP"
  "shop        db      5432/TCP"
  "payments    api     8080/TCP,80/TCP,50051/TCP"
  "kube-system coredns 53/UDP,53/TCP"
  "payments    kafka   9092/TCP"
)

# The cluster's DNS domain, of the names in OUT_DIR/pods/dns-hosts.
PODS_CLUSTER_DOMAIN=cluster.local

PODS_INTERVAL="${PODS_INTERVAL:-1s}"
PODS_STATE_DIR="${OUT_DIR}/pods"
PODS_NODE_IP=127.0.0.1
PODS_IMAGE=flowscope.io/flowscope-traffic:local
PODS_MANAGER=flowscope-local-pods

# ---------------------------------------------------------------------------
# The table, resolved

# pods::_load: fills the P_* arrays (one entry per pod of a node in NODES)
# and P_BY_REF (ns/pod -> index).
pods::_load() {
  P_NODE=() P_NODEIDX=() P_NS=() P_POD=() P_KIND=() P_WL=() P_LISTEN=()
  P_NETNS=() P_HOSTIF=() P_IP4=() P_IP6=() P_CONNECT=()
  declare -gA P_BY_REF=()
  local row node ns pod wl listen i idx
  local -A next=()
  for row in "${PODS_TABLE[@]}"; do
    read -r node ns pod wl listen <<<"${row}"
    idx=-1
    for ((i = 0; i < ${#NODE_LIST[@]}; i++)); do
      if [[ "${NODE_LIST[i]}" == "${node}" ]]; then idx=${i}; fi
    done
    ((idx >= 0)) || continue
    local x=$((${next[${node}]:-2}))
    next[${node}]=$((x + 1))
    P_BY_REF["${ns}/${pod}"]=${#P_POD[@]}
    P_NODE+=("${node}") P_NODEIDX+=("${idx}") P_NS+=("${ns}") P_POD+=("${pod}")
    P_KIND+=("${wl%%/*}") P_WL+=("${wl#*/}") P_LISTEN+=("${listen#-}")
    P_NETNS+=("fs-${node}-${ns}-${pod}")
    P_HOSTIF+=("$(pods::iface_prefix "${idx}")${x}")
    P_IP4+=("10.244.$((idx + 1)).${x}") P_IP6+=("fd00:10:244:$((idx + 1))::${x}")
    P_CONNECT+=("")
  done
  # Traffic: resolve the references; drop destinations that are not there.
  local from spec ref j
  for row in "${PODS_TRAFFIC[@]}"; do
    read -r from spec <<<"${row}"
    [[ -n "${P_BY_REF[${from}]:-}" ]] || continue
    for ref in "${!P_BY_REF[@]}"; do
      j=${P_BY_REF[${ref}]}
      spec="${spec//"{${ref}}"/${P_IP4[j]}}"
      spec="${spec//"[${ref}]"/[${P_IP6[j]}]}"
    done
    [[ "${spec}" != *[{}]* && "${spec}" != *\[*/*\]* ]] || continue
    i=${P_BY_REF[${from}]}
    P_CONNECT[i]="${P_CONNECT[i]:+${P_CONNECT[i]},}${spec}"
  done
}

# pods::iface_prefix NODE_INDEX: prefix of the host-side veths of the
# node's pods, "fs" and a letter: fsa, fsb, ...
pods::iface_prefix() {
  local letters=abcdefghijklmnopqrstuvwxyz
  printf 'fs%s' "${letters:$1:1}"
}

# pods::agent_flags NODE_INDEX: the agent's capture flags, one a line. With
# demo pods, the agent of node i captures its own pods' veths (fs<L>[0-9]*)
# and nothing else: the simulated nodes share one host, so the host's own
# interfaces would be captured twice. L7 records come from every captured
# pod (--l7=all, unless L7 says otherwise; the agent's default is selected). Without
# demo pods (not root, or DEMO_PODS=0) capture is off and the agents serve
# their replay files only.
pods::agent_flags() {
  if pods::enabled >/dev/null; then
    printf -- '--interfaces=%s[0-9]*\n' "$(pods::iface_prefix "$1")"
    printf -- '--attach-default-route=false\n'
    printf -- '--capture=%s\n' "${CAPTURE:-all}"
    printf -- '--l7=%s\n' "${L7:-all}"
    [[ -z "${CAPTURE_REPORT_INTERVAL:-}" ]] || printf -- '--capture-report-interval=%s\n' "${CAPTURE_REPORT_INTERVAL}"
    [[ -z "${CAPTURE_IDLE_TIMEOUT:-}" ]] || printf -- '--capture-idle-timeout=%s\n' "${CAPTURE_IDLE_TIMEOUT}"
    [[ -z "${CAPTURE_TABLE_SIZE:-}" ]] || printf -- '--capture-table-size=%s\n' "${CAPTURE_TABLE_SIZE}"
    [[ -z "${CAPTURE_MAX_CONNS_PER_IFACE:-}" ]] || printf -- '--capture-max-connections-per-interface=%s\n' "${CAPTURE_MAX_CONNS_PER_IFACE}"
  else
    printf -- '--capture=off\n'
  fi
}

# pods::enabled: succeeds when demo pods are to be made here; prints why not
# otherwise.
pods::enabled() {
  if [[ "${DEMO_PODS:-1}" == 0 ]]; then
    echo "DEMO_PODS=0"
    return 1
  fi
  if ((EUID != 0)); then
    echo "not running as root (network namespaces and veths need root)"
    return 1
  fi
  if ! pods::_ip_bin >/dev/null; then
    echo "'ip' (iproute2) is not installed"
    return 1
  fi
}

pods::_ip_bin() {
  command -v ip 2>/dev/null || { [[ -x /usr/sbin/ip ]] && echo /usr/sbin/ip; }
}

pods::_have_traffic() { [[ -x "${BIN_DIR}/flowscope-traffic" ]]; }

# pods::_component INDEX: the name of the pod's traffic generator component.
pods::_component() { printf 'traffic-%s-%s' "${P_NS[$1]}" "${P_POD[$1]}"; }

# pods::components: the traffic generator components pods::up starts.
pods::components() {
  pods::enabled >/dev/null && pods::_have_traffic || return 0
  pods::_load
  local i
  for ((i = 0; i < ${#P_POD[@]}; i++)); do
    pods::_component "${i}"
    echo
  done
}

pods::kubectl() {
  "${TOOLS_DIR}/kubectl" --kubeconfig "${OUT_DIR}/kubeconfig" --cache-dir "${OUT_DIR}/kubecache" "$@"
}

# ---------------------------------------------------------------------------
# Network

# pods::_save_sysctls: remembers the forwarding settings, once (a second
# pods::up must not remember its own).
pods::_save_sysctls() {
  local file="${PODS_STATE_DIR}/sysctl.saved" f
  [[ -s "${file}" ]] && return 0
  for f in /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv{4,6}/conf/*/forwarding; do
    if [[ -e "${f}" ]]; then printf '%s %s\n' "${f}" "$(<"${f}")"; fi
  done >"${file}.tmp"
  mv "${file}.tmp" "${file}"
}

# pods::_restore_sysctls: the global switches first (they set every
# interface), then each interface's own value.
pods::_restore_sysctls() {
  local file="${PODS_STATE_DIR}/sysctl.saved" f v pass
  [[ -s "${file}" ]] || return 0
  for pass in global each; do
    while read -r f v; do
      case "${f}" in
        /proc/sys/net/ipv4/ip_forward | /proc/sys/net/ipv6/conf/all/forwarding)
          [[ "${pass}" == global ]] || continue ;;
        *) [[ "${pass}" == each ]] || continue ;;
      esac
      if [[ -e "${f}" ]]; then { echo "${v}" >"${f}"; } 2>/dev/null || true; fi
    done <"${file}"
  done
  rm -f "${file}"
  local::log "restored the forwarding sysctls (net.ipv4.ip_forward=$(</proc/sys/net/ipv4/ip_forward))"
}

# pods::_delete_net NETNS HOSTIF: removes a pod's namespace, its
# resolv.conf and its veth pair (the host's routes to the pod go with the
# veth). Harmless when missing.
pods::_delete_net() {
  local netns=$1 hostif=$2 ip pids
  ip="$(pods::_ip_bin)"
  rm -f "/etc/netns/${netns}/resolv.conf"
  rmdir "/etc/netns/${netns}" 2>/dev/null || true
  if [[ -e "/run/netns/${netns}" ]]; then
    pids="$("${ip}" netns pids "${netns}" 2>/dev/null | tr '\n' ' ')"
    if [[ -n "${pids}" ]]; then
      local::warn "processes still in network namespace ${netns} (${pids% }); it lives on, unnamed, until they exit"
    fi
    "${ip}" netns delete "${netns}" 2>/dev/null || true
  fi
  # Gone with the namespace unless a process keeps that alive.
  if [[ -e "/sys/class/net/${hostif}" ]]; then
    "${ip}" link delete "${hostif}" 2>/dev/null || true
  fi
}

# pods::_create_net INDEX: the pod's namespace, veth pair, addresses and routes.
pods::_create_net() {
  local i=$1 ip
  ip="$(pods::_ip_bin)"
  local netns=${P_NETNS[i]} hostif=${P_HOSTIF[i]} ip4=${P_IP4[i]} ip6=${P_IP6[i]} mac
  "${ip}" netns add "${netns}"
  "${ip}" link add "${hostif}" type veth peer name eth0 netns "${netns}"
  mac="$(<"/sys/class/net/${hostif}/address")"
  # Host side: proxy ARP answers for 169.254.1.1, fe80::1 is the IPv6
  # gateway (no DAD: the same address is on every veth), routes to the pod.
  echo 1 >"/proc/sys/net/ipv4/conf/${hostif}/proxy_arp"
  "${ip}" link set "${hostif}" up
  "${ip}" route replace "${ip4}/32" dev "${hostif}"
  if [[ -d /proc/sys/net/ipv6 ]]; then
    echo 0 >"/proc/sys/net/ipv6/conf/${hostif}/accept_dad"
    "${ip}" -6 addr add fe80::1/64 dev "${hostif}" nodad
    "${ip}" -6 route replace "${ip6}/128" dev "${hostif}"
  fi
  # Pod side. ICMP datagram ("ping") sockets for root, so that
  # flowscope-traffic needs no raw socket (with one, the kernel would drop
  # every echo reply as NO_SOCKET besides copying it to the raw socket).
  "${ip}" netns exec "${netns}" sh -c 'echo 0 2147483647 >/proc/sys/net/ipv4/ping_group_range'
  "${ip}" -n "${netns}" link set lo up
  "${ip}" -n "${netns}" addr add "${ip4}/32" dev eth0
  if [[ -d /proc/sys/net/ipv6 ]]; then
    "${ip}" netns exec "${netns}" sh -c 'echo 0 >/proc/sys/net/ipv6/conf/eth0/accept_dad'
    "${ip}" -n "${netns}" -6 addr add "${ip6}/128" dev eth0 nodad
  fi
  "${ip}" -n "${netns}" link set eth0 up
  "${ip}" -n "${netns}" neigh replace 169.254.1.1 lladdr "${mac}" dev eth0 nud permanent
  "${ip}" -n "${netns}" route replace default via 169.254.1.1 dev eth0 onlink
  if [[ -d /proc/sys/net/ipv6 ]]; then
    "${ip}" -n "${netns}" -6 neigh replace fe80::1 lladdr "${mac}" dev eth0 nud permanent
    "${ip}" -n "${netns}" -6 route replace default via fe80::1 dev eth0
  fi
  echo "${netns} ${hostif}" >>"${PODS_STATE_DIR}/created"
}

# pods::_dns_server: prints the index of the pod that serves the demo
# DNS (the first listening on dns:53); fails when none does.
pods::_dns_server() {
  local i s
  for ((i = 0; i < ${#P_POD[@]}; i++)); do
    for s in ${P_LISTEN[i]//,/ }; do
      if [[ "${s}" == dns:* && "${s##*:}" == 53 ]]; then
        echo "${i}"
        return 0
      fi
    done
  done
  return 1
}

# pods::_write_dns: writes the demo DNS's names, OUT_DIR/pods/dns-hosts
# (hosts file format: Services with their pods' addresses, as for headless
# Services, and StatefulSet pods), and every pod's resolv.conf, which
# names that DNS (when a pod serves it).
pods::_write_dns() {
  local row ns name j dns d=${PODS_CLUSTER_DOMAIN}
  {
    echo "# The names the demo DNS answers (hack/lib/pods.sh)."
    for row in "${PODS_SERVICES[@]}"; do
      read -r ns name _ <<<"${row}"
      for ((j = 0; j < ${#P_POD[@]}; j++)); do
        [[ "${P_NS[j]}" == "${ns}" && "${P_WL[j]}" == "${name}" ]] || continue
        printf '%s %s.%s.svc.%s
' "${P_IP4[j]}" "${name}" "${ns}" "${d}" "${P_IP6[j]}" "${name}" "${ns}" "${d}"
        if [[ "${P_KIND[j]}" == StatefulSet ]]; then
          printf '%s %s.%s.%s.svc.%s
' "${P_IP4[j]}" "${P_POD[j]}" "${name}" "${ns}" "${d}" \
            "${P_IP6[j]}" "${P_POD[j]}" "${name}" "${ns}" "${d}"
        fi
      done
    done
  } >"${PODS_STATE_DIR}/dns-hosts.tmp"
  mv "${PODS_STATE_DIR}/dns-hosts.tmp" "${PODS_STATE_DIR}/dns-hosts"
  dns="$(pods::_dns_server)" || return 0
  for ((j = 0; j < ${#P_POD[@]}; j++)); do
    mkdir -p "/etc/netns/${P_NETNS[j]}"
    printf '# The demo DNS, %s/%s (hack/lib/pods.sh).\nsearch %s.svc.%s svc.%s %s\nnameserver %s\noptions ndots:5\n' \
      "${P_NS[dns]}" "${P_POD[dns]}" "${P_NS[j]}" "${d}" "${d}" "${d}" "${P_IP4[dns]}" >"/etc/netns/${P_NETNS[j]}/resolv.conf"
  done
}

# pods::_stop_traffic: stops every traffic generator component.
pods::_stop_traffic() {
  local c
  for c in $(local::components); do
    if [[ "${c}" == traffic-* ]]; then local::stop "${c}"; fi
  done
}

# ---------------------------------------------------------------------------
# Kubernetes objects

# pods::_read_uids TYPES: fills PODS_UID["Kind/ns/name"] and
# PODS_GEN["Kind/ns/name"] (generation) from the API.
pods::_read_uids() {
  local key uid gen
  while read -r key uid gen; do
    [[ -n "${key}" ]] || continue
    PODS_UID["${key}"]=${uid}
    PODS_GEN["${key}"]=${gen:-1}
  done < <(pods::kubectl get "$1" -A -o \
    'jsonpath={range .items[*]}{.kind}/{.metadata.namespace}/{.metadata.name} {.metadata.uid} {.metadata.generation}{"\n"}{end}')
}

# pods::_hash TEXT: a stable pod-template-hash-like string.
pods::_hash() {
  printf '%s' "$1" | md5sum | cut -c1-10 | tr 0-9a-f 2456789bcdfghjkl
}

# pods::_ports LISTEN: container ports of a listen spec (PROTO:PORT or
# PROTO:IP:PORT), as YAML flow list. The L7 protocols run over TCP, DNS
# over UDP and TCP.
pods::_ports() {
  local s proto port out=""
  for s in ${1//,/ }; do
    proto=${s%%:*} port=${s##*:}
    case "${proto}" in
      tcp | udp) out+="${out:+, }{containerPort: ${port}, protocol: ${proto^^}}" ;;
      dns) out+="${out:+, }{name: dns, containerPort: ${port}, protocol: UDP}, {name: dns-tcp, containerPort: ${port}, protocol: TCP}" ;;
      *) out+="${out:+, }{name: ${proto}, containerPort: ${port}, protocol: TCP}" ;;
    esac
  done
  printf '[%s]' "${out}"
}

# pods::_service_ports PORTS [target]: the ports of a PODS_SERVICES row
# (8080/TCP,80/TCP) as a YAML flow list, named <protocol>-<port>, with
# targetPort when the second argument is given (Services; not
# EndpointSlices).
pods::_service_ports() {
  local p port proto out=""
  for p in ${1//,/ }; do
    port=${p%/*} proto=${p#*/}
    out+="${out:+, }{name: ${proto,,}-${port}, port: ${port},${2:+ targetPort: ${port},} protocol: ${proto}}"
  done
  printf '[%s]' "${out}"
}

pods::_owner() {
  local kind=$1 name=$2 uid=$3 api=apps/v1
  if [[ "${kind}" == Service ]]; then api=v1; fi
  printf '  ownerReferences:\n  - {apiVersion: %s, kind: %s, name: %s, uid: %s, controller: true, blockOwnerDeletion: true}\n' \
    "${api}" "${kind}" "${name}" "${uid}"
}

pods::_apply() {
  pods::kubectl apply -f "$1" >>"${LOG_DIR}/kubectl.log" 2>&1 ||
    { tail -n 20 "${LOG_DIR}/kubectl.log" >&2; return 1; }
}

pods::_patch_status() {
  pods::kubectl patch "$1" "$2" ${3:+-n "$3"} --subresource=status --type=merge -p "$4" \
    >>"${LOG_DIR}/kubectl.log" 2>&1 || { tail -n 20 "${LOG_DIR}/kubectl.log" >&2; return 1; }
}

# pods::_objects: applies every object, in the order owner references need.
pods::_objects() {
  local m="${OUT_DIR}/manifests" now i j n key hash row ns name ports
  mkdir -p "${m}"
  now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  declare -gA PODS_UID=() PODS_GEN=()
  local -A wl_replicas=() seen_ns=()

  # 1. Namespaces, default ServiceAccounts (no controller makes them, and
  #    pods need them), Nodes, workloads, Services.
  {
    for ((i = 0; i < ${#P_POD[@]}; i++)); do
      key="${P_NS[i]}/${P_KIND[i]}/${P_WL[i]}"
      wl_replicas[${key}]=$((${wl_replicas[${key}]:-0} + 1))
      seen_ns[${P_NS[i]}]=1
    done
    for row in "${PODS_SERVICES[@]}"; do
      read -r ns _ <<<"${row}"
      seen_ns[${ns}]=1
    done
    for ns in "${!seen_ns[@]}"; do
      printf -- '---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n' "${ns}"
      printf -- '---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: default\n  namespace: %s\n' "${ns}"
    done
    for ((i = 0; i < ${#NODE_LIST[@]}; i++)); do
      n=${NODE_LIST[i]}
      cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: ${n}
  labels: {kubernetes.io/hostname: ${n}, kubernetes.io/os: linux, kubernetes.io/arch: amd64}
  annotations: {flowscope.io/pod-interfaces: "$(pods::iface_prefix "${i}")[0-9]*"}
spec:
  podCIDR: 10.244.$((i + 1)).0/24
  podCIDRs: [10.244.$((i + 1)).0/24, "fd00:10:244:$((i + 1))::/64"]
EOF
    done
    for key in "${!wl_replicas[@]}"; do
      IFS=/ read -r ns kind name <<<"${key}"
      cat <<EOF
---
apiVersion: apps/v1
kind: ${kind}
metadata:
  name: ${name}
  namespace: ${ns}
  labels: {app: ${name}}
spec:
  replicas: ${wl_replicas[${key}]}
  selector: {matchLabels: {app: ${name}}}
EOF
      if [[ "${kind}" == StatefulSet ]]; then echo "  serviceName: ${name}"; fi
      cat <<EOF
  template:
    metadata: {labels: {app: ${name}}}
    spec:
      containers: [{name: ${name}, image: ${PODS_IMAGE}}]
EOF
    done
    for row in "${PODS_SERVICES[@]}"; do
      read -r ns name ports <<<"${row}"
      cat <<EOF
---
apiVersion: v1
kind: Service
metadata:
  name: ${name}
  namespace: ${ns}
  labels: {app: ${name}}
spec:
  type: ClusterIP
  selector: {app: ${name}}
  ports: $(pods::_service_ports "${ports}" target)
EOF
    done
  } >"${m}/pods-1.yaml"
  pods::_apply "${m}/pods-1.yaml"
  for ((i = 0; i < ${#NODE_LIST[@]}; i++)); do
    pods::_patch_status node "${NODE_LIST[i]}" "" "{\"status\":{
      \"addresses\":[{\"type\":\"InternalIP\",\"address\":\"${PODS_NODE_IP}\"},{\"type\":\"Hostname\",\"address\":\"${NODE_LIST[i]}\"}],
      \"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"KubeletReady\",
        \"message\":\"simulated by hack/lib/pods.sh\",\"lastHeartbeatTime\":\"${now}\",\"lastTransitionTime\":\"${now}\"}]}}"
  done
  pods::_read_uids deployments
  pods::_read_uids statefulsets
  pods::_read_uids services

  # 2. A ReplicaSet per Deployment.
  {
    for key in "${!wl_replicas[@]}"; do
      IFS=/ read -r ns kind name <<<"${key}"
      [[ "${kind}" == Deployment ]] || continue
      hash="$(pods::_hash "${ns}/${name}")"
      cat <<EOF
---
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: ${name}-${hash}
  namespace: ${ns}
  labels: {app: ${name}, pod-template-hash: ${hash}}
$(pods::_owner Deployment "${name}" "${PODS_UID[Deployment/${ns}/${name}]}")
spec:
  replicas: ${wl_replicas[${key}]}
  selector: {matchLabels: {app: ${name}, pod-template-hash: ${hash}}}
  template:
    metadata: {labels: {app: ${name}, pod-template-hash: ${hash}}}
    spec:
      containers: [{name: ${name}, image: ${PODS_IMAGE}}]
EOF
    done
  } >"${m}/pods-2.yaml"
  if grep -q ReplicaSet "${m}/pods-2.yaml"; then
    pods::_apply "${m}/pods-2.yaml"
    pods::_read_uids replicasets
  fi

  # 3. The Pods, then their status.
  for ((i = 0; i < ${#P_POD[@]}; i++)); do
    ns=${P_NS[i]} name=${P_WL[i]}
    hash="$(pods::_hash "${ns}/${name}")"
    {
      cat <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: ${P_POD[i]}
  namespace: ${ns}
EOF
      if [[ "${P_KIND[i]}" == Deployment ]]; then
        echo "  labels: {app: ${name}, pod-template-hash: ${hash}}"
        pods::_owner ReplicaSet "${name}-${hash}" "${PODS_UID[ReplicaSet/${ns}/${name}-${hash}]}"
      else
        echo "  labels: {app: ${name}, controller-revision-hash: ${name}-${hash}, statefulset.kubernetes.io/pod-name: ${P_POD[i]}, apps.kubernetes.io/pod-index: \"${P_POD[i]##*-}\"}"
        pods::_owner StatefulSet "${name}" "${PODS_UID[StatefulSet/${ns}/${name}]}"
      fi
      cat <<EOF
  annotations: {flowscope.io/netns: ${P_NETNS[i]}, flowscope.io/host-interface: ${P_HOSTIF[i]}}
spec:
  nodeName: ${P_NODE[i]}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 0
  containers: [{name: ${name}, image: ${PODS_IMAGE}, ports: $(pods::_ports "${P_LISTEN[i]}")}]
EOF
      if [[ "${P_KIND[i]}" == StatefulSet ]]; then
        printf '  hostname: %s\n  subdomain: %s\n' "${P_POD[i]}" "${name}"
      fi
    } >"${m}/pod-${ns}-${P_POD[i]}.yaml"
    # The spec of a pod is immutable: replace one made from another table.
    if ! pods::kubectl apply -f "${m}/pod-${ns}-${P_POD[i]}.yaml" >>"${LOG_DIR}/kubectl.log" 2>&1; then
      pods::kubectl delete pod -n "${ns}" "${P_POD[i]}" --grace-period=0 --force >>"${LOG_DIR}/kubectl.log" 2>&1 || true
      pods::_apply "${m}/pod-${ns}-${P_POD[i]}.yaml"
    fi
    pods::_patch_status pod "${P_POD[i]}" "${ns}" "{\"status\":{\"phase\":\"Running\",
      \"hostIP\":\"${PODS_NODE_IP}\",\"hostIPs\":[{\"ip\":\"${PODS_NODE_IP}\"}],
      \"podIP\":\"${P_IP4[i]}\",\"podIPs\":[{\"ip\":\"${P_IP4[i]}\"},{\"ip\":\"${P_IP6[i]}\"}],
      \"startTime\":\"${now}\",
      \"conditions\":[{\"type\":\"PodScheduled\",\"status\":\"True\",\"lastTransitionTime\":\"${now}\"},
        {\"type\":\"Initialized\",\"status\":\"True\",\"lastTransitionTime\":\"${now}\"},
        {\"type\":\"ContainersReady\",\"status\":\"True\",\"lastTransitionTime\":\"${now}\"},
        {\"type\":\"Ready\",\"status\":\"True\",\"lastTransitionTime\":\"${now}\"}],
      \"containerStatuses\":[{\"name\":\"${name}\",\"image\":\"${PODS_IMAGE}\",\"imageID\":\"\",
        \"ready\":true,\"started\":true,\"restartCount\":0,\"state\":{\"running\":{\"startedAt\":\"${now}\"}}}]}}"
  done
  pods::_read_uids pods

  # 4. Workload status (so that kubectl get shows them ready) and the
  #    EndpointSlices of the Services.
  for key in "${!wl_replicas[@]}"; do
    IFS=/ read -r ns kind name <<<"${key}"
    n=${wl_replicas[${key}]}
    local st="\"replicas\":${n},\"readyReplicas\":${n},\"availableReplicas\":${n},\"updatedReplicas\":${n}"
    if [[ "${kind}" == Deployment ]]; then
      hash="$(pods::_hash "${ns}/${name}")"
      pods::_patch_status deployment "${name}" "${ns}" "{\"status\":{${st},
        \"observedGeneration\":${PODS_GEN[Deployment/${ns}/${name}]},
        \"conditions\":[{\"type\":\"Available\",\"status\":\"True\",\"reason\":\"MinimumReplicasAvailable\",
          \"lastUpdateTime\":\"${now}\",\"lastTransitionTime\":\"${now}\"}]}}"
      pods::_patch_status replicaset "${name}-${hash}" "${ns}" "{\"status\":{\"replicas\":${n},
        \"fullyLabeledReplicas\":${n},\"readyReplicas\":${n},\"availableReplicas\":${n},
        \"observedGeneration\":${PODS_GEN[ReplicaSet/${ns}/${name}-${hash}]}}}"
    else
      pods::_patch_status statefulset "${name}" "${ns}" "{\"status\":{${st},\"currentReplicas\":${n},
        \"observedGeneration\":${PODS_GEN[StatefulSet/${ns}/${name}]}}}"
    fi
  done
  {
    for row in "${PODS_SERVICES[@]}"; do
      read -r ns name ports <<<"${row}"
      cat <<EOF
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ${name}-local
  namespace: ${ns}
  labels: {kubernetes.io/service-name: ${name}, endpointslice.kubernetes.io/managed-by: ${PODS_MANAGER}}
$(pods::_owner Service "${name}" "${PODS_UID[Service/${ns}/${name}]}")
addressType: IPv4
ports: $(pods::_service_ports "${ports}")
endpoints:
EOF
      for ((j = 0; j < ${#P_POD[@]}; j++)); do
        [[ "${P_NS[j]}" == "${ns}" && "${P_WL[j]}" == "${name}" ]] || continue
        cat <<EOF
- addresses: ["${P_IP4[j]}"]
  conditions: {ready: true, serving: true, terminating: false}
  nodeName: ${P_NODE[j]}
  targetRef: {kind: Pod, namespace: ${ns}, name: ${P_POD[j]}, uid: ${PODS_UID[Pod/${ns}/${P_POD[j]}]}}
EOF
      done
    done
  } >"${m}/pods-4.yaml"
  pods::_apply "${m}/pods-4.yaml"
}

# pods::delete_objects: deletes what pods::_objects made (except namespaces
# and ServiceAccounts). Pods are deleted at once: no kubelet confirms.
pods::delete_objects() {
  local i row ns name hash
  local -A wls=()
  for ((i = 0; i < ${#P_POD[@]}; i++)); do
    pods::kubectl delete pod -n "${P_NS[i]}" "${P_POD[i]}" --ignore-not-found --grace-period=0 --force
    wls["${P_NS[i]}/${P_KIND[i]}/${P_WL[i]}"]=1
  done
  for row in "${!wls[@]}"; do
    IFS=/ read -r ns kind name <<<"${row}"
    if [[ "${kind}" == Deployment ]]; then
      hash="$(pods::_hash "${ns}/${name}")"
      pods::kubectl delete replicaset -n "${ns}" "${name}-${hash}" --ignore-not-found
    fi
    pods::kubectl delete "${kind,,}" -n "${ns}" "${name}" --ignore-not-found
  done
  for row in "${PODS_SERVICES[@]}"; do
    read -r ns name _ <<<"${row}"
    pods::kubectl delete endpointslice -n "${ns}" "${name}-local" --ignore-not-found
    pods::kubectl delete service -n "${ns}" "${name}" --ignore-not-found
  done
  for name in "${NODE_LIST[@]}"; do
    pods::kubectl delete node "${name}" --ignore-not-found
  done
}

# ---------------------------------------------------------------------------
# Up, down, status

# pods::up: (re)creates the pods' namespaces and veths, turns forwarding on,
# applies the objects and starts a traffic generator per pod. Running it
# again starts over (the generators are restarted, the namespaces made anew,
# the objects updated).
pods::up() {
  local start i c ip
  start=$(date +%s)
  ip="$(pods::_ip_bin)"
  pods::_load
  mkdir -p "${PODS_STATE_DIR}" "${PID_DIR}" "${LOG_DIR}"
  pods::_stop_traffic
  pods::_delete_all_net
  pods::_save_sysctls
  echo 1 >/proc/sys/net/ipv4/ip_forward
  if [[ -d /proc/sys/net/ipv6 ]]; then echo 1 >/proc/sys/net/ipv6/conf/all/forwarding; fi
  for ((i = 0; i < ${#P_POD[@]}; i++)); do
    pods::_create_net "${i}"
  done
  pods::_write_dns
  local::log "demo pods: ${#P_POD[@]} network namespaces, veths $(for ((i = 0; i < ${#NODE_LIST[@]}; i++)); do
    printf '%s[0-9]* ' "$(pods::iface_prefix "${i}")"; done)(forwarding on)"
  pods::_objects
  local::log "demo pods: applied Nodes, workloads, Pods (Running, with IPs), Services and EndpointSlices"

  if ! pods::_have_traffic; then
    local::warn "${BIN_DIR}/flowscope-traffic is not built: the demo pods send nothing ('make build')"
    return 0
  fi
  for ((i = 0; i < ${#P_POD[@]}; i++)); do
    [[ -n "${P_LISTEN[i]}${P_CONNECT[i]}" ]] || continue
    c="$(pods::_component "${i}")"
    local::start "${c}" "${ip}" netns exec "${P_NETNS[i]}" "${BIN_DIR}/flowscope-traffic" \
      --name="${P_NS[i]}/${P_POD[i]}" \
      --listen="${P_LISTEN[i]}" \
      --connect="${P_CONNECT[i]}" \
      --interval="${PODS_INTERVAL}" \
      --dns-table="${PODS_STATE_DIR}/dns-hosts" \
      --stats-file="${PODS_STATE_DIR}/${c}.json"
    # The process is ip first, then (same pid) flowscope-traffic: record
    # the build of the latter, to tell when it changes.
    local::binary_id "${BIN_DIR}/flowscope-traffic" >"${PID_DIR}/${c}.bin"
  done
  sleep 1
  for ((i = 0; i < ${#P_POD[@]}; i++)); do
    c="$(pods::_component "${i}")"
    if ! local::pid_of "${c}" >/dev/null; then
      echo "---- ${LOG_DIR}/${c}.log ----" >&2
      tail -n 20 "${LOG_DIR}/${c}.log" >&2
      local::warn "${c} exited right after starting"
      return 1
    fi
  done
  local::log "demo pods: traffic generators running every ${PODS_INTERVAL} ($(($(date +%s) - start))s; stats in ${PODS_STATE_DIR})"
}

# pods::_delete_all_net: deletes the namespaces and veths of the table and
# of earlier runs (OUT_DIR/pods/created).
pods::_delete_all_net() {
  local i netns hostif
  for ((i = 0; i < ${#P_POD[@]}; i++)); do
    pods::_delete_net "${P_NETNS[i]}" "${P_HOSTIF[i]}"
  done
  if [[ -s "${PODS_STATE_DIR}/created" ]]; then
    while read -r netns hostif; do
      pods::_delete_net "${netns}" "${hostif}"
    done <"${PODS_STATE_DIR}/created"
  fi
  rm -f "${PODS_STATE_DIR}/created"
}

# pods::down: stops the generators, deletes the namespaces and veths,
# restores the sysctls and removes OUT_DIR/pods. Leaves the objects (the
# API's storage goes with hack/local-down.sh anyway). Harmless when there
# is nothing.
pods::down() {
  [[ -d "${PODS_STATE_DIR}" ]] || return 0
  if ((EUID != 0)); then
    local::warn "not root: cannot delete the demo pods' network namespaces and veths (${PODS_STATE_DIR})"
    return 0
  fi
  pods::_load
  pods::_stop_traffic
  pods::_delete_all_net
  pods::_restore_sysctls
  rm -rf "${PODS_STATE_DIR}"
  local::log "demo pods: deleted network namespaces and veths"
}

pods::status() {
  local ip i c
  ip="$(pods::_ip_bin)"
  pods::_load
  for ((i = 0; i < ${#P_POD[@]}; i++)); do
    c="$(pods::_component "${i}")"
    printf '%-24s %-7s %-12s %-20s netns %-34s %-5s %s\n' "${P_NS[i]}/${P_POD[i]}" "${P_NODE[i]}" \
      "${P_IP4[i]}" "${P_IP6[i]}" "${P_NETNS[i]}$([[ -e /run/netns/${P_NETNS[i]} ]] || echo ' (missing)')" \
      "${P_HOSTIF[i]}$([[ -e /sys/class/net/${P_HOSTIF[i]} ]] || echo ' (missing)')" \
      "$(if local::pid_of "${c}" >/dev/null; then echo "${c} running"; else echo "${c} not running"; fi)"
  done
  echo "forwarding: net.ipv4.ip_forward=$(</proc/sys/net/ipv4/ip_forward) net.ipv6.conf.all.forwarding=$(cat /proc/sys/net/ipv6/conf/all/forwarding 2>/dev/null)"
  echo "routes:"
  "${ip}" route show | grep -E '^10\.244\.' || true
  "${ip}" -6 route show | grep -E '^fd00:10:244:' || true
  for ((i = 0; i < ${#P_POD[@]}; i++)); do
    c="$(pods::_component "${i}")"
    [[ -s "${LOG_DIR}/${c}.log" ]] || continue
    echo "---- ${c}: last report"
    grep ' report ' "${LOG_DIR}/${c}.log" | tail -n "$(tr ',' '\n' <<<"${P_LISTEN[i]},${P_CONNECT[i]}" | grep -c .)" || true
  done
}

pods::main() {
  set -Eeuo pipefail
  case "${1:-}" in
    up)
      pods::enabled >/dev/null || { echo "demo pods: $(pods::enabled)" >&2; exit 1; }
      [[ -s "${OUT_DIR}/kubeconfig" ]] || { echo "no ${OUT_DIR}/kubeconfig: start the local system first (make run)" >&2; exit 1; }
      pods::up
      ;;
    down)
      pods::down
      pods::_load
      if [[ -s "${OUT_DIR}/kubeconfig" ]] && pods::kubectl get --raw /readyz >/dev/null 2>&1; then
        pods::delete_objects >>"${LOG_DIR}/kubectl.log" 2>&1
        local::log "demo pods: deleted their objects"
      fi
      ;;
    status) pods::status ;;
    *)
      echo "usage: $0 up|down|status" >&2
      exit 2
      ;;
  esac
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  pods::main "$@"
fi
