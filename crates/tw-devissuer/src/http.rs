//! The HTTP face: Keycloak's endpoint paths per realm, OAuth2 error bodies (RFC 6749 §5.2), and
//! the dev-only control endpoints under `/dev`.
//!
//! Every refusal is JSON: the realm endpoints answer OAuth's `{"error", "error_description"}`
//! (also for a body too large, not a form, or not UTF-8, and for a path that cannot be decoded),
//! the `/dev` controls tw-http's error body.

use crate::DevIssuer;
use crate::issuer::{INVALID_CLIENT, Issuing, OAuthError, Request};
use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use tw_core::{Error, ErrorKind, Secret};
use tw_http::{ApiError, PeerAddr};

/// Form bodies larger than this are refused (client assertions are the largest legitimate ones).
const MAX_FORM_BYTES: usize = 64 * 1024;

pub(crate) fn router(issuer: DevIssuer) -> Router {
    Router::new()
        .route("/realms/{realm}", get(realm_info))
        .route(
            "/realms/{realm}/.well-known/openid-configuration",
            get(discovery),
        )
        .route("/realms/{realm}/protocol/openid-connect/token", post(token))
        .route("/realms/{realm}/protocol/openid-connect/certs", get(certs))
        .route(
            "/realms/{realm}/protocol/openid-connect/token/introspect",
            post(introspect),
        )
        .route(
            "/realms/{realm}/protocol/openid-connect/revoke",
            post(revoke),
        )
        .merge(dev_controls(issuer.clone()))
        .fallback(tw_http::not_found_fallback)
        .method_not_allowed_fallback(tw_http::method_not_allowed_fallback)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES))
        .with_state(issuer)
}

/// The `/dev` controls have no authentication, so only callers on this machine reach them.
fn dev_controls(issuer: DevIssuer) -> Router<DevIssuer> {
    Router::new()
        .route("/dev/realms/{realm}/rotate-keys", post(rotate_keys))
        .route("/dev/reload", post(reload))
        .route("/dev/report", get(report))
        .route_layer(middleware::from_fn_with_state(issuer, local_callers_only))
}

/// Where a request came from, as the server saw the connection.
enum Caller {
    Tcp(IpAddr),
    /// A Unix socket: on this machine, and only its owner may connect (tw-http binds it 0600).
    UnixSocket,
    /// Served without connect info (e.g. an embedding's own `axum::serve`): nobody can tell.
    Unknown,
}

fn caller(ext: &Extensions) -> Caller {
    if let Some(ConnectInfo(PeerAddr(peer))) = ext.get::<ConnectInfo<PeerAddr>>() {
        return peer.map_or(Caller::UnixSocket, |a| Caller::Tcp(a.ip()));
    }
    ext.get::<ConnectInfo<SocketAddr>>()
        .map_or(Caller::Unknown, |c| Caller::Tcp(c.0.ip()))
}

/// Refuses `/dev` requests from other hosts, from unknown peers, and those a web page in the
/// developer's browser may have sent (see [`browser_refusal`]): a page can POST to a loopback
/// address without a CORS preflight.
async fn local_callers_only(
    State(issuer): State<DevIssuer>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let refusal = match caller(request.extensions()) {
        // `::ffff:127.0.0.1` is loopback too.
        Caller::Tcp(ip) if ip.to_canonical().is_loopback() => None,
        Caller::UnixSocket => None,
        Caller::Tcp(ip) => Some(format!(
            "the /dev controls answer only to callers on this machine (loopback), not to {ip}: they have no authentication"
        )),
        Caller::Unknown => Some(
            "the /dev controls answer only to callers on this machine, and this server cannot tell where the caller is (serve it with connect info)".to_owned(),
        ),
    };
    let refusal = refusal.or_else(|| browser_refusal(&issuer, request.headers()));
    match refusal {
        None => next.run(request).await,
        Some(message) => {
            tracing::warn!(path = request.uri().path(), reason = ?message, "dev control refused");
            ApiError::new(Error::new(
                ErrorKind::Forbidden,
                "dev_control_refused",
                message,
            ))
            .into_response()
        }
    }
}

/// Why a local request that a web page may have made is refused: an `Origin` other than the
/// issuer's (a cross-site POST), or a `Host` that names neither this machine nor the issuer (a
/// DNS-rebound page, which is same-origin to itself). curl and test code send no `Origin`, and
/// a `Host` naming this machine.
fn browser_refusal(issuer: &DevIssuer, headers: &HeaderMap) -> Option<String> {
    let own_origin = issuer.origin();
    let shown = |v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    if let Some(origin) = headers.get(header::ORIGIN)
        && origin.as_bytes() != own_origin.as_bytes()
    {
        return Some(format!(
            "cross-site requests to the /dev controls are refused: Origin {} is not {own_origin}",
            shown(origin)
        ));
    }
    let host = headers.get(header::HOST)?;
    let named = host
        .to_str()
        .ok()
        .and_then(|h| h.parse::<axum::http::uri::Authority>().ok())
        .map(|a| {
            a.host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned()
        });
    let names_us = named.is_some_and(|name| {
        name.eq_ignore_ascii_case("localhost")
            || name
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.to_canonical().is_loopback())
            || issuer
                .public_host()
                .is_some_and(|own| own.eq_ignore_ascii_case(&name))
    });
    (!names_us).then(|| {
        format!(
            "the /dev controls answer requests addressed to this machine or to {own_origin} only, not to Host {}",
            shown(host)
        )
    })
}

/// The caller's IP address, when the server was started with connect info (none on a Unix socket).
struct Peer(Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(match caller(&parts.extensions) {
            Caller::Tcp(ip) => Some(ip),
            Caller::UnixSocket | Caller::Unknown => None,
        }))
    }
}

/// The `{realm}` of a realm endpoint; a path that cannot be decoded is refused in OAuth's shape.
struct RealmName(String);

impl<S: Send + Sync> FromRequestParts<S> for RealmName {
    type Rejection = OAuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(realm)| RealmName(realm))
            .map_err(|e| OAuthError::invalid_request(e.body_text()))
    }
}

/// The body of a client-authenticated request: at most [`MAX_FORM_BYTES`] (else 413) and, when
/// not empty, `application/x-www-form-urlencoded` (RFC 6749 §3.2), each refused in OAuth's shape.
struct FormBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for FormBody {
    type Rejection = OAuthError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, OAuthError> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case(FORM_CONTENT_TYPE));
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                OAuthError {
                    status: StatusCode::PAYLOAD_TOO_LARGE.as_u16(),
                    ..OAuthError::invalid_request(format!(
                        "the request body is larger than {MAX_FORM_BYTES} bytes"
                    ))
                }
            } else {
                OAuthError::invalid_request(format!(
                    "cannot read the request body: {}",
                    e.body_text()
                ))
            }
        })?;
        if !body.is_empty() && !is_form {
            return Err(OAuthError::invalid_request(format!(
                "the request body must be {FORM_CONTENT_TYPE}"
            )));
        }
        Ok(FormBody(body))
    }
}

const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// A realm that is not loaded, or is disabled: Keycloak answers 404 with this body.
struct UnknownRealm;

impl IntoResponse for UnknownRealm {
    fn into_response(self) -> Response {
        (
            StatusCode::NOT_FOUND,
            no_store(),
            axum::Json(json!({ "error": "Realm does not exist" })),
        )
            .into_response()
    }
}

/// Why a client-authenticated request (token, introspection, revocation) got no answer.
enum Refusal {
    UnknownRealm,
    OAuth(OAuthError),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::UnknownRealm => UnknownRealm.into_response(),
            Refusal::OAuth(e) => e.into_response(),
        }
    }
}

/// A client-authenticated request (token, introspection, revocation) to a realm endpoint: the
/// realm name, the caller's address, the headers and the form body, read in that order.
struct OAuthCall {
    issuer: DevIssuer,
    realm: String,
    peer: Option<IpAddr>,
    headers: HeaderMap,
    body: Bytes,
}

impl FromRequest<DevIssuer> for OAuthCall {
    type Rejection = OAuthError;

    async fn from_request(
        req: axum::extract::Request,
        issuer: &DevIssuer,
    ) -> Result<Self, OAuthError> {
        let (mut parts, body) = req.into_parts();
        let RealmName(realm) = RealmName::from_request_parts(&mut parts, issuer).await?;
        let Ok(Peer(peer)) = Peer::from_request_parts(&mut parts, issuer).await;
        let headers = parts.headers.clone();
        let req = axum::extract::Request::from_parts(parts, body);
        let FormBody(body) = FormBody::from_request(req, issuer).await?;
        Ok(OAuthCall {
            issuer: issuer.clone(),
            realm,
            peer,
            headers,
            body,
        })
    }
}

impl OAuthCall {
    /// Parses the request to a served realm and runs `endpoint` on it.
    fn serve<T>(
        &self,
        endpoint: impl FnOnce(&Issuing<'_>, &Request) -> Result<T, OAuthError>,
    ) -> Result<T, Refusal> {
        let Some(r) = self.issuer.realm(&self.realm) else {
            return Err(Refusal::UnknownRealm);
        };
        parse_request(&self.headers, &self.body, self.peer)
            .and_then(|req| self.issuer.with_realm(&r, |i| endpoint(i, &req)))
            .map_err(Refusal::OAuth)
    }
}

fn no_store() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut response = (
            status,
            no_store(),
            axum::Json(json!({ "error": self.error, "error_description": self.description })),
        )
            .into_response();
        if self.basic_challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tokenwarden-dev-issuer\""),
            );
        }
        response
    }
}

/// Parses the form body and the Basic credentials. Repeated parameters are refused (RFC 6749 §3.2).
fn parse_request(
    headers: &HeaderMap,
    body: &[u8],
    peer: Option<IpAddr>,
) -> Result<Request, OAuthError> {
    let mut form = BTreeMap::new();
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        let not_utf8 = || OAuthError::invalid_request("the form is not valid UTF-8");
        let k = form_decode(k).ok_or_else(not_utf8)?;
        let v = form_decode(v).ok_or_else(not_utf8)?;
        if form.contains_key(&k) {
            return Err(OAuthError::invalid_request(format!(
                "duplicated parameter: {k}"
            )));
        }
        form.insert(k, v);
    }
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => Some(parse_basic(value).ok_or_else(|| OAuthError {
            basic_challenge: true,
            ..OAuthError::invalid_client(INVALID_CLIENT)
        })?),
    };
    Ok(Request { form, basic, peer })
}

/// `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
fn parse_basic(value: &HeaderValue) -> Option<(String, Secret)> {
    let text = value.to_str().ok()?;
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((
        form_decode(id.as_bytes())?,
        Secret::new(form_decode(secret.as_bytes())?),
    ))
}

/// One `application/x-www-form-urlencoded` name or value; `None` when it is not UTF-8 (the
/// url crate's parser would replace such bytes silently, changing what the client sent).
fn form_decode(part: &[u8]) -> Option<String> {
    let spaced: Vec<u8> = part
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_encoding::percent_decode(&spaced)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

async fn discovery(State(issuer): State<DevIssuer>, RealmName(realm): RealmName) -> Response {
    let Some(r) = issuer.realm(&realm) else {
        return UnknownRealm.into_response();
    };
    let iss = issuer.issuer_url(&realm);
    let oidc = format!("{iss}/protocol/openid-connect");
    let auth_methods = [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ];
    let assertion_algs = [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
    ];
    let scopes: Vec<&String> = r.scopes.keys().collect();
    axum::Json(json!({
        "issuer": iss,
        "authorization_endpoint": format!("{oidc}/auth"),
        "token_endpoint": format!("{oidc}/token"),
        "introspection_endpoint": format!("{oidc}/token/introspect"),
        "revocation_endpoint": format!("{oidc}/revoke"),
        "jwks_uri": format!("{oidc}/certs"),
        "grant_types_supported": ["client_credentials", "refresh_token"],
        "response_types_supported": ["none"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "scopes_supported": scopes,
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "jti", "azp", "typ", "scope",
            "realm_access", "resource_access", "preferred_username", "client_id", "clientHost",
            "clientAddress"],
    }))
    .into_response()
}

/// Keycloak's realm page (`GET /realms/{realm}`), which some older adapters read.
async fn realm_info(State(issuer): State<DevIssuer>, RealmName(realm): RealmName) -> Response {
    let (Some(_), Some(public_key)) = (issuer.realm(&realm), issuer.public_key(&realm)) else {
        return UnknownRealm.into_response();
    };
    let iss = issuer.issuer_url(&realm);
    axum::Json(json!({
        "realm": realm,
        "public_key": public_key,
        "token-service": format!("{iss}/protocol/openid-connect"),
        "account-service": format!("{iss}/account"),
        "tokens-not-before": 0,
    }))
    .into_response()
}

async fn certs(
    State(issuer): State<DevIssuer>,
    RealmName(realm): RealmName,
) -> Result<axum::Json<Value>, UnknownRealm> {
    issuer
        .realm(&realm)
        .and_then(|_| issuer.jwks(&realm))
        .map(axum::Json)
        .ok_or(UnknownRealm)
}

async fn token(call: OAuthCall) -> Result<Response, Refusal> {
    let answer = call.serve(|i, req| i.token(req)).inspect_err(|refusal| {
        if let Refusal::OAuth(e) = refusal {
            tracing::info!(realm = %call.realm, error = e.error, description = %e.description, "token request refused");
        }
    })?;
    Ok((no_store(), axum::Json(answer)).into_response())
}

async fn introspect(call: OAuthCall) -> Result<Response, Refusal> {
    let answer = call.serve(|i, req| i.introspect(req))?;
    Ok((no_store(), axum::Json(answer)).into_response())
}

async fn revoke(call: OAuthCall) -> Result<Response, Refusal> {
    call.serve(|i, req| i.revoke(req))?;
    Ok((StatusCode::OK, no_store()).into_response())
}

#[derive(Debug, Deserialize)]
struct RotateQuery {
    #[serde(default)]
    keep_old: bool,
}

async fn rotate_keys(
    State(issuer): State<DevIssuer>,
    realm: Result<Path<String>, PathRejection>,
    query: Result<Query<RotateQuery>, QueryRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let Path(realm) = realm.map_err(|e| bad_dev_request(e.body_text()))?;
    let Query(q) = query.map_err(|e| bad_dev_request(e.body_text()))?;
    let kid = issuer.rotate_keys(&realm, q.keep_old)?;
    Ok(axum::Json(
        json!({ "realm": realm, "kid": kid, "keep_old": q.keep_old }),
    ))
}

/// A `/dev` request axum cannot decode, as tw-http's JSON error (not axum's plain text).
fn bad_dev_request(why: String) -> ApiError {
    Error::bad_request("bad_dev_request", why).into()
}

async fn reload(State(issuer): State<DevIssuer>) -> Result<axum::Json<Value>, ApiError> {
    match issuer.reload() {
        Ok(report) => Ok(axum::Json(json!(report))),
        // The operator's file is wrong; the old realms stay.
        Err(e) => Err(ApiError::new(e.with_kind(ErrorKind::Unprocessable))),
    }
}

async fn report(State(issuer): State<DevIssuer>) -> axum::Json<Value> {
    axum::Json(json!(issuer.report()))
}
