//! The HTTP face: Keycloak's endpoint paths per realm, OAuth2 error bodies (RFC 6749 §5.2), and
//! the dev-only control endpoints under `/dev`.

use crate::DevIssuer;
use crate::issuer::{OAuthError, Request};
use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use tw_core::Secret;
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
        .route("/dev/realms/{realm}/rotate-keys", post(rotate_keys))
        .route("/dev/reload", post(reload))
        .route("/dev/report", get(report))
        .fallback(tw_http::not_found_fallback)
        .method_not_allowed_fallback(tw_http::method_not_allowed_fallback)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES))
        .with_state(issuer)
}

/// The caller's IP address, when the server was started with connect info.
struct Peer(Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ext = &parts.extensions;
        let ip = ext
            .get::<ConnectInfo<PeerAddr>>()
            .and_then(|c| c.0.0.map(|a| a.ip()))
            .or_else(|| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()));
        Ok(Peer(ip))
    }
}

fn unknown_realm(realm: &str) -> Response {
    // Keycloak answers an unknown realm with 404 and this body.
    let _ = realm;
    (
        StatusCode::NOT_FOUND,
        no_store(),
        axum::Json(json!({ "error": "Realm does not exist" })),
    )
        .into_response()
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
    let bad = |d: &str| OAuthError {
        status: 400,
        error: "invalid_request",
        description: d.to_owned(),
        basic_challenge: false,
    };
    let mut form = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if form.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(bad(&format!("duplicated parameter: {k}")));
        }
    }
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => Some(parse_basic(value).ok_or_else(|| OAuthError {
            status: 401,
            error: "invalid_client",
            description: "Invalid client or Invalid client credentials".into(),
            basic_challenge: true,
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
    let unescape = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    Some((unescape(id)?, Secret::new(unescape(secret)?)))
}

async fn discovery(State(issuer): State<DevIssuer>, Path(realm): Path<String>) -> Response {
    let Some(r) = issuer.realm(&realm) else {
        return unknown_realm(&realm);
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
async fn realm_info(State(issuer): State<DevIssuer>, Path(realm): Path<String>) -> Response {
    let (Some(_), Some(public_key)) = (issuer.realm(&realm), issuer.public_key(&realm)) else {
        return unknown_realm(&realm);
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

async fn certs(State(issuer): State<DevIssuer>, Path(realm): Path<String>) -> Response {
    if issuer.realm(&realm).is_none() {
        return unknown_realm(&realm);
    }
    match issuer.jwks(&realm) {
        Some(jwks) => axum::Json(jwks).into_response(),
        None => unknown_realm(&realm),
    }
}

async fn token(
    State(issuer): State<DevIssuer>,
    Path(realm): Path<String>,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(r) = issuer.realm(&realm) else {
        return unknown_realm(&realm);
    };
    let result = parse_request(&headers, &body, peer)
        .and_then(|req| issuer.with_realm(&r, |i| i.token(&req)));
    match result {
        Ok(answer) => (no_store(), axum::Json(answer)).into_response(),
        Err(e) => {
            tracing::info!(realm = %realm, error = e.error, description = %e.description, "token request refused");
            e.into_response()
        }
    }
}

async fn introspect(
    State(issuer): State<DevIssuer>,
    Path(realm): Path<String>,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(r) = issuer.realm(&realm) else {
        return unknown_realm(&realm);
    };
    match parse_request(&headers, &body, peer)
        .and_then(|req| issuer.with_realm(&r, |i| i.introspect(&req)))
    {
        Ok(answer) => (no_store(), axum::Json(answer)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn revoke(
    State(issuer): State<DevIssuer>,
    Path(realm): Path<String>,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(r) = issuer.realm(&realm) else {
        return unknown_realm(&realm);
    };
    match parse_request(&headers, &body, peer)
        .and_then(|req| issuer.with_realm(&r, |i| i.revoke(&req)))
    {
        Ok(()) => (StatusCode::OK, no_store()).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct RotateQuery {
    #[serde(default)]
    keep_old: bool,
}

async fn rotate_keys(
    State(issuer): State<DevIssuer>,
    Path(realm): Path<String>,
    Query(q): Query<RotateQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let kid = issuer.rotate_keys(&realm, q.keep_old)?;
    Ok(axum::Json(
        json!({ "realm": realm, "kid": kid, "keep_old": q.keep_old }),
    ))
}

async fn reload(State(issuer): State<DevIssuer>) -> Result<axum::Json<Value>, ApiError> {
    match issuer.reload() {
        Ok(report) => Ok(axum::Json(json!(report))),
        // The operator's file is wrong; the old realms stay.
        Err(e) => Err(ApiError::new(e).with_status(StatusCode::UNPROCESSABLE_ENTITY)),
    }
}

async fn report(State(issuer): State<DevIssuer>) -> axum::Json<Value> {
    axum::Json(json!(issuer.report()))
}
