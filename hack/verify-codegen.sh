#!/usr/bin/env bash
# Fails when the committed generated code differs from what the generators
# produce now.
set -o errexit -o nounset -o pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"
"${ROOT}/hack/update-codegen.sh" >/dev/null
if ! git diff --exit-code -- apis generated hack/api-violations.list; then
  echo "generated code is stale: run make update-codegen and commit the result" >&2
  exit 1
fi
if [ -n "$(git status --porcelain -- apis generated)" ]; then
  git status --porcelain -- apis generated >&2
  echo "generated code has untracked files: run make update-codegen and commit the result" >&2
  exit 1
fi
