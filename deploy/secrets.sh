#!/usr/bin/env bash
# Makes the stack's secret files under deploy/secrets (never committed):
# the HSM user and SO PINs, the database password, and one API token whose
# hash goes to api-tokens. The token itself is printed once. Safe to run
# twice: existing files are kept.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p secrets
chmod 0700 secrets
# The vault runs as uid 10001 and reads its secrets through bind mounts:
# as root, hand each file to that uid alone; otherwise it must be readable.
own() {
  if [ "$(id -u)" -eq 0 ]; then chown 10001:10001 "$1" && chmod 0400 "$1"; else chmod 0644 "$1"; fi
}
new() { [ -s "secrets/$1" ] || { head -c 24 /dev/urandom | base64 | tr -d '/+=' > "secrets/$1"; own "secrets/$1"; }; }
new hsm_pin
new hsm_so_pin
new db_password
if [ ! -s secrets/api-tokens ]; then
  # The vault image makes the token, so no Go toolchain is needed here.
  docker run --rm --entrypoint sh -v "$PWD/secrets:/out" -e CARDVAULT_API_TOKENS_FILE=/out/api-tokens --user 0 \
    "${CARDVAULT_IMAGE:-cardvault:dev}" -c 'cardvault token create --name platform --scopes cards:write,cards:read,cards:reveal,pin:write,devices:write,sandbox'
  own secrets/api-tokens
fi
