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

# Runs shellcheck on every shell script of the repository (hack/**/*.sh and
# .ci/run), following the files they source. shellcheck comes from Debian
# (apt-get) when it is missing.
set -o errexit -o nounset -o pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"

if ! command -v shellcheck >/dev/null; then
  SUDO=""
  [[ "$(id -u)" -eq 0 ]] || SUDO=sudo
  echo "shellcheck: installing it from Debian"
  ${SUDO} apt-get update -qq
  DEBIAN_FRONTEND=noninteractive ${SUDO} apt-get install -y -qq shellcheck >/dev/null
fi

scripts=()
while IFS= read -r f; do
  [[ -f "${f}" ]] && scripts+=("${f}")
done < <(git ls-files --cached --others --exclude-standard -- 'hack/*.sh' .ci/run | sort -u)
echo "shellcheck $(shellcheck --version | awk '/^version:/ {print $2}'): ${#scripts[@]} scripts"
# -x follows `source` (the scripts name their sources relative to the
# repository root with `# shellcheck source=`).
shellcheck -x "${scripts[@]}"
