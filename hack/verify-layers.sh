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

# Fails when a package depends, through its non-test imports, on a package
# that its layer must not use. The rules, with their reasons, are in
# hack/layers.txt; the checker is hack/tools/checks/layercheck (a module of
# the standard library only), which runs `go list -deps ./...` and prints the
# chain of imports of each violation.
set -o errexit -o nounset -o pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GO=${GO:-go}
cd "${ROOT}"
GOWORK=off "${GO}" -C hack/tools/checks build -o "${ROOT}/_output/bin/layercheck" ./layercheck
_output/bin/layercheck -rules "${LAYERS:-hack/layers.txt}" -dir .
