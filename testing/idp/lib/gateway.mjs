// The IdP's public HTTP listener: counts requests, applies injected faults,
// emulates a few Keycloak behaviours, then hands the request to
// oidc-provider mounted under /realms/<realm>.
import * as crypto from 'node:crypto';

import { VERBOSE } from './quiet.mjs';
import { ROUTES } from './provider.mjs';

const BODY_LIMIT = 64 * 1024;

const ENDPOINT_BY_PATH = new Map([
  [ROUTES.token, 'token'],
  [ROUTES.jwks, 'jwks'],
  ['/.well-known/openid-configuration', 'discovery'],
  ['/.well-known/oauth-authorization-server', 'discovery'],
  [ROUTES.introspection, 'introspect'],
  [ROUTES.revocation, 'revoke'],
  [ROUTES.userinfo, 'userinfo'],
]);

const DEFAULT_ERROR_BY_STATUS = {
  400: 'invalid_request',
  401: 'invalid_client',
  403: 'access_denied',
  404: 'not_found',
  429: 'temporarily_unavailable',
  500: 'server_error',
  502: 'temporarily_unavailable',
  503: 'temporarily_unavailable',
  504: 'temporarily_unavailable',
};

export function sendJson(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Cache-Control': 'no-store',
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > BODY_LIMIT) throw Object.assign(new Error('request body too large'), { status: 413 });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function isForm(req) {
  return (req.headers['content-type'] ?? '').toLowerCase().startsWith('application/x-www-form-urlencoded');
}

function b64urlJson(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

/** The client a token-endpoint request is for: Basic header, form client_id, or the assertion's sub/iss. */
export function requestClientId(req, form) {
  const auth = req.headers.authorization ?? '';
  if (/^basic /i.test(auth)) {
    try {
      const decoded = Buffer.from(auth.slice(6).trim(), 'base64').toString('utf8');
      const i = decoded.indexOf(':');
      const raw = i >= 0 ? decoded.slice(0, i) : decoded;
      return decodeURIComponent(raw.replace(/\+/g, ' '));
    } catch {
      return undefined;
    }
  }
  if (form?.get('client_id')) return form.get('client_id');
  const assertion = form?.get('client_assertion');
  if (assertion) {
    try {
      const payload = b64urlJson(assertion.split('.')[1]);
      return payload.sub ?? payload.iss;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** Verifies a JWT signed by this IdP (any published key); returns its payload or null. */
function verifyOwnJwt(state, value) {
  const parts = value.split('.');
  if (parts.length !== 3) return null;
  try {
    const header = b64urlJson(parts[0]);
    if (header.alg !== 'RS256') return null;
    const key = state.verificationKeys().get(header.kid);
    if (!key) return null;
    const ok = crypto.verify(
      'sha256',
      Buffer.from(`${parts[0]}.${parts[1]}`),
      key,
      Buffer.from(parts[2], 'base64url'),
    );
    if (!ok) return null;
    const payload = b64urlJson(parts[1]);
    if (payload.iss !== state.issuer || typeof payload.jti !== 'string') return null;
    return payload;
  } catch {
    return null;
  }
}

/**
 * oidc-provider refuses JWT access tokens at introspection/revocation and
 * cannot look them up at userinfo; Keycloak accepts its own JWTs there. A
 * JWT this IdP signed is swapped for its jti (under which provider.mjs stored
 * the token's record); any other JWT for a value that matches nothing.
 */
function jwtToHandle(state, value) {
  if (typeof value !== 'string' || value.split('.').length !== 3) return value;
  const payload = verifyOwnJwt(state, value);
  return payload ? payload.jti : `unknown-${crypto.randomBytes(12).toString('base64url')}`;
}

function applyStatusFault(res, f) {
  const status = f.status ?? 503;
  const headers = {};
  if (f.retry_after !== undefined && f.retry_after !== null) headers['Retry-After'] = String(f.retry_after);
  if (typeof f.body === 'string') {
    res.writeHead(status, {
      'Content-Type': f.content_type ?? 'text/plain',
      'Content-Length': Buffer.byteLength(f.body),
      ...headers,
    });
    res.end(f.body);
    return;
  }
  const body = f.body ?? {
    error: DEFAULT_ERROR_BY_STATUS[status] ?? (status >= 500 ? 'server_error' : 'invalid_request'),
    error_description: `injected fault (HTTP ${status})`,
  };
  sendJson(res, status, body, headers);
}

function applyGarbledFault(res, f) {
  const body = typeof f.body === 'string' ? f.body : '{"access_token": "eyJhbGciOi<<garbled by the test IdP';
  res.writeHead(200, {
    'Content-Type': f.content_type ?? 'application/json',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
  });
  res.end(body);
}

function realmInfo(state) {
  const current = state.signingKeys[0];
  const spki = current.spki.toString('base64');
  return {
    realm: state.cfg.realm,
    public_key: spki,
    'token-service': `${state.issuer}/protocol/openid-connect`,
    'account-service': `${state.issuer}/account`,
    'tokens-not-before': 0,
  };
}

function loginForm(res, url, message) {
  const action = url.pathname;
  const html = `<!DOCTYPE html><html><head><title>test IdP sign-in</title></head><body>
<p>${message}</p>
<form method="get" action="${action}"><input name="username" autofocus><button type="submit">Sign in</button></form>
</body></html>`;
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': Buffer.byteLength(html) });
  res.end(html);
}

/**
 * Interactions: sign-in is automatic for a configured user named by the
 * authorization request's login_hint (or a ?username= on the interaction
 * URL, which the tiny form submits); consent is granted automatically.
 */
async function handleInteraction(state, req, res, url) {
  const { provider } = state;
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    sendJson(res, 400, { error: 'invalid_request', error_description: err.message });
    return;
  }
  const { prompt, params, session, grantId } = details;
  if (prompt.name === 'login') {
    const username = url.searchParams.get('username') ?? params.login_hint;
    const user = username ? state.usersByName.get(username) : undefined;
    if (!user) {
      loginForm(res, url, username ? 'unknown user, try again' : 'sign in as a configured test user');
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: user.id } }, { mergeWithLastSubmission: false });
    return;
  }
  if (prompt.name === 'consent') {
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    if (d.missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(d.missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
    }
    const id = await grant.save();
    const result = grantId ? {} : { consent: { grantId: id } };
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
    return;
  }
  sendJson(res, 400, { error: 'invalid_request', error_description: `unsupported prompt ${prompt.name}` });
}

const delay = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

/**
 * The `hold` fault: the request is processed normally (a refresh grant is
 * spent and rotated, a code redeemed...), but the finished answer is held back
 * for `ms` before it is sent. Counted in `held_responses` once the answer is
 * ready, so a test knows the grant was processed while its client still waits
 * (and can, say, kill the client then).
 */
function holdResponse(state, res, ms) {
  const end = res.end.bind(res);
  res.end = (...args) => {
    state.stats.held_responses += 1;
    setTimeout(() => {
      if (!res.destroyed) end(...args);
    }, ms);
    return res;
  };
}

export function createGatewayHandler(state) {
  return async function gateway(req, res) {
    const started = Date.now();
    if (VERBOSE) {
      res.on('finish', () => {
        console.error(`test-idp: ${req.method} ${(req.originalUrl ?? req.url).split('?')[0]} -> ${res.statusCode} (${Date.now() - started} ms)`);
      });
    }
    try {
      const url = new URL(req.url, 'http://127.0.0.1');
      const { realmPath } = state;
      if (url.pathname !== realmPath && !url.pathname.startsWith(`${realmPath}/`)) {
        sendJson(res, 404, { error: 'Unable to find matching target resource method' });
        return;
      }
      const sub = url.pathname.slice(realmPath.length);
      const endpoint = ENDPOINT_BY_PATH.get(sub);

      let body;
      let form;
      if (req.method === 'POST' && endpoint) {
        body = await readBody(req);
        if (isForm(req)) form = new URLSearchParams(body.toString('utf8'));
      }

      let clientId;
      if (endpoint === 'token' || endpoint === 'introspect' || endpoint === 'revoke') {
        clientId = requestClientId(req, form);
      }
      if (endpoint) {
        state.countRequest(endpoint, { clientId, grantType: form?.get('grant_type') ?? undefined });
        const fault = state.takeFault(endpoint);
        if (fault?.mode === 'hold') holdResponse(state, res, fault.delay_ms ?? 1000);
        else if (fault) {
          switch (fault.mode) {
            case 'status': applyStatusFault(res, fault); return;
            case 'garbled': applyGarbledFault(res, fault); return;
            case 'reset':
              if (typeof req.socket.resetAndDestroy === 'function') req.socket.resetAndDestroy();
              else req.socket.destroy();
              return;
            case 'delay': await delay(fault.delay_ms ?? 1000); break;
            default: break;
          }
        }
      }

      // Keycloak's authorization endpoint refuses a disabled client before anything else,
      // with an error page saying so (an unknown client gets oidc-provider's invalid_client).
      if (sub === ROUTES.authorization && state.clients.get(url.searchParams.get('client_id'))?.disabled) {
        const html = '<!DOCTYPE html><html><head><title>We are sorry...</title></head><body><p id="instruction1" class="instruction">Client disabled.</p></body></html>';
        res.writeHead(400, { 'Content-Type': 'text/html;charset=utf-8', 'Content-Length': Buffer.byteLength(html) });
        res.end(html);
        return;
      }

      if (clientId !== undefined && state.clients.get(clientId)?.disabled) {
        const legacy = state.clients.get(clientId).disabled_style === 'legacy';
        sendJson(res, legacy ? 400 : 401, {
          error: legacy ? 'unauthorized_client' : 'invalid_client',
          error_description: legacy ? 'Invalid client credentials' : 'Invalid client or Invalid client credentials',
        });
        return;
      }

      if ((sub === '' || sub === '/') && req.method === 'GET') {
        sendJson(res, 200, realmInfo(state));
        return;
      }
      if (sub.startsWith('/interaction/')) {
        await handleInteraction(state, req, res, url);
        return;
      }

      let bodyChanged = false;
      if (form && (endpoint === 'introspect' || endpoint === 'revoke') && form.has('token')) {
        form.set('token', jwtToHandle(state, form.get('token')));
        bodyChanged = true;
      }
      if (endpoint === 'userinfo') {
        const auth = req.headers.authorization ?? '';
        if (/^bearer /i.test(auth)) req.headers.authorization = `Bearer ${jwtToHandle(state, auth.slice(7).trim())}`;
        if (form?.has('access_token')) {
          form.set('access_token', jwtToHandle(state, form.get('access_token')));
          bodyChanged = true;
        }
      }
      if (form && endpoint === 'token' && form.get('grant_type') === 'client_credentials') {
        const client = state.clients.get(clientId);
        const requested = (form.get('scope') ?? '').split(' ').filter(Boolean);
        // Keycloak refuses scopes that exist nowhere in the realm (checked
        // here before client authentication, unlike Keycloak)...
        const unknown = requested.filter((x) => !state.knownScopes.has(x));
        if (unknown.length) {
          sendJson(res, 400, { error: 'invalid_scope', error_description: `Invalid scopes: ${unknown.join(' ')}` });
          return;
        }
        // ...and adds the client's default client scopes to every token.
        if (client) {
          const scope = [...new Set([...requested, ...client.default_scopes])].join(' ');
          if (scope) form.set('scope', scope);
          bodyChanged = true;
        }
      }

      req.originalUrl = req.url;
      req.url = req.url.slice(realmPath.length) || '/';
      if (body !== undefined) {
        // The stream is consumed; oidc-provider then reads req.body instead.
        req.body = bodyChanged ? Buffer.from(form.toString(), 'utf8') : body;
      }
      await state.callback(req, res);
    } catch (err) {
      if (!res.headersSent) {
        sendJson(res, err.status ?? 500, { error: err.status === 413 ? 'invalid_request' : 'server_error', error_description: err.message });
      } else {
        res.destroy();
      }
      if (!err.status) console.error(`test-idp: gateway error: ${err.stack ?? err}`);
    }
  };
}
