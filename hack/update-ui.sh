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

# Rebuilds the web UI (web/ui) into cmd/kubectl-flows/internal/ui/dist,
# which go:embed serves and which is committed, so that building Go needs
# no node. The npm packages come pinned from web/ui/package-lock.json
# (npm ci, no install scripts); node and npm come from Debian when missing.
set -o errexit -o nounset -o pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  SUDO=""
  [[ "$(id -u)" -eq 0 ]] || SUDO=sudo
  echo "ui: installing node and npm from Debian"
  ${SUDO} apt-get update -qq
  DEBIAN_FRONTEND=noninteractive ${SUDO} apt-get install -y -qq nodejs npm >/dev/null
fi

cd "${ROOT}/web/ui"
# esbuild finds its binary in its platform package (@esbuild/linux-x64),
# an optional dependency: its install script is not needed.
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
node build.mjs
echo "ui: built into cmd/kubectl-flows/internal/ui/dist"
