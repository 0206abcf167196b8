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

# Prints the container arguments that the Helm chart (artifacts/charts/flowscope)
# gives a component, one a line, from `helm template`:
#
#   hack/chart-args.sh agent|apiserver [--except=FLAG,...] [helm template flags...]
#
# --except leaves out the flags named (without dashes; a trailing * matches
# a prefix, e.g. otlp-*), such as those the local system sets for itself
# (hack/local-up.sh with CHART_ARGS=1). Other flags, such as
# --set agent.retention=2h or -f my-values.yaml, go to helm template.
# Helm is built by hack/build-helm.sh on first use.
set -o errexit -o nounset -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="${ROOT}/artifacts/charts/flowscope"

usage() {
  echo "usage: $0 agent|apiserver [--except=FLAG,...] [helm template flags...]" >&2
  exit 2
}

(($# >= 1)) || usage
case "$1" in
  agent) template=templates/daemonset-agent.yaml ;;
  apiserver) template=templates/deployment-apiserver.yaml ;;
  *) usage ;;
esac
shift
except=""
if (($# >= 1)) && [[ "$1" == --except=* ]]; then
  except="${1#--except=}"
  shift
fi

HELM="${ROOT}/_output/tools/helm"
# Helm logs every symlink of the chart (files/ links to artifacts/): not news.
helm() { "${HELM}" "$@" 2> >(grep -v 'found symbolic link in path' >&2); }
[[ -x "${HELM}" ]] || "${ROOT}/hack/build-helm.sh"

# The first container's args: the items of the list under "args:", at the
# indentation the chart's templates use, comments skipped.
helm template flowscope "${CHART}" --namespace flowscope-system --show-only "${template}" "$@" |
  awk -v except="${except}" '
    BEGIN { n = split(except, ex, ",") }
    function excluded(arg,    name, i, p) {
      name = arg
      sub(/^--/, "", name)
      sub(/=.*/, "", name)
      for (i = 1; i <= n; i++) {
        p = ex[i]
        if (p ~ /\*$/) {
          p = substr(p, 1, length(p) - 1)
          if (substr(name, 1, length(p)) == p) return 1
        } else if (name == p) return 1
      }
      return 0
    }
    /^ +args:$/ && !done { inargs = 1; indent = -1; next }
    inargs {
      if ($0 ~ /^ *#/) next
      if (match($0, /^ *- /)) {
        if (indent < 0) indent = RLENGTH
        if (RLENGTH == indent) {
          arg = substr($0, RLENGTH + 1)
          if (!excluded(arg)) print arg
          next
        }
      }
      inargs = 0; done = 1
    }
  '
