//! Helpers shared by the dev issuer's tests: an issuer on a manual clock and one-shot requests
//! through its router (no sockets needed).
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Request, header};
use base64::Engine as _;
use http_body_util::BodyExt;
use serde_json::Value;
#[allow(unused_imports)]
pub use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use tw_core::{ManualClock, UnixTime};
use tw_devissuer::{DevIssuer, DevIssuerSettings};

pub const BASE: &str = "http://127.0.0.1:8780";
/// The lab realm's client-secret service account (`testing/fixtures/keycloak/lab-realm.json`).
pub const LAB_AGENT: (&str, &str) = ("lab-agent", "lab-agent-secret");

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("testing/fixtures/keycloak").join(name)
}

pub fn demo_realm() -> PathBuf {
    repo_root().join("examples/realms/demo-realm.json")
}

pub fn settings() -> DevIssuerSettings {
    DevIssuerSettings {
        base_url: url::Url::parse(BASE).expect("base url"),
        access_token_lifetime: None,
        refresh_token_lifetime: None,
    }
}

pub fn clock() -> ManualClock {
    ManualClock::new(UnixTime::from_secs(1_800_000_000))
}

pub fn issuer_with(files: &[PathBuf], clock: &ManualClock) -> DevIssuer {
    DevIssuer::from_files(files, settings(), Arc::new(clock.clone())).expect("load")
}

/// An issuer of one realm given as JSON (source name "inline").
pub fn issuer_from_json(export: &Value, clock: &ManualClock) -> DevIssuer {
    DevIssuer::from_exports(
        vec![("inline".into(), export.to_string())],
        settings(),
        Arc::new(clock.clone()),
    )
    .expect("load the inline export")
}

pub struct Reply {
    pub status: u16,
    pub headers: axum::http::HeaderMap,
    pub json: Value,
}

/// Where requests come from unless a test says otherwise: a client on this machine.
pub const LOCAL_PEER: &str = "127.0.0.1:50000";

/// Sends `req` as a connection from [`LOCAL_PEER`] would arrive (the server's connect info).
pub async fn send(issuer: &DevIssuer, req: Request<Body>) -> Reply {
    send_from(issuer, req, Some(LOCAL_PEER.parse().expect("peer address"))).await
}

/// Sends `req` from `peer`; `None` = served without connect info (the caller is unknown).
pub async fn send_from(
    issuer: &DevIssuer,
    mut req: Request<Body>,
    peer: Option<std::net::SocketAddr>,
) -> Reply {
    if let Some(peer) = peer {
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
    }
    let resp = issuer.router().oneshot(req).await.expect("router");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "HTTP {status}: the body is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    Reply {
        status,
        headers,
        json,
    }
}

pub async fn get(issuer: &DevIssuer, path: &str) -> Reply {
    send(
        issuer,
        Request::get(path).body(Body::empty()).expect("request"),
    )
    .await
}

/// POST a form, optionally with HTTP Basic credentials.
pub async fn post_form(
    issuer: &DevIssuer,
    path: &str,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> Reply {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut req =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some((id, secret)) = basic {
        let enc = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        req = req.header(header::AUTHORIZATION, format!("Basic {enc}"));
    }
    send(issuer, req.body(Body::from(body)).expect("request")).await
}

pub fn token_path(realm: &str) -> String {
    format!("/realms/{realm}/protocol/openid-connect/token")
}

pub fn introspect_path(realm: &str) -> String {
    format!("{}/introspect", token_path(realm))
}

pub fn revoke_path(realm: &str) -> String {
    format!("/realms/{realm}/protocol/openid-connect/revoke")
}

/// The absolute token endpoint URL (an accepted client-assertion audience).
pub fn token_url(realm: &str) -> String {
    format!("{BASE}{}", token_path(realm))
}

/// POST a form to the realm's token endpoint.
pub async fn post_token(
    issuer: &DevIssuer,
    realm: &str,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> Reply {
    post_form(issuer, &token_path(realm), form, basic).await
}

pub async fn client_credentials(issuer: &DevIssuer, realm: &str, id: &str, secret: &str) -> Reply {
    post_token(
        issuer,
        realm,
        &[("grant_type", "client_credentials")],
        Some((id, secret)),
    )
    .await
}

/// A refresh-token grant by a client with a secret.
pub async fn refresh(issuer: &DevIssuer, realm: &str, client: (&str, &str), rt: &str) -> Reply {
    post_token(
        issuer,
        realm,
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
        Some(client),
    )
    .await
}

pub fn refresh_token(r: &Reply) -> String {
    r.json["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh token: {}", r.json))
        .to_owned()
}

/// The payload of a JWT, unverified (the tests that need verification use the real verifier).
pub fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("payload segment");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("payload json")
}

pub fn header_kid(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("header")
        .kid
        .expect("kid")
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A signed client assertion (RFC 7523) from a key in `testing/fixtures/keys`.
pub fn assertion(
    key_file: &str,
    alg: jsonwebtoken::Algorithm,
    kid: Option<&str>,
    client: &str,
    aud: &str,
    exp: i64,
    jti: &str,
) -> String {
    let pem =
        std::fs::read(repo_root().join("testing/fixtures/keys").join(key_file)).expect("key file");
    let key = match alg {
        jsonwebtoken::Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(&pem),
        _ => jsonwebtoken::EncodingKey::from_rsa_pem(&pem),
    }
    .expect("signing key");
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(String::from);
    let claims = serde_json::json!({
        "iss": client, "sub": client, "aud": aud, "exp": exp, "iat": exp - 60, "jti": jti,
    });
    jsonwebtoken::encode(&header, &claims, &key).expect("sign assertion")
}

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An RS256 assertion of the lab realm's `lab-jwt-agent`, whose certificate is `agent-rsa.pem`'s.
pub fn lab_jwt_assertion(aud: &str, exp: i64, jti: &str) -> String {
    assertion(
        "agent-rsa.pem",
        jsonwebtoken::Algorithm::RS256,
        None,
        "lab-jwt-agent",
        aud,
        exp,
        jti,
    )
}

/// A client-credentials request authenticated by a client assertion alone.
pub async fn client_credentials_by_assertion(
    issuer: &DevIssuer,
    realm: &str,
    assertion: &str,
) -> Reply {
    post_token(
        issuer,
        realm,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
        ],
        None,
    )
    .await
}

pub fn access_token(r: &Reply) -> String {
    r.json["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token: {} {}", r.status, r.json))
        .to_owned()
}

pub fn sorted(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = serde_json::from_value(v.clone()).unwrap_or_default();
    out.sort();
    out
}

pub fn now_secs(clock: &ManualClock) -> i64 {
    use tw_core::Clock;
    clock.now().as_secs()
}
