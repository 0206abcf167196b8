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

# Builds the linters that make lint runs, at the versions pinned as tools in
# their own module hack/tools/lint (golangci-lint and logcheck; a module of
# their own, so that their dependencies move neither the root module nor the
# kube-apiserver build of hack/tools).
#
# The binaries are cached outside the repository like hack/build-tools.sh's,
# keyed by what determines them (`go version`, hack/tools/lint/go.mod and
# go.sum):
#   ${FLOWSCOPE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flowscope/tools}/lint-<key>/
# and symlinked into _output/tools/. The first build takes about 4 minutes
# on 2 cores; later runs take a second. A build goes to a temporary
# directory and is moved into place binary by binary, under an flock(1)
# lock when available, so concurrent runs build once.
set -o errexit -o nounset -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LINT_MOD="${ROOT}/hack/tools/lint"
OUT_TOOLS="${ROOT}/_output/tools"
GO="${GO:-go}"

BINARIES=(golangci-lint logcheck)
PACKAGES=(github.com/golangci/golangci-lint/v2/cmd/golangci-lint sigs.k8s.io/logtools/logcheck)

# shellcheck source=hack/lib/toolcache.sh
source "${ROOT}/hack/lib/toolcache.sh"

lint_key() {
  {
    "${GO}" version
    for f in go.mod go.sum; do
      echo "== ${f}"
      cat "${LINT_MOD}/${f}"
    done
  } | sha256sum | cut -c1-16
}

toolcache::ensure "lint tools" "lint-$(lint_key)" "${LINT_MOD}" ""
