#!/usr/bin/env bash
# The Jiko guide's virtual-card flow, as its shell snippet runs it: a fresh
# 4096-bit key pair with openssl, the public key posted with curl, each
# encrypted field base64-decoded and decrypted with `openssl rsautl`.
# Usage: jiko-card-flow.sh URL   (BASE and TOKEN in the environment)
set -euo pipefail
url=$1
public_key="public_key.pem"
private_key="private_key.pem"
openssl genrsa -out $private_key 4096 2>/dev/null
openssl rsa -in $private_key -pubout -out $public_key 2>/dev/null
body=$(jq --null-input -c -r --arg public_key_body "$(cat $public_key)" '{"public_key": $public_key_body}')
response=$(curl -sS --fail-with-body -X POST "$url" \
  -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" -d "$body")
echo "card_id=$(echo "$response" | jq -r .card_id)"
for field in encrypted_pan encrypted_cvv encrypted_expiration; do
  echo "$response" | jq -r ".$field" | base64 -d > .temp_encrypted_data
  echo "$field=$(openssl rsautl -decrypt -inkey $private_key -in .temp_encrypted_data 2>/dev/null)"
done
rm .temp_encrypted_data $private_key
