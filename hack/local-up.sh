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

# Starts the whole Flowscope system locally, without kubelet or containers:
# etcd and kube-apiserver (pinned, from _output/tools, see hack/build-tools.sh),
# the CRDs of artifacts/crds, the RBAC of artifacts/deploy/rbac, the
# APIService, one flowscope-agent per node, flowscope-apiserver and, when
# built, a demo flow generator per node;
# as root, demo pods with real traffic for the agents to capture (network
# namespaces, veths, objects and traffic generators: hack/lib/pods.sh).
# Every component runs in the background in its own session; pid files in
# OUT_DIR/pids, logs in OUT_DIR/logs. Stop with hack/local-down.sh (make stop).
#
# Environment (defaults in brackets):
#   OUT_DIR    [<repo>/_output/local]  state, certificates, kubeconfigs, logs
#   PORT_BASE  [6440]  etcd +0 (peer +1), kube-apiserver +3, flowscope-apiserver +4, Prometheus +5,
#                      agent i gRPC +100+i, agent i metrics +200+i (i < 100)
#   BIN_DIR    [<repo>/_output/bin]    flowscope-apiserver, flowscope-agent, flowscope-flowgen
#   TOOLS_DIR  [<repo>/_output/tools]  kube-apiserver, kubectl, etcd
#   NODES      ["node-a node-b"]       one agent per name, at most 100
#   FLOWGEN    [1]     0 disables the demo flow generators
#   DEMO_PODS  [1]     0 disables the demo pods (root only; see hack/lib/pods.sh); capture is off without them
#   CAPTURE    [all]   the agents' --capture with demo pods: all or selected
#   KEEP_LOGS  [0]     1 keeps the old logs when a stale system is cleaned up
#   PROFILING  [0]     1 serves Go's /debug/pprof on the agents' metrics addresses (127.0.0.1;
#                      unauthenticated, so off unless asked)
#   CHART_ARGS [0]     1 gives the agents and flowscope-apiserver the flags the Helm chart
#                      renders (hack/chart-args.sh, with CHART_VALUES such as
#                      "--set agent.retention=2h"), less those set here for the local system
#   SELF_MANAGED_CERTS [0]  1: flowscope-apiserver makes its CA and certificates itself
#                      (--self-managed-certs; CERT_VALIDITY and CA_VALIDITY, if set, are its
#                      --cert-validity and --ca-validity) and the agents request theirs from it;
#                      no Flowscope certificate is made here, the APIService gets no caBundle
#   PROMETHEUS [1]     0 disables the local Prometheus (Debian's, hack/install-prometheus.sh) scraping the agents
#   OTEL_COLLECTOR [1] 0 disables the local OpenTelemetry Collector (_output/tools/otelcol, OTLP on
#                      PORT_BASE+6 gRPC and +7 HTTP, writing OUT_DIR/otelcol/logs.json) the agents'
#                      OTLP output sends to (--otlp-endpoint)
#
# Running it again is harmless: a healthy system is left alone (and the usage
# printed again); a partial or outdated one (dead component, rebuilt binary,
# other PORT_BASE or NODES) is stopped and started clean. Changed flags (an
# edit of this script) are not detected: run hack/local-down.sh first. Certificates and
# tokens in OUT_DIR/certs are created once and reused, so the kubeconfigs stay
# the same from one run to the next (but the agents', whose tokens are bound
# to objects in etcd and minted on every start).
#
# OUT_DIR/env is a shell-sourcable summary (KUBECONFIG, URLs, CA files,
# components) for scripts and the end-to-end tests.
set -Eeuo pipefail

# shellcheck source=hack/lib/local.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/local.sh"
# shellcheck source=hack/lib/certs.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/certs.sh"
# shellcheck source=hack/lib/pods.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/pods.sh"

KUBECTL_BIN="${TOOLS_DIR}/kubectl"
FLOWGEN="${FLOWGEN:-1}"
# EXAMPLE_POLICY=0 leaves stored mode off (the end-to-end suites do).
EXAMPLE_POLICY="${EXAMPLE_POLICY:-1}"
SELF_MANAGED_CERTS="${SELF_MANAGED_CERTS:-0}"
self_managed() { [[ "${SELF_MANAGED_CERTS}" == 1 ]]; }
# PROMETHEUS=0 leaves the local Prometheus out (the end-to-end suites but
# test/e2e/dashboards do).
PROMETHEUS="${PROMETHEUS:-1}"
# OTEL_COLLECTOR=0 leaves the local OpenTelemetry Collector out (the
# end-to-end suites but test/e2e/otlp do).
OTEL_COLLECTOR="${OTEL_COLLECTOR:-1}"

WARNINGS=()      # repeated after the usage
STEP="start"     # what is being done, for error reports
COMPONENT=""     # whose log to show on failure

# ---------------------------------------------------------------------------
# Error handling

# fd 7: the script's original stderr, for reports made while a command's
# stderr is redirected to a log. Components are started with it closed.
exec 7>&2

report_failure() {
  local msg=$1
  exec 2>&7
  echo >&2
  echo "local-up: FAILED in step '${STEP}': ${msg}" >&2
  if [[ -n "${COMPONENT}" && -s "${LOG_DIR}/${COMPONENT}.log" ]]; then
    echo "---- last 40 lines of ${LOG_DIR}/${COMPONENT}.log ----" >&2
    tail -n 40 "${LOG_DIR}/${COMPONENT}.log" >&2
    echo "----" >&2
  fi
  local c running=()
  for c in $(local::components); do
    if local::pid_of "${c}" >/dev/null; then running+=("${c}"); fi
  done
  if ((${#running[@]})); then
    echo "Left running for inspection: ${running[*]}" >&2
    echo "Stop them with: $(down_command)" >&2
  fi
}

on_error() {
  local rc=$? line=$1 cmd=$2
  trap - ERR
  # In a subshell: let the parent report it.
  ((BASH_SUBSHELL == 0)) || exit "${rc}"
  report_failure "command failed (exit ${rc}, line ${line}): ${cmd}"
  exit "${rc}"
}
trap 'on_error "${LINENO}" "${BASH_COMMAND}"' ERR

fail() {
  trap - ERR
  report_failure "$*"
  exit 1
}

down_command() {
  if [[ "${OUT_DIR}" == "${LOCAL_ROOT}/_output/local" ]]; then
    echo "make stop"
  else
    echo "OUT_DIR=${OUT_DIR} ${LOCAL_ROOT}/hack/local-down.sh"
  fi
}

# wait_until DESC TIMEOUT_S CMD...: polls CMD every 0.5 s. Fails early if
# COMPONENT (when set) has exited.
wait_until() {
  local desc=$1 timeout=$2 deadline
  shift 2
  deadline=$(($(date +%s) + timeout))
  while true; do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    if [[ -n "${COMPONENT}" && -e "${PID_DIR}/${COMPONENT}.pid" ]] && ! local::pid_of "${COMPONENT}" >/dev/null; then
      fail "${COMPONENT} exited while waiting for ${desc}"
    fi
    if (($(date +%s) >= deadline)); then
      fail "timed out after ${timeout}s waiting for ${desc}"
    fi
    sleep 0.5
  done
}

warn() {
  local::warn "$*"
  WARNINGS+=("$*")
}

kubectl() {
  "${KUBECTL_BIN}" --kubeconfig "${OUT_DIR}/kubeconfig" --cache-dir "${OUT_DIR}/kubecache" "$@"
}

token_of() {
  awk -F, -v u="$1" '$2 == u { print $1; exit }' "${TOKEN_FILE}"
}

have_agent() { [[ -x "${BIN_DIR}/flowscope-agent" ]]; }
have_apiserver() { [[ -x "${BIN_DIR}/flowscope-apiserver" ]]; }
have_flowgen() { [[ "${FLOWGEN}" != 0 && -x "${BIN_DIR}/flowscope-flowgen" ]]; }
have_prometheus() { [[ "${PROMETHEUS}" != 0 ]] && have_agent && command -v prometheus >/dev/null; }
have_otelcol() { [[ "${OTEL_COLLECTOR}" != 0 && -x "${TOOLS_DIR}/otelcol" ]] && have_agent; }

# expected_components: what a complete system consists of, given the
# binaries present.
expected_components() {
  local n
  echo etcd
  echo kube-apiserver
  if have_otelcol; then echo otelcol; fi
  if have_agent; then
    for n in "${NODE_LIST[@]}"; do echo "agent-${n}"; done
  fi
  if have_apiserver; then echo flowscope-apiserver; fi
  if have_flowgen; then
    for n in "${NODE_LIST[@]}"; do echo "flowgen-${n}"; done
  fi
  pods::components
  if have_prometheus; then echo prometheus; fi
}

binary_of() {
  case "$1" in
    etcd | kube-apiserver) echo "${TOOLS_DIR}/$1" ;;
    agent-*) echo "${BIN_DIR}/flowscope-agent" ;;
    flowgen-*) echo "${BIN_DIR}/flowscope-flowgen" ;;
    traffic-*) echo "${BIN_DIR}/flowscope-traffic" ;;
    flowscope-apiserver) echo "${BIN_DIR}/flowscope-apiserver" ;;
    prometheus) command -v prometheus ;;
    otelcol) echo "${TOOLS_DIR}/otelcol" ;;
  esac
}

kas_ready() {
  curl -fsS --max-time 5 --cacert "${KAS_CERT_DIR}/apiserver.crt" \
    -H "Authorization: Bearer $(token_of admin)" \
    "https://127.0.0.1:${KAS_PORT}/readyz" >/dev/null
}

apiservice_available() {
  [[ "$(kubectl get apiservice "${APISERVICE_NAME}" \
    -o 'jsonpath={.status.conditions[?(@.type=="Available")].status}' 2>/dev/null)" == True ]]
}

# ---------------------------------------------------------------------------
# Steps

# Is a complete, healthy system already running from this OUT_DIR? Prints
# the reason when not.
already_up() {
  local c bin running expected
  running="$(local::components | sort)"
  expected="$(expected_components | sort)"
  if [[ -z "${running}" ]]; then
    return 1
  fi
  if [[ "${running}" != "${expected}" ]]; then
    echo "components differ from a complete system (running: $(echo "${running}" | tr '\n' ' '); expected: $(echo "${expected}" | tr '\n' ' '))"
    return 1
  fi
  if ! grep -qx "PORT_BASE=${PORT_BASE}" "${OUT_DIR}/env" 2>/dev/null; then
    echo "it was started with another PORT_BASE or did not finish starting"
    return 1
  fi
  for c in ${expected}; do
    if ! local::pid_of "${c}" >/dev/null; then
      echo "${c} is not running"
      return 1
    fi
    bin="$(binary_of "${c}")"
    if [[ "$(local::binary_id "${bin}")" != "$(cat "${PID_DIR}/${c}.bin" 2>/dev/null)" ]]; then
      echo "${bin} changed since ${c} started"
      return 1
    fi
  done
  if ! kas_ready; then
    echo "kube-apiserver is not ready"
    return 1
  fi
  if have_apiserver && ! apiservice_available; then
    echo "APIService ${APISERVICE_NAME} is not Available"
    return 1
  fi
}

step_preflight() {
  STEP="preflight"
  local t missing=()
  for t in kube-apiserver kubectl etcd; do
    [[ -x "${TOOLS_DIR}/${t}" ]] || missing+=("${TOOLS_DIR}/${t}")
  done
  if ((${#missing[@]})); then
    fail "missing ${missing[*]}: run 'make tools' (hack/build-tools.sh) or set TOOLS_DIR"
  fi
  for t in openssl curl setsid nohup ps awk base64; do
    command -v "${t}" >/dev/null || fail "'${t}' is required but not installed"
  done
  ((${#NODE_LIST[@]} > 0)) || fail "NODES is empty"
  ((${#NODE_LIST[@]} <= MAX_NODES)) ||
    fail "at most ${MAX_NODES} NODES (agent ports are PORT_BASE+100..+$((100 + MAX_NODES - 1)))"

  if ! have_agent; then
    warn "${BIN_DIR}/flowscope-agent is not built: no agents ('make build')"
  fi
  if ! have_apiserver; then
    warn "${BIN_DIR}/flowscope-apiserver is not built: APIService ${APISERVICE_NAME} stays unavailable ('make build')"
  fi
  if [[ "${OTEL_COLLECTOR}" != 0 ]] && [[ ! -x "${TOOLS_DIR}/otelcol" ]]; then
    warn "${TOOLS_DIR}/otelcol is not built: no local OpenTelemetry Collector, the agents send no OTLP ('make tools')"
  fi
  if [[ "${PROMETHEUS}" != 0 ]] && ! command -v prometheus >/dev/null; then
    warn "prometheus is not installed: no local Prometheus (hack/install-prometheus.sh, 'make tools')"
  fi

  local reason
  if reason="$(already_up)"; then
    local::log "Flowscope is already up in ${OUT_DIR} and healthy; nothing to do."
    print_usage
    exit 0
  fi
  if [[ -n "$(local::components)" ]]; then
    local::log "a previous system in ${OUT_DIR} is incomplete or outdated (${reason}); stopping it and starting clean"
    local::stop_all
  fi
  local::clean_state

  # Ports must be free: a stranger on them would make every later step fail
  # in confusing ways.
  local p i busy=()
  local ports=("${ETCD_PORT}" "${ETCD_PEER_PORT}" "${KAS_PORT}")
  if have_apiserver; then ports+=("${APISERVER_PORT}"); fi
  if have_prometheus; then ports+=("${PROMETHEUS_PORT}"); fi
  if have_otelcol; then ports+=("${OTELCOL_GRPC_PORT}" "${OTELCOL_HTTP_PORT}"); fi
  if have_agent; then
    for ((i = 0; i < ${#NODE_LIST[@]}; i++)); do
      ports+=("$((AGENT_PORT_BASE + i))" "$((AGENT_METRICS_PORT_BASE + i))")
    done
  fi
  for p in "${ports[@]}"; do
    if local::port_open "${p}"; then busy+=("${p}"); fi
  done
  if ((${#busy[@]})); then
    if command -v ss >/dev/null; then
      ss -ltnp 2>/dev/null | grep -E ":($(IFS='|'; echo "${busy[*]}"))\b" >&2 || true
    fi
    fail "ports already in use on 127.0.0.1: ${busy[*]} (another system? choose another PORT_BASE)"
  fi
  mkdir -p "${PID_DIR}" "${LOG_DIR}"
}

step_certs() {
  STEP="certificates"
  local start n
  start=$(date +%s)
  (umask 077 && mkdir -p "${CERT_DIR}" "${KAS_CERT_DIR}")
  # kube-apiserver: client CA, front proxy (aggregation), service accounts.
  certs::ca "${CERT_DIR}" client-ca "flowscope-local-client-ca"
  certs::ca "${CERT_DIR}" front-proxy-ca "flowscope-local-front-proxy-ca"
  certs::leaf "${CERT_DIR}" front-proxy-ca front-proxy-client front-proxy-client clientAuth
  # etcd: TLS with client certificates, so that no other local user can
  # read or rewrite the cluster (RBAC included) through its port.
  certs::ca "${CERT_DIR}" etcd-ca "flowscope-local-etcd-ca"
  certs::leaf "${CERT_DIR}" etcd-ca etcd-server etcd "serverAuth, clientAuth" "DNS:localhost, IP:127.0.0.1"
  certs::leaf "${CERT_DIR}" etcd-ca etcd-client-kube-apiserver kube-apiserver clientAuth
  certs::key "${CERT_DIR}/sa.key" rsa
  # Flowscope: one CA for the aggregated server's serving cert (caBundle of
  # the APIService), the agents' serving certs and the server's client cert.
  certs::ca "${CERT_DIR}" flowscope-ca "flowscope-local-ca"
  certs::leaf "${CERT_DIR}" flowscope-ca apiserver-serving flowscope-apiserver serverAuth \
    "DNS:api.${FLOWSCOPE_NAMESPACE}.svc, DNS:localhost, IP:127.0.0.1"
  certs::leaf "${CERT_DIR}" flowscope-ca apiserver-agent-client flowscope-apiserver clientAuth
  # kube-apiserver creates its self-signed serving cert (1 year) in its
  # --cert-dir once and reuses it; renew it when it is about to expire.
  if [[ -e "${KAS_CERT_DIR}/apiserver.crt" ]] && ! certs::_valid "${KAS_CERT_DIR}/apiserver.crt"; then
    rm -f "${KAS_CERT_DIR}/apiserver.crt" "${KAS_CERT_DIR}/apiserver.key"
  fi
  # Continue tokens are signed with a key every replica shares (a Secret
  # in a cluster); kept across runs, as the certificates are.
  if [[ ! -s "${CERT_DIR}/continue-token-keys" ]]; then
    (umask 077 && openssl rand -base64 48 >"${CERT_DIR}/continue-token-keys")
  fi
  # Each agent's serving certificate names its node, <node>.agents.flowscope.io,
  # and no other: flowscope-apiserver dials a Lease's address and accepts
  # only the agent of the Lease's node there. localhost and 127.0.0.1 are for
  # clients that dial an agent by address (the end-to-end tests).
  for n in "${NODE_LIST[@]}"; do
    certs::leaf "${CERT_DIR}" flowscope-ca "agent-${n}" "flowscope-agent-${n}" serverAuth \
      "DNS:${n}.agents.flowscope.io, DNS:localhost, IP:127.0.0.1"
  done
  local::log "certificates ready in ${CERT_DIR} ($(($(date +%s) - start))s)"
}

step_tokens() {
  STEP="tokens"
  # The agents are no users of the file: each has a token of its own, bound
  # to its node (agent_identities).
  local users=(admin alice bob carol dave
    "system:serviceaccount:${FLOWSCOPE_NAMESPACE}:flowscope-apiserver")
  local u ok=1
  for u in "${users[@]}"; do
    [[ -n "$(token_of "${u}" 2>/dev/null)" ]] || ok=0
  done
  # A file of before agents had tokens of their own holds one for them all.
  [[ -z "$(token_of "system:serviceaccount:${FLOWSCOPE_NAMESPACE}:flowscope-agent" 2>/dev/null)" ]] || ok=0
  ((ok)) && return 0
  local sa_groups="system:serviceaccounts,system:serviceaccounts:${FLOWSCOPE_NAMESPACE}"
  (
    umask 077
    {
      echo "$(openssl rand -hex 24),admin,admin,\"system:masters\""
      for u in alice bob carol dave; do
        echo "$(openssl rand -hex 24),${u},${u}"
      done
      echo "$(openssl rand -hex 24),system:serviceaccount:${FLOWSCOPE_NAMESPACE}:flowscope-apiserver,flowscope-apiserver,\"${sa_groups}\""
    } >"${TOKEN_FILE}.tmp"
    mv "${TOKEN_FILE}.tmp" "${TOKEN_FILE}"
  )
  local::log "generated tokens in ${TOKEN_FILE}"
}

step_etcd() {
  STEP="etcd"
  COMPONENT=etcd
  (umask 077 && mkdir -p "${OUT_DIR}/etcd")
  local::start etcd "${TOOLS_DIR}/etcd" \
    --data-dir "${OUT_DIR}/etcd" \
    --listen-client-url "https://127.0.0.1:${ETCD_PORT}" \
    --listen-peer-url "https://127.0.0.1:${ETCD_PEER_PORT}" \
    --cert-file "${CERT_DIR}/etcd-server.crt" --key-file "${CERT_DIR}/etcd-server.key" \
    --trusted-ca-file "${CERT_DIR}/etcd-ca.crt"
  wait_until "etcd health on :${ETCD_PORT}" 30 \
    bash -c "curl -fsS --max-time 2 --cacert '${CERT_DIR}/etcd-ca.crt' --cert '${CERT_DIR}/etcd-client-kube-apiserver.crt' --key '${CERT_DIR}/etcd-client-kube-apiserver.key' https://127.0.0.1:${ETCD_PORT}/health | grep -q '\"health\":\"true\"'"
  local::log "etcd up on 127.0.0.1:${ETCD_PORT} (pid $(local::pid_of etcd))"
  COMPONENT=""
}

step_kube_apiserver() {
  STEP="kube-apiserver"
  COMPONENT=kube-apiserver
  local start
  start=$(date +%s)
  local::start kube-apiserver "${TOOLS_DIR}/kube-apiserver" \
    --etcd-servers="https://127.0.0.1:${ETCD_PORT}" \
    --etcd-cafile="${CERT_DIR}/etcd-ca.crt" \
    --etcd-certfile="${CERT_DIR}/etcd-client-kube-apiserver.crt" \
    --etcd-keyfile="${CERT_DIR}/etcd-client-kube-apiserver.key" \
    --bind-address=127.0.0.1 \
    --secure-port="${KAS_PORT}" \
    --advertise-address=127.0.0.1 \
    --endpoint-reconciler-type=none \
    --service-cluster-ip-range=10.0.0.0/24 \
    --cert-dir="${KAS_CERT_DIR}" \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="${CERT_DIR}/sa.key" \
    --service-account-signing-key-file="${CERT_DIR}/sa.key" \
    --token-auth-file="${TOKEN_FILE}" \
    --authorization-mode=Node,RBAC \
    --allow-privileged=true \
    --client-ca-file="${CERT_DIR}/client-ca.crt" \
    --requestheader-client-ca-file="${CERT_DIR}/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --requestheader-uid-headers=X-Remote-Uid \
    --proxy-client-cert-file="${CERT_DIR}/front-proxy-client.crt" \
    --proxy-client-key-file="${CERT_DIR}/front-proxy-client.key"
  wait_until "kube-apiserver serving certificate ${KAS_CERT_DIR}/apiserver.crt" 60 \
    test -s "${KAS_CERT_DIR}/apiserver.crt"
  wait_until "kube-apiserver /readyz on :${KAS_PORT}" 120 kas_ready
  local::log "kube-apiserver ready on https://127.0.0.1:${KAS_PORT} ($(($(date +%s) - start))s, pid $(local::pid_of kube-apiserver))"
  COMPONENT=""
}

# write_kubeconfig FILE USER NAME [TOKEN]: USER's token from TOKEN_FILE, or TOKEN.
write_kubeconfig() {
  local file=$1 user=$2 name=$3 token=${4:-} ca
  [[ -n "${token}" ]] || token="$(token_of "${user}")"
  [[ -n "${token}" ]] || fail "no token for ${user} in ${TOKEN_FILE}"
  ca="$(base64 -w0 <"${KAS_CERT_DIR}/apiserver.crt")"
  (
    umask 077
    cat >"${file}.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: flowscope-local
  cluster:
    server: https://127.0.0.1:${KAS_PORT}
    certificate-authority-data: ${ca}
users:
- name: ${name}
  user:
    token: ${token}
contexts:
- name: ${name}@flowscope-local
  context:
    cluster: flowscope-local
    user: ${name}
current-context: ${name}@flowscope-local
EOF
    mv "${file}.tmp" "${file}"
  )
}

step_kubeconfigs() {
  STEP="kubeconfigs"
  write_kubeconfig "${OUT_DIR}/kubeconfig" admin admin
  local u
  for u in alice bob carol dave; do
    write_kubeconfig "${OUT_DIR}/kubeconfig-${u}" "${u}" "${u}"
  done
  write_kubeconfig "${OUT_DIR}/kubeconfig-apiserver" \
    "system:serviceaccount:${FLOWSCOPE_NAMESPACE}:flowscope-apiserver" flowscope-apiserver
}

step_bootstrap() {
  STEP="apply namespaces, CRDs, RBAC, APIService"
  COMPONENT=kubectl
  local m="${OUT_DIR}/manifests" ca_bundle crds
  mkdir -p "${m}"
  ca_bundle="$(base64 -w0 <"${CERT_DIR}/flowscope-ca.crt")"
  # Self-managed: flowscope-apiserver fills it in with the CA it makes.
  if self_managed; then ca_bundle=""; fi

  cat >"${m}/namespaces.yaml" <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: ${FLOWSCOPE_NAMESPACE}
---
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: Namespace
metadata:
  name: payments
---
apiVersion: v1
kind: Namespace
metadata:
  name: monitoring
EOF

  # Without kube-proxy or kubelet the aggregator cannot reach a ClusterIP
  # Service; an ExternalName Service to localhost makes it dial
  # https://localhost:<APIService port> with ServerName api.<ns>.svc.
  cat >"${m}/local.yaml" <<EOF
apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: ${FLOWSCOPE_NAMESPACE}
spec:
  type: ExternalName
  externalName: localhost
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: ${APISERVICE_NAME}
spec:
  group: flows.flowscope.io
  version: v1alpha1
  groupPriorityMinimum: 1000
  versionPriority: 15
  caBundle: ${ca_bundle:-null}
  service:
    namespace: ${FLOWSCOPE_NAMESPACE}
    name: api
    port: ${APISERVER_PORT}
---
# Demo users: alice may view flows in shop only, carol everywhere, bob nowhere;
# dave administers shop. He is bound to flowscope-admin, which a cluster
# aggregates into admin; here no kube-controller-manager runs the aggregation,
# so admin's own rules stay empty.
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: alice-flowscope-view
  namespace: shop
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: flowscope-view
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: alice
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: carol-flowscope-view
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: flowscope-view
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: carol
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: dave-flowscope-admin
  namespace: shop
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: flowscope-admin
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: dave
EOF
  {
    kubectl apply -f "${m}/namespaces.yaml"
    # The flow log policies' CRDs, Established before the agents and
    # flowscope-apiserver start their informers on them.
    kubectl apply -k "${LOCAL_ROOT}/artifacts/crds" -o name >"${m}/crds"
    mapfile -t crds <"${m}/crds"
    kubectl wait --for condition=established --timeout=60s "${crds[@]}"
    kubectl apply -k "${LOCAL_ROOT}/artifacts/deploy/rbac"
    kubectl apply -f "${m}/local.yaml"
  } >>"${LOG_DIR}/kubectl.log" 2>&1
  local::log "applied namespaces, artifacts/crds (Established), artifacts/deploy/rbac, APIService ${APISERVICE_NAME} and demo RBAC"
  COMPONENT=""
}

# agent_identities: a kubeconfig per agent, kubeconfig-agent-<node>, with a
# token of the ServiceAccount flowscope-agent bound to a stand-in Pod
# flowscope-agent-<node> on the node: what the kubelet projects into a
# DaemonSet's pod, so the token carries the node
# (authentication.kubernetes.io/node-name) and the admission policy
# flowscope-agent-leases lets each agent write its own node's Lease only.
# The Pods never run (no kubelet); the tokens are minted on every start, as
# they stop being valid with their Pod. kubeconfig-agent is the first
# node's, for tests and scripts that act as an agent.
agent_identities() {
  STEP="agent identities"
  COMPONENT=kubectl
  local m="${OUT_DIR}/manifests/agent-pods.yaml" n token
  {
    cat "${LOCAL_ROOT}/artifacts/deploy/serviceaccount-agent.yaml"
    for n in "${NODE_LIST[@]}"; do
      cat <<EOF
---
apiVersion: v1
kind: Pod
metadata:
  name: flowscope-agent-${n}
  namespace: ${FLOWSCOPE_NAMESPACE}
  labels: {app.kubernetes.io/name: flowscope-agent, app.kubernetes.io/part-of: flowscope}
spec:
  nodeName: ${n}
  serviceAccountName: flowscope-agent
  automountServiceAccountToken: false
  containers:
  - {name: agent, image: ghcr.io/flowscope/flowscope-agent:local}
EOF
    done
  } >"${m}"
  kubectl apply -f "${m}" >>"${LOG_DIR}/kubectl.log" 2>&1
  for n in "${NODE_LIST[@]}"; do
    token="$(kubectl create token flowscope-agent -n "${FLOWSCOPE_NAMESPACE}" --duration=8760h \
      --bound-object-kind=Pod --bound-object-name="flowscope-agent-${n}" 2>>"${LOG_DIR}/kubectl.log")"
    write_kubeconfig "${OUT_DIR}/kubeconfig-agent-${n}" \
      "system:serviceaccount:${FLOWSCOPE_NAMESPACE}:flowscope-agent" "flowscope-agent-${n}" "${token}"
  done
  cp "${OUT_DIR}/kubeconfig-agent-${NODE_LIST[0]}" "${OUT_DIR}/kubeconfig-agent"
  local::log "agent identities: a token bound to node <node> in ${OUT_DIR}/kubeconfig-agent-<node>"
  COMPONENT=""
}

# chart_args agent|apiserver: with CHART_ARGS=1, the flags the Helm chart
# (artifacts/charts/flowscope, values CHART_VALUES) gives the component, one a
# line, less those this script sets for the local system: names, addresses,
# ports, paths, certificates, kubeconfigs, the demo pods' capture, and the
# free-disk share (a development machine's disk may be fuller than a node's).
chart_args() {
  [[ "${CHART_ARGS:-0}" == 1 ]] || return 0
  local except values=()
  case "$1" in
    agent) except="node-name,namespace,data-dir,listen-address,advertise-address,metrics-bind-address,self-managed-certs,cert-dir,tls-*,client-ca-file,allowed-client-names,replay-file,flow-log-file,kubeconfig,capture,interfaces,attach-default-route,l7,otlp-*,min-free-disk-percent" ;;
    apiserver) except="secure-port,bind-address,self-managed-certs,serving-cert-hosts,cert-validity,ca-validity,apiservice,tls-*,agent-*,continue-token-keys-file,kubeconfig,authentication-kubeconfig,authorization-kubeconfig" ;;
  esac
  read -ra values <<<"${CHART_VALUES:-}"
  "${LOCAL_ROOT}/hack/chart-args.sh" "$1" --except="${except}" "${values[@]}"
}

step_agents() {
  STEP="agents"
  have_agent || return 0
  agent_identities
  STEP="agents"
  local i n port mport pod_flags agent_args cert_flags otlp_flags=()
  if have_otelcol; then
    otlp_flags=(--otlp-endpoint="127.0.0.1:${OTELCOL_GRPC_PORT}" --otlp-protocol=grpc --otlp-insecure)
  fi
  mkdir -p "${OUT_DIR}/replay"
  local chart_flags=()
  chart_args agent >"${OUT_DIR}/chart-args-agent" || fail "hack/chart-args.sh agent failed (CHART_ARGS=1)"
  mapfile -t chart_flags <"${OUT_DIR}/chart-args-agent"
  for ((i = 0; i < ${#NODE_LIST[@]}; i++)); do
    n="${NODE_LIST[i]}"
    port=$((AGENT_PORT_BASE + i))
    mport=$((AGENT_METRICS_PORT_BASE + i))
    # The demo pods' veths of this node (--interfaces, --capture=all), if
    # the agent knows the flags.
    mapfile -t pod_flags < <(pods::agent_flags "${i}")
    read -ra agent_args <<<"${AGENT_ARGS:-}"
    cert_flags=(--tls-cert-file="${CERT_DIR}/agent-${n}.crt" --tls-private-key-file="${CERT_DIR}/agent-${n}.key"
      --client-ca-file="${CERT_DIR}/flowscope-ca.crt")
    if self_managed; then cert_flags=(--self-managed-certs); fi
    mkdir -p "${OUT_DIR}/agents/${n}"
    # Every namespace's flows: readable by their owner only.
    [[ -e "${OUT_DIR}/replay/${n}.jsonl" ]] || (umask 077 && : >"${OUT_DIR}/replay/${n}.jsonl")
    chmod 0600 "${OUT_DIR}/replay/${n}.jsonl"
    # AGENT_GOMAXPROCS: the agents' share of the CPUs when many run on one
    # machine; AGENT_ARGS: more flags for every agent (split on spaces).
    GOMAXPROCS="${AGENT_GOMAXPROCS:-${GOMAXPROCS:-}}" local::start "agent-${n}" "${BIN_DIR}/flowscope-agent" \
      "${chart_flags[@]}" \
      --node-name="${n}" \
      --namespace="${FLOWSCOPE_NAMESPACE}" \
      --data-dir="${OUT_DIR}/agents/${n}" \
      --listen-address="127.0.0.1:${port}" \
      --advertise-address="127.0.0.1:${port}" \
      --metrics-bind-address="127.0.0.1:${mport}" --profiling="$([[ "${PROFILING:-0}" == 1 ]] && echo true || echo false)" \
      "${cert_flags[@]}" \
      --allowed-client-names=flowscope-apiserver \
      --replay-file="${OUT_DIR}/replay/${n}.jsonl" \
      --flow-log-file="${OUT_DIR}/flowlogs/${n}/flows.log" \
      --kubeconfig="${OUT_DIR}/kubeconfig-agent-${n}" \
      "${otlp_flags[@]}" "${pod_flags[@]}" "${agent_args[@]}"
  done
  for ((i = 0; i < ${#NODE_LIST[@]}; i++)); do
    n="${NODE_LIST[i]}"
    COMPONENT="agent-${n}"
    wait_until "agent ${n} gRPC port 127.0.0.1:$((AGENT_PORT_BASE + i))" 30 \
      local::port_open "$((AGENT_PORT_BASE + i))"
    local::log "agent ${n} up on 127.0.0.1:$((AGENT_PORT_BASE + i)) (metrics :$((AGENT_METRICS_PORT_BASE + i)), pid $(local::pid_of "agent-${n}"))"
  done
  COMPONENT=""
}

step_pods() {
  STEP="demo pods"
  local reason
  if ! reason="$(pods::enabled)"; then
    local::log "demo pods skipped: ${reason}"
    pods::down # those of an earlier run, if any
    return 0
  fi
  pods::up
}

# ca_file: the CA bundle of flowscope-apiserver's serving certificate
# (self-managed: what it publishes, read again as it rotates).
ca_file() {
  if ! self_managed; then
    echo "${CERT_DIR}/flowscope-ca.crt"
    return
  fi
  kubectl get configmap flowscope-ca-bundle -n "${FLOWSCOPE_NAMESPACE}" -o 'jsonpath={.data.ca\.crt}' \
    >"${CERT_DIR}/flowscope-ca-bundle.crt" 2>/dev/null || true
  echo "${CERT_DIR}/flowscope-ca-bundle.crt"
}

apiserver_ready() {
  curl -fsS --max-time 5 --cacert "$(ca_file)" \
    -H "Authorization: Bearer $(token_of admin)" \
    "https://127.0.0.1:${APISERVER_PORT}/readyz" >/dev/null
}

step_apiserver() {
  STEP="flowscope-apiserver"
  have_apiserver || return 0
  COMPONENT=flowscope-apiserver
  local start cert_flags
  start=$(date +%s)
  cert_flags=(--tls-cert-file="${CERT_DIR}/apiserver-serving.crt" --tls-private-key-file="${CERT_DIR}/apiserver-serving.key"
    --agent-ca-file="${CERT_DIR}/flowscope-ca.crt" --agent-client-cert-file="${CERT_DIR}/apiserver-agent-client.crt"
    --agent-client-key-file="${CERT_DIR}/apiserver-agent-client.key")
  if self_managed; then
    cert_flags=(--self-managed-certs ${CERT_VALIDITY:+--cert-validity="${CERT_VALIDITY}"} ${CA_VALIDITY:+--ca-validity="${CA_VALIDITY}"})
  fi
  local chart_flags=()
  chart_args apiserver >"${OUT_DIR}/chart-args-apiserver" || fail "hack/chart-args.sh apiserver failed (CHART_ARGS=1)"
  mapfile -t chart_flags <"${OUT_DIR}/chart-args-apiserver"
  local::start flowscope-apiserver "${BIN_DIR}/flowscope-apiserver" \
    "${chart_flags[@]}" \
    --secure-port="${APISERVER_PORT}" \
    --bind-address=127.0.0.1 \
    "${cert_flags[@]}" \
    --authentication-kubeconfig="${OUT_DIR}/kubeconfig-apiserver" \
    --authorization-kubeconfig="${OUT_DIR}/kubeconfig-apiserver" \
    --kubeconfig="${OUT_DIR}/kubeconfig-apiserver" \
    --agent-namespace="${FLOWSCOPE_NAMESPACE}" \
    --continue-token-keys-file="${CERT_DIR}/continue-token-keys"
  wait_until "flowscope-apiserver /readyz on :${APISERVER_PORT}" 60 apiserver_ready
  local deadline=$(($(date +%s) + 60))
  until apiservice_available; do
    local::pid_of flowscope-apiserver >/dev/null || fail "flowscope-apiserver exited while waiting for the APIService"
    if (($(date +%s) >= deadline)); then
      fail "APIService ${APISERVICE_NAME} not Available after 60s: $(kubectl get apiservice "${APISERVICE_NAME}" \
        -o 'jsonpath={.status.conditions[?(@.type=="Available")].message}' 2>&1)"
    fi
    sleep 1
  done
  wait_until "GET /apis/flows.flowscope.io/v1alpha1 through kube-apiserver" 30 \
    kubectl get --raw /apis/flows.flowscope.io/v1alpha1
  local::log "flowscope-apiserver ready on https://127.0.0.1:${APISERVER_PORT}, APIService Available ($(($(date +%s) - start))s, pid $(local::pid_of flowscope-apiserver))"
  COMPONENT=""
}

step_flowgen() {
  STEP="flow generators"
  [[ "${FLOWGEN}" != 0 ]] || return 0
  have_flowgen || return 0
  local n
  for n in "${NODE_LIST[@]}"; do
    local::start "flowgen-${n}" "${BIN_DIR}/flowscope-flowgen" \
      --node-name="${n}" --out="${OUT_DIR}/replay/${n}.jsonl" --rate=2
  done
  sleep 1
  for n in "${NODE_LIST[@]}"; do
    COMPONENT="flowgen-${n}"
    local::pid_of "flowgen-${n}" >/dev/null || fail "flowgen-${n} exited right after starting"
  done
  COMPONENT=""
  local::log "demo flow generators running (2 flows/s per node)"
}

step_example_policy() {
  STEP="example flow log policy"
  [[ "${EXAMPLE_POLICY}" != 0 ]] || return 0
  kubectl apply -f "${LOCAL_ROOT}/artifacts/examples/clusterflowlogpolicy-demo.yaml" >>"${LOG_DIR}/kubectl.log" 2>&1
  local::log "applied the example ClusterFlowLogPolicy demo (stored mode: flow log files in ${OUT_DIR}/flowlogs)"
}

# step_otelcol: an OpenTelemetry Collector (hack/tools/otelcol) receiving
# OTLP on 127.0.0.1 (gRPC and HTTP) and writing every log record it gets to
# otelcol/logs.json, one ExportLogsServiceRequest in OTLP JSON a line,
# appended across restarts. Its own telemetry is off: it would take a port.
# Started before the agents, whose --otlp-endpoint it is.
step_otelcol() {
  STEP="otelcol"
  have_otelcol || return 0
  COMPONENT=otelcol
  local dir="${OUT_DIR}/otelcol"
  mkdir -p "${dir}"
  cat >"${dir}/config.yaml" <<EOF
# Written by hack/local-up.sh.
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:${OTELCOL_GRPC_PORT}
      http:
        endpoint: 127.0.0.1:${OTELCOL_HTTP_PORT}
exporters:
  file:
    path: ${dir}/logs.json
    append: true
    flush_interval: 200ms
  debug:
    verbosity: basic
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [file, debug]
EOF
  local::start otelcol "${TOOLS_DIR}/otelcol" --config="${dir}/config.yaml"
  wait_until "otelcol OTLP gRPC on :${OTELCOL_GRPC_PORT}" 30 local::port_open "${OTELCOL_GRPC_PORT}"
  wait_until "otelcol OTLP HTTP on :${OTELCOL_HTTP_PORT}" 30 local::port_open "${OTELCOL_HTTP_PORT}"
  local::log "OpenTelemetry Collector up on 127.0.0.1:${OTELCOL_GRPC_PORT} (OTLP gRPC) and :${OTELCOL_HTTP_PORT} (OTLP HTTP), writing ${dir}/logs.json (pid $(local::pid_of otelcol))"
  COMPONENT=""
}

# step_prometheus: a Prometheus scraping every agent's /metrics (plain
# HTTP, no authentication, on 127.0.0.1) every 5 s. Each target is
# labelled node=<node name> and instance=<node name>, as Retina's and
# Flowscope's dashboards expect, and cluster="local": an external label for
# what this Prometheus sends on, and a target label too, since queries of
# the local TSDB do not see external labels and the dashboards filter on
# cluster.
step_prometheus() {
  STEP="prometheus"
  have_prometheus || return 0
  COMPONENT=prometheus
  local dir="${OUT_DIR}/prometheus" i
  mkdir -p "${dir}/data"
  {
    cat <<EOF
# Written by hack/local-up.sh.
global:
  scrape_interval: 5s
  evaluation_interval: 5s
  external_labels:
    cluster: local
scrape_configs:
- job_name: flowscope-agent
  scheme: http
  metrics_path: /metrics
  static_configs:
EOF
    for ((i = 0; i < ${#NODE_LIST[@]}; i++)); do
      cat <<EOF
  - targets: ['127.0.0.1:$((AGENT_METRICS_PORT_BASE + i))']
    labels: {node: '${NODE_LIST[i]}', cluster: local}
EOF
    done
    cat <<EOF
  relabel_configs:
  - source_labels: [node]
    target_label: instance
EOF
  } >"${dir}/prometheus.yml"
  local::start prometheus "$(command -v prometheus)" \
    --config.file="${dir}/prometheus.yml" \
    --storage.tsdb.path="${dir}/data" \
    --storage.tsdb.retention.time=1d \
    --web.listen-address="127.0.0.1:${PROMETHEUS_PORT}"
  wait_until "Prometheus /-/ready on :${PROMETHEUS_PORT}" 60 \
    curl -fsS --max-time 2 "http://127.0.0.1:${PROMETHEUS_PORT}/-/ready"
  local::log "Prometheus up on http://127.0.0.1:${PROMETHEUS_PORT}, scraping ${#NODE_LIST[@]} agents every 5s (pid $(local::pid_of prometheus))"
  COMPONENT=""
}

write_env() {
  STEP="env file"
  {
    printf 'OUT_DIR=%q\n' "${OUT_DIR}"
    printf 'PORT_BASE=%q\n' "${PORT_BASE}"
    printf 'NODES=%q\n' "${NODES}"
    printf 'KUBECONFIG=%q\n' "${OUT_DIR}/kubeconfig"
    printf 'KUBECTL=%q\n' "${KUBECTL_BIN}"
    printf 'KAS_URL=%q\n' "https://127.0.0.1:${KAS_PORT}"
    printf 'KAS_CA_FILE=%q\n' "${KAS_CERT_DIR}/apiserver.crt"
    printf 'FLOWSCOPE_APISERVER_URL=%q\n' "https://127.0.0.1:${APISERVER_PORT}"
    printf 'AGENT_PORT_BASE=%q\n' "${AGENT_PORT_BASE}"
    printf 'AGENT_METRICS_PORT_BASE=%q\n' "${AGENT_METRICS_PORT_BASE}"
    printf 'FLOWSCOPE_CA_FILE=%q\n' "$(ca_file)"
    printf 'SELF_MANAGED_CERTS=%q\n' "${SELF_MANAGED_CERTS}"
    printf 'TOKEN_FILE=%q\n' "${TOKEN_FILE}"
    if have_prometheus; then printf 'PROMETHEUS_URL=%q\n' "http://127.0.0.1:${PROMETHEUS_PORT}"; fi
    if have_otelcol; then
      printf 'OTELCOL_GRPC_ENDPOINT=%q\n' "127.0.0.1:${OTELCOL_GRPC_PORT}"
      printf 'OTELCOL_HTTP_ENDPOINT=%q\n' "http://127.0.0.1:${OTELCOL_HTTP_PORT}/v1/logs"
      printf 'OTELCOL_OUTPUT_FILE=%q\n' "${OUT_DIR}/otelcol/logs.json"
    fi
    printf 'COMPONENTS=%q\n' "$(local::components | tr '\n' ' ' | sed 's/ $//')"
  } >"${OUT_DIR}/env"
}

print_usage() {
  # The system is up: failing to print (a closed pipe) is no failure of it.
  trap - ERR
  set +e
  local k="${OUT_DIR}/kubeconfig" logs
  logs="$(local::components | tr '\n' ' ')"
  local prom="" otel=""
  if have_otelcol; then
    otel="OpenTelemetry Collector, receiving the flows of policies with output OTLP (the demo policy's too):
  OTLP gRPC 127.0.0.1:${OTELCOL_GRPC_PORT}, OTLP HTTP http://127.0.0.1:${OTELCOL_HTTP_PORT}/v1/logs
  tail -f ${OUT_DIR}/otelcol/logs.json             # one OTLP JSON request a line; bodies are Hubble export lines
  curl -s 127.0.0.1:${AGENT_METRICS_PORT_BASE}/metrics | grep otlp_records   # delivered and dropped, exactly

"
  fi
  if have_prometheus; then
    prom="Prometheus, scraping every agent's flow metrics every 5s (Grafana dashboards: artifacts/dashboards):
  http://127.0.0.1:${PROMETHEUS_PORT}

"
  fi
  cat <<EOF

Flowscope is running locally ($(local::components | wc -l) components, state in ${OUT_DIR}).

Use the pinned kubectl v1.37.2: the kubectl 1.32 on PATH is outside the supported version skew.
  export KUBECONFIG=${k}
  export PATH=${TOOLS_DIR}:\$PATH

  kubectl get flows -A
  kubectl get flows -A -w
  kubectl get flows -A -o wide
  kubectl get flows -A --field-selector verdict=Dropped
  kubectl get flows -n shop -l app=web
  kubectl get flowsummaries -n shop                  # flows per edge, last 15 minutes
  kubectl --kubeconfig ${OUT_DIR}/kubeconfig-alice get flows -n shop     # alice: shop only
  kubectl --kubeconfig ${OUT_DIR}/kubeconfig-bob get flows -n shop       # bob: forbidden
  kubectl --kubeconfig ${OUT_DIR}/kubeconfig-carol get flows -A          # carol: all namespaces
  kubectl --kubeconfig ${OUT_DIR}/kubeconfig-dave get flowlogpolicies -n shop  # dave: shop's admin

Stored mode (the example policy "demo", artifacts/examples):
  kubectl get clusterflowlogpolicies -o wide
  tail -f ${OUT_DIR}/flowlogs/node-a/flows.log       # Hubble export lines, rotated at --flow-log-max-size
  kubectl get flows -A --field-selector since=24h    # the stored tier, beyond the on-demand retention

${prom}${otel}Logs:  ${LOG_DIR}/<component>.log for: ${logs% }
Stop:  $(down_command)
EOF
  local w
  for w in "${WARNINGS[@]}"; do
    echo "WARNING: ${w}"
  done
}

main() {
  local start
  start=$(date +%s)
  mkdir -p "${OUT_DIR}"
  local::lock
  step_preflight
  step_certs
  step_tokens
  step_etcd
  step_kube_apiserver
  step_kubeconfigs
  step_bootstrap
  step_otelcol
  step_agents
  step_pods
  step_apiserver
  step_flowgen
  step_example_policy
  step_prometheus
  write_env
  local::log "up in $(($(date +%s) - start))s"
  print_usage
}

main "$@"
