#!/usr/bin/env bash
# Runs every Go fuzz target in the repository for a short while (default 20s
# each): `make fuzz` or `scripts/fuzz.sh 2m`. New crashers land in each
# package's testdata/fuzz and become regression tests for `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-20s}
grep -rl --include='*_test.go' '^func Fuzz' . | while read -r f; do
  pkg=./$(dirname "${f#./}")
  for fn in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do
    echo "== $pkg $fn ($dur)"
    go test -run '^$' -fuzz "^${fn}\$" -fuzztime "$dur" "$pkg"
  done
done
