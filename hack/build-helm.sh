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

# Builds Helm at the version pinned as a tool in its own module hack/tools/helm
# (helm.sh/helm/v4; a module of its own, so that its dependencies move
# neither the root module nor the other tools), for hack/verify-chart.sh,
# hack/update-chart.sh and hack/chart-args.sh.
#
# Cached outside the repository like hack/build-tools.sh's binaries, keyed by
# `go version` and hack/tools/helm/go.{mod,sum}:
#   ${FLOWSCOPE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flowscope/tools}/helm-<key>/helm
# and symlinked into _output/tools/helm. The first build takes a few
# minutes on 2 cores; later runs take a second.
set -o errexit -o nounset -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HELM_MOD="${ROOT}/hack/tools/helm"
OUT_TOOLS="${ROOT}/_output/tools"
GO="${GO:-go}"

BINARIES=(helm)
PACKAGES=(helm.sh/helm/v4/cmd/helm)

# shellcheck source=hack/lib/toolcache.sh
source "${ROOT}/hack/lib/toolcache.sh"

helm_key() {
  {
    "${GO}" version
    for f in go.mod go.sum; do
      echo "== ${f}"
      cat "${HELM_MOD}/${f}"
    done
  } | sha256sum | cut -c1-16
}

toolcache::ensure "helm" "helm-$(helm_key)" "${HELM_MOD}" "" >&2
