#!/usr/bin/env bash
# Installs what is missing and runs every test. Safe to run twice.
# Under CI=true a missing dependency fails the run; it never skips.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

install_missing
start_test_postgres

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test -race"
go test -race -count=1 -timeout 30m ./...
