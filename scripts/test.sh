#!/usr/bin/env bash
# make test: go test on every package (or on the packages and flags given),
# printing what go test prints and then each skipped test with its reason
# (scripts/testsummary), since plain go test hides skips. Exits non-zero when
# a build or a test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$GO" build -o "$tmp/testsummary" ./scripts/testsummary
[ $# -gt 0 ] || set -- ./...
"$GO" test -count=1 -json "$@" | "$tmp/testsummary"
