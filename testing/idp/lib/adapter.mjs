// In-memory storage adapter for oidc-provider.
//
// The store lives at module level on purpose: the IdP rebuilds its Provider
// object when keys rotate or a client secret changes, and every Provider
// built in this process sees the same grants, refresh tokens, client-assertion
// jti replay records, sessions and so on. No LRU eviction (the library's own
// dev adapter evicts past 1000 entries); expired entries are swept lazily.

const store = new Map(); // "<Model>:<id>" -> { payload, expiresAt }
const grantMembers = new Map(); // grantId -> Set of "<Model>:<id>"
const sessionUids = new Map(); // uid -> session id
const userCodes = new Map(); // userCode -> device code id

const GRANTABLE = new Set([
  'AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode',
  'BackchannelAuthenticationRequest', 'ClientCredentials',
]);

// Grace period past expiry before an entry is really dropped, so that the
// library can still tell "expired" from "not found" where it cares.
const GRACE_MS = 60_000;
let writes = 0;

// Refresh-token reuse policy, set by the IdP state (see configureRefreshTokenReuse).
let reusePolicy = { grace: () => false, onReuse: () => {} };

/**
 * Keycloak's default (revokeRefreshToken=false) issues a new refresh token on
 * every refresh but leaves the presented one valid. oidc-provider's strict
 * rotation marks it consumed, and a consumed token presented again revokes the
 * whole grant. With `grace()` true, a rotated refresh token is only marked
 * `rotated` (never `consumed`), so it stays usable; `onReuse()` is called
 * whenever an already-rotated token is rotated again (presented a second time).
 */
export function configureRefreshTokenReuse(policy) {
  reusePolicy = policy;
}

function sweep() {
  const now = Date.now();
  for (const [key, entry] of store) {
    if (entry.expiresAt + GRACE_MS <= now) dropKey(key);
  }
}

function dropKey(key) {
  const entry = store.get(key);
  store.delete(key);
  if (!entry) return;
  const { payload } = entry;
  if (payload.grantId && grantMembers.has(payload.grantId)) {
    const set = grantMembers.get(payload.grantId);
    set.delete(key);
    if (set.size === 0) grantMembers.delete(payload.grantId);
  }
  if (payload.uid && sessionUids.get(payload.uid) === key.slice(key.indexOf(':') + 1)) sessionUids.delete(payload.uid);
  if (payload.userCode) userCodes.delete(payload.userCode);
}

export default class TestIdpAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    writes += 1;
    if (writes % 500 === 0) sweep();
    const key = this.key(id);
    if (store.has(key)) dropKey(key);
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    store.set(key, { payload, expiresAt });
    if (this.model === 'Session' && payload.uid) sessionUids.set(payload.uid, id);
    if (payload.userCode) userCodes.set(payload.userCode, id);
    if (GRANTABLE.has(this.model) && payload.grantId) {
      if (!grantMembers.has(payload.grantId)) grantMembers.set(payload.grantId, new Set());
      grantMembers.get(payload.grantId).add(key);
    }
  }

  async find(id) {
    const key = this.key(id);
    const entry = store.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt + GRACE_MS <= Date.now()) {
      dropKey(key);
      return undefined;
    }
    return entry.payload;
  }

  async findByUid(uid) {
    const id = sessionUids.get(uid);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = userCodes.get(userCode);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const entry = store.get(this.key(id));
    if (!entry) return;
    const now = Math.floor(Date.now() / 1000);
    if (this.model === 'RefreshToken' && reusePolicy.grace()) {
      if (entry.payload.rotated) reusePolicy.onReuse();
      entry.payload.rotated = now;
      return;
    }
    entry.payload.consumed = now;
  }

  async destroy(id) {
    dropKey(this.key(id));
  }

  async revokeByGrantId(grantId) {
    const members = grantMembers.get(grantId);
    if (!members) return;
    for (const key of [...members]) dropKey(key);
    grantMembers.delete(grantId);
  }
}
