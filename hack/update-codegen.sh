#!/usr/bin/env bash
# Regenerates deepcopy, OpenAPI definitions, the clientset, listers and
# informers from apis/. The generators are the versions pinned in go.mod.
set -o errexit -o nounset -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"
MODULE=flowscope.io/flowscope

go mod download k8s.io/code-generator
CODEGEN_PKG=${CODEGEN_PKG:-$(go list -m -f '{{.Dir}}' k8s.io/code-generator)}
# kube_codegen.sh installs its generators into GOBIN; keep them out of the
# user's PATH and cached between runs.
export GOBIN="${ROOT}/_output/codegen-bin"
mkdir -p "${GOBIN}"
# shellcheck disable=SC1091
source "${CODEGEN_PKG}/kube_codegen.sh"

kube::codegen::gen_helpers \
    --boilerplate "${ROOT}/hack/boilerplate.go.txt" \
    "${ROOT}/apis"

kube::codegen::gen_openapi \
    --output-dir "${ROOT}/generated/openapi" \
    --output-pkg "${MODULE}/generated/openapi" \
    --output-model-name-file zz_generated.model_name.go \
    --report-filename "${ROOT}/hack/api-violations.list" \
    --update-report \
    --boilerplate "${ROOT}/hack/boilerplate.go.txt" \
    "${ROOT}/apis"

kube::codegen::gen_client \
    --with-watch \
    --output-dir "${ROOT}/generated" \
    --output-pkg "${MODULE}/generated" \
    --boilerplate "${ROOT}/hack/boilerplate.go.txt" \
    "${ROOT}/apis"
