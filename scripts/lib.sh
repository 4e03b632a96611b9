# Shared by dev.sh and test.sh: install what is missing, safely twice.
# shellcheck shell=bash

export PATH="/usr/local/go/bin:$PATH"

# Debian packages the vault, its tests and its independent clients need.
CARDVAULT_PACKAGES=(
  softhsm2 opensc openssl jq gdb curl binutils
  python3 python3-jwcrypto python3-cryptography
  nodejs node-jose
  postgresql
)

install_missing() {
  local missing=()
  for p in "${CARDVAULT_PACKAGES[@]}"; do
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
