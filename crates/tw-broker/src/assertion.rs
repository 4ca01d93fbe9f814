//! RFC 7523 client assertions for `private_key_jwt`.
//!
//! Claims: `iss` = `sub` = client id, `aud` = the token endpoint, a random `jti`, `iat`, `nbf`,
//! and `exp` 60 s later (short, so a leaked assertion is useless soon; the IdP rejects replays of
//! the `jti` meanwhile).

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use tw_config::SigningAlg;
use tw_core::{Error, Secret, UnixTime};

/// Assertion lifetime.
pub const ASSERTION_LIFETIME_SECS: i64 = 60;

/// A parsed signing key with its algorithm and optional `kid`.
pub struct AssertionKey {
    key: EncodingKey,
    alg: Algorithm,
    kid: Option<String>,
}

impl AssertionKey {
    /// Parses a PEM private key (PKCS#1/PKCS#8 RSA for RS256/PS256, PKCS#8/SEC1 EC P-256 for ES256).
    /// `key_name` names the config key in errors; the PEM itself never appears in a message.
    pub fn from_pem(
        pem: &Secret,
        alg: SigningAlg,
        kid: Option<String>,
        key_name: &str,
    ) -> Result<Self, Error> {
        let bytes = pem.expose().as_bytes();
        let (key, alg) = match alg {
            SigningAlg::RS256 => (EncodingKey::from_rsa_pem(bytes), Algorithm::RS256),
            SigningAlg::PS256 => (EncodingKey::from_rsa_pem(bytes), Algorithm::PS256),
            SigningAlg::ES256 => (EncodingKey::from_ec_pem(bytes), Algorithm::ES256),
        };
        let key = key.map_err(|e| {
            Error::config(
                "private_key_invalid",
                format!(
                    "`{key_name}` is not a usable PEM private key for {alg:?} ({}); RS256/PS256 need an RSA key, ES256 a P-256 EC key",
                    e.kind_name()
                ),
            )
            .with("key", key_name)
        })?;
        Ok(Self { key, alg, kid })
    }
}

trait KindName {
    fn kind_name(&self) -> String;
}
impl KindName for jsonwebtoken::errors::Error {
    fn kind_name(&self) -> String {
        format!("{:?}", self.kind())
            .split('(')
            .next()
            .unwrap_or("invalid key")
            .to_owned()
    }
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

/// Signs a fresh assertion for one token request.
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
            Error::internal(
                "assertion_signing_failed",
                format!("cannot sign client assertion: {e}"),
            )
        })
}
