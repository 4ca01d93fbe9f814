//! The OAuth2 logic, free of HTTP types: client authentication, the grants, introspection and
//! revocation, over the loaded realms, their keys and the in-memory token records.

use crate::claims::{TokenContext, access_claims};
use crate::keys::RealmKeys;
use crate::realm::{Client, ClientAuth, ClientSecret, Realm};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tw_core::{Clock, TokenFingerprint, UnixTime};

const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
pub(crate) const INVALID_CLIENT: &str = "Invalid client or Invalid client credentials";
const EXPIRED_REFRESH_RETENTION: Duration = Duration::from_secs(3600);
const JWT_AUTH_FAILED: &str = "Client authentication with signed JWT failed";

/// An OAuth2 error answer (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
    /// Answer with `WWW-Authenticate: Basic` (the client tried HTTP Basic).
    pub basic_challenge: bool,
}

impl OAuthError {
    fn new(status: u16, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            basic_challenge: false,
        }
    }
    pub(crate) fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(401, "invalid_client", description)
    }
    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(400, "invalid_request", description)
    }
    fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(400, "invalid_grant", description)
    }
    fn unauthorized_client(description: impl Into<String>) -> Self {
        Self::new(400, "unauthorized_client", description)
    }
    /// Keycloak's answer to a client without a service account asking for a token.
    fn no_service_account() -> Self {
        Self::new(
            401,
            "unauthorized_client",
            "Client not enabled to retrieve service account",
        )
    }
    /// Keycloak answers every failed client assertion this way (400, `invalid_client`).
    fn jwt_failed(reason: &str) -> Self {
        Self::new(
            400,
            "invalid_client",
            format!("{JWT_AUTH_FAILED}: {reason}"),
        )
    }
}

/// One request to the token, introspection or revocation endpoint. No `Debug`: the form holds
/// secrets, assertions and tokens.
#[derive(Default)]
pub(crate) struct Request {
    pub form: BTreeMap<String, String>,
    /// Client id and secret from `Authorization: Basic`.
    pub basic: Option<(String, tw_core::Secret)>,
    pub peer: Option<IpAddr>,
}

impl Request {
    fn param(&self, name: &str) -> Option<&str> {
        self.form
            .get(name)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// Which endpoint authenticates the client (they differ in who may call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Token,
    Introspect,
    Revoke,
}

#[derive(Debug)]
struct RefreshRecord {
    realm: String,
    client_id: String,
    sub: String,
    username: String,
    chain: u64,
    generation: u64,
    uses: u32,
    iat: UnixTime,
    exp: UnixTime,
    jti: String,
    scope: Vec<String>,
    scope_claim: String,
}

#[derive(Debug)]
struct Chain {
    started: UnixTime,
    next_generation: u64,
    highest_used: u64,
    revoked: bool,
}

/// Server-side token records. Keys are SHA-256 fingerprints; tokens themselves are never kept.
#[derive(Debug, Default)]
pub(crate) struct Records {
    refresh: HashMap<TokenFingerprint, RefreshRecord>,
    chains: HashMap<u64, Chain>,
    next_chain: u64,
    /// (realm, jti) of revoked access tokens → their expiry.
    revoked_access: HashMap<(String, String), UnixTime>,
    /// (realm, client, jti) of used client assertions → their expiry.
    used_assertions: HashMap<(String, String, String), UnixTime>,
}

impl Records {
    fn prune(&mut self, now: UnixTime) {
        // Expired refresh tokens are kept a while so their use is answered "Token is not active".
        self.refresh
            .retain(|_, r| r.exp.plus(EXPIRED_REFRESH_RETENTION) > now);
        let live: std::collections::HashSet<u64> = self.refresh.values().map(|r| r.chain).collect();
        self.chains.retain(|id, _| live.contains(id));
        self.revoked_access.retain(|_, exp| *exp > now);
        self.used_assertions.retain(|_, exp| *exp > now);
    }
}

/// Lifetimes from the settings, overriding the realm's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lifetimes {
    pub access: Option<Duration>,
    pub refresh: Option<Duration>,
}

/// Everything one request needs: the realm (a snapshot), its keys and the shared records.
pub(crate) struct Issuing<'a> {
    pub realm: &'a Realm,
    pub issuer: &'a str,
    pub keys: &'a Mutex<BTreeMap<String, RealmKeys>>,
    pub records: &'a Mutex<Records>,
    pub clock: &'a Arc<dyn Clock>,
    pub lifetimes: Lifetimes,
}

impl Issuing<'_> {
    fn now(&self) -> UnixTime {
        self.clock.now()
    }

    fn token_endpoint(&self) -> String {
        format!("{}/protocol/openid-connect/token", self.issuer)
    }

    pub fn token(&self, req: &Request) -> Result<Value, OAuthError> {
        self.records.lock().prune(self.now());
        let Some(grant) = req.param("grant_type") else {
            return Err(OAuthError::invalid_request(
                "Missing form parameter: grant_type",
            ));
        };
        match grant {
            "client_credentials" => {
                let client = self.authenticate(req, Endpoint::Token)?;
                self.client_credentials(client, req)
            }
            "refresh_token" => {
                let client = self.authenticate(req, Endpoint::Token)?;
                self.refresh(client, req)
            }
            _ => Err(OAuthError::new(
                400,
                "unsupported_grant_type",
                "Unsupported grant_type",
            )),
        }
    }

    /// Finds and authenticates the calling client (secret by Basic or form, or a signed JWT).
    pub fn authenticate(&self, req: &Request, endpoint: Endpoint) -> Result<&Client, OAuthError> {
        let form_secret = req.param("client_secret");
        let assertion = req.param("client_assertion");
        let methods_used = [
            req.basic.is_some(),
            form_secret.is_some(),
            assertion.is_some(),
        ]
        .iter()
        .filter(|used| **used)
        .count();
        if methods_used > 1 {
            return Err(OAuthError::invalid_request(
                "More than one client authentication method was used",
            ));
        }
        let basic = req.basic.is_some();
        let challenge = |mut e: OAuthError| {
            e.basic_challenge = basic && e.status == 401;
            e
        };
        let assertion_sub = assertion.and_then(|a| {
            jsonwebtoken::dangerous::insecure_decode::<Value>(a)
                .ok()
                .and_then(|d| {
                    d.claims
                        .get("sub")
                        .and_then(Value::as_str)
                        .map(String::from)
                })
        });
        let client_id = req
            .basic
            .as_ref()
            .map(|(id, _)| id.clone())
            .or_else(|| req.param("client_id").map(String::from))
            .or(assertion_sub);
        let Some(client_id) = client_id else {
            return Err(challenge(OAuthError::invalid_client(INVALID_CLIENT)));
        };
        let Some(client) = self.realm.clients.get(&client_id) else {
            return Err(challenge(OAuthError::invalid_client(INVALID_CLIENT)));
        };
        if !client.enabled {
            return Err(challenge(OAuthError::invalid_client(INVALID_CLIENT)));
        }
        if let Some(a) = assertion {
            let Some(kind) = req.param("client_assertion_type") else {
                return Err(OAuthError::jwt_failed("client_assertion_type is missing"));
            };
            if kind != JWT_BEARER_ASSERTION {
                return Err(OAuthError::jwt_failed("unknown client_assertion_type"));
            }
            self.check_assertion(client, a)?;
        } else if let Some(secret) = req.basic.as_ref().map(|(_, s)| s.expose()).or(form_secret) {
            self.check_secret(client, secret).map_err(challenge)?;
        } else if !client.public {
            return Err(challenge(OAuthError::new(
                401,
                "unauthorized_client",
                "Client secret not provided in request",
            )));
        }
        match endpoint {
            Endpoint::Token | Endpoint::Revoke if client.bearer_only => Err(OAuthError::new(
                400,
                "invalid_client",
                "Bearer-only not allowed",
            )),
            Endpoint::Introspect if client.public => Err(OAuthError::invalid_client(
                "Public client is not permitted to invoke introspection endpoint",
            )),
            _ => Ok(client),
        }
    }

    fn check_secret(&self, client: &Client, given: &str) -> Result<(), OAuthError> {
        if client.public {
            // Keycloak ignores a secret sent by a public client.
            return Ok(());
        }
        match &client.auth {
            ClientAuth::Secret => {}
            ClientAuth::Jwt(_) => return Err(OAuthError::invalid_client(INVALID_CLIENT)),
            ClientAuth::Unsupported(kind) => {
                return Err(OAuthError::invalid_client(format!(
                    "{INVALID_CLIENT} (the client's authenticator {kind} is not supported by the dev issuer)"
                )));
            }
        }
        match &client.secret {
            ClientSecret::Given(expected) => aws_lc_rs::constant_time::verify_slices_are_equal(
                expected.expose().as_bytes(),
                given.as_bytes(),
            )
            .map_err(|_| OAuthError::invalid_client(INVALID_CLIENT)),
            ClientSecret::Masked => Err(OAuthError::invalid_client(format!(
                "{INVALID_CLIENT} (the realm export masks this client's secret; see the dev issuer's start-up report for how to supply it)"
            ))),
            ClientSecret::None => Err(OAuthError::invalid_client(INVALID_CLIENT)),
        }
    }

    /// RFC 7523 client authentication: signature by a key of the client, `iss` = `sub` = client
    /// id, `aud` naming this realm, not expired (by the injected clock), `jti` used once.
    fn check_assertion(&self, client: &Client, assertion: &str) -> Result<(), OAuthError> {
        let ClientAuth::Jwt(keys) = &client.auth else {
            return Err(OAuthError::jwt_failed(
                "the client is not configured for signed JWT authentication",
            ));
        };
        let header = jsonwebtoken::decode_header(assertion)
            .map_err(|_| OAuthError::jwt_failed("the assertion is not a JWT"))?;
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(OAuthError::jwt_failed(
                "HMAC-signed assertions (client-secret-jwt) are not supported",
            ));
        }
        if client.assertion_alg.is_some_and(|a| a != header.alg) {
            return Err(OAuthError::jwt_failed(
                "the assertion's algorithm is not the one configured for the client",
            ));
        }
        let candidates: Vec<_> = keys
            .iter()
            .filter(|k| header.kid.is_none() || k.kid.is_none() || k.kid == header.kid)
            .collect();
        let validation = signature_only(header.alg);
        let claims = candidates
            .iter()
            .find_map(|k| jsonwebtoken::decode::<Value>(assertion, &k.key, &validation).ok())
            .map(|d| d.claims)
            .ok_or_else(|| OAuthError::jwt_failed("Signature on JWT token failed validation"))?;
        let text = |k: &str| claims.get(k).and_then(Value::as_str);
        if text("iss") != Some(client.client_id.as_str())
            || text("sub") != Some(client.client_id.as_str())
        {
            return Err(OAuthError::jwt_failed(
                "Token issuer and subject must be the client id",
            ));
        }
        let accepted = [
            self.issuer.to_owned(),
            self.token_endpoint(),
            format!("{}/token/introspect", self.token_endpoint()),
            format!("{}/protocol/openid-connect/revoke", self.issuer),
        ];
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => accepted.contains(a),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| accepted.iter().any(|x| x == a)),
            _ => false,
        };
        if !aud_ok {
            return Err(OAuthError::jwt_failed(
                "Token audience doesn't match domain",
            ));
        }
        let now = self.now();
        let Some(exp) = claims.get("exp").and_then(Value::as_i64) else {
            return Err(OAuthError::jwt_failed("Token exp claim is required"));
        };
        let exp = UnixTime::from_secs(exp);
        let nbf = claims
            .get("nbf")
            .and_then(Value::as_i64)
            .map(UnixTime::from_secs);
        if exp <= now || nbf.is_some_and(|n| n > now) {
            return Err(OAuthError::jwt_failed("Token is not active"));
        }
        let Some(jti) = text("jti") else {
            return Err(OAuthError::jwt_failed("Missing ID on the token"));
        };
        let key = (
            self.realm.name.clone(),
            client.client_id.clone(),
            jti.to_owned(),
        );
        let mut records = self.records.lock();
        if records.used_assertions.contains_key(&key) {
            return Err(OAuthError::jwt_failed("Token reuse detected"));
        }
        records.used_assertions.insert(key, exp);
        Ok(())
    }

    fn client_credentials(&self, client: &Client, req: &Request) -> Result<Value, OAuthError> {
        if client.public {
            return Err(OAuthError::new(
                401,
                "unauthorized_client",
                "Public client not allowed to retrieve service account",
            ));
        }
        if !client.service_accounts {
            return Err(OAuthError::no_service_account());
        }
        let (scopes, scope_claim) = self.scopes(client, req.param("scope"))?;
        let now = self.now();
        let refresh = if client.use_refresh_token {
            let mut records = self.records.lock();
            let chain = records.next_chain;
            records.next_chain += 1;
            records.chains.insert(
                chain,
                Chain {
                    started: now,
                    next_generation: 0,
                    highest_used: 0,
                    revoked: false,
                },
            );
            Some(chain)
        } else {
            None
        };
        self.issue(client, scopes, scope_claim, refresh, req.peer)
    }

    fn refresh(&self, client: &Client, req: &Request) -> Result<Value, OAuthError> {
        let Some(token) = req.param("refresh_token") else {
            return Err(OAuthError::invalid_request(
                "Missing parameter: refresh_token",
            ));
        };
        let now = self.now();
        let (scopes, scope_claim, chain) = {
            let mut records = self.records.lock();
            let records = &mut *records;
            let record = records
                .refresh
                .get_mut(&TokenFingerprint::of(token))
                .filter(|r| r.realm == self.realm.name)
                .ok_or_else(|| OAuthError::invalid_grant("Invalid refresh token"))?;
            if record.client_id != client.client_id {
                return Err(OAuthError::invalid_grant(
                    "Invalid refresh token. Token client and authorized client don't match",
                ));
            }
            if record.exp <= now {
                return Err(OAuthError::invalid_grant("Token is not active"));
            }
            let chain = records
                .chains
                .get_mut(&record.chain)
                .ok_or_else(|| OAuthError::invalid_grant("Session not active"))?;
            if chain.revoked {
                return Err(OAuthError::invalid_grant("Session not active"));
            }
            if self.realm.revoke_refresh_token {
                // Keycloak: a token older than the last one used is stale; one token may be
                // used refreshTokenMaxReuse + 1 times.
                if record.generation < chain.highest_used {
                    return Err(OAuthError::invalid_grant("Stale token"));
                }
                if record.uses > self.realm.refresh_token_max_reuse {
                    return Err(OAuthError::invalid_grant(
                        "Maximum allowed refresh token reuse exceeded",
                    ));
                }
                chain.highest_used = record.generation;
            }
            record.uses = record.uses.saturating_add(1);
            (
                record.scope.clone(),
                record.scope_claim.clone(),
                record.chain,
            )
        };
        if !client.service_accounts {
            return Err(OAuthError::no_service_account());
        }
        self.issue(client, scopes, scope_claim, Some(chain), req.peer)
    }

    /// The effective scopes: the client's defaults plus requested optional ones (Keycloak
    /// refuses any other requested scope).
    fn scopes(
        &self,
        client: &Client,
        requested: Option<&str>,
    ) -> Result<(Vec<String>, String), OAuthError> {
        let mut scopes = client.default_scopes.clone();
        let mut openid = false;
        for s in requested.unwrap_or("").split(' ').filter(|s| !s.is_empty()) {
            if s == "openid" {
                openid = true;
            } else if client.optional_scopes.iter().any(|o| o == s) {
                if !scopes.iter().any(|x| x == s) {
                    scopes.push(s.to_owned());
                }
            } else if !client.default_scopes.iter().any(|d| d == s) {
                return Err(OAuthError::new(
                    400,
                    "invalid_scope",
                    format!("Invalid scopes: {}", requested.unwrap_or("")),
                ));
            }
        }
        let mut claim: Vec<&str> = Vec::new();
        if openid {
            claim.push("openid");
        }
        claim.extend(
            scopes
                .iter()
                .filter(|s| {
                    self.realm
                        .scopes
                        .get(*s)
                        .is_some_and(|d| d.include_in_token_scope)
                })
                .map(String::as_str),
        );
        Ok((scopes.clone(), claim.join(" ")))
    }

    fn issue(
        &self,
        client: &Client,
        scopes: Vec<String>,
        scope_claim: String,
        chain: Option<u64>,
        peer: Option<IpAddr>,
    ) -> Result<Value, OAuthError> {
        let Some(account) = self.realm.service_accounts.get(&client.client_id) else {
            return Err(OAuthError::new(
                401,
                "invalid_request",
                "The associated service account for the client does not exist",
            ));
        };
        if !account.enabled {
            return Err(OAuthError::new(
                401,
                "invalid_request",
                format!("User '{}' disabled", account.username),
            ));
        }
        let now = self.now();
        let lifetime = self
            .lifetimes
            .access
            .or(client.access_token_lifespan)
            .unwrap_or(self.realm.access_token_lifespan);
        let exp = now.plus(lifetime);
        let jti = uuid::Uuid::new_v4().to_string();
        let claims = access_claims(&TokenContext {
            realm: self.realm,
            issuer: self.issuer,
            client,
            account,
            scopes: &scopes,
            scope_claim: &scope_claim,
            peer,
            iat: now.as_secs(),
            exp: exp.as_secs(),
            jti: &jti,
        });
        let access_token = {
            let keys = self.keys.lock();
            let keys = keys
                .get(&self.realm.name)
                .ok_or_else(|| OAuthError::new(500, "server_error", "no signing key"))?;
            keys.sign(&claims)
                .map_err(|e| OAuthError::new(500, "server_error", e.message().to_owned()))?
        };
        let mut answer = json!({
            "access_token": access_token,
            "expires_in": now.until(exp).as_secs(),
            "refresh_expires_in": 0,
            "token_type": "Bearer",
            "not-before-policy": 0,
            "scope": scope_claim,
        });
        if let Some(chain_id) = chain {
            let mut records = self.records.lock();
            let records = &mut *records;
            let Some(chain) = records.chains.get_mut(&chain_id) else {
                return Err(OAuthError::invalid_grant("Session not active"));
            };
            let idle = self.lifetimes.refresh.unwrap_or(self.realm.sso_idle);
            let session_end = if self.lifetimes.refresh.is_some() {
                now.plus(idle)
            } else {
                chain.started.plus(self.realm.sso_max)
            };
            let refresh_exp = now.plus(idle).min(session_end);
            let generation = chain.next_generation;
            chain.next_generation += 1;
            let token = random_token();
            records.refresh.insert(
                TokenFingerprint::of(&token),
                RefreshRecord {
                    realm: self.realm.name.clone(),
                    client_id: client.client_id.clone(),
                    sub: account.id.clone(),
                    username: account.username.clone(),
                    chain: chain_id,
                    generation,
                    uses: 0,
                    iat: now,
                    exp: refresh_exp,
                    jti: uuid::Uuid::new_v4().to_string(),
                    scope: scopes,
                    scope_claim,
                },
            );
            answer["refresh_token"] = json!(token);
            answer["refresh_expires_in"] = json!(now.until(refresh_exp).as_secs());
        }
        tracing::debug!(
            realm = %self.realm.name,
            client = %client.client_id,
            refresh = chain.is_some(),
            "issued an access token"
        );
        Ok(answer)
    }

    /// RFC 7662: the claims of an active token of this realm, else `{"active": false}`.
    pub fn introspect(&self, req: &Request) -> Result<Value, OAuthError> {
        self.authenticate(req, Endpoint::Introspect)?;
        let Some(token) = req.param("token") else {
            return Err(OAuthError::invalid_request("Token not provided"));
        };
        let now = self.now();
        if let Some(mut claims) = self.active_access_claims(token, now) {
            let client_id = claims.get("azp").cloned().unwrap_or(Value::Null);
            let username = claims
                .get("preferred_username")
                .cloned()
                .unwrap_or(Value::Null);
            claims["active"] = json!(true);
            claims["client_id"] = client_id;
            claims["username"] = username;
            claims["token_type"] = json!("Bearer");
            return Ok(claims);
        }
        let records = self.records.lock();
        if let Some(r) = records.refresh.get(&TokenFingerprint::of(token))
            && r.realm == self.realm.name
            && r.exp > now
            && records.chains.get(&r.chain).is_some_and(|c| !c.revoked)
        {
            return Ok(json!({
                "active": true,
                "exp": r.exp.as_secs(),
                "iat": r.iat.as_secs(),
                "jti": r.jti,
                "iss": self.issuer,
                "aud": self.issuer,
                "sub": r.sub,
                "typ": "Refresh",
                "azp": r.client_id,
                "scope": r.scope_claim,
                "client_id": r.client_id,
                "username": r.username,
            }));
        }
        Ok(json!({ "active": false }))
    }

    /// The claims of a valid, unexpired, unrevoked access token signed by this realm.
    fn active_access_claims(&self, token: &str, now: UnixTime) -> Option<Value> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let kid = header.kid?;
        let validation = signature_only(Algorithm::RS256);
        let claims = {
            let keys = self.keys.lock();
            let key = keys.get(&self.realm.name)?.verifying_key(&kid)?;
            jsonwebtoken::decode::<Value>(token, key, &validation)
                .ok()?
                .claims
        };
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer) {
            return None;
        }
        let exp = UnixTime::from_secs(claims.get("exp").and_then(Value::as_i64)?);
        if exp <= now {
            return None;
        }
        let jti = claims.get("jti").and_then(Value::as_str)?;
        let revoked = self
            .records
            .lock()
            .revoked_access
            .contains_key(&(self.realm.name.clone(), jti.to_owned()));
        (!revoked).then_some(claims)
    }

    /// RFC 7009: a refresh token ends its whole chain; an access token is remembered as revoked
    /// until it expires. Unknown tokens are answered with success, as the RFC says.
    pub fn revoke(&self, req: &Request) -> Result<(), OAuthError> {
        let client = self.authenticate(req, Endpoint::Revoke)?;
        let Some(token) = req.param("token") else {
            return Err(OAuthError::invalid_request("Token not provided"));
        };
        let now = self.now();
        {
            let mut records = self.records.lock();
            let records = &mut *records;
            if let Some(r) = records.refresh.get(&TokenFingerprint::of(token))
                && r.realm == self.realm.name
            {
                if r.client_id != client.client_id {
                    return Err(OAuthError::unauthorized_client("Unmatching clients"));
                }
                if let Some(chain) = records.chains.get_mut(&r.chain) {
                    chain.revoked = true;
                }
                return Ok(());
            }
        }
        if let Some(claims) = self.active_access_claims(token, now) {
            if claims.get("azp").and_then(Value::as_str) != Some(client.client_id.as_str()) {
                return Err(OAuthError::unauthorized_client("Unmatching clients"));
            }
            if let (Some(jti), Some(exp)) = (
                claims.get("jti").and_then(Value::as_str),
                claims.get("exp").and_then(Value::as_i64),
            ) {
                self.records.lock().revoked_access.insert(
                    (self.realm.name.clone(), jti.to_owned()),
                    UnixTime::from_secs(exp),
                );
            }
        }
        Ok(())
    }
}

/// Checks the signature only: times are checked against the injected clock, and audiences by
/// the caller, since jsonwebtoken would use the system clock and its own rules.
fn signature_only(alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    validation
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}
