#!/usr/bin/env bash
# make lint: golangci-lint (.golangci.yml) and logcheck, both pinned in
# hack/tools/lint and built (or taken from the cache) by
# hack/build-lint-tools.sh.
#
# golangci-lint's findings are held against hack/lint-baseline.txt, the
# findings that were there when a check came in: a finding not listed there
# fails, a listed one that is gone is reported so that its line is deleted.
# logcheck (structured logging with klog: no printf-style calls, well-formed
# key/value pairs, values that print) has no baseline: it is clean.
#
#   hack/verify-lint.sh                    lint, new findings fail
#   hack/verify-lint.sh --all              print every finding, known ones too
#   hack/verify-lint.sh --update-baseline  rewrite hack/lint-baseline.txt
set -o errexit -o nounset -o pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"
GO=${GO:-go}
BASELINE=hack/lint-baseline.txt
OUT=_output/lint

mode=check
case "${1:-}" in
  "") ;;
  --all) mode=all ;;
  --update-baseline) mode=update ;;
  *)
    echo "usage: $0 [--all|--update-baseline]" >&2
    exit 2
    ;;
esac

hack/build-lint-tools.sh
GOWORK=off "${GO}" -C hack/tools/checks build -o "${ROOT}/_output/bin/lintbaseline" ./lintbaseline
mkdir -p "${OUT}"

status=0
echo "golangci-lint $(_output/tools/golangci-lint version --short 2>/dev/null || true): ./... and hack/tools/checks"
rc=0
_output/tools/golangci-lint run --config .golangci.yml --show-stats=false \
  --output.text.path=/dev/null --output.json.path="${OUT}/golangci.json" ./... || rc=$?
# 1 means findings, which lintbaseline judges; anything else is a failure
# of golangci-lint itself (it said why on stderr).
if ((rc > 1)); then
  echo "golangci-lint failed (exit ${rc})" >&2
  exit "${rc}"
fi
case "${mode}" in
  check) _output/bin/lintbaseline -baseline "${BASELINE}" -findings "${OUT}/golangci.json" || status=1 ;;
  all) _output/bin/lintbaseline -baseline /dev/null -findings "${OUT}/golangci.json" || status=1 ;;
  update) _output/bin/lintbaseline -baseline "${BASELINE}" -findings "${OUT}/golangci.json" -update ;;
esac

# The repository's own checkers are held to every check, without a baseline.
(cd hack/tools/checks && GOWORK=off "${ROOT}/_output/tools/golangci-lint" run --config "${ROOT}/.golangci.yml" ./...) || status=1

echo "logcheck: ./..."
_output/tools/logcheck -check-value -check-with-helpers ./... || status=1

exit "${status}"
