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

# Runs every fuzz target of the module (func FuzzXxx(*testing.F) in a
# _test.go file), each for FUZZTIME (10s): go test -fuzz takes one target of
# one package at a time. A failing input is written by go test to the
# package's testdata/fuzz/<target>/, where it becomes a regression case of
# the ordinary tests once committed.
#
#   FUZZTIME=30s hack/fuzz.sh                      every target
#   hack/fuzz.sh FuzzDecode ./agentwire ...        only targets whose name
#                                                  or package is given
set -o errexit -o nounset -o pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
# Go minimizes every input that finds new coverage, for up to a minute by
# default, and the coordinator counts no executions meanwhile: a target
# whose seeds are whole conversations (FuzzKafka's are 7 KB) spent all of a
# short run minimizing its first find and fuzzed nothing (0 new inputs in
# 20 s; 13 in 10 s with 1 s). Failing inputs are written either way.
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-1s}

# targets prints "<package dir> <target>" for every fuzz target.
targets() {
  git ls-files --cached --others --exclude-standard -- '*_test.go' |
    while IFS= read -r f; do
      [[ -f "${f}" ]] || continue
      sed -nE 's/^func (Fuzz[A-Za-z0-9_]*)\([A-Za-z_][A-Za-z0-9_]* \*testing\.F\).*/\1/p' "${f}" |
        while IFS= read -r name; do
          echo "./$(dirname "${f}") ${name}"
        done
    done | sort -u
}

wanted() { # dir name
  (($# > 2)) || return 0
  local dir=$1 name=$2 w
  shift 2
  for w in "$@"; do
    [[ "${w}" == "${name}" || "${w%/}" == "${dir}" ]] && return 0
  done
  return 1
}

# fuzz_once runs one target. Go's fuzzing engine sometimes ends a run with
# "context deadline exceeded" and no failing input, when a worker is still
# busy with an input at the deadline on a loaded machine: that says nothing
# of the code, so the target is run once more. A run that found an input
# (written to testdata/fuzz) fails at once.
fuzz_once() { # dir name
  local out rc=0
  out=$(mktemp)
  "${GO}" test -run '^$' -fuzz "^$2\$" -fuzztime "${FUZZTIME}" -fuzzminimizetime "${FUZZMINIMIZETIME}" "$1" 2>&1 | tee "${out}" || rc=$?
  if ((rc != 0)) && grep -q 'context deadline exceeded' "${out}" && ! grep -q 'Failing input written to' "${out}"; then
    echo "fuzz: $1 $2: the engine's deadline passed with a worker busy, no failing input; running it again"
    rc=0
    "${GO}" test -run '^$' -fuzz "^$2\$" -fuzztime "${FUZZTIME}" -fuzzminimizetime "${FUZZMINIMIZETIME}" "$1" || rc=$?
  fi
  rm -f "${out}"
  return "${rc}"
}

main() {
  local dir name n=0 failed=() start t0
  start=$(date +%s)
  while read -r dir name; do
    wanted "${dir}" "${name}" "$@" || continue
    n=$((n + 1))
    t0=$(date +%s)
    echo "=== fuzz ${dir} ${name} (${FUZZTIME})"
    if fuzz_once "${dir}" "${name}"; then
      echo "--- ok ${dir} ${name} ($(($(date +%s) - t0))s)"
    else
      echo "--- FAIL ${dir} ${name} ($(($(date +%s) - t0))s)"
      failed+=("${dir} ${name}")
    fi
  done < <(targets)
  if ((n == 0)); then
    echo "fuzz: no fuzz target matched" >&2
    return 1
  fi
  echo "fuzz: ${n} targets, ${FUZZTIME} each, in $(($(date +%s) - start))s"
  if ((${#failed[@]})); then
    printf 'fuzz: FAIL %s\n' "${failed[@]}" >&2
    return 1
  fi
}

main "$@"
