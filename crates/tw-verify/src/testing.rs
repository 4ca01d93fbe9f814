//! Test support (feature `testing`): fixture keys, token signing, a static JWKS publisher and the
//! hostile-token corpus. For this crate's tests and the gateway's HTTP tests, which send the same
//! corpus and expect 401 with the named check.
//!
//! The keys are `testing/fixtures/keys` (public in the repository, protecting nothing).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::VerifierSettings;
use crate::error::Check;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tw_core::UnixTime;

pub const AGENT_RSA_PEM: &str = include_str!("../../../testing/fixtures/keys/agent-rsa.pem");
pub const AGENT_RSA_PUB_PEM: &str =
    include_str!("../../../testing/fixtures/keys/agent-rsa.pub.pem");
pub const AGENT_EC_PEM: &str = include_str!("../../../testing/fixtures/keys/agent-ec.pem");
pub const UNTRUSTED_RSA_PEM: &str =
    include_str!("../../../testing/fixtures/keys/untrusted-rsa.pem");

/// `kid`s of the published fixture keys.
pub const RSA_KID: &str = "agent-rsa";
pub const EC_KID: &str = "agent-ec";
/// The untrusted key, published with `use: enc` (so it must never verify a signature).
pub const ENC_KID: &str = "enc-key";

pub fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(AGENT_RSA_PEM.as_bytes()).expect("agent-rsa.pem")
}
pub fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(AGENT_EC_PEM.as_bytes()).expect("agent-ec.pem")
}
pub fn untrusted_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(UNTRUSTED_RSA_PEM.as_bytes()).expect("untrusted-rsa.pem")
}

/// The public JWK of a private key, with the given `kid`, `use` and (optional) `alg`.
pub fn public_jwk(
    key: &EncodingKey,
    alg: Algorithm,
    kid: &str,
    use_: &str,
    with_alg: bool,
) -> Value {
    let jwk = Jwk::from_encoding_key(key, alg).expect("public JWK");
    let mut v = serde_json::to_value(jwk).expect("JWK JSON");
    let o = v.as_object_mut().expect("object");
    o.remove("alg");
    o.remove("kid");
    o.remove("use");
    o.remove("key_ops");
    o.insert("kid".into(), json!(kid));
    o.insert("use".into(), json!(use_));
    if with_alg {
        o.insert("alg".into(), json!(format!("{alg:?}")));
    }
    v
}

/// The JWKS the corpus expects: the trusted RSA key (`agent-rsa`, no `alg`), the trusted P-256 key
/// (`agent-ec`, `alg` ES256) and the untrusted RSA key as an encryption key (`enc-key`).
pub fn fixture_jwks() -> Value {
    json!({ "keys": [
        public_jwk(&rsa_key(), Algorithm::RS256, RSA_KID, "sig", false),
        public_jwk(&ec_key(), Algorithm::ES256, EC_KID, "sig", true),
        public_jwk(&untrusted_key(), Algorithm::RS256, ENC_KID, "enc", false),
    ]})
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs `b64(header).b64(payload)` (texts used verbatim, so they may be any bytes) with `alg`.
pub fn sign_raw(header: &str, payload: &str, key: &EncodingKey, alg: Algorithm) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).expect("sign");
    format!("{input}.{sig}")
}

/// Signs JSON header and claims.
pub fn sign(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    sign_raw(&header.to_string(), &claims.to_string(), key, alg)
}

/// Replaces the header of a real token (keeping payload and signature), e.g. to change its `kid`.
pub fn with_header(token: &str, header: &Value) -> String {
    let mut parts = token.splitn(2, '.');
    let _ = parts.next();
    format!("{}.{}", b64(header.to_string()), parts.next().unwrap_or(""))
}

/// Decodes a JWT segment (test convenience).
pub fn decode_segment(token: &str, n: usize) -> Value {
    let part = token.split('.').nth(n).expect("segment");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

/// What the corpus is built for.
#[derive(Debug, Clone)]
pub struct CorpusParams {
    /// Keycloak-mode issuer, audiences `[audience]`, `allowed_azp = [azp]`.
    pub issuer: String,
    /// Strict-mode (RFC 9068) issuer, same keys, no azp allowlist.
    pub strict_issuer: String,
    pub audience: String,
    pub azp: String,
    pub now: UnixTime,
    pub max_token_bytes: usize,
    /// The issuers' leeway (the corpus puts times at twice this beyond the limits).
    pub leeway: Duration,
}

impl CorpusParams {
    pub fn new(issuer: impl Into<String>, now: UnixTime) -> Self {
        let issuer = issuer.into();
        Self {
            strict_issuer: format!("{issuer}/strict"),
            issuer,
            audience: "api".into(),
            azp: "agent-basic".into(),
            now,
            max_token_bytes: crate::DEFAULT_MAX_TOKEN_BYTES,
            leeway: Duration::from_secs(60),
        }
    }

    fn secs(&self) -> i64 {
        self.now.as_secs()
    }

    fn far(&self) -> i64 {
        i64::try_from(self.leeway.as_secs()).unwrap_or(60) * 2
    }

    /// Valid Keycloak-style access-token claims.
    pub fn claims(&self) -> Value {
        let now = self.secs();
        json!({
            "iss": self.issuer,
            "sub": "0d0c6c6e-0000-4000-8000-000000000001",
            "aud": self.audience,
            "azp": self.azp,
            "typ": "Bearer",
            "exp": now + 300,
            "iat": now,
            "jti": "corpus-jti",
            "scope": "profile email",
            "preferred_username": format!("service-account-{}", self.azp),
            "realm_access": { "roles": ["agent"] },
            "resource_access": { "api": { "roles": ["read"] } },
        })
    }

    /// The verifier settings the corpus expectations assume, with both issuers on `jwks_url`.
    pub fn verifier_settings(&self, jwks_url: &str) -> VerifierSettings {
        let leeway = format!("{}s", self.leeway.as_secs());
        let issuers = serde_json::from_value(json!([
                {
                    "issuer": self.issuer,
                    "jwks_url": jwks_url,
                    "audiences": [self.audience],
                    "allowed_azp": [self.azp],
                    "leeway": leeway,
                    "token_type": "keycloak",
                },
                {
                    "issuer": self.strict_issuer,
                    "jwks_url": jwks_url,
                    "audiences": [self.audience],
                    "leeway": leeway,
                    "token_type": "strict",
                },
        ]))
        .expect("corpus issuers");
        VerifierSettings {
            max_token_bytes: self.max_token_bytes,
            ..VerifierSettings::new("gateway", issuers)
        }
    }
}

fn set(mut v: Value, key: &str, value: Value) -> Value {
    v.as_object_mut().expect("object").insert(key.into(), value);
    v
}

fn unset(mut v: Value, key: &str) -> Value {
    v.as_object_mut().expect("object").remove(key);
    v
}

fn rs_header() -> Value {
    json!({"alg": "RS256", "typ": "JWT", "kid": RSA_KID})
}

/// One corpus entry.
#[derive(Debug, Clone)]
pub struct HostileToken {
    pub name: &'static str,
    pub token: String,
    /// The check that must refuse it.
    pub expected: Check,
}

/// Tokens the corpus setup must accept (controls: without them a broken setup would "refuse
/// everything" and pass).
pub fn valid_corpus(p: &CorpusParams) -> Vec<(&'static str, String)> {
    let c = p.claims();
    let strict = set(c.clone(), "iss", json!(p.strict_issuer));
    vec![
        (
            "RS256 with kid",
            sign(&rs_header(), &c, &rsa_key(), Algorithm::RS256),
        ),
        (
            "RS256 without kid",
            sign(
                &json!({"alg":"RS256","typ":"JWT"}),
                &c,
                &rsa_key(),
                Algorithm::RS256,
            ),
        ),
        (
            "PS256 with the RSA key",
            sign(
                &json!({"alg":"PS256","kid":RSA_KID}),
                &c,
                &rsa_key(),
                Algorithm::PS256,
            ),
        ),
        (
            "ES256 with kid",
            sign(
                &json!({"alg":"ES256","kid":EC_KID,"typ":"at+jwt"}),
                &c,
                &ec_key(),
                Algorithm::ES256,
            ),
        ),
        (
            "ES256 without kid",
            sign(&json!({"alg":"ES256"}), &c, &ec_key(), Algorithm::ES256),
        ),
        (
            "aud array containing the audience",
            sign(
                &rs_header(),
                &set(c.clone(), "aud", json!(["other", p.audience])),
                &rsa_key(),
                Algorithm::RS256,
            ),
        ),
        (
            "jku/x5u/jwk headers are ignored",
            sign(
                &json!({"alg":"RS256","kid":RSA_KID,"jku":"http://127.0.0.1:9/evil","x5u":"http://127.0.0.1:9/x5u","jwk":{"kty":"RSA","n":"AQAB","e":"AQAB"}}),
                &c,
                &rsa_key(),
                Algorithm::RS256,
            ),
        ),
        (
            "strict issuer with typ at+jwt",
            sign(
                &json!({"alg":"RS256","kid":RSA_KID,"typ":"at+jwt"}),
                &strict,
                &rsa_key(),
                Algorithm::RS256,
            ),
        ),
        (
            "strict issuer with typ application/at+jwt",
            sign(
                &json!({"alg":"RS256","kid":RSA_KID,"typ":"application/at+jwt"}),
                &strict,
                &rsa_key(),
                Algorithm::RS256,
            ),
        ),
    ]
}

/// The hostile or broken tokens, each with the check that must refuse it.
pub fn hostile_corpus(p: &CorpusParams) -> Vec<HostileToken> {
    let now = p.secs();
    let far = p.far();
    let c = p.claims();
    let rsa = rsa_key();
    let ec = ec_key();
    let untrusted = untrusted_key();
    let rs = |h: &Value, claims: &Value| sign(h, claims, &rsa, Algorithm::RS256);
    let good = rs(&rs_header(), &c);
    let good_parts: Vec<&str> = good.split('.').collect();
    let (gh, gp, gs) = (good_parts[0], good_parts[1], good_parts[2]);
    let fake_sig = b64([7u8; 64]);
    let unsigned = |h: &Value, claims: &Value| {
        format!(
            "{}.{}.{}",
            b64(h.to_string()),
            b64(claims.to_string()),
            fake_sig
        )
    };
    let raw = |h: &str, pl: &str| format!("{}.{}.{}", b64(h), b64(pl), gs);
    let rs_raw = |h: &str, pl: &str| sign_raw(h, pl, &rsa, Algorithm::RS256);
    let hdr = r#"{"alg":"RS256","typ":"JWT","kid":"agent-rsa"}"#;
    let claims_text = c.to_string();
    // The claims without their closing brace, to append raw (duplicate) members.
    let open = &claims_text[..claims_text.len() - 1];

    let mut out = Vec::new();
    let mut add = |name: &'static str, token: String, expected: Check| {
        out.push(HostileToken {
            name,
            token,
            expected,
        })
    };

    // --- size
    let huge = set(c.clone(), "pad", json!("x".repeat(p.max_token_bytes)));
    add("huge token", rs(&rs_header(), &huge), Check::Size);

    // --- shape
    add("empty token", String::new(), Check::Format);
    add("two segments", format!("{gh}.{gp}"), Check::Format);
    add("four segments", format!("{good}.{gs}"), Check::Format);
    add(
        "five segments (JWE shape)",
        format!("{gh}.{gp}.{gs}.{gs}.{gs}"),
        Check::Format,
    );
    add("empty segments", "..".into(), Check::Format);
    add("stripped signature", format!("{gh}.{gp}."), Check::Format);
    add(
        "alg none with empty signature",
        format!("{}.{gp}.", b64(r#"{"alg":"none"}"#)),
        Check::Format,
    );
    add("empty header segment", format!(".{gp}.{gs}"), Check::Format);
    add("base64 padding", format!("{gh}=.{gp}.{gs}"), Check::Format);
    add(
        "base64 '+' and '/'",
        format!(
            "{gh}.{gp}.{}",
            gs.replace('-', "+").replace('_', "/") + "+/"
        ),
        Check::Format,
    );
    add(
        "whitespace inside",
        format!("{gh}. {gp}.{gs}"),
        Check::Format,
    );
    add("trailing newline", format!("{good}\n"), Check::Format);
    add(
        "non-canonical base64 trailing bits",
        format!("{gh}.{gp}.{gs}R"),
        Check::Format,
    );
    add(
        "non-JSON header",
        raw("not json", &claims_text),
        Check::Format,
    );
    add("non-JSON payload", raw(hdr, "{\"iss\":"), Check::Format);
    add("JSON array payload", rs_raw(hdr, "[1,2,3]"), Check::Format);
    add(
        "JSON string header",
        raw("\"RS256\"", &claims_text),
        Check::Format,
    );
    add(
        "payload with trailing garbage",
        rs_raw(hdr, &format!("{claims_text}xyz")),
        Check::Format,
    );
    add(
        "payload not UTF-8",
        format!(
            "{gh}.{}.{gs}",
            b64([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])
        ),
        Check::Format,
    );
    add(
        "duplicate exp (the token's own, then a far-future one appended)",
        rs_raw(hdr, &format!("{open},\"exp\":{}}}", now + 100_000)),
        Check::Format,
    );
    add(
        "duplicate exp (far future last wins in lenient parsers)",
        rs_raw(
            hdr,
            &format!(r#"{{"exp":1,"exp":9999999999,"iss":"{}"}}"#, p.issuer),
        ),
        Check::Format,
    );
    add(
        "duplicate exp (far future first)",
        rs_raw(
            hdr,
            &format!(r#"{{"exp":9999999999,"exp":1,"iss":"{}"}}"#, p.issuer),
        ),
        Check::Format,
    );
    add(
        "duplicate iss",
        rs_raw(hdr, &format!("{open},\"iss\":\"https://evil.example\"}}")),
        Check::Format,
    );
    add(
        "duplicate alg in header",
        rs_raw(
            r#"{"alg":"RS256","kid":"agent-rsa","alg":"none"}"#,
            &claims_text,
        ),
        Check::Format,
    );
    add(
        "nested duplicate in realm_access",
        rs_raw(
            hdr,
            &format!("{open},\"x\":{{\"roles\":[\"a\"],\"roles\":[\"admin\"]}}}}"),
        ),
        Check::Format,
    );
    add(
        "exp as a string",
        rs(
            &rs_header(),
            &set(c.clone(), "exp", json!((now + 300).to_string())),
        ),
        Check::Format,
    );
    add(
        "exp as null",
        rs(&rs_header(), &set(c.clone(), "exp", Value::Null)),
        Check::Format,
    );
    add(
        "nbf as a string",
        rs(&rs_header(), &set(c.clone(), "nbf", json!("0"))),
        Check::Format,
    );
    add(
        "iat as a boolean",
        rs(&rs_header(), &set(c.clone(), "iat", json!(true))),
        Check::Format,
    );
    add(
        "iss as a number",
        rs(&rs_header(), &set(c.clone(), "iss", json!(42))),
        Check::Format,
    );
    add(
        "iss as an array",
        rs(&rs_header(), &set(c.clone(), "iss", json!([p.issuer]))),
        Check::Format,
    );
    add(
        "aud as a number",
        rs(&rs_header(), &set(c.clone(), "aud", json!(7))),
        Check::Format,
    );
    add(
        "aud array with a number",
        rs(&rs_header(), &set(c.clone(), "aud", json!([p.audience, 1]))),
        Check::Format,
    );
    add(
        "aud as an object",
        rs(
            &rs_header(),
            &set(c.clone(), "aud", json!({"aud": p.audience})),
        ),
        Check::Format,
    );
    add(
        "exp out of range",
        rs_raw(hdr, &format!("{open},\"exp\":1e400}}")),
        Check::Format,
    );

    // --- header
    add(
        "alg missing",
        rs(&json!({"kid": RSA_KID}), &c),
        Check::Header,
    );
    add(
        "alg not a string",
        rs(&json!({"alg": ["RS256"], "kid": RSA_KID}), &c),
        Check::Header,
    );
    add(
        "unknown crit",
        rs(
            &json!({"alg":"RS256","kid":RSA_KID,"crit":["exp"],"exp":1}),
            &c,
        ),
        Check::Header,
    );
    add(
        "crit b64",
        rs(
            &json!({"alg":"RS256","kid":RSA_KID,"crit":["b64"],"b64":false}),
            &c,
        ),
        Check::Header,
    );
    add(
        "crit not an array",
        rs(&json!({"alg":"RS256","kid":RSA_KID,"crit":"b64"}), &c),
        Check::Header,
    );
    add(
        "crit empty array",
        rs(&json!({"alg":"RS256","kid":RSA_KID,"crit":[]}), &c),
        Check::Header,
    );
    add(
        "crit array of numbers",
        rs(&json!({"alg":"RS256","kid":RSA_KID,"crit":[1]}), &c),
        Check::Header,
    );
    add(
        "kid longer than 256 bytes",
        rs(&json!({"alg":"RS256","kid":"k".repeat(300)}), &c),
        Check::Header,
    );
    add(
        "kid a number",
        rs(&json!({"alg":"RS256","kid":1}), &c),
        Check::Header,
    );
    add(
        "kid an object",
        rs(&json!({"alg":"RS256","kid":{"path":"/etc/passwd"}}), &c),
        Check::Header,
    );
    add(
        "typ a number",
        rs(&json!({"alg":"RS256","kid":RSA_KID,"typ":1}), &c),
        Check::Header,
    );

    // --- algorithm
    for (name, alg) in [
        ("alg none", "none"),
        ("alg None", "None"),
        ("alg NONE", "NONE"),
        ("alg nOnE", "nOnE"),
    ] {
        add(
            name,
            unsigned(&json!({"alg": alg, "typ": "JWT"}), &c),
            Check::Algorithm,
        );
    }
    let pub_pem = AGENT_RSA_PUB_PEM.as_bytes();
    add(
        "RS256 to HS256 confusion (public key PEM as HMAC secret)",
        sign(
            &json!({"alg":"HS256","kid":RSA_KID}),
            &c,
            &EncodingKey::from_secret(pub_pem),
            Algorithm::HS256,
        ),
        Check::Algorithm,
    );
    add(
        "RS256 to HS256 confusion (public key DER as HMAC secret)",
        sign(
            &json!({"alg":"HS256","kid":RSA_KID}),
            &c,
            &EncodingKey::from_secret(&pem_der(AGENT_RSA_PUB_PEM)),
            Algorithm::HS256,
        ),
        Check::Algorithm,
    );
    add(
        "HS512 without kid",
        sign(
            &json!({"alg":"HS512"}),
            &c,
            &EncodingKey::from_secret(pub_pem),
            Algorithm::HS512,
        ),
        Check::Algorithm,
    );
    add(
        "alg hs256 lower case",
        unsigned(&json!({"alg":"hs256","kid":RSA_KID}), &c),
        Check::Algorithm,
    );
    add(
        "alg rs256 lower case",
        unsigned(&json!({"alg":"rs256","kid":RSA_KID}), &c),
        Check::Algorithm,
    );
    add(
        "alg unknown",
        unsigned(&json!({"alg":"XYZ999","kid":RSA_KID}), &c),
        Check::Algorithm,
    );
    add(
        "alg ES512 (unsupported)",
        unsigned(&json!({"alg":"ES512","kid":EC_KID}), &c),
        Check::Algorithm,
    );
    add(
        "alg RS512 not in the issuer's list",
        rs(&json!({"alg":"RS512","kid":RSA_KID}), &c),
        Check::Algorithm,
    );
    add(
        "alg ES384 not in the issuer's list",
        unsigned(&json!({"alg":"ES384","kid":EC_KID}), &c),
        Check::Algorithm,
    );
    add(
        "ES256-signed token claiming RS256 (EC kid)",
        sign(
            &json!({"alg":"RS256","kid":EC_KID}),
            &c,
            &ec,
            Algorithm::ES256,
        ),
        Check::Algorithm,
    );
    add(
        "RS256 token claiming ES256 with the RSA kid",
        sign(
            &json!({"alg":"ES256","kid":RSA_KID}),
            &c,
            &rsa,
            Algorithm::RS256,
        ),
        Check::Algorithm,
    );
    add(
        "PS256 with the EC key's kid",
        sign(
            &json!({"alg":"PS256","kid":EC_KID}),
            &c,
            &rsa,
            Algorithm::PS256,
        ),
        Check::Algorithm,
    );

    // --- issuer
    add(
        "iss missing",
        rs(&rs_header(), &unset(c.clone(), "iss")),
        Check::Issuer,
    );
    add(
        "unknown iss",
        rs(
            &rs_header(),
            &set(c.clone(), "iss", json!("https://evil.example/realms/test")),
        ),
        Check::Issuer,
    );
    add(
        "wrong iss (trailing slash)",
        rs(
            &rs_header(),
            &set(c.clone(), "iss", json!(format!("{}/", p.issuer))),
        ),
        Check::Issuer,
    );
    add(
        "wrong iss (case)",
        rs(
            &rs_header(),
            &set(c.clone(), "iss", json!(p.issuer.to_uppercase())),
        ),
        Check::Issuer,
    );
    add(
        "iss with a NUL",
        rs(
            &rs_header(),
            &set(c.clone(), "iss", json!(format!("{}\u{0}", p.issuer))),
        ),
        Check::Issuer,
    );

    // --- key
    add(
        "kid path traversal",
        rs(&json!({"alg":"RS256","kid":"../../etc/passwd"}), &c),
        Check::Key,
    );
    add(
        "kid with a NUL",
        rs(&json!({"alg":"RS256","kid":"agent-rsa\u{0}"}), &c),
        Check::Key,
    );
    add(
        "kid URL",
        rs(
            &json!({"alg":"RS256","kid":"http://127.0.0.1:9/key.pem"}),
            &c,
        ),
        Check::Key,
    );
    add(
        "kid empty string",
        rs(&json!({"alg":"RS256","kid":""}), &c),
        Check::Key,
    );
    add(
        "kid of an encryption key (use enc), signed by it",
        sign(
            &json!({"alg":"RS256","kid":ENC_KID}),
            &c,
            &untrusted,
            Algorithm::RS256,
        ),
        Check::Key,
    );
    let attacker_jwk = public_jwk(&untrusted, Algorithm::RS256, "attacker", "sig", true);
    add(
        "embedded jwk with its own kid, signed by the attacker",
        sign(
            &json!({"alg":"RS256","kid":"attacker","jwk":attacker_jwk}),
            &c,
            &untrusted,
            Algorithm::RS256,
        ),
        Check::Key,
    );
    add(
        "jku pointing elsewhere with an unknown kid",
        sign(
            &json!({"alg":"RS256","kid":"evil-key","jku":"http://127.0.0.1:9/jwks.json"}),
            &c,
            &untrusted,
            Algorithm::RS256,
        ),
        Check::Key,
    );
    add(
        "EdDSA with no Ed25519 key published",
        unsigned(&json!({"alg":"EdDSA"}), &c),
        Check::Key,
    );

    // --- signature
    let mut altered_sig = URL_SAFE_NO_PAD.decode(gs).expect("sig");
    altered_sig[10] ^= 0x01;
    add(
        "altered signature",
        format!("{gh}.{gp}.{}", b64(&altered_sig)),
        Check::Signature,
    );
    add(
        "truncated signature",
        format!("{gh}.{gp}.{}", b64(&altered_sig[..128])),
        Check::Signature,
    );
    add(
        "altered payload (sub changed, signature kept)",
        format!(
            "{gh}.{}.{gs}",
            b64(set(c.clone(), "sub", json!("admin")).to_string())
        ),
        Check::Signature,
    );
    add(
        "altered header (kid removed, signature kept)",
        format!("{}.{gp}.{gs}", b64(r#"{"alg":"RS256"}"#)),
        Check::Signature,
    );
    add(
        "signed by an untrusted key under the trusted kid",
        sign(&rs_header(), &c, &untrusted, Algorithm::RS256),
        Check::Signature,
    );
    add(
        "signed by an untrusted key, no kid",
        sign(&json!({"alg":"RS256"}), &c, &untrusted, Algorithm::RS256),
        Check::Signature,
    );
    add(
        "embedded jwk without kid, signed by the attacker",
        sign(
            &json!({"alg":"RS256","jwk":attacker_jwk}),
            &c,
            &untrusted,
            Algorithm::RS256,
        ),
        Check::Signature,
    );
    add(
        "x5u and x5c with the trusted kid, signed by the attacker",
        sign(
            &json!({"alg":"RS256","kid":RSA_KID,"x5u":"http://127.0.0.1:9/cert.pem","x5c":["MIIBIjANBgkq"]}),
            &c,
            &untrusted,
            Algorithm::RS256,
        ),
        Check::Signature,
    );
    add(
        "jku with the trusted kid, signed by the attacker",
        sign(
            &json!({"alg":"RS256","kid":RSA_KID,"jku":"http://127.0.0.1:9/jwks.json"}),
            &c,
            &untrusted,
            Algorithm::RS256,
        ),
        Check::Signature,
    );
    add(
        "RSA PKCS#1 signature claiming PS256",
        sign(
            &json!({"alg":"PS256","kid":RSA_KID}),
            &c,
            &rsa,
            Algorithm::RS256,
        ),
        Check::Signature,
    );
    add(
        "ES256 signature from the EC key without kid, claiming RS256",
        sign(&json!({"alg":"RS256"}), &c, &ec, Algorithm::ES256),
        Check::Signature,
    );
    add(
        "payload of one token with the signature of another",
        format!(
            "{gh}.{}.{gs}",
            b64(set(c.clone(), "jti", json!("other")).to_string())
        ),
        Check::Signature,
    );

    // --- time
    add(
        "expired",
        rs(&rs_header(), &set(c.clone(), "exp", json!(now - far))),
        Check::Expiry,
    );
    add(
        "exp missing",
        rs(&rs_header(), &unset(c.clone(), "exp")),
        Check::Expiry,
    );
    add(
        "exp zero",
        rs(&rs_header(), &set(c.clone(), "exp", json!(0))),
        Check::Expiry,
    );
    add(
        "exp negative",
        rs(&rs_header(), &set(c.clone(), "exp", json!(-1))),
        Check::Expiry,
    );
    add(
        "nbf in the future",
        rs(&rs_header(), &set(c.clone(), "nbf", json!(now + far))),
        Check::NotBefore,
    );
    add(
        "iat in the future",
        rs(&rs_header(), &set(c.clone(), "iat", json!(now + far))),
        Check::IssuedAt,
    );

    // --- audience, authorized party
    add(
        "wrong aud",
        rs(&rs_header(), &set(c.clone(), "aud", json!("other-api"))),
        Check::Audience,
    );
    add(
        "aud missing",
        rs(&rs_header(), &unset(c.clone(), "aud")),
        Check::Audience,
    );
    add(
        "aud empty array",
        rs(&rs_header(), &set(c.clone(), "aud", json!([]))),
        Check::Audience,
    );
    add(
        "wrong azp",
        rs(&rs_header(), &set(c.clone(), "azp", json!("evil-client"))),
        Check::AuthorizedParty,
    );
    add(
        "azp missing with an allowlist",
        rs(&rs_header(), &unset(c.clone(), "azp")),
        Check::AuthorizedParty,
    );

    // --- token type
    add(
        "ID token (typ ID)",
        rs(&rs_header(), &set(c.clone(), "typ", json!("ID"))),
        Check::TokenType,
    );
    add(
        "refresh token (typ Refresh)",
        rs(&rs_header(), &set(c.clone(), "typ", json!("Refresh"))),
        Check::TokenType,
    );
    add(
        "offline token (typ Offline)",
        rs(&rs_header(), &set(c.clone(), "typ", json!("Offline"))),
        Check::TokenType,
    );
    add(
        "logout token (typ Logout)",
        rs(&rs_header(), &set(c.clone(), "typ", json!("Logout"))),
        Check::TokenType,
    );
    add(
        "header typ dpop+jwt",
        rs(&json!({"alg":"RS256","kid":RSA_KID,"typ":"dpop+jwt"}), &c),
        Check::TokenType,
    );
    add(
        "header typ secevent+jwt",
        rs(
            &json!({"alg":"RS256","kid":RSA_KID,"typ":"secevent+jwt"}),
            &c,
        ),
        Check::TokenType,
    );
    let strict = set(c.clone(), "iss", json!(p.strict_issuer));
    add(
        "strict mode with typ JWT",
        rs(&rs_header(), &strict),
        Check::TokenType,
    );
    add(
        "strict mode without typ",
        rs(&json!({"alg":"RS256","kid":RSA_KID}), &strict),
        Check::TokenType,
    );
    add(
        "strict mode at+jwt but payload typ ID",
        rs(
            &json!({"alg":"RS256","kid":RSA_KID,"typ":"at+jwt"}),
            &set(strict.clone(), "typ", json!("ID")),
        ),
        Check::TokenType,
    );

    out
}

/// DER bytes of a PEM document.
pub fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    STANDARD.decode(body).expect("PEM base64")
}

/// A small real HTTP server publishing a JWKS (and a discovery document) on 127.0.0.1:0, with a
/// request counter and a switchable failure status.
pub struct KeyPublisher {
    base: String,
    state: Arc<PublisherState>,
    task: tokio::task::JoinHandle<()>,
}

struct PublisherState {
    jwks: Mutex<Value>,
    fail_status: Mutex<Option<u16>>,
    jwks_requests: AtomicU64,
    issuer: Mutex<String>,
    base: String,
}

impl KeyPublisher {
    /// Serves `jwks` at `/jwks` and a discovery document naming `{base}` as issuer.
    pub async fn start(jwks: Value) -> KeyPublisher {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind key publisher");
        let addr = listener.local_addr().expect("addr");
        let base = format!("http://{addr}");
        let state = Arc::new(PublisherState {
            jwks: Mutex::new(jwks),
            fail_status: Mutex::new(None),
            jwks_requests: AtomicU64::new(0),
            issuer: Mutex::new(base.clone()),
            base: base.clone(),
        });
        let app = Router::new()
            .route("/jwks", get(serve_jwks))
            .route("/.well-known/openid-configuration", get(serve_discovery))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        KeyPublisher { base, state, task }
    }

    /// `http://127.0.0.1:<port>` (also the issuer its discovery document names by default).
    pub fn base_url(&self) -> &str {
        &self.base
    }
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.base)
    }
    pub fn set_jwks(&self, jwks: Value) {
        *self.state.jwks.lock() = jwks;
    }
    /// Answer every request with this status (None: serve normally).
    pub fn set_failure(&self, status: Option<u16>) {
        *self.state.fail_status.lock() = status;
    }
    pub fn set_discovery_issuer(&self, issuer: &str) {
        *self.state.issuer.lock() = issuer.to_owned();
    }
    pub fn jwks_requests(&self) -> u64 {
        self.state.jwks_requests.load(Ordering::SeqCst)
    }
}

impl Drop for KeyPublisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_jwks(State(s): State<Arc<PublisherState>>) -> Response {
    s.jwks_requests.fetch_add(1, Ordering::SeqCst);
    if let Some(code) = *s.fail_status.lock() {
        return StatusCode::from_u16(code)
            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
            .into_response();
    }
    axum::Json(s.jwks.lock().clone()).into_response()
}

async fn serve_discovery(State(s): State<Arc<PublisherState>>) -> Response {
    if let Some(code) = *s.fail_status.lock() {
        return StatusCode::from_u16(code)
            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
            .into_response();
    }
    let issuer = s.issuer.lock().clone();
    axum::Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{}/jwks", s.base),
    }))
    .into_response()
}
