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

# Fails when the committed generated code or CRDs (artifacts/crds) differ
# from what the generators produce now.
set -o errexit -o nounset -o pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"
"${ROOT}/hack/update-codegen.sh" >/dev/null
if ! git diff --exit-code -- apis generated hack/api-violations.list artifacts/crds; then
  echo "generated code or CRDs are stale: run make update-codegen and commit the result" >&2
  exit 1
fi
if [ -n "$(git status --porcelain -- apis generated artifacts/crds)" ]; then
  git status --porcelain -- apis generated artifacts/crds >&2
  echo "generated code or CRDs have untracked files: run make update-codegen and commit the result" >&2
  exit 1
fi
