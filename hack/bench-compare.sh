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

# Compares the Go benchmarks of REF with those of HEAD, side by side on
# this machine, and prints benchstat's medians, spreads and ratios.
#
#   hack/bench-compare.sh REF [PATTERN] [PKGS...]
#   hack/bench-compare.sh HEAD~3 ExportLine ./nodeagent/hubble/parse
#
# It builds each package's test binary at REF and at HEAD, each in a git
# worktree in a temporary directory (the working tree is left alone, and its
# uncommitted changes are not measured), then runs the two alternately,
# one round at a time and REF first in odd rounds, HEAD first in even ones,
# so that a busy machine's load falls on both alike. PATTERN is go test
# -bench's (default .), PKGS are package patterns (default ./...: every
# package with a Benchmark function at HEAD; one without at REF is left
# out). The environment tunes it:
#
#   ROUNDS (5)        rounds of each binary; benchstat wants 6 for a 95%
#                     interval, 5 give one at 90% (BENCHSTAT_FLAGS)
#   BENCHTIME         go test -benchtime, e.g. 2s or 1000x
#   BENCHSTAT_FLAGS   ("-confidence 0.9") e.g. "-col /decoder" as well
#   BENCHSTAT         benchstat binary; by default built from the version
#                     pinned in hack/tools/benchstat into _output/tools
#
# The rounds' raw output stays in _output/bench-compare/<REF>..<HEAD>/, as
# benchstat input.
set -o errexit -o nounset -o pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"
GO=${GO:-go}

if (($# < 1)); then
  sed -n '/^# Compares/,/^# benchstat input/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
ref=$1
pattern=${2:-.}
shift $(($# < 2 ? $# : 2))
pkgs=("$@")
((${#pkgs[@]})) || pkgs=(./...)
rounds=${ROUNDS:-5}
read -r -a benchstat_flags <<<"${BENCHSTAT_FLAGS:--confidence 0.9}"

ref_rev=$(git rev-parse --verify --quiet "${ref}^{commit}") || {
  echo "bench-compare: ${ref} is not a commit" >&2
  exit 2
}
head_rev=$(git rev-parse HEAD)
out="${ROOT}/_output/bench-compare/$(git rev-parse --short "${ref_rev}")..$(git rev-parse --short "${head_rev}")"
mkdir -p "${out}"
: >"${out}/ref.txt"
: >"${out}/head.txt"

BENCHSTAT=${BENCHSTAT:-${ROOT}/_output/tools/benchstat}
if [[ ! -x "${BENCHSTAT}" ]]; then
  echo "bench-compare: building benchstat (hack/tools/benchstat) into ${BENCHSTAT#"${ROOT}/"}"
  GOWORK=off GOFLAGS="" "${GO}" -C hack/tools/benchstat build -o "${BENCHSTAT}" golang.org/x/perf/cmd/benchstat
fi

tmp=$(mktemp -d)
cleanup() {
  git worktree remove --force "${tmp}/ref" >/dev/null 2>&1 || true
  git worktree remove --force "${tmp}/head" >/dev/null 2>&1 || true
  rm -rf "${tmp}"
}
trap cleanup EXIT
git worktree add --detach --quiet "${tmp}/ref" "${ref_rev}"
git worktree add --detach --quiet "${tmp}/head" "${head_rev}"

# has_benchmarks DIR: whether a test file of the package in DIR has one.
has_benchmarks() {
  local f
  for f in "$1"/*_test.go; do
    [[ -f "${f}" ]] && grep -q '^func Benchmark' "${f}" && return 0
  done
  return 1
}

dirs=()
while IFS= read -r dir; do
  rel=${dir#"${tmp}/head"}
  rel=.${rel}
  has_benchmarks "${dir}" || continue
  if [[ ! -d "${tmp}/ref/${rel}" ]] || ! has_benchmarks "${tmp}/ref/${rel}"; then
    echo "bench-compare: ${rel} has no benchmarks at ${ref}, left out"
    continue
  fi
  dirs+=("${rel}")
done < <(cd "${tmp}/head" && "${GO}" list -f '{{.Dir}}' "${pkgs[@]}")
if ((${#dirs[@]} == 0)); then
  echo "bench-compare: no package of ${pkgs[*]} has benchmarks at both ${ref} and HEAD" >&2
  exit 1
fi

echo "bench-compare: building ${#dirs[@]} test binaries at ${ref} ($(git rev-parse --short "${ref_rev}")) and HEAD ($(git rev-parse --short "${head_rev}"))"
for side in ref head; do
  for rel in "${dirs[@]}"; do
    (cd "${tmp}/${side}" && "${GO}" test -c -o "${tmp}/bin/${side}/${rel//\//_}.test" "${rel}")
  done
done

run() { # side rel
  local args=(-test.run '^$' -test.bench "${pattern}" -test.benchmem -test.count 1)
  [[ -z "${BENCHTIME:-}" ]] || args+=(-test.benchtime "${BENCHTIME}")
  # From the package's directory, as go test runs it: testdata is there.
  (cd "${tmp}/$1/$2" && "${tmp}/bin/$1/${2//\//_}.test" "${args[@]}") | tee -a "${out}/$1.txt" | grep '^Benchmark' || true
}
for ((r = 1; r <= rounds; r++)); do
  echo "bench-compare: round ${r} of ${rounds}"
  for rel in "${dirs[@]}"; do
    if ((r % 2)); then
      run ref "${rel}"
      run head "${rel}"
    else
      run head "${rel}"
      run ref "${rel}"
    fi
  done
done

echo
echo "bench-compare: ${ref} vs HEAD, ${rounds} alternating rounds (raw: ${out#"${ROOT}/"})"
"${BENCHSTAT}" "${benchstat_flags[@]}" "${ref}=${out}/ref.txt" "HEAD=${out}/head.txt"
