#!/usr/bin/env bash
# Installs what is missing and runs every test. Safe to run twice.
# Under CI=true a missing dependency fails the run; it never skips.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

install_missing
start_test_postgres

# The container tests need the images; where Docker runs but nothing can be
# pulled, images.sh builds them. Without a Docker engine those tests skip
# and say so.
if docker info >/dev/null 2>&1; then
  echo "== images"
  bash scripts/images.sh
else
  echo "no Docker engine: the container tests will skip"
fi
export TESTCONTAINERS_RYUK_DISABLED=true

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi

echo "== go vet"
go vet ./...

# The container tests run on their own, verbosely, so the log shows that
# they ran (or why they skipped) and the figures they report.
containers='^(TestPostgresContainerConformance|TestStackServesJikoAndSolaris|TestReplicaFailure|TestPostgresOutage|TestComposeFileValidates)$'

# The end-to-end suites of cards, secure view, PINs, rotation, rewrap and
# retire run below on each PKCS#11 implementation, verbosely and counted.
e2e='^(TestRotateRewrapRetire|TestRewrapResumesAfterCrash|TestAuditVerifyFindsTampering|TestSolarisSecureViewWithIndependentClients|TestSolarisSecureViewRefusals|TestSolarisDeviceBinding|TestJikoGuideFlowWithOpenSSL|TestJikoCardLifecycle|TestJikoPhysicalCardOrderAndPINWithOpenSSL|TestSolarisPINUpdateWithJWCrypto|TestSetPINRotationWithGrace|TestNativeImportAndLookup)$'

echo "== go test -race"
go test -race -count=1 -timeout 30m -skip "$containers|$e2e" $(go list ./... | grep -v '/cmd/cardvault$')

# The binary's tests on their own, verbosely but filtered, so the log shows
# the OpenAPI validator's tally (requests and responses held to
# api/openapi.yaml, operations exercised).
echo "== cmd/cardvault"
go test -race -count=1 -timeout 30m -v -skip "$containers|$e2e" ./cmd/cardvault >/tmp/cardvault-cmd.log 2>&1 \
  || { grep -E '^(\s*--- FAIL|ok |FAIL|panic)|_test.go:[0-9]+:' /tmp/cardvault-cmd.log; exit 1; }
grep -E '^(ok |openapi contract)' /tmp/cardvault-cmd.log

# The hsm package again on NSS softokn, the second PKCS#11 implementation
# (a fresh NSS database per test); the binary's NSS run is
# TestEndToEndOnNSSSoftokn above.
echo "== hsm on NSS softokn"
CARDVAULT_TEST_PKCS11=nss go test -race -count=1 ./hsm

# Each end-to-end test gets a fresh token of the implementation: a SoftHSM2
# token, or a fresh NSS database.
for impl in softhsm nss; do
  echo "== end-to-end suites on $impl"
  CARDVAULT_TEST_PKCS11=$impl go test -count=1 -timeout 20m -v -run "$e2e" ./cmd/cardvault >/tmp/cardvault-e2e-$impl.log 2>&1 \
    || { grep -E '^(\s*--- |ok |FAIL|panic)|_test.go:[0-9]+:' /tmp/cardvault-e2e-$impl.log; exit 1; }
  grep -E '^(--- |ok |openapi contract)' /tmp/cardvault-e2e-$impl.log
  echo "end-to-end on $impl: $(grep -c '^--- PASS' /tmp/cardvault-e2e-$impl.log) passed, $(grep -c '^--- FAIL' /tmp/cardvault-e2e-$impl.log || true) failed"
done

echo "== container tests (testcontainers-go)"
go test -race -count=1 -timeout 20m -v -run "$containers" ./vault/sqlstore ./internal/stacktest \
  | grep -E '^(--- |ok |FAIL|PASS|panic)|^\s+[a-z_]+\.go:[0-9]+:'

# Every fuzz target, each for a bounded time (FUZZTIME, default 10s), from
# its committed seeds; a crash fails the run and leaves its input under
# the package's testdata/fuzz for the fix's regression test.
echo "== fuzzing (${FUZZTIME:-10s} per target)"
for pkg in $(go list ./...); do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    line=$( (go test -run '^$' -fuzz "^${target}\$" -fuzztime "${FUZZTIME:-10s}" "$pkg" 2>&1 || true) \
      | tee /tmp/cardvault-fuzz.log | grep -E '^fuzz: elapsed' | tail -1 || true)
    if ! grep -q '^ok' /tmp/cardvault-fuzz.log; then
      cat /tmp/cardvault-fuzz.log
      echo "fuzz target $target in $pkg failed"
      exit 1
    fi
    echo "$target ($pkg): ${line#fuzz: }"
  done
done
