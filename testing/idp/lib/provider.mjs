// Builds the oidc-provider instance from the IdP's mutable state. It is
// rebuilt (cheaply, state is in the shared adapter) whenever signing keys
// rotate or a client's secret changes.
import Provider from 'oidc-provider';

import TestIdpAdapter from './adapter.mjs';

/** Keycloak's endpoint layout, relative to the realm prefix the provider is mounted on. */
export const ROUTES = {
  authorization: '/protocol/openid-connect/auth',
  token: '/protocol/openid-connect/token',
  jwks: '/protocol/openid-connect/certs',
  introspection: '/protocol/openid-connect/token/introspect',
  revocation: '/protocol/openid-connect/revoke',
  userinfo: '/protocol/openid-connect/userinfo',
  end_session: '/protocol/openid-connect/logout',
  device_authorization: '/protocol/openid-connect/auth/device',
  code_verification: '/protocol/openid-connect/device',
  pushed_authorization_request: '/protocol/openid-connect/ext/par/request',
  backchannel_authentication: '/protocol/openid-connect/ext/ciba/auth',
  registration: '/clients-registrations/openid-connect',
};

/** The single resource server every access token is issued for. */
export const RESOURCE_INDICATOR = 'urn:tokenwarden:test-idp:api';

const BASE_SCOPES = ['openid', 'offline_access', 'profile', 'email', 'roles', 'web-origins', 'acr'];

export function allScopes(cfg) {
  const s = new Set(BASE_SCOPES);
  for (const x of cfg.extra_scopes) s.add(x);
  for (const c of cfg.clients) {
    for (const x of c.default_scopes) s.add(x);
    for (const x of c.scopes ?? []) s.add(x);
  }
  return [...s];
}

function clientMetadata(c) {
  const md = {
    client_id: c.client_id,
    token_endpoint_auth_method: c.auth_method,
    grant_types: c.grants,
    response_types: c.grants.includes('authorization_code') ? ['code'] : [],
    redirect_uris: c.grants.includes('authorization_code') ? c.redirect_uris : [],
  };
  if (c.secret !== undefined && c.auth_method !== 'private_key_jwt' && c.auth_method !== 'none') {
    md.client_secret = c.secret;
  }
  if (c.jwks.length) md.jwks = { keys: c.jwks };
  if (c.scopes) md.scope = [...new Set([...c.scopes, ...c.default_scopes, 'openid', 'offline_access'])].join(' ');
  return md;
}

function rolesClaims(realmRoles, clientRoles) {
  const out = {};
  if (realmRoles?.length) out.realm_access = { roles: [...realmRoles] };
  const ra = {};
  for (const [client, roles] of Object.entries(clientRoles ?? {})) {
    if (roles?.length) ra[client] = { roles: [...roles] };
  }
  if (Object.keys(ra).length) out.resource_access = ra;
  return out;
}

/**
 * Keycloak-shaped claims for an access token (AccessToken for user grants,
 * ClientCredentials for service accounts). Used both in the JWT and, through
 * the token's stored `extra`, in introspection responses.
 */
export function keycloakClaims(state, token) {
  const client = state.clients.get(token.clientId);
  const base = {
    typ: 'Bearer',
    azp: token.clientId,
    acr: '1',
  };
  if (token.kind === 'ClientCredentials') {
    return {
      ...base,
      sub: client?.service_account_id,
      preferred_username: `service-account-${token.clientId}`,
      email_verified: false,
      clientHost: '127.0.0.1',
      clientAddress: '127.0.0.1',
      client_id: token.clientId,
      ...rolesClaims(client?.realm_roles, client?.client_roles),
    };
  }
  const user = state.usersById.get(token.accountId);
  return {
    ...base,
    preferred_username: user?.username,
    email: user?.email,
    email_verified: user?.email ? true : undefined,
    name: user?.name,
    ...rolesClaims(user?.realm_roles, user?.client_roles),
  };
}

function htmlEscape(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function buildProvider(state) {
  const { cfg } = state;
  const scopes = allScopes(cfg);
  const audience = Array.isArray(cfg.audience) ? cfg.audience[0] : cfg.audience;
  const accessTtl = () => state.settings.access_token_ttl;

  const provider = new Provider(state.issuer, {
    adapter: TestIdpAdapter,
    clients: cfg.clients.map(clientMetadata),
    jwks: { keys: state.signingKeys.map((k) => k.privateJwk) },
    cookies: { keys: [state.cookieKey] },
    clockTolerance: 5,
    routes: ROUTES,
    scopes,
    claims: {
      acr: null,
      auth_time: null,
      iss: null,
      sid: null,
      openid: ['sub'],
      profile: ['preferred_username', 'name'],
      email: ['email', 'email_verified'],
    },
    clientBasedCORS: () => true,
    rotateRefreshToken: true,
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    ttl: {
      AccessToken: accessTtl,
      ClientCredentials: accessTtl,
      IdToken: accessTtl,
      RefreshToken: () => state.settings.refresh_token_ttl,
      AuthorizationCode: () => 60,
      Grant: () => 30 * 24 * 3600,
      Session: () => 24 * 3600,
      Interaction: () => 3600,
      DeviceCode: () => 600,
      BackchannelAuthenticationRequest: () => 600,
      PreAuthorizedCode: () => 600,
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true, allowedPolicy: async () => true },
      revocation: {
        enabled: true,
        allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId,
      },
      userinfo: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx, form) => {
          ctx.body = `<!DOCTYPE html><html><body>${form}<button type="submit" form="op.logoutForm" value="yes" name="logout">Sign out</button></body></html>`;
        },
        postLogoutSuccessSource: async (ctx) => {
          ctx.body = '<!DOCTYPE html><html><body>signed out</body></html>';
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf ?? RESOURCE_INDICATOR,
        useGrantedResource: async () => true,
        // Like Keycloak, every token is for the one configured audience; any
        // resource indicator a client sends resolves to it.
        getResourceServerInfo: async () => ({
          scope: scopes.join(' '),
          audience,
          accessTokenTTL: state.settings.access_token_ttl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    extraTokenClaims: async (_ctx, token) => keycloakClaims(state, token),
    formats: {
      customizers: {
        jwt: async (_ctx, token, jwt) => {
          // Keycloak puts typ "JWT" in the header of its access tokens.
          jwt.header = { typ: 'JWT' };
          if (token.kind === 'ClientCredentials') {
            const client = state.clients.get(token.clientId);
            if (client) jwt.payload.sub = client.service_account_id;
          }
          if (Array.isArray(cfg.audience)) jwt.payload.aud = [...cfg.audience];
        },
      },
    },
    findAccount: async (_ctx, sub) => {
      const user = state.usersById.get(sub) ?? state.usersByName.get(sub);
      if (!user || user.id !== sub) return undefined;
      return {
        accountId: user.id,
        claims: async () => ({
          sub: user.id,
          preferred_username: user.username,
          name: user.name,
          email: user.email,
          email_verified: user.email ? true : undefined,
        }),
      };
    },
    interactions: {
      url: async (_ctx, interaction) => `${state.realmPath}/interaction/${interaction.uid}`,
    },
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><html><body><h1>error</h1>${Object.entries(out)
        .map(([k, v]) => `<pre>${htmlEscape(k)}: ${htmlEscape(v)}</pre>`).join('')}</body></html>`;
    },
  });

  // JWT access tokens are not stored by oidc-provider, so on their own they
  // could not be introspected, revoked or used at userinfo. Keep a record of
  // each one under its jti; the gateway swaps a verified JWT for its jti on
  // those endpoints (see gateway.mjs).
  const remember = async (token) => {
    const record = {
      iat: Math.floor(Date.now() / 1000),
      exp: token.exp,
      jti: token.jti,
      kind: token.kind,
      clientId: token.clientId,
      accountId: token.accountId,
      grantId: token.grantId,
      gty: token.gty,
      sid: token.sid,
      sessionUid: token.sessionUid,
      expiresWithSession: token.expiresWithSession,
      aud: token.aud,
      extra: token.extra,
      scope: token.scope,
      claims: token.claims,
    };
    for (const k of Object.keys(record)) if (record[k] === undefined) delete record[k];
    const ttl = typeof token.exp === 'number' ? Math.max(1, token.exp - record.iat) : accessTtl();
    await provider[token.kind].adapter.upsert(token.jti, record, ttl);
  };
  const onIssued = (token) => {
    remember(token).catch((err) => console.error(`test-idp: could not record issued token: ${err.message}`));
  };
  provider.on('access_token.issued', onIssued);
  provider.on('client_credentials.issued', onIssued);

  const logError = (ctx, err) => {
    const route = ctx?.oidc?.route ?? '?';
    console.error(`test-idp: ${route}: ${err.error ?? err.name}${err.error_detail ? ` (${err.error_detail})` : ''}`);
  };
  for (const ev of ['grant.error', 'introspection.error', 'revocation.error', 'userinfo.error', 'jwks.error', 'discovery.error', 'authorization.error', 'end_session.error']) {
    provider.on(ev, logError);
  }
  // Strict rotation: a spent refresh token presented again (the grant is then revoked).
  provider.on('grant.error', (_ctx, err) => {
    if (err.error_detail === 'refresh token already used') state.stats.refresh_token_reuse += 1;
  });
  provider.on('server_error', (ctx, err) => {
    console.error(`test-idp: server_error on ${ctx?.method} ${ctx?.path}: ${err.stack ?? err}`);
  });

  return provider;
}
