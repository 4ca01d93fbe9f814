//! How a client proves who it is to the IdP's endpoints (token, introspection, revocation).
//!
//! [`ClientAuthentication`] is the one seam: the endpoints call [`ClientAuthentication::apply`]
//! and know no method. A new method (mTLS `tls_client_auth` with the client identity of
//! [`crate::HttpSettings`], DPoP proofs, ...) is one more implementation; no caller changes.

use crate::codes;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use tw_core::{Error, Secret, UnixTime};
use url::Url;

#[derive(Debug, Clone, Copy, Default, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
/// A client authentication method as configured (`auth_method`).
pub enum AuthMethod {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    /// Public client: only `client_id` is sent.
    None,
}

#[derive(Debug, Clone, Copy, Default, serde::Deserialize, PartialEq, Eq)]
/// The algorithm of `private_key_jwt` client assertions (`signing_alg`).
pub enum SigningAlg {
    #[default]
    RS256,
    PS256,
    ES256,
}

impl AuthMethod {
    /// Its name as in `token_endpoint_auth_methods_supported` (RFC 8414).
    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::None => "none",
        }
    }
}

/// The form of a request to an IdP endpoint; authentication may add fields.
pub type Form = Vec<(String, String)>;

/// One client authentication method.
pub trait ClientAuthentication: Send + Sync {
    /// The client id it authenticates.
    fn client_id(&self) -> &str;
    /// Its name as in `token_endpoint_auth_methods_supported` (RFC 8414).
    fn method(&self) -> &'static str;
    /// Adds the proof to a request to `endpoint`: a header, or fields in `form`. `endpoint` is
    /// the audience of signed proofs; `now` dates them.
    fn apply(
        &self,
        req: reqwest::RequestBuilder,
        form: &mut Form,
        endpoint: &Url,
        now: UnixTime,
    ) -> Result<reqwest::RequestBuilder, Error>;
}

/// RFC 6749 §2.3.1 HTTP Basic (id and secret form-urlencoded first).
pub struct ClientSecretBasic {
    pub client_id: String,
    pub secret: Secret,
}

impl ClientAuthentication for ClientSecretBasic {
    fn client_id(&self) -> &str {
        &self.client_id
    }
    fn method(&self) -> &'static str {
        "client_secret_basic"
    }
    fn apply(
        &self,
        req: reqwest::RequestBuilder,
        _form: &mut Form,
        _endpoint: &Url,
        _now: UnixTime,
    ) -> Result<reqwest::RequestBuilder, Error> {
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let pair = format!("{}:{}", enc(&self.client_id), enc(self.secret.expose()));
        let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
        Ok(req.header(reqwest::header::AUTHORIZATION, format!("Basic {b64}")))
    }
}

/// Credentials in the form body.
pub struct ClientSecretPost {
    pub client_id: String,
    pub secret: Secret,
}

impl ClientAuthentication for ClientSecretPost {
    fn client_id(&self) -> &str {
        &self.client_id
    }
    fn method(&self) -> &'static str {
        "client_secret_post"
    }
    fn apply(
        &self,
        req: reqwest::RequestBuilder,
        form: &mut Form,
        _endpoint: &Url,
        _now: UnixTime,
    ) -> Result<reqwest::RequestBuilder, Error> {
        form.push(("client_id".into(), self.client_id.clone()));
        form.push(("client_secret".into(), self.secret.expose().to_owned()));
        Ok(req)
    }
}

/// A public client: only its id.
pub struct NoClientAuth {
    pub client_id: String,
}

impl ClientAuthentication for NoClientAuth {
    fn client_id(&self) -> &str {
        &self.client_id
    }
    fn method(&self) -> &'static str {
        "none"
    }
    fn apply(
        &self,
        req: reqwest::RequestBuilder,
        form: &mut Form,
        _endpoint: &Url,
        _now: UnixTime,
    ) -> Result<reqwest::RequestBuilder, Error> {
        form.push(("client_id".into(), self.client_id.clone()));
        Ok(req)
    }
}

/// RFC 7523 signed assertion (`private_key_jwt`).
///
/// Claims: `iss` = `sub` = client id, `aud` = the endpoint, a random `jti`, `iat`, `nbf`, and
/// `exp` [`ASSERTION_LIFETIME_SECS`] later (short, so a leaked assertion is useless soon; the IdP
/// rejects replays of the `jti` meanwhile).
pub struct PrivateKeyJwt {
    pub client_id: String,
    pub key: AssertionKey,
}

impl ClientAuthentication for PrivateKeyJwt {
    fn client_id(&self) -> &str {
        &self.client_id
    }
    fn method(&self) -> &'static str {
        "private_key_jwt"
    }
    fn apply(
        &self,
        req: reqwest::RequestBuilder,
        form: &mut Form,
        endpoint: &Url,
        now: UnixTime,
    ) -> Result<reqwest::RequestBuilder, Error> {
        let assertion = client_assertion(&self.client_id, endpoint.as_str(), &self.key, now)?;
        form.push(("client_id".into(), self.client_id.clone()));
        form.push((
            "client_assertion_type".into(),
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
        ));
        form.push(("client_assertion".into(), assertion.expose().to_owned()));
        Ok(req)
    }
}

/// Assertion lifetime.
pub const ASSERTION_LIFETIME_SECS: i64 = 60;

/// The signing algorithms of client assertions.
pub const ASSERTION_ALGORITHMS: [Algorithm; 3] =
    [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256];

/// A parsed signing key with its algorithm and optional `kid`.
pub struct AssertionKey {
    key: EncodingKey,
    alg: Algorithm,
    kid: Option<String>,
}

impl AssertionKey {
    /// Parses a PEM private key (PKCS#1/PKCS#8 RSA for RS256/PS256, PKCS#8/SEC1 EC P-256 for
    /// ES256). `key_name` names the config key in errors; the PEM itself never appears in a
    /// message, nor does the parser's error (only its kind).
    pub fn from_pem(
        pem: &Secret,
        alg: Algorithm,
        kid: Option<String>,
        key_name: &str,
    ) -> Result<Self, Error> {
        let bytes = pem.expose().as_bytes();
        let key = match alg {
            Algorithm::RS256 | Algorithm::PS256 => EncodingKey::from_rsa_pem(bytes),
            Algorithm::ES256 => EncodingKey::from_ec_pem(bytes),
            other => {
                return Err(Error::config(
                    codes::PRIVATE_KEY_INVALID,
                    format!(
                        "`{key_name}`: {other:?} is not a client assertion algorithm (RS256, PS256 or ES256)"
                    ),
                )
                .with("key", key_name));
            }
        };
        let key = key.map_err(|e| {
            Error::config(
                codes::PRIVATE_KEY_INVALID,
                format!(
                    "`{key_name}` is not a usable PEM private key for {alg:?} ({}); RS256/PS256 need an RSA key, ES256 a P-256 EC key",
                    kind_name(&e)
                ),
            )
            .with("key", key_name)
        })?;
        Ok(Self { key, alg, kid })
    }
}

fn kind_name(e: &jsonwebtoken::errors::Error) -> String {
    format!("{:?}", e.kind())
        .split('(')
        .next()
        .unwrap_or("invalid key")
        .to_owned()
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: i64,
    nbf: i64,
    exp: i64,
}

/// Signs a fresh assertion for one request.
pub fn client_assertion(
    client_id: &str,
    audience: &str,
    key: &AssertionKey,
    now: UnixTime,
) -> Result<Secret, Error> {
    let mut header = Header::new(key.alg);
    header.kid = key.kid.clone();
    header.typ = Some("JWT".into());
    let iat = now.as_secs();
    let claims = Claims {
        iss: client_id,
        sub: client_id,
        aud: audience,
        jti: uuid::Uuid::new_v4().to_string(),
        iat,
        nbf: iat,
        exp: iat + ASSERTION_LIFETIME_SECS,
    };
    jsonwebtoken::encode(&header, &claims, &key.key)
        .map(Secret::new)
        .map_err(|e| {
            let kind = kind_name(&e);
            Error::internal(
                codes::ASSERTION_SIGNING_FAILED,
                format!("cannot sign client assertion ({kind})"),
            )
            .with_source(e)
        })
}
