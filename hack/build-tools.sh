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

# Builds the pinned Kubernetes tools the local system and the e2e tests run:
# kube-apiserver and kubectl (k8s.io/kubernetes v1.37.2) and an embedded etcd
# (go.etcd.io/etcd/server/v3 v3.7.0), all from the tools module hack/tools.
#
# The binaries live in a cache outside the repository, keyed by what
# determines them (hack/tools/go.mod, go.sum, tools.go, etcd/main.go, the
# ldflags and `go version`):
#   ${FLOWSCOPE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flowscope/tools}/<key>/
# and are symlinked into _output/tools/. When the cache entry is complete
# nothing is built. Concurrent runs are safe: a build goes to a temporary
# directory next to the entry and is moved into place binary by binary
# (rename is atomic), and an flock(1) lock, when available, makes a second run
# wait for the first instead of building twice.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_MOD="${ROOT}/hack/tools"
OUT_TOOLS="${ROOT}/_output/tools"
GO="${GO:-go}"

K8S_VERSION="v1.37.2"
LDFLAGS="-X k8s.io/component-base/version.gitVersion=${K8S_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
BINARIES=(kube-apiserver kubectl etcd)
PACKAGES=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl ./etcd)

cache_root="${FLOWSCOPE_TOOLS_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/flowscope/tools}"

tools_key() {
  {
    "${GO}" version
    echo "ldflags=${LDFLAGS}"
    for f in go.mod go.sum tools.go etcd/main.go; do
      echo "== ${f}"
      cat "${TOOLS_MOD}/${f}"
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
  local dir=$1 tmp
  tmp="$(mktemp -d "${dir}.tmp.XXXXXX")"
  # shellcheck disable=SC2064 # expand now: tmp is local
  trap "rm -rf '${tmp}'" EXIT
  (
    cd "${TOOLS_MOD}"
    GOWORK=off GOFLAGS="${TOOLS_GOFLAGS:-}" "${GO}" build -ldflags "${LDFLAGS}" -o "${tmp}/" "${PACKAGES[@]}"
  )
  mkdir -p "${dir}"
  local b
  for b in "${BINARIES[@]}"; do
    mv -f "${tmp}/${b}" "${dir}/${b}"
  done
  rm -rf "${tmp}"
  trap - EXIT
}

main() {
  local start key dir
  start=$(date +%s)
  command -v "${GO}" >/dev/null || { echo "build-tools: ${GO} not found" >&2; exit 1; }
  key="$(tools_key)"
  dir="${cache_root}/${key}"
  mkdir -p "${cache_root}"

  if complete_in "${dir}"; then
    link_tools "${dir}"
    echo "tools: cached ${K8S_VERSION} kube-apiserver, kubectl, etcd in ${dir} ($(( $(date +%s) - start ))s) -> _output/tools"
    return 0
  fi

  if command -v flock >/dev/null; then
    exec 9>"${cache_root}/${key}.lock"
    if ! flock -n 9; then
      echo "tools: another build of ${key} is running, waiting for it..."
      flock 9
    fi
  fi
  local how="built"
  if complete_in "${dir}"; then
    how="built by a concurrent run, waited"
  else
    echo "tools: building kube-apiserver, kubectl ${K8S_VERSION} and etcd into ${dir} (up to ~10 min on 2 cores with a cold Go build cache)..."
    build_into "${dir}"
  fi
  link_tools "${dir}"
  local took=$(( $(date +%s) - start ))
  echo "tools: ${how} ${K8S_VERSION} kube-apiserver, kubectl, etcd in ${dir} ($((took / 60))m$((took % 60))s) -> _output/tools"
}

main "$@"
