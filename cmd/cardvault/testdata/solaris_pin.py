#!/usr/bin/python3
"""A Solaris PIN-change client on Debian's python3-jwcrypto and
python3-cryptography, independent of the vault's Go code.

It binds a device (unrestricted key), adds its restricted key signed by the
unrestricted one, fetches the set_pin JWK, and for each case builds a compact
JWE {"pin": ...} with RSA-OAEP-256 and A256CBC-HS512 and the JWK's kid, signs
the JWE string with the restricted key, and POSTs pin_update_requests.

Usage: solaris_pin.py BASE PERSON_ID CARD_ID CASES_JSON  (TOKEN in the
environment). CASES_JSON is a list of {"pin": "NNNN", "tamper": bool,
"kid": optional override, "key": optional JWK to encrypt to instead of the
one fetched, as a client that cached it before a rotation would, "replay":
the index of an earlier case whose signed request is sent again as it was,
"card": optional card id to send it to}. Prints a JSON list of [status,
body].
"""
import json
import os
import sys
import urllib.error
import urllib.request

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwcrypto import jwe, jwk

BASE, PERSON, CARD = sys.argv[1], sys.argv[2], sys.argv[3]
CASES = json.loads(sys.argv[4])
TOKEN = os.environ["TOKEN"]


def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + TOKEN)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def must(want, result):
    status, text = result
    if status != want:
        raise SystemExit(f"{status}, want {want}: {text}")
    return json.loads(text) if text else None


def sign(key, message):
    return key.sign(message.encode(), ec.ECDSA(hashes.SHA256())).hex()


def point(key):
    return key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint).hex()


unrestricted = ec.generate_private_key(ec.SECP256R1())
restricted = ec.generate_private_key(ec.SECP256R1())
reg = must(202, call("POST", "/v1/mfa/devices", {
    "person_id": PERSON, "key_type": "ecdsa-p256", "key": point(unrestricted), "key_purpose": "unrestricted", "name": "pin phone"}))
must(204, call("PUT", "/v1/mfa/challenges/signatures/" + reg["challenge"]["id"],
               {"signature": sign(unrestricted, reg["challenge"]["string_to_sign"])}))
must(201, call("POST", f"/v1/mfa/devices/{reg['id']}/keys", {
    "key_type": "ecdsa-p256", "key": point(restricted), "key_purpose": "restricted",
    "signature": sign(unrestricted, point(restricted))}))
set_pin = jwk.JWK(**must(200, call("GET", "/v1/cards/pin_keys/latest")))

results, sent = [], []
for case in CASES:
    if "replay" in case:
        body = sent[case["replay"]]
        sent.append(body)
        results.append(call("POST", f"/v1/cards/{case.get('card', CARD)}/pin_update_requests", body))
        continue
    key = jwk.JWK(**case["key"]) if "key" in case else set_pin
    kid = case.get("kid", key.key_id)
    token = jwe.JWE(json.dumps({"pin": case["pin"]}).encode(),
                    protected={"alg": "RSA-OAEP-256", "enc": "A256CBC-HS512", "kid": kid})
    token.add_recipient(key)
    compact = token.serialize(compact=True)
    if case.get("tamper"):
        parts = compact.split(".")
        ct = parts[3]
        parts[3] = ("A" if ct[0] != "A" else "B") + ct[1:]
        compact = ".".join(parts)
    body = {"device_id": reg["id"], "encrypted_pin": compact, "key_id": kid, "signature": sign(restricted, compact)}
    sent.append(body)
    results.append(call("POST", f"/v1/cards/{case.get('card', CARD)}/pin_update_requests", body))
print(json.dumps(results))
