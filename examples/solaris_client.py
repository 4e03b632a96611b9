#!/usr/bin/python3
"""A Solaris secure-view client written with Debian's python3-jwcrypto and
python3-cryptography, independent of the vault's Go code.

It makes a P-256 device key, binds the device (register, sign the challenge),
then for each requested alg/enc pair makes a fresh 2048-bit RSA JWK, signs
its sorted key:value string with the device key, asks for the secure view,
and decrypts the JWE: with jwcrypto for the standard algorithms, and with
cryptography's OAEP(SHA-256, MGF1-SHA-1) for RSA_OAEP_256_ANDROID.

Usage: solaris_client.py BASE PERSON_ID CARD_ID PAIRS_JSON [card|pin]
(TOKEN in the environment). Prints one JSON object: the device id and, per
pair, the JWE header and the decrypted payload. With `pin` it asks for the
PIN view (pin_view_requests) instead of the card details, and the payload
is {"pin": "..."}.
"""
import base64
import json
import os
import sys
import urllib.error
import urllib.request
import uuid
from hmac import compare_digest

from cryptography.hazmat.primitives import hashes, hmac, padding as sympad
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwcrypto import jwe, jwk

USAGE = """usage: solaris_client.py BASE PERSON_ID CARD_ID PAIRS_JSON [card|pin]   (TOKEN in the environment)
  e.g. solaris_client.py "$CARDVAULT_URL" person-1 "$card" '[["RSA_OAEP_256","A256GCM"]]'"""
ROUTES = {"card": "virtual_card_requests", "pin": "pin_view_requests"}
if len(sys.argv) not in (5, 6) or not os.environ.get("TOKEN") or sys.argv[5:] and sys.argv[5] not in ROUTES:
    sys.exit(USAGE)
ROUTE = ROUTES[sys.argv[5] if len(sys.argv) == 6 else "card"]
BASE, PERSON, CARD = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    PAIRS = json.loads(sys.argv[4])
except json.JSONDecodeError:
    sys.exit("PAIRS_JSON is not JSON\n" + USAGE)
TOKEN = os.environ["TOKEN"]


def call(method, path, body=None, want=200):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + TOKEN)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req) as resp:
            status, text = resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    if status != want:
        raise SystemExit(f"{method} {path}: {status}, want {want}: {text}")
    return json.loads(text) if text else None


def sign(key, message):
    return key.sign(message.encode(), ec.ECDSA(hashes.SHA256())).hex()


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def decrypt_android(private_key, compact):
    """RFC 7516 compact JWE, key unwrapped with OAEP SHA-256 / MGF1-SHA-1."""
    protected, ek, iv, ct, tag = compact.split(".")
    header = json.loads(b64d(protected))
    cek = private_key.decrypt(b64d(ek), padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA256(), label=None))
    aad = protected.encode()
    iv, ct, tag = b64d(iv), b64d(ct), b64d(tag)
    if header["enc"] == "A256GCM":
        return AESGCM(cek).decrypt(iv, ct + tag, aad)
    if header["enc"] == "A256CBC-HS512":
        mac_key, enc_key = cek[:32], cek[32:]
        h = hmac.HMAC(mac_key, hashes.SHA512())
        h.update(aad + iv + ct + (len(aad) * 8).to_bytes(8, "big"))
        if not compare_digest(h.finalize()[:32], tag):
            raise SystemExit("A256CBC-HS512 tag does not verify")
        dec = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).decryptor()
        padded = dec.update(ct) + dec.finalize()
        unpad = sympad.PKCS7(128).unpadder()
        return unpad.update(padded) + unpad.finalize()
    raise SystemExit("unexpected enc " + header["enc"])


device_key = ec.generate_private_key(ec.SECP256R1())
point = device_key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint).hex()
reg = call("POST", "/v1/mfa/devices", {
    "person_id": PERSON, "key_type": "ecdsa-p256", "key": point, "key_purpose": "unrestricted",
    "challenge_type": "signature", "name": "jwcrypto phone", "device_data": "Web;python-jwcrypto;test"}, want=202)
challenge = reg["challenge"]
call("PUT", "/v1/mfa/challenges/signatures/" + challenge["id"],
     {"signature": sign(device_key, challenge["string_to_sign"]), "device_data": "Web;python-jwcrypto;test"}, want=204)

results = []
for alg, enc in PAIRS:
    key = jwk.JWK.generate(kty="RSA", size=2048, kid=str(uuid.uuid4()), use="enc", alg="RS256")
    public = key.export_public(as_dict=True)
    signed = ";".join(f"{k}:{public[k]}" for k in sorted(public))
    resp = call("POST", f"/v1/cards/{CARD}/{ROUTE}", {
        "device_id": reg["id"], "signature": sign(device_key, signed), "jwk": public,
        "jwe": {"alg": alg, "enc": enc}, "device_data": "Web;python-jwcrypto;test"})
    compact = resp["data"]
    header = json.loads(b64d(compact.split(".")[0]))
    if alg == "RSA_OAEP_256_ANDROID":
        private = key.get_op_key("decrypt")
        plain = decrypt_android(private, compact)
        decrypted_by = "python-cryptography"
    else:
        token = jwe.JWE()
        token.allowed_algs = ["RSA1_5", "RSA-OAEP-256", "A256GCM", "A256CBC-HS512"]
        token.deserialize(compact, key=key)
        plain = token.payload
        decrypted_by = "jwcrypto"
    results.append({"alg": alg, "enc": enc, "header": header, "payload": json.loads(plain),
                    "kid": public["kid"], "decrypted_by": decrypted_by})

print(json.dumps({"device_id": reg["id"], "results": results}))
