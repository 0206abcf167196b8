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

# shellcheck source=hack/lib/toolcache.sh
source "${ROOT}/hack/lib/toolcache.sh"

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

toolcache::ensure tools "$(tools_key)" "${TOOLS_MOD}" "${LDFLAGS}"

# The OpenTelemetry Collector (OTLP receiver, file and debug exporters) that
# the agents' OTLP output sends to in make run and test/e2e/otlp, built from
# its own module hack/tools/otelcol like the collector builder's output.
OTELCOL_MOD="${ROOT}/hack/tools/otelcol"
otelcol_key() {
  {
    "${GO}" version
    for f in go.mod go.sum main.go; do
      echo "== ${f}"
      cat "${OTELCOL_MOD}/${f}"
    done
  } | sha256sum | cut -c1-16
}
BINARIES=(otelcol)
PACKAGES=(.)
toolcache::ensure otelcol "otelcol-$(otelcol_key)" "${OTELCOL_MOD}" ""
