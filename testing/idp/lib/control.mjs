// Control API, on its own port: lets tests observe and steer the IdP.
import { sendJson } from './gateway.mjs';
import { allScopes, RESOURCE_INDICATOR } from './provider.mjs';
import { ENDPOINTS, FAULT_MODES } from './state.mjs';

const ENDPOINT_ALIASES = { introspection: 'introspect', revocation: 'revoke', certs: 'jwks' };

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function readJson(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 256 * 1024) throw new HttpError(413, 'body too large');
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text) return {};
  let v;
  try {
    v = JSON.parse(text);
  } catch {
    throw new HttpError(400, 'body is not JSON');
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new HttpError(400, 'body must be a JSON object');
  return v;
}

function isPosInt(v) {
  return Number.isInteger(v) && v > 0;
}

function parseFault(b) {
  const endpoint = ENDPOINT_ALIASES[b.endpoint] ?? b.endpoint;
  if (!ENDPOINTS.includes(endpoint)) throw new HttpError(400, `endpoint must be one of ${ENDPOINTS.join(', ')}`);
  const mode = b.mode ?? 'status';
  if (!FAULT_MODES.includes(mode)) throw new HttpError(400, `mode must be one of ${FAULT_MODES.join(', ')}`);
  const count = b.count ?? null;
  if (count !== null && !isPosInt(count)) throw new HttpError(400, 'count must be a positive integer or null');
  const f = { endpoint, mode, count };
  if (mode === 'status') {
    f.status = b.status ?? 503;
    if (!Number.isInteger(f.status) || f.status < 200 || f.status > 599) throw new HttpError(400, 'status must be an HTTP status code');
  }
  if (b.retry_after !== undefined && b.retry_after !== null) {
    if (typeof b.retry_after !== 'string' && !Number.isInteger(b.retry_after)) throw new HttpError(400, 'retry_after must be a string or an integer');
    f.retry_after = String(b.retry_after);
  }
  if (b.body !== undefined && b.body !== null) {
    if (typeof b.body !== 'string' && (typeof b.body !== 'object' || Array.isArray(b.body))) {
      throw new HttpError(400, 'body must be a JSON object, a string or null');
    }
    f.body = b.body;
  }
  if (b.content_type !== undefined) f.content_type = String(b.content_type);
  if (mode === 'delay' || mode === 'hold') {
    f.delay_ms = b.delay_ms ?? 1000;
    if (!Number.isInteger(f.delay_ms) || f.delay_ms < 0 || f.delay_ms > 600_000) throw new HttpError(400, 'delay_ms must be an integer from 0 to 600000');
  }
  return f;
}

function clientView(c) {
  return {
    client_id: c.client_id,
    auth_method: c.auth_method,
    service_account_id: c.service_account_id,
    service_account_username: `service-account-${c.client_id}`,
    realm_roles: c.realm_roles,
    client_roles: c.client_roles,
    grants: c.grants,
    redirect_uris: c.redirect_uris,
    default_scopes: c.default_scopes,
    key_ids: c.jwks.map((k) => k.kid),
    disabled: c.disabled,
  };
}

async function mintRefreshToken(state, b) {
  const { provider } = state;
  if (typeof b.client_id !== 'string') throw new HttpError(400, 'client_id is required');
  if (typeof b.username !== 'string') throw new HttpError(400, 'username is required');
  const client = await provider.Client.find(b.client_id);
  if (!client) throw new HttpError(404, `no client ${b.client_id}`);
  if (!client.grantTypeAllowed('refresh_token')) {
    throw new HttpError(400, `client ${b.client_id} is not allowed the refresh_token grant`);
  }
  const user = state.usersByName.get(b.username) ?? state.usersById.get(b.username);
  if (!user) throw new HttpError(404, `no user ${b.username}`);
  const scopes = [...new Set(String(b.scope ?? 'openid offline_access').split(' ').filter(Boolean))];
  const known = new Set(allScopes(state.cfg));
  const unknown = scopes.filter((s) => !known.has(s));
  if (unknown.length) throw new HttpError(400, `unknown scope(s): ${unknown.join(' ')}`);

  const grant = new provider.Grant({ accountId: user.id, clientId: client.clientId });
  grant.addOIDCScope(scopes.join(' '));
  grant.addResourceScope(RESOURCE_INDICATOR, scopes.join(' '));
  const grantId = await grant.save();

  const now = Math.floor(Date.now() / 1000);
  const rt = new provider.RefreshToken({
    client,
    accountId: user.id,
    grantId,
    scope: scopes.join(' '),
    gty: 'authorization_code',
    resource: RESOURCE_INDICATOR,
    authTime: now,
    expiresWithSession: false,
  });
  return rt.save();
}

export function createControlHandler(state, hooks) {
  const routes = {
    'GET /health': async () => ({ ok: true }),
    'GET /stats': async () => state.stats,
    'POST /stats/reset': async () => { state.resetStats(); return { ok: true }; },
    'POST /fault': async (b) => {
      const f = parseFault(b);
      state.faults.set(f.endpoint, f);
      return { ok: true, fault: f };
    },
    'POST /fault/clear': async (b) => {
      if (b.endpoint) state.faults.delete(ENDPOINT_ALIASES[b.endpoint] ?? b.endpoint);
      else state.faults.clear();
      return { ok: true };
    },
    'GET /faults': async () => [...state.faults.values()],
    'POST /down': async () => { await hooks.down(); return { ok: true, listening: false }; },
    'POST /up': async () => { await hooks.up(); return { ok: true, listening: true, port: state.port }; },
    'POST /rotate-keys': async (b) => {
      const kid = state.rotateKeys(b.keep_old !== false);
      return { ok: true, kid, kids: state.signingKeys.map((k) => k.kid) };
    },
    'GET /keys': async () => ({ kid: state.signingKeys[0].kid, kids: state.signingKeys.map((k) => k.kid) }),
    'GET /settings': async () => state.settings,
    'POST /settings': async (b) => {
      for (const k of ['access_token_ttl', 'refresh_token_ttl']) {
        if (b[k] !== undefined) {
          if (!isPosInt(b[k])) throw new HttpError(400, `${k} must be a positive integer`);
          state.settings[k] = b[k];
        }
      }
      if (b.refresh_token_reuse_grace !== undefined) {
        if (typeof b.refresh_token_reuse_grace !== 'boolean') throw new HttpError(400, 'refresh_token_reuse_grace must be a boolean');
        state.settings.refresh_token_reuse_grace = b.refresh_token_reuse_grace;
      }
      return { ok: true, settings: state.settings };
    },
    'POST /refresh-token': async (b) => ({ refresh_token: await mintRefreshToken(state, b) }),
    'GET /clients': async () => state.cfg.clients.map(clientView),
    'GET /users': async () => state.cfg.users.map((u) => ({
      username: u.username, id: u.id, realm_roles: u.realm_roles, client_roles: u.client_roles,
    })),
    'POST /shutdown': async () => { setImmediate(() => hooks.shutdown('control API')); return { ok: true }; },
  };

  const clientRoutes = {
    secret: async (client, b) => {
      if (typeof b.secret !== 'string' || !b.secret) throw new HttpError(400, 'secret must be a non-empty string');
      if (!client.auth_method.startsWith('client_secret')) throw new HttpError(400, `client ${client.client_id} does not use a secret`);
      client.secret = b.secret;
      state.rebuildProvider();
      return { ok: true };
    },
    disable: async (client, b) => {
      client.disabled = true;
      client.disabled_style = b.legacy === true ? 'legacy' : 'current';
      return { ok: true };
    },
    enable: async (client) => {
      client.disabled = false;
      return { ok: true };
    },
  };

  return async function control(req, res) {
    try {
      const url = new URL(req.url, 'http://127.0.0.1');
      const body = req.method === 'POST' ? await readJson(req) : {};
      let handler = routes[`${req.method} ${url.pathname}`];
      let result;
      if (handler) {
        result = await handler(body);
      } else {
        const m = /^\/clients\/([^/]+)\/(secret|disable|enable)$/.exec(url.pathname);
        if (!m || req.method !== 'POST') throw new HttpError(404, `no control route ${req.method} ${url.pathname}`);
        const id = decodeURIComponent(m[1]);
        const client = state.clients.get(id);
        if (!client) throw new HttpError(404, `no client ${id}`);
        handler = clientRoutes[m[2]];
        result = await handler(client, body);
      }
      sendJson(res, 200, result);
    } catch (err) {
      const status = err.status ?? 500;
      if (status === 500) console.error(`test-idp: control error: ${err.stack ?? err}`);
      if (!res.headersSent) sendJson(res, status, { error: err.message });
    }
  };
}
