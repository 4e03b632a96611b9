#!/usr/bin/env bash
# The Jiko guide's set-PIN flow, as its shell snippet runs it: fetch the
# set_pin key, `echo $pin | openssl rsautl -encrypt -pubin -inkey set_pin.pub
# | base64`, and POST it. Prints the HTTP status, then the body.
# Usage: jiko-pin-flow.sh BASE ACCOUNT CARD PIN   (TOKEN in the environment;
# SET_PIN_PUB names a key file to use instead of fetching, as a client that
# cached the key before a rotation would)
set -euo pipefail
base=$1 account=$2 card=$3 pin=$4
if [ -n "${SET_PIN_PUB:-}" ]; then
  cp "$SET_PIN_PUB" set_pin.pub
else
  curl -sS --fail-with-body "$base/api/v1/public_keys/" -H "Authorization: Bearer $TOKEN" | jq -r .set_pin > set_pin.pub
fi
encrypted_pin=$(echo $pin | openssl rsautl -encrypt -pubin -inkey set_pin.pub | base64)
body=$(jq --null-input -c --arg encrypted_pin "$encrypted_pin" '{"encrypted_pin": $encrypted_pin}')
curl -sS -o response.json -w '%{http_code}\n' -X POST "$base/api/v1/jiko-accounts/$account/cards/$card/pin" \
  -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" -d "$body"
cat response.json
