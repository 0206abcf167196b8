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

# Checks the Helm chart artifacts/charts/flowscope (make verify-chart):
#   - helm lint, and helm template with the default values and with every
#     optional part on (cert-manager and manual certificates, ServiceMonitor,
#     dashboards, the example policy, OTLP with a Secret, L7 settings);
#   - the dashboards the chart renders are those of artifacts/dashboards;
#   - crds/ and the generated files of artifacts/deploy are what
#     hack/update-chart.sh makes now, so the chart and kustomize agree.
# Helm is the version pinned in hack/tools/helm (hack/build-helm.sh).
set -o errexit -o nounset -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="${ROOT}/artifacts/charts/flowscope"
HELM="${ROOT}/_output/tools/helm"
# Helm logs every symlink of the chart (files/ links to artifacts/): not news.
helm() { "${HELM}" "$@" 2> >(grep -v 'found symbolic link in path' >&2); }
"${ROOT}/hack/build-helm.sh"

tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT

echo "verify-chart: helm lint"
helm lint --strict "${CHART}" --namespace flowscope-system

all_on=(
  --set certificates.mode=cert-manager
  --set serviceMonitor.enabled=true
  --set grafanaDashboards.enabled=true
  --set examplePolicy.enabled=true
  --set agent.otlp.endpoint=collector.monitoring.svc:4317
  --set agent.otlp.secretName=otlp-client
  --set agent.otlp.certKey=tls.crt
  --set agent.otlp.keyKey=tls.key
  --set agent.otlp.headersKey=headers
  --set 'agent.l7.headerAllowlist={Accept,User-Agent}'
  --set agent.l7.keepQueryStrings=true
  --set 'agent.extraArgs={--ingest-queue-size=1000}'
)
echo "verify-chart: helm lint with every optional part on"
helm lint --strict "${CHART}" --namespace flowscope-system "${all_on[@]}"
helm lint --strict "${CHART}" --namespace flowscope-system --set certificates.mode=manual

echo "verify-chart: helm template"
helm template flowscope "${CHART}" --namespace flowscope-system >"${tmp}/default.yaml"
helm template flowscope "${CHART}" --namespace flowscope-system "${all_on[@]}" >"${tmp}/all.yaml"
helm template flowscope "${CHART}" --namespace other --set certificates.mode=manual >"${tmp}/manual.yaml"
if helm template flowscope "${CHART}" --set certificates.mode=bogus >/dev/null 2>&1; then
  echo "verify-chart: certificates.mode=bogus rendered; it must fail" >&2
  exit 1
fi

# Every dashboard of artifacts/dashboards is a ConfigMap when asked for.
for f in "${ROOT}"/artifacts/dashboards/*.json; do
  n="$(basename "${f}" .json)"
  grep -q "^  name: ${n}\$" "${tmp}/all.yaml" || {
    echo "verify-chart: dashboard ${n} (artifacts/dashboards/${n}.json) is not in the chart's ConfigMaps" >&2
    exit 1
  }
done
# Every RBAC object of artifacts/deploy/rbac is in the chart.
for f in "${ROOT}"/artifacts/deploy/rbac/*.yaml; do
  [[ "$(basename "${f}")" != kustomization.yaml ]] || continue
  n="$(awk '/^metadata:/ { m = 1; next } m && /^  name: / { print $2; exit }' "${f}")"
  grep -q "^  name: ${n}\$" "${tmp}/default.yaml" || {
    echo "verify-chart: ${f#"${ROOT}/"} (${n}) is not in the chart" >&2
    exit 1
  }
done
# The other namespace reaches every namespaced object and the agents' identity.
if grep -n 'flowscope-system' "${tmp}/manual.yaml" | grep -v '^\s*[0-9]*:\s*#'; then
  echo "verify-chart: the chart rendered into namespace other still names flowscope-system (above)" >&2
  exit 1
fi

echo "verify-chart: crds/ and artifacts/deploy agree with the chart"
OUT="${tmp}/gen" "${ROOT}/hack/update-chart.sh"
rc=0
diff -ru "${CHART}/crds" "${tmp}/gen/artifacts/charts/flowscope/crds" || rc=1
for f in "${tmp}"/gen/artifacts/deploy/*.yaml; do
  diff -u "${ROOT}/artifacts/deploy/$(basename "${f}")" "${f}" || rc=1
done
if ((rc)); then
  echo "verify-chart: stale; run hack/update-chart.sh (make update-chart)" >&2
  exit 1
fi
echo "verify-chart: OK"
