// A Solaris secure-view client written with Debian's node-jose (panva's
// `jose`) and Node's crypto, independent of the vault's Go code.
//
// It makes a P-256 device key, binds the device, then for each requested
// alg/enc pair makes a fresh 2048-bit RSA key, exports it as a JWK, signs
// the JWK's sorted key:value string with the device key, asks for the
// secure view, and decrypts the compact JWE with jose.
//
// Usage: node solaris_client.mjs BASE PERSON_ID CARD_ID PAIRS_JSON
// (TOKEN in the environment; jose at /usr/share/nodejs/jose).
import { createRequire } from 'node:module';
import crypto from 'node:crypto';

const require = createRequire(import.meta.url);
const jose = require('/usr/share/nodejs/jose');

const usage = `usage: solaris_client.mjs BASE PERSON_ID CARD_ID PAIRS_JSON   (TOKEN in the environment)
  e.g. solaris_client.mjs "$CARDVAULT_URL" person-1 "$card" '[["RSA_OAEP_256","A256GCM"]]'`;
const [base, person, card, pairsJSON] = process.argv.slice(2);
const token = process.env.TOKEN;
if (process.argv.length !== 6 || !token) {
  console.error(usage);
  process.exit(2);
}
const deviceData = 'Web;node-jose;test';

async function call(method, path, body, want = 200) {
  const resp = await fetch(base + path, {
    method,
    headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  if (resp.status !== want) {
    throw new Error(`${method} ${path}: ${resp.status}, want ${want}: ${text}`);
  }
  return text ? JSON.parse(text) : null;
}

function sign(privateKey, message) {
  return crypto.sign('sha256', Buffer.from(message), { key: privateKey, dsaEncoding: 'der' }).toString('hex');
}

const device = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const pub = device.publicKey.export({ format: 'jwk' });
const point = Buffer.concat([Buffer.from([4]), Buffer.from(pub.x, 'base64url'), Buffer.from(pub.y, 'base64url')]).toString('hex');

const reg = await call('POST', '/v1/mfa/devices', {
  person_id: person, key_type: 'ecdsa-p256', key: point, key_purpose: 'unrestricted',
  challenge_type: 'signature', name: 'jose phone', device_data: deviceData,
}, 202);
await call('PUT', '/v1/mfa/challenges/signatures/' + reg.challenge.id,
  { signature: sign(device.privateKey, reg.challenge.string_to_sign), device_data: deviceData }, 204);

const results = [];
for (const [alg, enc] of JSON.parse(pairsJSON)) {
  const { publicKey, privateKey } = await jose.generateKeyPair('RSA-OAEP-256', { modulusLength: 2048, extractable: true });
  const jwk = { ...(await jose.exportJWK(publicKey)), kid: crypto.randomUUID(), use: 'enc', alg: 'RS256' };
  const signed = Object.keys(jwk).sort().map((k) => `${k}:${jwk[k]}`).join(';');
  const resp = await call('POST', `/v1/cards/${card}/virtual_card_requests`, {
    device_id: reg.id, signature: sign(device.privateKey, signed), jwk,
    jwe: { alg, enc }, device_data: deviceData,
  });
  const { plaintext, protectedHeader } = await jose.compactDecrypt(resp.data, privateKey, {
    keyManagementAlgorithms: ['RSA1_5', 'RSA-OAEP-256'],
    contentEncryptionAlgorithms: ['A256GCM', 'A256CBC-HS512'],
  });
  results.push({
    alg, enc, header: protectedHeader, kid: jwk.kid, decrypted_by: 'node-jose',
    payload: JSON.parse(new TextDecoder().decode(plaintext)),
  });
}
console.log(JSON.stringify({ device_id: reg.id, results }));
