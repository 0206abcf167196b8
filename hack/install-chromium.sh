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

# Installs Debian's headless-capable chromium for the web UI's browser tests
# (test/e2e/ui, driven by chromedp), unless a Chromium is already on PATH.
# As root (CI), chromedp adds --no-sandbox itself.
set -o errexit -o nounset -o pipefail

for b in chromium chromium-browser headless_shell google-chrome; do
  if command -v "${b}" >/dev/null; then
    echo "chromium: using $(command -v "${b}")"
    exit 0
  fi
done

SUDO=""
[[ "$(id -u)" -eq 0 ]] || SUDO=sudo
if [[ -n "${SUDO}" ]] && ! sudo -n true 2>/dev/null; then
  echo "chromium: not installed and no root to install it (apt-get install chromium); the browser tests will skip" >&2
  exit 0
fi
echo "chromium: installing it from Debian"
${SUDO} apt-get update -qq
DEBIAN_FRONTEND=noninteractive ${SUDO} apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
command -v chromium
