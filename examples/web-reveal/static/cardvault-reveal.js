// cardvault's reveal component: the cardholder's browser as a Solaris
// bound device. Plain ES module, WebCrypto only, no dependencies.
//
// - The device key is an ECDSA P-256 key pair made non-extractable and
//   kept in IndexedDB: the CryptoKey survives there, but no script, this
//   one included, can export its private half.
// - Each reveal makes a fresh RSA-OAEP key pair (SHA-256; the private half
//   non-extractable), signs the public JWK's canonical string with the
//   device key, and decrypts the vault's JWE (RSA-OAEP-256 + A256GCM)
//   here. WebCrypto has neither RSA1_5 (PKCS#1 v1.5 encryption) nor the
//   Android variant (OAEP with SHA-256 and MGF1-SHA1: WebCrypto's OAEP
//   uses one hash for both), so those algorithms cannot be asked for.
// - Nothing here writes to storage but the device key, nor to the console.

const DB_NAME = 'cardvault-device';
const STORE = 'device';
const CURRENT = 'current';

const ECDSA = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGN = { name: 'ECDSA', hash: 'SHA-256' };

// RevealError carries a code the page may show; never card data.
export class RevealError extends Error {
  constructor(code, status) {
    super(code);
    this.code = code;
    this.status = status;
  }
}

function openDB() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(new RevealError('storage'));
  });
}

async function withStore(mode, fn) {
  const db = await openDB();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const req = fn(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(new RevealError('storage'));
    });
  } finally {
    db.close();
  }
}

// boundDevice is this browser's device: {id, keys}, or null.
export async function boundDevice() {
  const dev = await withStore('readonly', (s) => s.get(CURRENT));
  return dev && dev.id && dev.keys ? dev : null;
}

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

function b64urlDecode(text) {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) {
    throw new RevealError('malformed-jwe');
  }
  const bin = atob(text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (text.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

// derInteger encodes one unsigned big-endian integer as a DER INTEGER:
// leading zeros dropped, one zero added when the top bit is set.
function derInteger(bytes) {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) {
    i++;
  }
  const body = bytes[i] & 0x80 ? [0, ...bytes.slice(i)] : [...bytes.slice(i)];
  return [0x02, body.length, ...body];
}

// derSignature turns WebCrypto's ECDSA signature, raw r‖s (IEEE P1363),
// into the ASN.1 DER SEQUENCE the vault expects.
export function derSignature(raw) {
  if (raw.length !== 64) {
    throw new RevealError('signature');
  }
  const r = derInteger(raw.subarray(0, 32));
  const s = derInteger(raw.subarray(32));
  return new Uint8Array([0x30, r.length + s.length, ...r, ...s]);
}

async function sign(privateKey, text) {
  const raw = await crypto.subtle.sign(SIGN, privateKey, new TextEncoder().encode(text));
  return hex(derSignature(new Uint8Array(raw)));
}

// ticket is the signed-in session's credential for the issuer's backend,
// which the host page hands the frame; kept in memory only.
let ticket = '';

// useSession sets the ticket the component's calls carry.
export function useSession(t) {
  ticket = t;
}

// api posts JSON to the issuer's backend (same origin) with the session's
// ticket and returns its JSON answer; a refusal is a RevealError with the
// status, not the body.
async function api(path, body) {
  const resp = await fetch(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${ticket}` },
    body: JSON.stringify(body),
    credentials: 'same-origin',
    cache: 'no-store',
  });
  if (!resp.ok) {
    throw new RevealError('refused', resp.status);
  }
  return resp.status === 204 ? null : resp.json();
}

// bindDevice makes this browser's device key and binds it: the backend
// registers the public key for its signed-in cardholder, and the device
// signs the vault's challenge.
export async function bindDevice() {
  const keys = await crypto.subtle.generateKey(ECDSA, false, ['sign', 'verify']);
  const point = new Uint8Array(await crypto.subtle.exportKey('raw', keys.publicKey));
  const reg = await api('/api/device', { key: hex(point) });
  await api('/api/device/verify', {
    challenge_id: reg.challenge_id,
    signature: await sign(keys.privateKey, reg.string_to_sign),
  });
  await withStore('readwrite', (s) => s.put({ id: reg.device_id, keys }, CURRENT));
  return reg.device_id;
}

// revealKey is a fresh key pair for one reveal; its private half never
// leaves WebCrypto.
function revealKey(bits) {
  if (bits !== 2048 && bits !== 3072) {
    throw new RevealError('key-size');
  }
  return crypto.subtle.generateKey(
    { name: 'RSA-OAEP', modulusLength: bits, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
    false, ['encrypt', 'decrypt'],
  );
}

// signedString is Solaris's canonical JWK string: members sorted by name,
// each "name:value", joined with ";".
export const signedString = (jwk) => Object.keys(jwk).sort().map((k) => `${k}:${jwk[k]}`).join(';');

// reveal fetches a card's details to a fresh key and decrypts them here.
// It returns {pan, cvc, expiresAt, name}; the caller shows and drops them.
export async function reveal(cardId, { bits = 2048 } = {}) {
  const d = await viewOnDevice(`/api/cards/${encodeURIComponent(cardId)}/reveal`, bits);
  return { pan: d.pan, cvc: d.cvc, expiresAt: d.expires_at, name: d.line_1 };
}

// revealPIN fetches a card's PIN the same way and returns its digits; the
// caller shows and drops them.
export async function revealPIN(cardId, { bits = 2048 } = {}) {
  const d = await viewOnDevice(`/api/cards/${encodeURIComponent(cardId)}/pin`, bits);
  if (typeof d.pin !== 'string' || !/^[0-9]{4,12}$/.test(d.pin)) {
    throw new RevealError('malformed-pin');
  }
  return d.pin;
}

// viewOnDevice asks the backend's route for a view to a fresh key the
// bound device signs, and decrypts the answer here. It returns the
// plaintext's members; the decrypted bytes are cleared.
async function viewOnDevice(path, bits) {
  const device = await boundDevice();
  if (!device) {
    throw new RevealError('not-bound');
  }
  const pair = await revealKey(bits);
  const pub = await crypto.subtle.exportKey('jwk', pair.publicKey);
  const jwk = { kty: 'RSA', n: pub.n, e: pub.e, kid: crypto.randomUUID(), use: 'enc', alg: 'RS256' };
  const { data } = await api(path, {
    device_id: device.id,
    signature: await sign(device.keys.privateKey, signedString(jwk)),
    jwk,
  });
  const plain = await decryptJWE(data, pair.privateKey);
  try {
    return JSON.parse(new TextDecoder().decode(plain));
  } finally {
    plain.fill(0);
  }
}

// decryptJWE opens a compact JWE made to the reveal key. Only the one
// algorithm pair this component asks for is accepted.
async function decryptJWE(compact, privateKey) {
  const parts = typeof compact === 'string' ? compact.split('.') : [];
  if (parts.length !== 5) {
    throw new RevealError('malformed-jwe');
  }
  const header = JSON.parse(new TextDecoder().decode(b64urlDecode(parts[0])));
  if (header.alg !== 'RSA-OAEP-256' || header.enc !== 'A256GCM' || 'zip' in header) {
    throw new RevealError('unexpected-algorithm');
  }
  const cek = new Uint8Array(await crypto.subtle.decrypt({ name: 'RSA-OAEP' }, privateKey, b64urlDecode(parts[1])));
  let key;
  try {
    key = await crypto.subtle.importKey('raw', cek, { name: 'AES-GCM' }, false, ['decrypt']);
  } finally {
    cek.fill(0);
  }
  const ciphertext = b64urlDecode(parts[3]);
  const tag = b64urlDecode(parts[4]);
  const sealed = new Uint8Array(ciphertext.length + tag.length);
  sealed.set(ciphertext);
  sealed.set(tag, ciphertext.length);
  const plain = await crypto.subtle.decrypt(
    { name: 'AES-GCM', iv: b64urlDecode(parts[2]), additionalData: new TextEncoder().encode(parts[0]), tagLength: 128 },
    key, sealed,
  );
  return new Uint8Array(plain);
}
