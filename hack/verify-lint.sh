#!/usr/bin/env bash
# make lint: golangci-lint (.golangci.yml) and logcheck, both pinned in
# hack/tools/lint and built (or taken from the cache) by
# hack/build-lint-tools.sh. Every finding fails; a false positive gets an
# exclusion with its reason in .golangci.yml.
#
# golangci-lint checks the module and the repository's own checkers
# (hack/tools/checks, a module of their own); logcheck checks structured
# logging with klog: no printf-style calls, well-formed key/value pairs,
# values that print.
set -o errexit -o nounset -o pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"

hack/build-lint-tools.sh

status=0
echo "golangci-lint $(_output/tools/golangci-lint version --short 2>/dev/null || true): ./..."
_output/tools/golangci-lint run --config .golangci.yml ./... || status=1
echo "golangci-lint: hack/tools/checks"
(cd hack/tools/checks && GOWORK=off "${ROOT}/_output/tools/golangci-lint" run --config "${ROOT}/.golangci.yml" ./...) || status=1

echo "logcheck: ./..."
_output/tools/logcheck -check-value -check-with-helpers ./... || status=1

exit "${status}"
