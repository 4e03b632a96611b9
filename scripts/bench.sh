#!/usr/bin/env bash
# Runs `cardvault bench` on a SoftHSM2 token of its own under .bench/ (made
# on first use; the bench runs the init ceremony on it), so the bench never
# touches the dev token's keys. Arguments go to the bench, e.g.
#   scripts/bench.sh --clients 16 --duration 10s [--json] [--cpuprofile PREFIX] [--scrape FILE]
# `--db postgres` starts a throwaway PostgreSQL (as the tests do, but with
# fsync on, so it is as durable as a real one) and serves on a new database
# in it; `--db postgres://...` uses that server.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

install_missing

BENCH="$PWD/.bench"
mkdir -p "$BENCH/softhsm/tokens" "$BENCH/transcripts"
chmod 700 "$BENCH"
sed "s#@TOKENDIR@#$BENCH/softhsm/tokens#" softhsm/softhsm2.conf.tmpl > "$BENCH/softhsm/softhsm2.conf"
export SOFTHSM2_CONF="$BENCH/softhsm/softhsm2.conf"
export CARDVAULT_TOKEN_LABEL=cardvault-bench
export CARDVAULT_PKCS11_PIN_FILE="$BENCH/pin"
export CARDVAULT_TRANSCRIPT_DIR="$BENCH/transcripts"

if ! softhsm2-util --show-slots 2>/dev/null | grep -q "Label:.*\bcardvault-bench\b"; then
  umask 077
  head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$BENCH/pin"
  # softhsm2-util takes PINs as arguments; acceptable for a bench token only.
  softhsm2-util --init-token --free --label cardvault-bench \
    --so-pin "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" --pin "$(cat "$BENCH/pin")" >/dev/null
fi

args=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--db" ] && [ "${2:-}" = "postgres" ]; then
    PG_TEST_FSYNC=on start_test_postgres
    psql "$CARDVAULT_TEST_POSTGRES" -qc "CREATE DATABASE bench" >/dev/null
    args+=(--db "$(echo "$CARDVAULT_TEST_POSTGRES" | sed 's#/postgres?#/bench?#')")
    shift 2
    continue
  fi
  args+=("$1")
  shift
done

# The bench binary carries fault injection (--token-restarts); the product
# (Dockerfile, scripts/dev.sh) does not.
go build -tags faultinject -o "$BENCH/cardvault" ./cmd/cardvault
"$BENCH/cardvault" bench "${args[@]}"
