//! The consent flow's `state` parameter and PKCE.
//!
//! `state` = `v1.<base64url payload>.<base64url HMAC-SHA256(key, "v1." + payload)>`, the payload a
//! JSON object `{"n": nonce, "exp": unix seconds}`. The signature stops forged or altered states;
//! `exp` is checked against the injected clock; the nonce names a pending-consent row that the
//! callback deletes as it reads it, so a state works once.

use crate::codes;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tw_core::{Error, Secret, UnixTime};

type HmacSha256 = Hmac<Sha256>;

const VERSION: &str = "v1";
/// Longest `state` accepted (ours are about 120 characters).
const MAX_STATE_LEN: usize = 512;
/// Shortest accepted signing key, in bytes of its text.
pub(crate) const MIN_SIGNING_KEY_LEN: usize = 32;

#[derive(Serialize, Deserialize)]
struct Payload {
    n: String,
    exp: i64,
}

/// Signs and checks `state` values.
pub(crate) struct StateSigner {
    /// HMAC keyed once; each signature starts from a clone (the key itself is not kept).
    keyed: HmacSha256,
}

pub(crate) fn state_invalid() -> Error {
    Error::bad_request(
        codes::VAULT_STATE_INVALID,
        "the consent `state` is not one this vault issued (altered or forged)",
    )
}

impl StateSigner {
    pub(crate) fn new(key: Secret) -> Result<Self, Error> {
        if key.expose().len() < MIN_SIGNING_KEY_LEN {
            return Err(Error::config(
                codes::VAULT_STATE_KEY_INVALID,
                format!(
                    "the state signing key must be at least {MIN_SIGNING_KEY_LEN} characters (e.g. `openssl rand -base64 32`)"
                ),
            ));
        }
        let keyed = <HmacSha256 as Mac>::new_from_slice(key.expose().as_bytes()).map_err(|_| {
            Error::config(codes::VAULT_STATE_KEY_INVALID, "unusable state signing key")
        })?;
        Ok(Self { keyed })
    }

    fn mac(&self) -> HmacSha256 {
        self.keyed.clone()
    }

    pub(crate) fn sign(&self, nonce: &str, expires_at: UnixTime) -> String {
        let payload = Payload {
            n: nonce.to_owned(),
            exp: expires_at.as_secs(),
        };
        let body = B64URL.encode(serde_json::to_vec(&payload).unwrap_or_default());
        let signed = format!("{VERSION}.{body}");
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        let tag = B64URL.encode(mac.finalize().into_bytes());
        format!("{signed}.{tag}")
    }

    /// The nonce of a genuine, unexpired state. `vault_state_invalid` / `vault_state_expired`.
    pub(crate) fn verify(&self, state: &str, now: UnixTime) -> Result<String, Error> {
        if state.len() > MAX_STATE_LEN {
            return Err(state_invalid());
        }
        let (signed, tag) = state.rsplit_once('.').ok_or_else(state_invalid)?;
        let (version, body) = signed.split_once('.').ok_or_else(state_invalid)?;
        if version != VERSION {
            return Err(state_invalid());
        }
        let tag = B64URL.decode(tag).map_err(|_| state_invalid())?;
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        mac.verify_slice(&tag).map_err(|_| state_invalid())?;
        let payload: Payload = B64URL
            .decode(body)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(state_invalid)?;
        if now.as_secs() >= payload.exp {
            return Err(Error::bad_request(
                codes::VAULT_STATE_EXPIRED,
                "the consent took too long: its `state` expired; start the consent again",
            ));
        }
        Ok(payload.n)
    }
}

/// A random URL-safe value of `bytes` random bytes.
pub(crate) fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    B64URL.encode(buf)
}

/// RFC 7636 S256: a 43-character verifier (32 random bytes) and its challenge.
pub(crate) struct Pkce {
    pub(crate) verifier: Secret,
    pub(crate) challenge: String,
}

impl Pkce {
    pub(crate) fn new() -> Self {
        let verifier = random_token(32);
        let challenge = challenge_of(&verifier);
        Self {
            verifier: Secret::new(verifier),
            challenge,
        }
    }
}

/// BASE64URL(SHA256(verifier)), no padding.
pub(crate) fn challenge_of(verifier: &str) -> String {
    B64URL.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> StateSigner {
        StateSigner::new(Secret::new("0123456789abcdef0123456789abcdef")).unwrap()
    }

    #[test]
    fn a_signed_state_verifies_until_it_expires() {
        let s = signer();
        let exp = UnixTime::from_secs(1_000);
        let state = s.sign("nonce-1", exp);
        assert_eq!(
            s.verify(&state, UnixTime::from_secs(999)).unwrap(),
            "nonce-1"
        );
        let e = s.verify(&state, UnixTime::from_secs(1_000)).unwrap_err();
        assert_eq!(e.code(), "vault_state_expired");
    }

    #[test]
    fn altered_or_foreign_states_are_invalid() {
        let s = signer();
        let state = s.sign("nonce-1", UnixTime::from_secs(1_000));
        let now = UnixTime::from_secs(1);
        // Another payload under the old signature.
        let (_, tag) = state.rsplit_once('.').unwrap();
        let forged_body = B64URL.encode(br#"{"n":"nonce-2","exp":99999}"#);
        for bad in [
            format!("v1.{forged_body}.{tag}"),
            state.replacen("v1.", "v2.", 1),
            format!("{state}x"),
            "garbage".to_owned(),
            String::new(),
            "a".repeat(4096),
        ] {
            assert_eq!(
                s.verify(&bad, now).unwrap_err().code(),
                "vault_state_invalid",
                "{bad}"
            );
        }
        let other = StateSigner::new(Secret::new("another-key-another-key-another-key")).unwrap();
        assert_eq!(
            other.verify(&state, now).unwrap_err().code(),
            "vault_state_invalid"
        );
    }

    #[test]
    fn short_signing_keys_are_refused() {
        assert!(StateSigner::new(Secret::new("short")).is_err());
    }

    #[test]
    fn pkce_matches_rfc_7636_appendix_b() {
        assert_eq!(
            challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let p = Pkce::new();
        assert_eq!(p.verifier.expose().len(), 43);
        assert!(
            p.verifier
                .expose()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(p.challenge, challenge_of(p.verifier.expose()));
    }
}
