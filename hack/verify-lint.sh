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

# make lint: golangci-lint (.golangci.yml) and logcheck, both pinned in
# hack/tools/lint and built (or taken from the cache) by
# hack/build-lint-tools.sh. Every finding fails; a false positive gets an
# exclusion with its reason in .golangci.yml.
#
# golangci-lint checks the module and the repository's own checkers
# (hack/tools/checks, a module of their own); logcheck checks structured
# logging with klog: no printf-style calls, well-formed key/value pairs,
# values that print.
set -o errexit -o nounset -o pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"

hack/build-lint-tools.sh

status=0
echo "golangci-lint $(_output/tools/golangci-lint version --short 2>/dev/null || true): ./..."
_output/tools/golangci-lint run --config .golangci.yml ./... || status=1
echo "golangci-lint: hack/tools/checks"
(cd hack/tools/checks && GOWORK=off "${ROOT}/_output/tools/golangci-lint" run --config "${ROOT}/.golangci.yml" ./...) || status=1

echo "logcheck: ./..."
_output/tools/logcheck -check-value -check-with-helpers ./... || status=1

exit "${status}"
