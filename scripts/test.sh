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

e2e='^(TestRotateRewrapRetire|TestRewrapResumesAfterCrash|TestAuditVerifyFindsTampering|TestSolarisSecureViewWithIndependentClients|TestSolarisSecureViewRefusals|TestSolarisDeviceBinding|TestJikoGuideFlowWithOpenSSL|TestJikoCardLifecycle|TestJikoPhysicalCardOrderAndPINWithOpenSSL|TestSolarisPINUpdateWithJWCrypto|TestSetPINRotationWithGrace|TestNativeImportAndLookup|TestPlannedCeremonies|TestPINViewWithOpenSSL|TestPINViewOnBoundDevice|TestCardVerification|TestVerifyPINWithZoneKeyFromTR31)$'

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

# Every fuzz target runs a fixed number of executions from its committed
# seeds; a crash fails the run and leaves its input under the package's
# testdata/fuzz for the fix's regression test.
# The budget is a count, not a duration: Go 1.26's coordinator can fail a
# target at a -fuzztime deadline with a bare "context deadline exceeded"
# and no input written (golang/go#75804, fixed in Go 1.27), and did so
# twice running in CI. A count sets no deadline to race. Each count is
# about 10 s of work on 2 cores: the targets that do RSA or serve HTTP run
# about 1,500 executions a second, the parsers 6,000 to 20,000.
fuzz_execs() { # target: its count, or FUZZ_EXECS for every target
  if [ -n "${FUZZ_EXECS:-}" ]; then echo "$FUZZ_EXECS"; return; fi
  case $1 in
    FuzzDecryptPIN | FuzzRoutes) echo 15000 ;;
    *) echo 60000 ;;
  esac
}
echo "== fuzzing (a fixed number of executions per target)"
inputs() { # how many failing inputs a target has written
  if [ -d "$1" ]; then ls "$1" | wc -l; else echo 0; fi
}
# Each input that finds new coverage is minimized for at most 100 runs:
# by default Go spends up to a minute on each, which stalls a target whose
# seed is a few KB (FuzzVerifyExport's export) for its whole time.
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    before=$(inputs "$dir/testdata/fuzz/$target")
    (go test -run '^$' -fuzz "^$target\$" -fuzztime "$(fuzz_execs "$target")x" -fuzzminimizetime 100x "$pkg" 2>&1 || true) > /tmp/cardvault-fuzz.log
    after=$(inputs "$dir/testdata/fuzz/$target")
    if ! grep -q '^ok' /tmp/cardvault-fuzz.log; then
      cat /tmp/cardvault-fuzz.log
      echo "fuzz target $target in $pkg failed ($((after - before)) new failing input(s) under $dir/testdata/fuzz/$target)"
      exit 1
    fi
    line=$(grep -E '^fuzz: elapsed' /tmp/cardvault-fuzz.log | tail -1 || true)
    echo "$target ($pkg): ${line#fuzz: }"
  done
done
