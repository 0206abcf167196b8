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

# Installs Debian's prometheus package (prometheus and promtool) with
# apt-get when either is missing: the local system's Prometheus
# (hack/local-up.sh, PROMETHEUS=1) and the dashboards' end-to-end test
# (test/e2e/dashboards) run them. Called by `make tools`.
#
# The package would start its own service on :9090 (and pull in the node
# exporter, a recommendation): it is installed without recommendations,
# with service starts denied for the install (policy-rc.d), and the
# service is then stopped and disabled if it runs anyway, so that nothing
# of the package holds a port or starts at boot. The local system runs its
# own Prometheus on PORT_BASE+5.
#
# Not root and no passwordless sudo: a warning, exit 0; the local system
# then runs without Prometheus and the test skips (fails under CI=true).
set -euo pipefail

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi

SUDO=()
if [[ "$(id -u)" != 0 ]]; then
  if ! sudo -n true 2>/dev/null; then
    echo "install-prometheus: prometheus/promtool missing and not root: install Debian's prometheus package (apt-get install --no-install-recommends prometheus)" >&2
    [[ "${CI:-}" != true ]] || exit 1
    exit 0
  fi
  SUDO=(sudo -n)
fi

echo "install-prometheus: installing Debian's prometheus package (prometheus, promtool)"
# Deny service starts during the install unless a policy already does
# (containers usually have one).
policy=/usr/sbin/policy-rc.d
ours=0
if [[ ! -e "${policy}" ]]; then
  printf '#!/bin/sh\n# hack/install-prometheus.sh: no service starts while installing\nexit 101\n' |
    "${SUDO[@]}" tee "${policy}" >/dev/null
  "${SUDO[@]}" chmod 755 "${policy}"
  ours=1
fi
cleanup() {
  if ((ours)); then "${SUDO[@]}" rm -f "${policy}"; fi
}
trap cleanup EXIT

"${SUDO[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends prometheus

# Whatever started it anyway (a system without policy-rc.d support), the
# package's service must not run or start at boot.
if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
  "${SUDO[@]}" systemctl disable --now prometheus.service >/dev/null 2>&1 || true
elif [[ -x /etc/init.d/prometheus ]]; then
  "${SUDO[@]}" /etc/init.d/prometheus stop >/dev/null 2>&1 || true
  if command -v update-rc.d >/dev/null; then
    "${SUDO[@]}" update-rc.d prometheus disable >/dev/null 2>&1 || true
  fi
fi

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  echo "install-prometheus: prometheus or promtool still missing after the install" >&2
  exit 1
fi
echo "install-prometheus: $(prometheus --version 2>&1 | head -n 1)"
