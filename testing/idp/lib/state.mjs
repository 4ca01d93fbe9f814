// Mutable state of one IdP process: config, signing keys, settings, stats,
// faults, the current Provider.
import * as crypto from 'node:crypto';

import { configureRefreshTokenReuse } from './adapter.mjs';
import { generateRsaJwks } from './der.mjs';
import { allScopes, buildProvider } from './provider.mjs';

export const ENDPOINTS = ['token', 'jwks', 'discovery', 'introspect', 'revoke', 'userinfo'];
export const FAULT_MODES = ['status', 'garbled', 'delay', 'reset', 'hold'];

function newSigningKey() {
  const { privateJwk, spki } = generateRsaJwks(2048);
  const kid = crypto.randomBytes(16).toString('base64url');
  return {
    kid,
    privateJwk: { ...privateJwk, kid, alg: 'RS256', use: 'sig' },
    spki,
    publicKey: crypto.createPublicKey({ key: spki, format: 'der', type: 'spki' }),
  };
}

function emptyStats() {
  return {
    token_requests: 0,
    token_requests_by_client: {},
    token_requests_by_grant: {},
    jwks_requests: 0,
    discovery_requests: 0,
    introspection_requests: 0,
    revocation_requests: 0,
    userinfo_requests: 0,
    held_responses: 0,
    refresh_token_reuse: 0,
  };
}

export class IdpState {
  constructor(cfg) {
    this.cfg = cfg;
    this.realmPath = `/realms/${cfg.realm}`;
    this.settings = {
      access_token_ttl: cfg.access_token_ttl,
      refresh_token_ttl: cfg.refresh_token_ttl,
      refresh_token_reuse_grace: false,
    };
    configureRefreshTokenReuse({
      grace: () => this.settings.refresh_token_reuse_grace,
      onReuse: () => { this.stats.refresh_token_reuse += 1; },
    });
    this.cookieKey = crypto.randomBytes(32).toString('base64url');
    this.signingKeys = [newSigningKey()];
    this.stats = emptyStats();
    this.faults = new Map(); // endpoint -> fault
    this.indexDirectory();
    this.issuer = undefined;
    this.provider = undefined;
    this.callback = undefined;
  }

  indexDirectory() {
    this.clients = new Map(this.cfg.clients.map((c) => [c.client_id, c]));
    this.usersById = new Map(this.cfg.users.map((u) => [u.id, u]));
    this.usersByName = new Map(this.cfg.users.map((u) => [u.username, u]));
    this.knownScopes = new Set(allScopes(this.cfg));
  }

  setPort(port) {
    this.port = port;
    this.issuer = `http://127.0.0.1:${port}${this.realmPath}`;
  }

  rebuildProvider() {
    this.provider = buildProvider(this);
    this.callback = this.provider.callback();
  }

  rotateKeys(keepOld) {
    const key = newSigningKey();
    // The first key that fits is the one oidc-provider signs with.
    this.signingKeys = keepOld ? [key, ...this.signingKeys] : [key];
    this.rebuildProvider();
    return key.kid;
  }

  /** kid -> public KeyObject of every key currently published. */
  verificationKeys() {
    return new Map(this.signingKeys.map((k) => [k.kid, k.publicKey]));
  }

  countRequest(endpoint, info) {
    const s = this.stats;
    switch (endpoint) {
      case 'token': {
        s.token_requests += 1;
        const c = info.clientId ?? '(none)';
        s.token_requests_by_client[c] = (s.token_requests_by_client[c] ?? 0) + 1;
        const g = info.grantType ?? '(none)';
        s.token_requests_by_grant[g] = (s.token_requests_by_grant[g] ?? 0) + 1;
        break;
      }
      case 'jwks': s.jwks_requests += 1; break;
      case 'discovery': s.discovery_requests += 1; break;
      case 'introspect': s.introspection_requests += 1; break;
      case 'revoke': s.revocation_requests += 1; break;
      case 'userinfo': s.userinfo_requests += 1; break;
      default: break;
    }
  }

  resetStats() {
    this.stats = emptyStats();
  }

  /** Returns the fault to apply to this request (consuming one use of it), if any. */
  takeFault(endpoint) {
    const f = this.faults.get(endpoint);
    if (!f) return undefined;
    if (f.count !== null) {
      f.count -= 1;
      if (f.count <= 0) this.faults.delete(endpoint);
    }
    return f;
  }
}
