// Smoke tests of the test IdP itself (node's built-in test runner):
//   cd testing/idp && npm ci && npm test
import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SERVER = path.join(HERE, '..', 'server.mjs');
const KEYS = path.join(HERE, '..', '..', 'fixtures', 'keys');

async function startIdp(config) {
  const args = [SERVER];
  let cfgFile;
  if (config) {
    cfgFile = path.join(fs.mkdtempSync(path.join(process.env.TMPDIR ?? '/tmp', 'tw-idp-')), 'config.json');
    fs.writeFileSync(cfgFile, JSON.stringify(config));
    args.push('--config', cfgFile);
  }
  const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const ready = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`IdP not ready in 15 s; stderr: ${stderr}`)), 15000);
    child.stdout.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve(JSON.parse(out.slice(0, nl)));
      }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`IdP exited ${code}: ${stderr}`)); });
  });
  const control = `http://127.0.0.1:${ready.control_port}`;
  return {
    ...ready,
    child,
    stderr: () => stderr,
    tokenUrl: `${ready.issuer}/protocol/openid-connect/token`,
    async ctl(method, p, body) {
      const r = await fetch(`${control}${p}`, {
        method,
        headers: body ? { 'content-type': 'application/json' } : {},
        body: body ? JSON.stringify(body) : undefined,
      });
      const json = await r.json();
      if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${JSON.stringify(json)}`);
      return json;
    },
    stop() {
      child.stdin.end();
      return new Promise((resolve) => { child.on('exit', resolve); setTimeout(() => { child.kill('SIGKILL'); resolve(); }, 3000).unref(); });
    },
  };
}

function form() {
  return { 'content-type': 'application/x-www-form-urlencoded' };
}

async function postForm(url, params, headers = {}) {
  const r = await fetch(url, {
    method: 'POST',
    headers: { ...form(), ...headers },
    body: new URLSearchParams(params).toString(),
  });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, headers: r.headers, text, json };
}

function basic(id, secret) {
  return { authorization: `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}` };
}

function decodeJwt(t) {
  const [h, p] = t.split('.');
  return { header: JSON.parse(Buffer.from(h, 'base64url')), payload: JSON.parse(Buffer.from(p, 'base64url')) };
}

function signAssertion({ alg, keyFile, clientId, aud, jti = crypto.randomUUID() }) {
  const key = crypto.createPrivateKey(fs.readFileSync(keyFile));
  const now = Math.floor(Date.now() / 1000);
  const header = Buffer.from(JSON.stringify({ alg, typ: 'JWT' })).toString('base64url');
  const payload = Buffer.from(JSON.stringify({
    iss: clientId, sub: clientId, aud, jti, iat: now, exp: now + 60,
  })).toString('base64url');
  const input = Buffer.from(`${header}.${payload}`);
  let sig;
  if (alg === 'RS256') sig = crypto.sign('sha256', input, key);
  if (alg === 'PS256') sig = crypto.sign('sha256', input, { key, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
  if (alg === 'ES256') sig = crypto.sign('sha256', input, { key, dsaEncoding: 'ieee-p1363' });
  return `${header}.${payload}.${sig.toString('base64url')}`;
}

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

describe('test IdP (defaults)', () => {
  let idp;
  before(async () => { idp = await startIdp(); });
  after(async () => { await idp?.stop(); });

  it('serves Keycloak-shaped discovery', async () => {
    const d = await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json();
    assert.equal(d.issuer, idp.issuer);
    assert.equal(d.token_endpoint, `${idp.issuer}/protocol/openid-connect/token`);
    assert.equal(d.jwks_uri, `${idp.issuer}/protocol/openid-connect/certs`);
    assert.equal(d.introspection_endpoint, `${idp.issuer}/protocol/openid-connect/token/introspect`);
    assert.equal(d.revocation_endpoint, `${idp.issuer}/protocol/openid-connect/revoke`);
    assert.ok(d.grant_types_supported.includes('client_credentials'));
  });

  it('issues Keycloak-shaped JWT access tokens by client_credentials', async () => {
    const r = await postForm(idp.tokenUrl, { grant_type: 'client_credentials' }, basic('agent-basic', 'agent-basic-secret'));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.token_type, 'Bearer');
    assert.equal(r.json.expires_in, 60);
    const { header, payload } = decodeJwt(r.json.access_token);
    assert.equal(header.alg, 'RS256');
    assert.ok(header.kid);
    assert.equal(payload.azp, 'agent-basic');
    assert.equal(payload.preferred_username, 'service-account-agent-basic');
    assert.deepEqual(payload.realm_access, { roles: ['agent'] });
    assert.deepEqual(payload.resource_access, { api: { roles: ['read'] } });
    assert.equal(payload.aud, 'api');
    assert.equal(payload.iss, idp.issuer);
    assert.match(payload.sub, /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const clients = await idp.ctl('GET', '/clients');
    assert.equal(payload.sub, clients.find((c) => c.client_id === 'agent-basic').service_account_id);
  });

  for (const [alg, keyFile] of [['RS256', 'agent-rsa.pem'], ['PS256', 'agent-rsa.pem'], ['ES256', 'agent-ec.pem']]) {
    it(`accepts a private_key_jwt ${alg} assertion once (jti replay rejected)`, async () => {
      const assertion = signAssertion({ alg, keyFile: path.join(KEYS, keyFile), clientId: 'agent-jwt', aud: idp.tokenUrl });
      const params = { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: assertion };
      const ok = await postForm(idp.tokenUrl, params);
      assert.equal(ok.status, 200, ok.text);
      assert.equal(decodeJwt(ok.json.access_token).payload.azp, 'agent-jwt');
      const replay = await postForm(idp.tokenUrl, params);
      assert.equal(replay.status, 401, replay.text);
      assert.equal(replay.json.error, 'invalid_client');
    });
  }

  it('accepts the issuer as assertion audience and rejects an untrusted key', async () => {
    const good = signAssertion({ alg: 'ES256', keyFile: path.join(KEYS, 'agent-ec.pem'), clientId: 'agent-jwt', aud: idp.issuer });
    const r = await postForm(idp.tokenUrl, { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: good });
    assert.equal(r.status, 200, r.text);
    const bad = signAssertion({ alg: 'RS256', keyFile: path.join(KEYS, 'untrusted-rsa.pem'), clientId: 'agent-jwt', aud: idp.tokenUrl });
    const r2 = await postForm(idp.tokenUrl, { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: bad });
    assert.equal(r2.status, 401, r2.text);
  });

  it('rejects unknown scopes and keeps requested known ones', async () => {
    const bad = await postForm(idp.tokenUrl, { grant_type: 'client_credentials', scope: 'nonsense' }, basic('agent-basic', 'agent-basic-secret'));
    assert.equal(bad.status, 400, bad.text);
    assert.equal(bad.json.error, 'invalid_scope');
    const ok = await postForm(idp.tokenUrl, { grant_type: 'client_credentials', scope: 'roles' }, basic('agent-basic', 'agent-basic-secret'));
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.scope, 'roles profile email');
    assert.equal(decodeJwt(ok.json.access_token).payload.scope, 'roles profile email');
  });

  it('introspects and revokes its JWT access tokens', async () => {
    const t = (await postForm(idp.tokenUrl, { grant_type: 'client_credentials' }, basic('agent-basic', 'agent-basic-secret'))).json.access_token;
    const url = `${idp.issuer}/protocol/openid-connect/token/introspect`;
    const i1 = await postForm(url, { token: t }, basic('agent-post', 'agent-post-secret'));
    assert.equal(i1.status, 200, i1.text);
    assert.equal(i1.json.active, true);
    assert.equal(i1.json.client_id, 'agent-basic');
    assert.equal(i1.json.preferred_username, 'service-account-agent-basic');
    assert.equal(i1.json.sub, decodeJwt(t).payload.sub);
    const rv = await postForm(`${idp.issuer}/protocol/openid-connect/revoke`, { token: t }, basic('agent-basic', 'agent-basic-secret'));
    assert.equal(rv.status, 200, rv.text);
    const i2 = await postForm(url, { token: t }, basic('agent-post', 'agent-post-secret'));
    assert.equal(i2.json.active, false);
    const forged = `${t.slice(0, -4)}AAAA`;
    const i3 = await postForm(url, { token: forged }, basic('agent-post', 'agent-post-secret'));
    assert.equal(i3.json.active, false);
    const stats = await idp.ctl('GET', '/stats');
    assert.equal(stats.introspection_requests, 3);
  });

  it('mints refresh tokens that rotate and are single use', async () => {
    const { refresh_token: rt1 } = await idp.ctl('POST', '/refresh-token', { client_id: 'refresh-client', username: 'alice', scope: 'openid offline_access' });
    const auth = basic('refresh-client', 'refresh-client-secret');
    const r1 = await postForm(idp.tokenUrl, { grant_type: 'refresh_token', refresh_token: rt1 }, auth);
    assert.equal(r1.status, 200, r1.text);
    assert.ok(r1.json.refresh_token && r1.json.refresh_token !== rt1);
    const users = await idp.ctl('GET', '/users');
    const at = decodeJwt(r1.json.access_token).payload;
    assert.equal(at.sub, users.find((u) => u.username === 'alice').id);
    assert.equal(at.preferred_username, 'alice');
    assert.equal(at.azp, 'refresh-client');
    const again = await postForm(idp.tokenUrl, { grant_type: 'refresh_token', refresh_token: rt1 }, auth);
    assert.equal(again.status, 400, again.text);
    assert.equal(again.json.error, 'invalid_grant');
  });

  it('counts a spent refresh token presented again, and keeps it valid with reuse grace', async () => {
    const auth = basic('refresh-client', 'refresh-client-secret');
    await idp.ctl('POST', '/stats/reset');
    const { refresh_token: strict } = await idp.ctl('POST', '/refresh-token', { client_id: 'refresh-client', username: 'alice' });
    assert.equal((await postForm(idp.tokenUrl, { grant_type: 'refresh_token', refresh_token: strict }, auth)).status, 200);
    const spent = await postForm(idp.tokenUrl, { grant_type: 'refresh_token', refresh_token: strict }, auth);
    assert.equal(spent.json.error, 'invalid_grant');
    assert.equal((await idp.ctl('GET', '/stats')).refresh_token_reuse, 1);

    await idp.ctl('POST', '/settings', { refresh_token_reuse_grace: true });
    try {
      const { refresh_token: rt1 } = await idp.ctl('POST', '/refresh-token', { client_id: 'refresh-client', username: 'alice' });
      const r1 = await postForm(idp.tokenUrl, { grant_type: 'refresh_token', refresh_token: rt1 }, auth);
      assert.equal(r1.status, 200, r1.text);
      assert.notEqual(r1.json.refresh_token, rt1);
      const reused = await postForm(idp.tokenUrl, { grant_type: 'refresh_token', refresh_token: rt1 }, auth);
      assert.equal(reused.status, 200, reused.text);
      const newest = await postForm(idp.tokenUrl, { grant_type: 'refresh_token', refresh_token: reused.json.refresh_token }, auth);
      assert.equal(newest.status, 200, newest.text);
      assert.equal((await idp.ctl('GET', '/stats')).refresh_token_reuse, 2);
    } finally {
      await idp.ctl('POST', '/settings', { refresh_token_reuse_grace: false });
    }
    await assert.rejects(idp.ctl('POST', '/settings', { refresh_token_reuse_grace: 'yes' }));
  });

  it('holds a processed answer back (hold fault): the grant is spent before the client hears of it', async () => {
    const auth = basic('refresh-client', 'refresh-client-secret');
    const { refresh_token: rt } = await idp.ctl('POST', '/refresh-token', { client_id: 'refresh-client', username: 'alice' });
    await idp.ctl('POST', '/stats/reset');
    await idp.ctl('POST', '/fault', { endpoint: 'token', mode: 'hold', delay_ms: 600, count: 1 });
    const t0 = Date.now();
    const pending = postForm(idp.tokenUrl, { grant_type: 'refresh_token', refresh_token: rt }, auth);
    let held = 0;
    while (held === 0 && Date.now() - t0 < 5000) {
      await new Promise((r) => { setTimeout(r, 20); });
      held = (await idp.ctl('GET', '/stats')).held_responses;
    }
    assert.equal(held, 1);
    assert.ok(Date.now() - t0 < 600, 'processed before the hold ends');
    // Already spent while the first client still waits for its answer.
    const second = await postForm(idp.tokenUrl, { grant_type: 'refresh_token', refresh_token: rt }, auth);
    assert.equal(second.json.error, 'invalid_grant');
    const first = await pending;
    assert.equal(first.status, 200, first.text);
    assert.ok(Date.now() - t0 >= 580);
    assert.ok(first.json.refresh_token);
  });

  it('injects faults and counts faulted requests', async () => {
    await idp.ctl('POST', '/stats/reset');
    await idp.ctl('POST', '/fault', { endpoint: 'token', mode: 'status', status: 503, retry_after: '7', body: null, count: 1 });
    const r = await postForm(idp.tokenUrl, { grant_type: 'client_credentials' }, basic('agent-basic', 'agent-basic-secret'));
    assert.equal(r.status, 503);
    assert.equal(r.headers.get('retry-after'), '7');
    assert.equal(r.json.error, 'temporarily_unavailable');
    const ok = await postForm(idp.tokenUrl, { grant_type: 'client_credentials' }, basic('agent-basic', 'agent-basic-secret'));
    assert.equal(ok.status, 200);
    await idp.ctl('POST', '/fault', { endpoint: 'token', mode: 'garbled', count: 1 });
    const g = await postForm(idp.tokenUrl, { grant_type: 'client_credentials' }, basic('agent-basic', 'agent-basic-secret'));
    assert.equal(g.status, 200);
    assert.equal(g.json, undefined);
    await idp.ctl('POST', '/fault', { endpoint: 'token', mode: 'reset', count: 1 });
    await assert.rejects(postForm(idp.tokenUrl, { grant_type: 'client_credentials' }, basic('agent-basic', 'agent-basic-secret')));
    await idp.ctl('POST', '/fault', { endpoint: 'jwks', mode: 'delay', delay_ms: 300, count: 1 });
    const t0 = Date.now();
    const j = await fetch(`${idp.issuer}/protocol/openid-connect/certs`);
    assert.equal(j.status, 200);
    assert.ok(Date.now() - t0 >= 280);
    const stats = await idp.ctl('GET', '/stats');
    assert.equal(stats.token_requests, 4);
    assert.equal(stats.token_requests_by_client['agent-basic'], 4);
    assert.equal(stats.jwks_requests, 1);
  });

  it('goes down and up on the same port', async () => {
    await idp.ctl('POST', '/down');
    await assert.rejects(fetch(`${idp.issuer}/.well-known/openid-configuration`));
    await idp.ctl('POST', '/up');
    const r = await fetch(`${idp.issuer}/.well-known/openid-configuration`);
    assert.equal(r.status, 200);
  });

  it('rotates keys', async () => {
    const before = (await (await fetch(`${idp.issuer}/protocol/openid-connect/certs`)).json()).keys.map((k) => k.kid);
    const { kid } = await idp.ctl('POST', '/rotate-keys', { keep_old: true });
    const afterKids = (await (await fetch(`${idp.issuer}/protocol/openid-connect/certs`)).json()).keys.map((k) => k.kid);
    assert.ok(!before.includes(kid));
    assert.deepEqual(afterKids, [kid, ...before]);
    const r = await postForm(idp.tokenUrl, { grant_type: 'client_credentials' }, basic('agent-basic', 'agent-basic-secret'));
    assert.equal(decodeJwt(r.json.access_token).header.kid, kid);
    await idp.ctl('POST', '/rotate-keys', { keep_old: false });
    const only = (await (await fetch(`${idp.issuer}/protocol/openid-connect/certs`)).json()).keys;
    assert.equal(only.length, 1);
  });

  it('changes TTL, secrets and disables clients', async () => {
    await idp.ctl('POST', '/settings', { access_token_ttl: 5 });
    const r = await postForm(idp.tokenUrl, { grant_type: 'client_credentials' }, basic('agent-basic', 'agent-basic-secret'));
    assert.equal(r.json.expires_in, 5);
    const p = decodeJwt(r.json.access_token).payload;
    assert.equal(p.exp - p.iat, 5);
    await idp.ctl('POST', '/clients/agent-post/secret', { secret: 'new-secret' });
    const old = await postForm(idp.tokenUrl, { grant_type: 'client_credentials', client_id: 'agent-post', client_secret: 'agent-post-secret' });
    assert.equal(old.status, 401);
    const neu = await postForm(idp.tokenUrl, { grant_type: 'client_credentials', client_id: 'agent-post', client_secret: 'new-secret' });
    assert.equal(neu.status, 200, neu.text);
    await idp.ctl('POST', '/clients/agent-basic/disable');
    const d = await postForm(idp.tokenUrl, { grant_type: 'client_credentials' }, basic('agent-basic', 'agent-basic-secret'));
    assert.equal(d.status, 401);
    assert.equal(d.json.error, 'invalid_client');
    // Like Keycloak, the authorization endpoint says so; an unknown client is invalid_client there.
    const auth = (client) => fetch(`${idp.issuer}/protocol/openid-connect/auth?${new URLSearchParams({ client_id: client, response_type: 'code', scope: 'openid' })}`);
    const disabledPage = await auth('agent-basic');
    assert.equal(disabledPage.status, 400);
    assert.match(await disabledPage.text(), /Client disabled\./);
    const unknownPage = await auth('no-such-client');
    assert.match(await unknownPage.text(), /invalid_client/);
    await idp.ctl('POST', '/clients/agent-basic/enable');
    const enabledPage = await auth('agent-basic');
    assert.doesNotMatch(await enabledPage.text(), /Client disabled|invalid_client/);
  });

  it('runs a real authorization-code flow with login_hint auto sign-in', async () => {
    const jar = new Map();
    const send = async (url) => {
      const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
      const r = await fetch(url, { redirect: 'manual', headers: cookie ? { cookie } : {} });
      for (const c of r.headers.getSetCookie()) {
        const [kv] = c.split(';');
        const i = kv.indexOf('=');
        jar.set(kv.slice(0, i), kv.slice(i + 1));
      }
      return r;
    };
    const q = new URLSearchParams({
      client_id: 'refresh-client', response_type: 'code', redirect_uri: 'http://127.0.0.1/cb',
      scope: 'openid offline_access', prompt: 'consent', login_hint: 'alice', state: 'xyz',
    });
    let url = `${idp.issuer}/protocol/openid-connect/auth?${q}`;
    let code;
    for (let i = 0; i < 10 && !code; i += 1) {
      const r = await send(url);
      assert.ok(r.status === 302 || r.status === 303, `step ${i}: ${r.status} ${await r.text()}`);
      url = new URL(r.headers.get('location'), url).href;
      if (url.startsWith('http://127.0.0.1/cb')) code = new URL(url).searchParams.get('code');
    }
    assert.ok(code, 'no code');
    const t = await postForm(idp.tokenUrl, { grant_type: 'authorization_code', code, redirect_uri: 'http://127.0.0.1/cb' }, basic('refresh-client', 'refresh-client-secret'));
    assert.equal(t.status, 200, t.text);
    assert.ok(t.json.refresh_token);
    assert.equal(decodeJwt(t.json.access_token).payload.preferred_username, 'alice');
  });

  it('prints nothing but the ready line on stdout and no secret on stderr', () => {
    for (const s of ['agent-basic-secret', 'agent-post-secret', 'refresh-client-secret', 'new-secret']) {
      assert.ok(!idp.stderr().includes(s), `stderr contains ${s}`);
    }
  });
});

describe('test IdP (custom config)', () => {
  let idp;
  before(async () => {
    idp = await startIdp({
      realm: 'corp',
      audience: ['api', 'account'],
      access_token_ttl: 30,
      clients: [
        { client_id: 'narrow', secret: 'narrow-secret', scopes: ['read'], service_account_id: '0d0c6c6e-0000-4000-8000-000000000001' },
        { client_id: 'wide', secret: 'wide-secret', scopes: ['read', 'write'] },
        { client_id: 'pub-jwt', auth_method: 'private_key_jwt', public_key_pem_files: [path.join(KEYS, 'agent-ec.pub.pem')] },
      ],
    });
  });
  after(async () => { await idp?.stop(); });

  it('uses the realm, audience list, TTL and service account id', async () => {
    assert.ok(idp.issuer.endsWith('/realms/corp'));
    const r = await postForm(idp.tokenUrl, { grant_type: 'client_credentials', scope: 'read' }, basic('narrow', 'narrow-secret'));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.expires_in, 30);
    const { payload } = decodeJwt(r.json.access_token);
    assert.deepEqual(payload.aud, ['api', 'account']);
    assert.equal(payload.sub, '0d0c6c6e-0000-4000-8000-000000000001');
    assert.deepEqual(payload.realm_access, { roles: ['default-roles-corp'] });
    assert.equal(payload.resource_access, undefined);
    assert.equal(payload.scope, 'read profile email');
  });

  it('enforces a client scope allow-list', async () => {
    const r = await postForm(idp.tokenUrl, { grant_type: 'client_credentials', scope: 'write' }, basic('narrow', 'narrow-secret'));
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.error, 'invalid_scope');
  });

  it('trusts a public PEM for private_key_jwt', async () => {
    const assertion = signAssertion({ alg: 'ES256', keyFile: path.join(KEYS, 'agent-ec.pem'), clientId: 'pub-jwt', aud: idp.tokenUrl });
    const r = await postForm(idp.tokenUrl, { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: assertion });
    assert.equal(r.status, 200, r.text);
  });
});
