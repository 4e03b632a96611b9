#!/usr/bin/env bash
# Measures the production shape: `cardvault serve` replicas as processes of
# their own on one PostgreSQL (fsync on) and one token, driven by
# `cardvault bench --target`. For every setting it makes a fresh SoftHSM2
# token and database, runs the init ceremony, starts the replicas (through
# a delaying TCP proxy to PostgreSQL when the setting has a delay), runs
# the bench, and stops them. Usage:
#   scripts/bench-replicas.sh [--replicas "1 2"] [--delays "0 1ms"] [--rounds 1] [BENCH ARGS...]
# Bench arguments default to --ops secure_view_2048 --clients 64 --duration 4s.
# One JSON line per setting goes to stdout: the setting and the bench's
# figures; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

install_missing

replicas="1 2" delays="0 1ms" rounds=1 args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --replicas) replicas=$2; shift 2 ;;
    --delays) delays=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
[ ${#args[@]} -gt 0 ] || args=(--ops secure_view_2048 --clients 64 --duration 4s)

WORK=$(mktemp -d /tmp/cardvault-replicas.XXXXXX)
pids=()
stop_replicas() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
cleanup() { stop_replicas; stop_test_postgres; rm -rf "$WORK"; }
PG_TEST_FSYNC=on start_test_postgres >&2
trap cleanup EXIT

go build -o "$WORK/cardvault" ./cmd/cardvault
go build -o "$WORK/delayproxy" ./internal/delayproxy/cmd/delayproxy
pg_hostport=$(echo "$CARDVAULT_TEST_POSTGRES" | sed -E 's#^postgres://[^@]*@([^/]*)/.*#\1#')

# Budgets no bench reaches, in windows short enough that their rows stay
# few (the in-process bench serves the same way).
export CARDVAULT_REVEALS_PER_CARD=1000000000 CARDVAULT_REVEALS_PER_DEVICE=1000000000 \
  CARDVAULT_REVEAL_CARDS_PER_CALLER=1000000000 CARDVAULT_PIN_ATTEMPTS_PER_CARD=1000000000 \
  CARDVAULT_PIN_CARDS_PER_CALLER=1000000000 CARDVAULT_LOOKUPS_PER_CALLER=1000000000 \
  CARDVAULT_IMPORTS_PER_CALLER=1000000000 CARDVAULT_REVEAL_WINDOW=1s CARDVAULT_PIN_ATTEMPT_WINDOW=1s \
  CARDVAULT_LOOKUP_WINDOW=1s CARDVAULT_IMPORT_WINDOW=1s
export CARDVAULT_TOKEN_LABEL=cardvault-replicas CARDVAULT_PKCS11_PIN_FILE="$WORK/pin"

# cpu_ticks prints the machine's busy and idle ticks (/proc/stat).
cpu_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8, $5+$6}' /proc/stat; }

n=0
for round in $(seq "$rounds"); do
for delay in $delays; do
for count in $replicas; do
  n=$((n + 1))
  run="$WORK/run$n"
  mkdir -p "$run/tokens" "$run/transcripts"
  sed "s#@TOKENDIR@#$run/tokens#" softhsm/softhsm2.conf.tmpl > "$run/softhsm2.conf"
  export SOFTHSM2_CONF="$run/softhsm2.conf" CARDVAULT_TRANSCRIPT_DIR="$run/transcripts"
  export CARDVAULT_API_TOKENS_FILE="$run/api-tokens"
  (umask 077; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$WORK/pin")
  # softhsm2-util takes PINs as arguments; acceptable for a bench token only.
  softhsm2-util --init-token --free --label cardvault-replicas \
    --so-pin "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" --pin "$(cat "$WORK/pin")" >/dev/null
  psql "$CARDVAULT_TEST_POSTGRES" -qc "CREATE DATABASE run$n" >/dev/null
  db=$(echo "$CARDVAULT_TEST_POSTGRES" | sed "s#/postgres?#/run$n?#")
  if [ "$delay" != 0 ]; then
    "$WORK/delayproxy" --to "$pg_hostport" --delay "$delay" > "$run/proxy" &
    pids+=($!)
    while [ ! -s "$run/proxy" ]; do sleep 0.05; done
    db=$(echo "$db" | sed -E "s#@[^/]*/#@$(cat "$run/proxy")/#")
  fi
  export CARDVAULT_DB="$db"
  "$WORK/cardvault" ceremony init >/dev/null 2>"$run/ceremony.log" || { cat "$run/ceremony.log" >&2; exit 1; }
  (umask 077; "$WORK/cardvault" token create --name bench \
    --scopes cards:write,cards:read,cards:reveal,cards:lookup,pin:write,devices:write > "$run/api-token")
  urls=()
  for i in $(seq "$count"); do
    port=$((20000 + RANDOM % 20000))
    CARDVAULT_LISTEN=127.0.0.1:$port "$WORK/cardvault" serve > /dev/null 2>"$run/replica$i.log" &
    pids+=($!)
    urls+=("http://127.0.0.1:$port")
  done
  for u in "${urls[@]}"; do
    for _ in $(seq 300); do curl -sf "$u/readyz" >/dev/null && break; sleep 0.1; done
    curl -sf "$u/readyz" >/dev/null || { echo "replica $u is not ready:" >&2; cat "$run"/replica*.log >&2; exit 1; }
  done
  echo "round $round: $count replica(s), delay $delay" >&2
  target=$(IFS=,; echo "${urls[*]}")
  before=($(cpu_ticks))
  "$WORK/cardvault" bench --target "$target" --token-file "$run/api-token" --json "${args[@]}" > "$run/bench.json" 2>"$run/bench.log" ||
    { cat "$run/bench.log" >&2; exit 1; }
  after=($(cpu_ticks))
  # How busy the machine's cores were over the whole bench run (bounds
  # included): replicas add throughput only where cores are left.
  busy=$(( (after[0] - before[0]) * 100 / (after[0] - before[0] + after[1] - before[1]) ))
  while read -r line; do
    echo "{\"round\":$round,\"replicas\":$count,\"db_delay\":\"$delay\",\"cpu_busy_pct\":$busy,\"result\":$line}"
  done < "$run/bench.json"
  stop_replicas
done
done
done
