// Config loading and normalisation for the test IdP.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import { publicJwkFromPem } from './der.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const FIXTURES_DIR = path.resolve(HERE, '..', '..', 'fixtures');

// RFC 4122 name-based UUID (version 5, SHA-1) in a namespace of our own, so
// that the Rust side (or anyone) can reproduce the ids: the namespace is the
// v5 UUID of "tokenwarden-test-idp" in the RFC 4122 URL namespace.
const URL_NAMESPACE = '6ba7b811-9dad-11d1-80b4-00c04fd430c8';

export function uuidV5(name, namespace) {
  const ns = Buffer.from(namespace.replace(/-/g, ''), 'hex');
  const hash = crypto.createHash('sha1').update(ns).update(Buffer.from(name, 'utf8')).digest();
  const b = hash.subarray(0, 16);
  b[6] = (b[6] & 0x0f) | 0x50;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export const IDP_NAMESPACE = uuidV5('tokenwarden-test-idp', URL_NAMESPACE);

/** Stable service-account UUID of a client that has no service_account_id configured. */
export function defaultServiceAccountId(clientId) {
  return uuidV5(`service-account:${clientId}`, IDP_NAMESPACE);
}

/** Stable user UUID of a user that has no id configured. */
export function defaultUserId(username) {
  return uuidV5(`user:${username}`, IDP_NAMESPACE);
}

const AUTH_METHODS = new Set([
  'client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'private_key_jwt', 'none',
]);
const GRANTS = new Set(['client_credentials', 'authorization_code', 'refresh_token']);

function fail(msg) {
  throw new Error(`invalid IdP config: ${msg}`);
}

function stringArray(v, what) {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) fail(`${what} must be an array of strings`);
  return [...v];
}

function rolesMap(v, what) {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) fail(`${what} must be an object of string arrays`);
  const out = {};
  for (const [k, roles] of Object.entries(v)) out[k] = stringArray(roles, `${what}.${k}`);
  return out;
}

/** Public JWK (with an RFC 7638 thumbprint kid) from a PEM file holding a private or public key. */
export function publicJwkFromPemFile(file) {
  const pem = fs.readFileSync(file, 'utf8');
  let jwk;
  try {
    jwk = publicJwkFromPem(pem);
  } catch (cause) {
    throw new Error(`cannot read an RSA or EC key from ${file}`, { cause });
  }
  if (jwk.kty !== 'RSA' && jwk.kty !== 'EC') fail(`${file}: only RSA and EC keys are supported`);
  jwk.kid = jwkThumbprint(jwk);
  jwk.use = 'sig';
  return jwk;
}

export function jwkThumbprint(jwk) {
  const members = jwk.kty === 'RSA'
    ? { e: jwk.e, kty: 'RSA', n: jwk.n }
    : { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  return crypto.createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

function defaultClients() {
  const keys = path.join(FIXTURES_DIR, 'keys');
  return [
    {
      client_id: 'agent-basic',
      secret: 'agent-basic-secret',
      auth_method: 'client_secret_basic',
      realm_roles: ['agent'],
      client_roles: { api: ['read'] },
      grants: ['client_credentials'],
    },
    {
      client_id: 'agent-post',
      secret: 'agent-post-secret',
      auth_method: 'client_secret_post',
      realm_roles: ['agent'],
      client_roles: { api: ['read'] },
      grants: ['client_credentials'],
    },
    {
      client_id: 'agent-jwt',
      auth_method: 'private_key_jwt',
      public_key_pem_files: [path.join(keys, 'agent-rsa.pem'), path.join(keys, 'agent-ec.pem')],
      realm_roles: ['agent'],
      client_roles: { api: ['read'] },
      grants: ['client_credentials'],
    },
    {
      client_id: 'refresh-client',
      secret: 'refresh-client-secret',
      auth_method: 'client_secret_basic',
      grants: ['authorization_code', 'refresh_token'],
      redirect_uris: ['http://127.0.0.1/cb'],
    },
  ];
}

function defaultUsers() {
  return [{ username: 'alice', realm_roles: ['user'], client_roles: { api: ['read'] } }];
}

function normalizeClient(c, i, baseDir, realm) {
  if (!c || typeof c !== 'object') fail(`clients[${i}] must be an object`);
  const clientId = c.client_id;
  if (typeof clientId !== 'string' || !clientId) fail(`clients[${i}].client_id must be a non-empty string`);
  const authMethod = c.auth_method ?? 'client_secret_basic';
  if (!AUTH_METHODS.has(authMethod)) fail(`clients[${i}].auth_method ${authMethod} is not one of ${[...AUTH_METHODS].join(', ')}`);
  const grants = stringArray(c.grants, `clients[${i}].grants`) ?? ['client_credentials'];
  for (const g of grants) if (!GRANTS.has(g)) fail(`clients[${i}].grants: unsupported grant ${g}`);
  const needsSecret = authMethod.startsWith('client_secret');
  const secret = c.secret ?? (needsSecret ? `${clientId}-secret` : undefined);
  const pemFiles = (stringArray(c.public_key_pem_files, `clients[${i}].public_key_pem_files`) ?? [])
    .map((f) => path.resolve(baseDir, f));
  if (authMethod === 'private_key_jwt' && pemFiles.length === 0) {
    fail(`clients[${i}] (${clientId}) uses private_key_jwt but names no public_key_pem_files`);
  }
  return {
    client_id: clientId,
    secret,
    auth_method: authMethod,
    service_account_id: c.service_account_id ?? defaultServiceAccountId(clientId),
    realm_roles: stringArray(c.realm_roles, `clients[${i}].realm_roles`) ?? [`default-roles-${realm}`],
    client_roles: rolesMap(c.client_roles, `clients[${i}].client_roles`),
    grants,
    redirect_uris: stringArray(c.redirect_uris, `clients[${i}].redirect_uris`)
      ?? (grants.includes('authorization_code') ? ['http://127.0.0.1/cb'] : []),
    default_scopes: stringArray(c.default_scopes, `clients[${i}].default_scopes`) ?? ['profile', 'email'],
    scopes: stringArray(c.scopes, `clients[${i}].scopes`),
    public_key_pem_files: pemFiles,
    jwks: pemFiles.map(publicJwkFromPemFile),
    disabled: c.disabled === true,
  };
}

function normalizeUser(u, i) {
  if (!u || typeof u !== 'object') fail(`users[${i}] must be an object`);
  if (typeof u.username !== 'string' || !u.username) fail(`users[${i}].username must be a non-empty string`);
  return {
    username: u.username,
    id: u.id ?? defaultUserId(u.username),
    email: u.email,
    name: u.name,
    realm_roles: stringArray(u.realm_roles, `users[${i}].realm_roles`) ?? [],
    client_roles: rolesMap(u.client_roles, `users[${i}].client_roles`),
  };
}

function nonNegativeInt(v, what, dflt) {
  if (v === undefined || v === null) return dflt;
  if (!Number.isInteger(v) || v < 0 || v > 65535 * 1000000) fail(`${what} must be a non-negative integer`);
  return v;
}

function positiveInt(v, what, dflt) {
  const n = nonNegativeInt(v, what, dflt);
  if (n === 0) fail(`${what} must be positive`);
  return n;
}

/**
 * Reads and normalises a config file (or an empty config when file is
 * undefined). Relative paths inside it are resolved against its directory.
 */
export function loadConfig(file) {
  let raw = {};
  let baseDir = process.cwd();
  if (file) {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
    baseDir = path.dirname(path.resolve(file));
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) fail('top level must be an object');
  }
  const realm = raw.realm ?? 'test';
  if (typeof realm !== 'string' || !/^[A-Za-z0-9._-]+$/.test(realm)) fail('realm must be a simple name');
  const audience = raw.audience ?? 'api';
  if (!(typeof audience === 'string' || (Array.isArray(audience) && audience.length && audience.every((a) => typeof a === 'string')))) {
    fail('audience must be a string or a non-empty array of strings');
  }
  const clients = (raw.clients ?? defaultClients()).map((c, i) => normalizeClient(c, i, baseDir, realm));
  const ids = new Set();
  for (const c of clients) {
    if (ids.has(c.client_id)) fail(`duplicate client_id ${c.client_id}`);
    ids.add(c.client_id);
  }
  const users = (raw.users ?? defaultUsers()).map(normalizeUser);
  return {
    realm,
    port: nonNegativeInt(raw.port, 'port', 0),
    control_port: nonNegativeInt(raw.control_port, 'control_port', 0),
    access_token_ttl: positiveInt(raw.access_token_ttl, 'access_token_ttl', 60),
    refresh_token_ttl: positiveInt(raw.refresh_token_ttl, 'refresh_token_ttl', 3600),
    audience,
    extra_scopes: stringArray(raw.scopes, 'scopes') ?? [],
    clients,
    users,
  };
}
