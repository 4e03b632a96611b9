# Shared by dev.sh and test.sh: install what is missing, safely twice.
# shellcheck shell=bash

export PATH="/usr/local/go/bin:$PATH"

# Debian packages serving needs (dev.sh), with the README's and the
# examples' clients: the build's C toolchain and libcrypto, the token, and
# openssl, curl, jq, jwcrypto and node-jose.
CARDVAULT_SERVE_PACKAGES=(
  softhsm2 openssl openssh-client jq curl gcc libc6-dev libssl-dev
  python3 python3-jwcrypto python3-cryptography
  nodejs node-jose
)
# What only the tests need besides (test.sh, bench.sh): the second PKCS#11
# implementation, PostgreSQL, the container stack, Prometheus's rule
# checker, the browser, and the memory scans' debugger.
CARDVAULT_TEST_PACKAGES=(
  opensc gdb binutils libnss3 libnss3-tools libp11-kit-dev
  postgresql debootstrap docker-compose prometheus
  chromium fonts-dejavu-core
)

# install_missing installs the packages named, or without arguments every
# package serving and the tests need.
install_missing() {
  local want=("$@") missing=()
  [ $# -gt 0 ] || want=("${CARDVAULT_SERVE_PACKAGES[@]}" "${CARDVAULT_TEST_PACKAGES[@]}")
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
      echo "not root: install these packages first: ${missing[*]}" >&2
      return 1
    fi
    # Keep the daemon that apt would start from claiming ports; tests start
    # their own PostgreSQL.
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  command -v go >/dev/null || { echo "go not found (expected /usr/local/go)" >&2; return 1; }
}

# start_test_postgres starts a throwaway PostgreSQL cluster on a loopback
# port for the tests that need one (fsync off unless PG_TEST_FSYNC=on, as
# the bench asks), exports CARDVAULT_TEST_POSTGRES (a
# superuser DSN; each test makes its own database) and stops the cluster
# when the calling script exits. Debian's postgresql package provides it.
start_test_postgres() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -x "$bin/initdb" ] || { echo "PostgreSQL server binaries not found" >&2; return 1; }
  PG_TEST_DIR=$(mktemp -d /tmp/cardvault-pg.XXXXXX)
  local port=$((20000 + RANDOM % 20000))
  local as=()
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$PG_TEST_DIR"  # the server refuses to run as root
    as=(runuser -u postgres --)
  fi
  "${as[@]}" "$bin/initdb" -D "$PG_TEST_DIR/data" -A trust -U postgres --no-sync >/dev/null
  "${as[@]}" "$bin/pg_ctl" -D "$PG_TEST_DIR/data" -l "$PG_TEST_DIR/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_TEST_DIR -c fsync=${PG_TEST_FSYNC:-off} -c max_connections=300" start >/dev/null
  PG_TEST_STOP=("${as[@]}" "$bin/pg_ctl" -D "$PG_TEST_DIR/data" -m immediate stop)
  trap stop_test_postgres EXIT
  export CARDVAULT_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
  echo "test PostgreSQL on 127.0.0.1:$port"
}

stop_test_postgres() {
  [ -n "${PG_TEST_DIR:-}" ] || return 0
  "${PG_TEST_STOP[@]}" >/dev/null 2>&1 || true
  rm -rf "$PG_TEST_DIR"
}
