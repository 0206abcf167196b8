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

# Regenerates the CustomResourceDefinitions of config.flowscope.io
# (artifacts/crds/config.flowscope.io_*.yaml) from the kubebuilder markers of
# apis/config/v1alpha1, with controller-gen at the version pinned in its own
# module hack/tools/crdgen (not hack/tools: that module's go.mod keys the
# kube-apiserver cache, and controller-tools would move its dependencies).
#
# controller-gen is built once per version into _output/crdgen-bin/, keyed by
# `go version` and hack/tools/crdgen/go.{mod,sum}; later runs take a second.
# hack/update-codegen.sh runs this script, hack/verify-codegen.sh checks its
# output.
set -o errexit -o nounset -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"
GO=${GO:-go}
CRDGEN_MOD="${ROOT}/hack/tools/crdgen"
BIN_DIR="${ROOT}/_output/crdgen-bin"
CRD_DIR=artifacts/crds

key=$({
  "${GO}" version
  cat "${CRDGEN_MOD}/go.mod" "${CRDGEN_MOD}/go.sum"
} | sha256sum | cut -c1-16)
controller_gen="${BIN_DIR}/controller-gen-${key}"
if [[ ! -x "${controller_gen}" ]]; then
  echo "update-crds: building controller-gen from hack/tools/crdgen into ${controller_gen#"${ROOT}/"}"
  mkdir -p "${BIN_DIR}"
  rm -f "${BIN_DIR}"/controller-gen-*
  # The module's own flags only: the caller's GOFLAGS (-mod=vendor, tags)
  # are for the root module.
  GOWORK=off GOFLAGS="" "${GO}" -C "${CRDGEN_MOD}" build -o "${controller_gen}.tmp" \
    sigs.k8s.io/controller-tools/cmd/controller-gen
  mv -f "${controller_gen}.tmp" "${controller_gen}"
fi

# Start from an empty set, so that a CRD whose type is gone goes too; the
# hand-written kustomization.yaml stays.
mkdir -p "${CRD_DIR}"
rm -f "${CRD_DIR}"/config.flowscope.io_*.yaml
"${controller_gen}" \
  crd:crdVersions=v1,headerFile="${CRDGEN_MOD}/header.yaml.txt" \
  paths=./apis/config/... \
  output:crd:dir="${CRD_DIR}"
