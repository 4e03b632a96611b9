#!/usr/bin/env bash
# Runs the reliability scenarios (issue 28) under load and prints each one's
# figures: requests sent, how they were answered, 5xx during and after the
# fault, and the checks after it (acknowledged writes readable, nothing
# half-written, the audit chain whole). Each is a test, so each also passes
# or fails; scripts/test.sh runs them too, among everything else. Bounded:
# the whole run takes a few minutes and stops by itself.
#   scripts/chaos.sh              every scenario this machine can run
#   scripts/chaos.sh 1 6 7        some of them, by number
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

install_missing
start_test_postgres

# scenario prints a heading and runs the tests, keeping the figure lines.
scenario() {
  local n=$1 title=$2 pkg=$3 pattern=$4
  if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " =~ " $n " ]]; then
    return
  fi
  echo "== $n. $title"
  go test -count=1 -timeout 20m -v -run "$pattern" "$pkg" 2>&1 \
    | grep -E '^(\s+[a-z_]+_test\.go:[0-9]+:|\s*--- |ok |FAIL)' || status=1
}
wanted=("$@")
status=0

scenario 1 "rotate and rewrap of card-kek and pan-hmac under load, two replicas (SQLite, PostgreSQL)" \
  ./cmd/cardvault '^TestRotationUnderLoadWithTwoReplicas$'
if docker info >/dev/null 2>&1; then
  if [ ${#wanted[@]} -eq 0 ] || [[ " ${wanted[*]} " =~ " 2 " ]] || [[ " ${wanted[*]} " =~ " 3 " ]]; then
    bash scripts/images.sh >/dev/null
  fi
  export TESTCONTAINERS_RYUK_DISABLED=true
  scenario 2 "SIGKILL of a replica mid-write (the compose stack)" ./internal/testsupport/stacktest '^TestReplicaFailure$'
  scenario 3 "PostgreSQL stopped and restarted under a serving replica (compose stack)" ./internal/testsupport/stacktest '^TestPostgresOutage$'
else
  echo "== 2, 3: no Docker engine here; they need the compose stack's images"
fi
scenario 3 "PostgreSQL's primary crashes under load and its synchronous standby is promoted" \
  ./cmd/cardvault '^TestPostgresFailoverUnderLoad$'
scenario 4 "the HSM token restarted twice under load" ./cmd/cardvault '^TestLoadUnderTokenRestarts$'
scenario 5 "SQLite's disk full, then room again" ./sqlstore '^TestSQLiteDiskFull$'
scenario 6 "bursts of clients hanging up mid-request" ./cmd/cardvault '^TestLoadUnderHangUps$'
scenario 7 "a network HSM: 500 us per call, 8 sessions, a session dropped every 300 calls" \
  ./hsm '^TestNetworkHSM$'
scenario 7 "the same, the binary's Jiko operations with 16 clients" ./cmd/cardvault '^TestBenchOnANetworkHSM$'
exit $status
