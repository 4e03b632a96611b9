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
# The fault-injection build (the bench's --token-restarts, the rewrap crash
# test) is vetted too, though the product never carries it.
go vet -tags faultinject ./cmd/cardvault ./hsm

# The container tests run on their own, verbosely, so the log shows that
# they ran (or why they skipped) and the figures they report.
containers='^(TestPostgresContainerConformance|TestStackServesJikoAndSolaris|TestReplicaFailure|TestPostgresOutage|TestComposeFileValidates)$'

# The end-to-end suites of cards, secure view, PINs, rotation, rewrap and
# retire run below on each PKCS#11 implementation, verbosely and counted.
# The browser test (the reveal component in headless Chromium) runs on its
# own, verbosely, so the log shows what it checked.
browser='^TestBrowserRevealWithWebCrypto$'

e2e='^(TestRotateRewrapRetire|TestRewrapResumesAfterCrash|TestAuditVerifyFindsTampering|TestSolarisSecureViewWithIndependentClients|TestSolarisSecureViewRefusals|TestSolarisDeviceBinding|TestJikoGuideFlowWithOpenSSL|TestJikoCardLifecycle|TestJikoPhysicalCardOrderAndPINWithOpenSSL|TestSolarisPINUpdateWithJWCrypto|TestSetPINRotationWithGrace|TestNativeImportAndLookup|TestPlannedCeremonies|TestPINViewWithOpenSSL|TestCardVerification)$'

echo "== go test -race"
go test -race -count=1 -timeout 30m -skip "$containers|$e2e|$browser" $(go list ./... | grep -v '/cmd/cardvault$')

# The binary's tests on their own, verbosely but filtered, so the log shows
# the OpenAPI validator's tally (requests and responses held to
# api/openapi.yaml, operations exercised).
echo "== cmd/cardvault"
go test -race -count=1 -timeout 30m -v -skip "$containers|$e2e|$browser" ./cmd/cardvault >/tmp/cardvault-cmd.log 2>&1 \
  || { grep -E '^(\s*--- FAIL|ok |FAIL|panic)|_test.go:[0-9]+:' /tmp/cardvault-cmd.log; exit 1; }
grep -E '^(ok |openapi contract)' /tmp/cardvault-cmd.log

echo "== browser: the reveal component in headless Chromium"
go test -count=1 -timeout 10m -v -run "$browser" ./cmd/cardvault >/tmp/cardvault-browser.log 2>&1 \
  || { grep -E '^(\s*--- |ok |FAIL|panic)|_test.go:[0-9]+:' /tmp/cardvault-browser.log; exit 1; }
grep -E '^(--- |ok )|browser_test.go:[0-9]+:' /tmp/cardvault-browser.log

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
go test -race -count=1 -timeout 20m -v -run "$containers" ./sqlstore ./internal/testsupport/stacktest \
  | grep -E '^(--- |ok |FAIL|PASS|panic)|^\s+[a-z_]+\.go:[0-9]+:'

# Every fuzz target, each for a bounded time (FUZZTIME, default 10s), from
# its committed seeds; a crash fails the run and leaves its input under
# the package's testdata/fuzz for the fix's regression test.
echo "== fuzzing (${FUZZTIME:-10s} per target)"
# A crash writes its input under the package's testdata/fuzz and fails the
# run. Go 1.26's fuzz coordinator can also fail a target at the -fuzztime
# deadline with a bare "context deadline exceeded" and no input written
# (golang/go#75804, fixed in Go 1.27); such a run is tried once more, and
# only a second such failure, or any written input, fails.
inputs() { # how many failing inputs a target has written
  if [ -d "$1" ]; then ls "$1" | wc -l; else echo 0; fi
}
# Each input that finds new coverage is minimized for at most 100 runs:
# by default Go spends up to a minute on each, which stalls a target whose
# seed is a few KB (FuzzVerifyExport's export) for its whole time.
fuzz_once() { # pkg target: runs it, leaves the output in /tmp/cardvault-fuzz.log
  (go test -run '^$' -fuzz "^$2\$" -fuzztime "${FUZZTIME:-10s}" -fuzzminimizetime 100x "$1" 2>&1 || true) > /tmp/cardvault-fuzz.log
}
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    before=$(inputs "$dir/testdata/fuzz/$target")
    fuzz_once "$pkg" "$target"
    after=$(inputs "$dir/testdata/fuzz/$target")
    if ! grep -q '^ok' /tmp/cardvault-fuzz.log && [ "$after" -eq "$before" ] \
      && grep -q '^    context deadline exceeded$' /tmp/cardvault-fuzz.log; then
      echo "$target ($pkg): the fuzz coordinator's deadline race (golang/go#75804), no input written; once more"
      fuzz_once "$pkg" "$target"
      after=$(inputs "$dir/testdata/fuzz/$target")
    fi
    if ! grep -q '^ok' /tmp/cardvault-fuzz.log; then
      cat /tmp/cardvault-fuzz.log
      echo "fuzz target $target in $pkg failed ($((after - before)) new failing input(s) under $dir/testdata/fuzz/$target)"
      exit 1
    fi
    line=$(grep -E '^fuzz: elapsed' /tmp/cardvault-fuzz.log | tail -1 || true)
    echo "$target ($pkg): ${line#fuzz: }"
  done
done
