// Minimal DER reading, to turn keys into JWKs without KeyObject.export({format:'jwk'}).
//
// Why: on Node 20 (OpenSSL 3.0) that call deadlocked now and then (about one
// IdP start in a hundred hung forever in it, main thread parked on a futex).
// DER/PEM encoding goes through a different OpenSSL path and has not hung.
import * as crypto from 'node:crypto';

function tlv(buf, off) {
  const tag = buf[off];
  let len = buf[off + 1];
  let hdr = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let i = 0; i < n; i += 1) len = len * 256 + buf[off + 2 + i];
    hdr += n;
  }
  const start = off + hdr;
  const end = start + len;
  if (end > buf.length) throw new Error('truncated DER');
  return { tag, start, end };
}

function children(buf, node) {
  const out = [];
  for (let off = node.start; off < node.end;) {
    const c = tlv(buf, off);
    out.push(c);
    off = c.end;
  }
  return out;
}

function uint(buf, node) {
  let b = buf.subarray(node.start, node.end);
  while (b.length > 1 && b[0] === 0) b = b.subarray(1);
  return b.toString('base64url');
}

const OID_RSA = '2a864886f70d010101';
const OID_EC = '2a8648ce3d0201';
const CURVES = { '2a8648ce3d030107': ['P-256', 32], '2b81040022': ['P-384', 48] };

/** Public JWK (kty, n/e or crv/x/y) from SPKI DER. */
export function spkiToJwk(der) {
  const [alg, bits] = children(der, tlv(der, 0));
  const [oid, params] = children(der, alg);
  const oidHex = der.subarray(oid.start, oid.end).toString('hex');
  const key = der.subarray(bits.start + 1, bits.end); // skip the unused-bits byte
  if (oidHex === OID_RSA) {
    const [n, e] = children(key, tlv(key, 0));
    return { kty: 'RSA', n: uint(key, n), e: uint(key, e) };
  }
  if (oidHex === OID_EC) {
    const curve = CURVES[der.subarray(params.start, params.end).toString('hex')];
    if (!curve) throw new Error('unsupported EC curve (P-256 and P-384 only)');
    const [crv, size] = curve;
    if (key[0] !== 0x04 || key.length !== 1 + 2 * size) throw new Error('unsupported EC point encoding');
    return {
      kty: 'EC',
      crv,
      x: key.subarray(1, 1 + size).toString('base64url'),
      y: key.subarray(1 + size).toString('base64url'),
    };
  }
  throw new Error('unsupported key type (RSA and EC only)');
}

/** Private RSA JWK from PKCS#8 DER. */
export function rsaPkcs8ToJwk(der) {
  const [, alg, octets] = children(der, tlv(der, 0));
  const [oid] = children(der, alg);
  if (der.subarray(oid.start, oid.end).toString('hex') !== OID_RSA) throw new Error('not an RSA key');
  const inner = der.subarray(octets.start, octets.end);
  const [, n, e, d, p, q, dp, dq, qi] = children(inner, tlv(inner, 0));
  return {
    kty: 'RSA',
    n: uint(inner, n),
    e: uint(inner, e),
    d: uint(inner, d),
    p: uint(inner, p),
    q: uint(inner, q),
    dp: uint(inner, dp),
    dq: uint(inner, dq),
    qi: uint(inner, qi),
  };
}

/** A fresh RSA key pair: private JWK, public JWK, SPKI DER. */
export function generateRsaJwks(modulusLength = 2048) {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('rsa', {
    modulusLength,
    publicKeyEncoding: { type: 'spki', format: 'der' },
    privateKeyEncoding: { type: 'pkcs8', format: 'der' },
  });
  return { privateJwk: rsaPkcs8ToJwk(privateKey), publicJwk: spkiToJwk(publicKey), spki: publicKey };
}

/** Public JWK of a PEM file's key (private or public, RSA or EC). */
export function publicJwkFromPem(pem) {
  const spki = crypto.createPublicKey(pem).export({ type: 'spki', format: 'der' });
  return spkiToJwk(spki);
}
