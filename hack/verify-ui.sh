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

# Fails when the committed web UI assets (cmd/kubectl-flows/internal/ui/dist)
# differ from a fresh build of web/ui, as Vitess checks its embedded
# vtadmin build, and runs the UI's unit tests.
set -o errexit -o nounset -o pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"

hack/update-ui.sh
dist=cmd/kubectl-flows/internal/ui/dist
if ! git diff --exit-code --stat -- "${dist}" || [[ -n "$(git ls-files --others --exclude-standard -- "${dist}")" ]]; then
  echo "ui: ${dist} is stale: run make update-ui and commit it" >&2
  exit 1
fi
echo "ui: ${dist} matches web/ui"
# The UI's pure parts (filters, cards, the map's cap) under node's test
# runner; the browser tests are test/e2e/ui.
(cd web/ui && node --test test/)
