#!/usr/bin/env bash
# Fails when a package depends, through its non-test imports, on a package
# that its layer must not use. The rules, with their reasons, are in
# hack/layers.txt; the checker is hack/tools/checks/layercheck (a module of
# the standard library only), which runs `go list -deps ./...` and prints the
# chain of imports of each violation.
set -o errexit -o nounset -o pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GO=${GO:-go}
cd "${ROOT}"
GOWORK=off "${GO}" -C hack/tools/checks build -o "${ROOT}/_output/bin/layercheck" ./layercheck
_output/bin/layercheck -rules "${LAYERS:-hack/layers.txt}" -dir .
