#!/usr/bin/env bash
# Installs what is missing, makes a dev token under .dev/, runs the key
# ceremony and serves on SQLite. Safe to run twice: an existing token and
# existing keys are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

echo "dev.sh: checking the Debian packages serving needs"
install_missing "${CARDVAULT_SERVE_PACKAGES[@]}"

# CARDVAULT_DEV_DIR moves it all (the documentation test runs dev.sh so).
DEV="${CARDVAULT_DEV_DIR:-$PWD/.dev}"
mkdir -p "$DEV/softhsm/tokens" "$DEV/bin" "$DEV/transcripts"
chmod 700 "$DEV"

# The token config comes from the same template the tests use.
sed "s#@TOKENDIR@#$DEV/softhsm/tokens#" softhsm/softhsm2.conf.tmpl > "$DEV/softhsm/softhsm2.conf"
export SOFTHSM2_CONF="$DEV/softhsm/softhsm2.conf"
export CARDVAULT_TOKEN_LABEL="${CARDVAULT_TOKEN_LABEL:-cardvault}"
export CARDVAULT_PKCS11_MODULE="${CARDVAULT_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"
export CARDVAULT_PKCS11_PIN_FILE="$DEV/pin"
export CARDVAULT_TRANSCRIPT_DIR="$DEV/transcripts"
export CARDVAULT_DB="${CARDVAULT_DB:-sqlite:$DEV/cardvault.db}"
export CARDVAULT_LISTEN="${CARDVAULT_LISTEN:-127.0.0.1:8080}"
export CARDVAULT_API_TOKENS_FILE="$DEV/api-tokens"

# Keys made before the pinned key catalog (token format 2) are modifiable
# and unrecorded, and the server refuses them: a dev token that old is
# made anew, with a new database (dev data only).
if [ -d "$DEV/softhsm/tokens" ] && [ "$(cat "$DEV/token-format" 2>/dev/null)" != 2 ] \
  && softhsm2-util --show-slots 2>/dev/null | grep -q "Label:.*\b$CARDVAULT_TOKEN_LABEL\b"; then
  echo "the dev token predates the pinned key catalog; making a new token and database"
  rm -rf "$DEV/softhsm/tokens"/* "$DEV"/cardvault.db*
fi

if ! softhsm2-util --show-slots 2>/dev/null | grep -q "Label:.*\b$CARDVAULT_TOKEN_LABEL\b"; then
  umask 077
  head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DEV/pin"
  head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DEV/so-pin"
  # softhsm2-util takes PINs as arguments; acceptable for a dev token only.
  softhsm2-util --init-token --free --label "$CARDVAULT_TOKEN_LABEL" \
    --so-pin "$(cat "$DEV/so-pin")" --pin "$(cat "$DEV/pin")" >/dev/null
  echo 2 > "$DEV/token-format"
  echo "made dev token '$CARDVAULT_TOKEN_LABEL' in $DEV/softhsm"
fi

echo "dev.sh: building cardvault into $DEV/bin (a first build compiles every dependency, a few minutes; each package is named as it compiles)"
go build -v -ldflags "-X main.commit=$(git rev-parse HEAD 2>/dev/null)$(git diff --quiet HEAD 2>/dev/null || echo -modified)" \
  -o "$DEV/bin/cardvault" ./cmd/cardvault 2>&1 | sed -u 's/^/  compiling /'
echo "dev.sh: the key ceremony (keys already on the token are kept)"
"$DEV/bin/cardvault" ceremony init

# One dev API token with every scope; only its hash is in the tokens file.
if [ ! -s "$DEV/api-token" ]; then
  (umask 077; "$DEV/bin/cardvault" token create --name dev \
    --scopes cards:write,cards:read,cards:reveal,cards:lookup,cards:verify,pin:write,pin:view,devices:write,sandbox > "$DEV/api-token")
fi
# The browser demo's backend (examples/web-reveal) binds devices with one
# token and reveals with another, and signs its cardholder in with a
# password.
if [ ! -s "$DEV/web-devices-token" ]; then
  (umask 077; "$DEV/bin/cardvault" token create --name web-devices --scopes devices:write > "$DEV/web-devices-token")
fi
if [ ! -s "$DEV/web-reveal-token" ]; then
  (umask 077; "$DEV/bin/cardvault" token create --name web-reveal --scopes cards:reveal,pin:view > "$DEV/web-reveal-token")
fi
if [ ! -s "$DEV/web-password" ]; then
  (umask 077; head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DEV/web-password")
fi

# A second shell reaches this vault with `. .dev/env`: the same variables,
# the dev API token as $TOKEN and the binary on PATH.
(umask 077
  {
    echo "# Made by scripts/dev.sh. In another shell, from the repository: . .dev/env"
    for v in SOFTHSM2_CONF CARDVAULT_TOKEN_LABEL CARDVAULT_PKCS11_MODULE CARDVAULT_PKCS11_PIN_FILE \
      CARDVAULT_TRANSCRIPT_DIR CARDVAULT_DB CARDVAULT_LISTEN CARDVAULT_API_TOKENS_FILE; do
      printf 'export %s=%q\n' "$v" "${!v}"
    done
    printf 'export CARDVAULT_URL=%q\n' "http://$CARDVAULT_LISTEN"
    printf 'export TOKEN="$(cat %q)"\n' "$DEV/api-token"
    printf 'export PATH=%q:"$PATH"\n' "$DEV/bin"
  } > "$DEV/env"
)

# A taken port would fail after the banner; say so before it.
if (exec 3<>"/dev/tcp/${CARDVAULT_LISTEN%:*}/${CARDVAULT_LISTEN##*:}") 2>/dev/null; then
  echo "dev.sh: $CARDVAULT_LISTEN is taken (another vault, or scripts/dev.sh already running?);" >&2
  echo "        serve elsewhere with: CARDVAULT_LISTEN=127.0.0.1:8090 scripts/dev.sh" >&2
  exit 1
fi

cat <<MSG

cardvault on http://$CARDVAULT_LISTEN  (health: /healthz, readiness: /readyz, metrics: /metrics)
In another shell, from the repository, reach it with
  . .dev/env
which sets CARDVAULT_URL, TOKEN (the dev API token, also in .dev/api-token),
the token and database variables, and puts cardvault on PATH.
The README's "Try it" section walks the Jiko card flow with openssl and curl.

The browser reveal demo (examples/web-reveal): in another shell, import a
card for person-1 (examples/README.md shows how), then
  CARDVAULT_URL=http://$CARDVAULT_LISTEN \
  CARDVAULT_DEVICES_TOKEN_FILE=$DEV/web-devices-token CARDVAULT_REVEAL_TOKEN_FILE=$DEV/web-reveal-token \
  WEB_REVEAL_PASSWORD_FILE=$DEV/web-password \
    go run ./examples/web-reveal --person person-1 --card CARD_ID
open the demo page it prints (http://127.0.0.1:8091/) in Chromium and sign
in as person-1 with the password in $DEV/web-password.

MSG
exec "$DEV/bin/cardvault" serve
