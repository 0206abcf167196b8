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

cache_root="${FLOWSCOPE_TOOLS_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/flowscope/tools}"

lint_key() {
  {
    "${GO}" version
    for f in go.mod go.sum; do
      echo "== ${f}"
      cat "${LINT_MOD}/${f}"
    done
  } | sha256sum | cut -c1-16
}

complete_in() {
  local dir=$1 b
  for b in "${BINARIES[@]}"; do
    [[ -x "${dir}/${b}" ]] || return 1
  done
}

link_tools() {
  local dir=$1 b
  mkdir -p "${OUT_TOOLS}"
  for b in "${BINARIES[@]}"; do
    ln -sfn "${dir}/${b}" "${OUT_TOOLS}/${b}"
  done
}

build_into() {
  local dir=$1 tmp b
  tmp="$(mktemp -d "${dir}.tmp.XXXXXX")"
  # shellcheck disable=SC2064 # expand now: tmp is local
  trap "rm -rf '${tmp}'" EXIT
  GOWORK=off GOFLAGS="${TOOLS_GOFLAGS:-}" "${GO}" -C "${LINT_MOD}" build -o "${tmp}/" "${PACKAGES[@]}"
  mkdir -p "${dir}"
  for b in "${BINARIES[@]}"; do
    mv -f "${tmp}/${b}" "${dir}/${b}"
  done
  rm -rf "${tmp}"
  trap - EXIT
}

main() {
  local start key dir
  start=$(date +%s)
  key="$(lint_key)"
  dir="${cache_root}/lint-${key}"
  mkdir -p "${cache_root}"

  if ! complete_in "${dir}"; then
    if command -v flock >/dev/null; then
      exec 9>"${dir}.lock"
      if ! flock -n 9; then
        echo "lint tools: another build of lint-${key} is running, waiting for it..."
        flock 9
      fi
    fi
    if ! complete_in "${dir}"; then
      echo "lint tools: building golangci-lint and logcheck into ${dir} (about 4 min on 2 cores with a cold Go build cache)..."
      build_into "${dir}"
      echo "lint tools: built in $(($(date +%s) - start))s"
    fi
  fi
  link_tools "${dir}"
}

main "$@"
