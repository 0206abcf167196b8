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

# Adds the license header to every hand-written .go and .sh file of the
# repository that lacks it: hack/boilerplate.go.txt at the top of a Go file
# (below its //go:build lines, which must come first), hack/boilerplate.sh.txt
# below a script's #! line. The code generators write the same Go header
# (hack/update-codegen.sh passes them hack/boilerplate.go.txt).
#
# Left alone: generated files (a "// Code generated ... DO NOT EDIT." line,
# bpf2go's objects included), the pinned libbpf headers in bpf/include/,
# testdata/ and vendor/ (other people's files), and the eBPF C sources (not
# .go or .sh: they carry their own "Dual BSD/GPL" license, which the kernel
# reads).
#
#   hack/update-boilerplate.sh            add the header where it is missing
#   hack/update-boilerplate.sh --verify   list the files without it; exit 1 if any
#   hack/update-boilerplate.sh [--verify] FILE...   only these files
set -o errexit -o nounset -o pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"

verify=0
if [[ "${1:-}" == --verify ]]; then
  verify=1
  shift
fi

# The headers without their trailing blank lines.
go_header=$(<hack/boilerplate.go.txt)
sh_header=$(<hack/boilerplate.sh.txt)

# candidates prints the files to check, one a line.
candidates() {
  if (($# > 0)); then
    printf '%s\n' "$@"
    return
  fi
  git ls-files --cached --others --exclude-standard -- '*.go' '*.sh' |
    grep -Ev '(^|/)(testdata|vendor)/|^bpf/include/' |
    # The bytes of these two key the cache of kube-apiserver and etcd
    # (hack/build-tools.sh): a header would cost every machine a rebuild.
    grep -Ev '^hack/tools/(tools\.go|etcd/main\.go)$' |
    sort -u
}

is_generated() {
  grep -qE '^// Code generated .* DO NOT EDIT\.$' "$1"
}

# split FILE: sets head (the lines that must stay above the header: a Go
# file's //go:build and // +build lines, a script's #! line) and body (the
# rest, without the blank lines between the two).
split() {
  local file=$1 line
  head="" body=""
  local -a lines=()
  mapfile -t lines <"${file}"
  local i=0 n=${#lines[@]}
  case "${file}" in
    *.go)
      while ((i < n)); do
        line=${lines[i]}
        if [[ "${line}" == //go:build* || "${line}" == "// +build"* ]]; then
          head+="${line}"$'\n'
        elif [[ -n "${line}" ]]; then
          break
        fi
        ((i += 1))
      done
      ;;
    *)
      if ((n > 0)) && [[ "${lines[0]}" == "#!"* ]]; then
        head="${lines[0]}"$'\n'
        i=1
      fi
      while ((i < n)) && [[ -z "${lines[i]}" ]]; do
        ((i += 1))
      done
      ;;
  esac
  if ((i < n)); then
    body=$(printf '%s\n' "${lines[@]:i}")
  fi
}

header_for() {
  case "$1" in
    *.go) printf '%s' "${go_header}" ;;
    *) printf '%s' "${sh_header}" ;;
  esac
}

has_header() {
  local hdr
  hdr=$(header_for "$1")
  split "$1"
  [[ "${body}" == "${hdr}" || "${body}" == "${hdr}"$'\n'* ]]
}

add_header() {
  local file=$1 hdr tmp
  hdr=$(header_for "${file}")
  split "${file}"
  tmp=$(mktemp "${file}.XXXXXX")
  {
    if [[ -n "${head}" ]]; then
      printf '%s\n' "${head}"
    fi
    printf '%s\n' "${hdr}"
    if [[ -n "${body}" ]]; then
      printf '\n%s\n' "${body}"
    fi
  } >"${tmp}"
  chmod --reference="${file}" "${tmp}"
  mv -f "${tmp}" "${file}"
}

missing=()
checked=0
while IFS= read -r f; do
  [[ -f "${f}" ]] || continue
  if [[ "${f}" == *.go ]] && is_generated "${f}"; then
    continue
  fi
  ((checked += 1))
  if ! has_header "${f}"; then
    missing+=("${f}")
  fi
done < <(candidates "$@")

if ((verify)); then
  if ((${#missing[@]})); then
    printf '%s\n' "${missing[@]}"
    echo "boilerplate: ${#missing[@]} of ${checked} files lack the license header (hack/boilerplate.{go,sh}.txt): run hack/update-boilerplate.sh" >&2
    exit 1
  fi
  echo "boilerplate: all ${checked} hand-written .go and .sh files carry the license header"
  exit 0
fi

for f in "${missing[@]}"; do
  add_header "${f}"
  echo "boilerplate: added the header to ${f}"
done
echo "boilerplate: ${#missing[@]} files updated, $((checked - ${#missing[@]})) already had the header"
