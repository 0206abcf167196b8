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

# The cache of Go tools built from a tools module, shared by
# hack/build-tools.sh and hack/build-lint-tools.sh. The caller sets GO,
# OUT_TOOLS, BINARIES and PACKAGES. An entry is a directory keyed by what
# determines its binaries; they are symlinked into OUT_TOOLS. When the entry
# is complete nothing is built. Concurrent runs are safe: a build goes to a
# temporary directory next to the entry and is moved into place binary by
# binary (rename is atomic), and an flock(1) lock, when available, makes a
# second run wait for the first instead of building twice.

toolcache_root="${FLOWSCOPE_TOOLS_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/flowscope/tools}"

toolcache::complete() {
  local dir=$1 b
  for b in "${BINARIES[@]}"; do
    [[ -x "${dir}/${b}" ]] || return 1
  done
}

toolcache::link() {
  local dir=$1 b
  mkdir -p "${OUT_TOOLS}"
  for b in "${BINARIES[@]}"; do
    ln -sfn "${dir}/${b}" "${OUT_TOOLS}/${b}"
  done
}

# toolcache::build DIR MODULE LDFLAGS builds PACKAGES of MODULE into DIR.
toolcache::build() {
  local dir=$1 module=$2 ldflags=$3 tmp b
  tmp="$(mktemp -d "${dir}.tmp.XXXXXX")"
  # shellcheck disable=SC2064 # expand now: tmp is local
  trap "rm -rf '${tmp}'" EXIT
  GOWORK=off GOFLAGS="${TOOLS_GOFLAGS:-}" "${GO}" -C "${module}" build -ldflags "${ldflags}" -o "${tmp}/" "${PACKAGES[@]}"
  mkdir -p "${dir}"
  for b in "${BINARIES[@]}"; do
    mv -f "${tmp}/${b}" "${dir}/${b}"
  done
  rm -rf "${tmp}"
  trap - EXIT
}

# toolcache::ensure LABEL ENTRY MODULE LDFLAGS makes the cache entry ENTRY
# complete, building it from MODULE if needed, links it into OUT_TOOLS and
# says what it did as LABEL.
toolcache::ensure() {
  local label=$1 dir="${toolcache_root}/$2" module=$3 ldflags=$4 start how took
  start=$(date +%s)
  command -v "${GO}" >/dev/null || { echo "${label}: ${GO} not found" >&2; exit 1; }
  mkdir -p "${toolcache_root}"
  how="cached"
  if ! toolcache::complete "${dir}"; then
    if command -v flock >/dev/null; then
      exec 9>"${dir}.lock"
      if ! flock -n 9; then
        echo "${label}: another build of ${dir} is running, waiting for it..."
        flock 9
      fi
    fi
    how="built by a concurrent run, waited"
    if ! toolcache::complete "${dir}"; then
      echo "${label}: building ${BINARIES[*]} into ${dir} (minutes on 2 cores with a cold Go build cache)..."
      toolcache::build "${dir}" "${module}" "${ldflags}"
      how="built"
    fi
  fi
  toolcache::link "${dir}"
  took=$(($(date +%s) - start))
  echo "${label}: ${how} ${BINARIES[*]} in ${dir} ($((took / 60))m$((took % 60))s) -> ${OUT_TOOLS#"${ROOT}/"}"
}
