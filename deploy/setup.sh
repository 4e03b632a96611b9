#!/bin/sh
# The stack's one-shot setup: make the SoftHSM2 token if it is missing,
# then run the key ceremony (which creates only missing keys). Safe to run
# again. PINs come from files (container secrets).
#
# softhsm2-util takes the PINs only as arguments, so they are visible to
# this container's own process list for the moment it runs; the vault
# itself reads them from files.
set -eu
label=${CARDVAULT_TOKEN_LABEL:-cardvault}
: "${CARDVAULT_PKCS11_PIN_FILE:?}" "${CARDVAULT_SO_PIN_FILE:?}"
if softhsm2-util --show-slots | grep -q "Label: *$label *$"; then
  echo "token $label exists"
else
  softhsm2-util --init-token --free --label "$label" \
    --so-pin "$(cat "$CARDVAULT_SO_PIN_FILE")" --pin "$(cat "$CARDVAULT_PKCS11_PIN_FILE")" >/dev/null
  echo "token $label created"
fi
exec cardvault ceremony init
