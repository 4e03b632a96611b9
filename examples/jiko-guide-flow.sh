#!/usr/bin/env bash
# The Jiko cards guide's shell commands, run as the guide prints them, against
# cardvault. Only the guide's own helper, send_jiko_request, is written here:
# it adds the host and the bearer token, as the guide's helper adds its host
# and signature. Everything else is the guide's text, in its order:
#   1. create a virtual card to a fresh 4096-bit key with openssl, decrypt it;
#   2. read it again to another fresh key;
#   3. order a physical card with the guide's body (country "USA");
#   4. have the sandbox produce it;
#   5. fetch the set_pin key with plain curl (no credentials) and set a PIN.
#
# Usage: examples/jiko-guide-flow.sh
#   BASE     the vault (default $CARDVAULT_URL, which `. .dev/env` sets, else
#            http://127.0.0.1:8080, as scripts/dev.sh serves)
#   TOKEN    an API token with cards:write, cards:read, cards:reveal, pin:write
#            and sandbox (cardvault token create --name guide --scopes ...)
#   ACCOUNT  the Jiko account id (default jiko-guide-account)
#   PIN      the PIN to set (default 2580)
# Needs openssl, curl, jq and base64. Prints what each step answered; the
# decrypted card details are printed as the guide's loop prints them.
set -euo pipefail
BASE=${BASE:-${CARDVAULT_URL:-http://127.0.0.1:8080}}
account_id=${ACCOUNT:-jiko-guide-account}
workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
cd "$workdir"

# The guide's helper: method, endpoint, then the body, which the guide
# passes unquoted ($body), so the shell splits it into words; they are
# joined again with single spaces. It prints the response body.
send_jiko_request() {
  local method=$1 endpoint=$2
  shift 2
  curl -sS --fail-with-body -X "$method" "$BASE$endpoint" \
    -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
    ${1:+-d "$*"}
}
# The guide's snippets run under its $PREFIX host; here that is $BASE.
PREFIX_URL=$BASE

echo "== 1. create a virtual card"
public_key="public_key.pem"
private_key="private_key.pem"
openssl genrsa -out $private_key 4096 2>/dev/null
openssl rsa -in $private_key -pubout -out $public_key 2>/dev/null
body=$(jq --null-input -c -r --arg public_key_body "$(cat $public_key)" '{"public_key": $public_key_body}')
response=$(send_jiko_request "POST" "/api/v1/jiko-accounts/$account_id/cards/" $body)
card_id=$(echo "$response" | jq -r .card_id)
echo "card_id = $card_id"
for field in encrypted_pan encrypted_cvv encrypted_expiration; do
  echo "$response" | jq -r ".$field" | base64 -d > .temp_encrypted_data
  echo $field = $(openssl rsautl -decrypt -inkey private_key.pem -in .temp_encrypted_data 2>/dev/null)
done
rm .temp_encrypted_data $public_key $private_key

echo "== 2. read it again to a new key"
openssl genrsa -out $private_key 4096 2>/dev/null
openssl rsa -in $private_key -pubout -out $public_key 2>/dev/null
body=$(jq --null-input -c -r --arg public_key_body "$(cat $public_key)" '{"public_key": $public_key_body}')
response=$(send_jiko_request "POST" "/api/v1/jiko-accounts/$account_id/cards/$card_id" $body)
for field in encrypted_pan encrypted_cvv encrypted_expiration; do
  echo "$response" | jq -r ".$field" | base64 -d > .temp_encrypted_data
  echo $field = $(openssl rsautl -decrypt -inkey private_key.pem -in .temp_encrypted_data 2>/dev/null)
done
rm .temp_encrypted_data $public_key $private_key

echo "== 3. order a physical card"
body='{ "name_on_card": "Jiko Customer", "shipping_address": { "street_address": "2000 Allston Way", "city": "Berkeley", "postal_code": "94701", "state": "CA", "country": "USA" } }'
order=$(send_jiko_request "POST" "/api/v1/jiko-accounts/$account_id/card-orders/" $body)
echo "$order" | jq -c '{card_order_id, status, country: .shipping_address.country}'

echo "== 4. the sandbox produces it"
card_order_id=$(echo "$order" | jq -r .card_order_id)
body='{ "card_order_id": "'$card_order_id'" }'
generated=$(send_jiko_request "POST" "/api/v1/sandbox/generate-card/" $body)
echo "$generated" | jq -c '{card_order_id, status, card_id}'
card_id=$(echo "$generated" | jq -r .card_id)

echo "== 5. set the PIN"
endpoint="/api/v1/public_keys/"
curl --request GET --url $PREFIX_URL$endpoint
echo
curl --request GET \
  --url $PREFIX_URL/api/v1/public_keys/ | jq -r '.set_pin' > set_pin.pub
pin=${PIN:-2580}
encrypted_pin=$(echo $pin | openssl rsautl -encrypt -pubin -inkey set_pin.pub | base64)
endpoint="/api/v1/jiko-accounts/$account_id/cards/$card_id/pin"
body='{ "encrypted_pin": "'$encrypted_pin'" }'
send_jiko_request "POST" "/api/v1/jiko-accounts/$account_id/cards/$card_id/pin" $body
echo
send_jiko_request "GET" "/api/v1/jiko-accounts/$account_id/cards/$card_id/status"
echo
