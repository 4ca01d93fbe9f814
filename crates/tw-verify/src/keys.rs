//! Published signing keys: JWK parsing and the per-issuer key set.

use crate::parse::Alg;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// Most keys tried for a token without `kid`.
pub const MAX_KIDLESS_CANDIDATES: usize = 8;
/// Most keys kept from one JWKS document.
pub const MAX_KEYS: usize = 100;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// The kind of a public key, which fixes the algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyKind {
    /// RSA ⇒ RS*/PS*, P-256 ⇒ ES256, P-384 ⇒ ES384, Ed25519 ⇒ EdDSA.
    pub fn fits(self, alg: Alg) -> bool {
        match self {
            KeyKind::Rsa => matches!(
                alg,
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
            ),
            KeyKind::EcP256 => alg == Alg::ES256,
            KeyKind::EcP384 => alg == Alg::ES384,
            KeyKind::Ed25519 => alg == Alg::EdDSA,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Rsa => "RSA",
            KeyKind::EcP256 => "EC P-256",
            KeyKind::EcP384 => "EC P-384",
            KeyKind::Ed25519 => "OKP Ed25519",
        }
    }
}

/// One usable signing key.
pub struct VerifyKey {
    pub kid: Option<String>,
    pub kind: KeyKind,
    /// The JWK's own `alg`, if it had one: then only that algorithm may use the key.
    pub alg: Option<Alg>,
    /// Identity of the key material (kty + components), to tell whether a key is still published.
    pub(crate) material: Vec<u8>,
    pub(crate) key: DecodingKey,
}

impl VerifyKey {
    pub fn accepts(&self, alg: Alg) -> bool {
        self.kind.fits(alg) && self.alg.is_none_or(|a| a == alg)
    }
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Why one JWK was skipped (logged at debug, never fatal for the set).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum SkipReason {
    #[error("not a JSON object")]
    NotObject,
    #[error("use is not sig")]
    NotSig,
    #[error("key_ops does not allow verify")]
    NoVerifyOp,
    #[error("unsupported kty or crv")]
    Unsupported,
    #[error("alg is unknown or does not fit the key type")]
    BadAlg,
    #[error("malformed key parameters")]
    Malformed,
    #[error("RSA modulus shorter than {MIN_RSA_BITS} bits")]
    WeakRsa,
    #[error("kid is not a string or too long")]
    BadKid,
}

fn b64_field(o: &serde_json::Map<String, Value>, name: &str) -> Result<Vec<u8>, SkipReason> {
    let s = o
        .get(name)
        .and_then(Value::as_str)
        .ok_or(SkipReason::Malformed)?;
    // Tolerate padding some publishers add; the alphabet is still strict.
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| SkipReason::Malformed)
}

/// Parses one JWK into a verification key, or says why it is not usable for signatures.
pub(crate) fn parse_jwk(v: &Value) -> Result<VerifyKey, SkipReason> {
    let o = v.as_object().ok_or(SkipReason::NotObject)?;
    match o.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return Err(SkipReason::NotSig),
    }
    if let Some(ops) = o.get("key_ops") {
        let allows = ops
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x.as_str() == Some("verify")));
        if !allows {
            return Err(SkipReason::NoVerifyOp);
        }
    }
    let kid = match o.get("kid") {
        None => None,
        Some(Value::String(k)) if k.len() <= crate::parse::MAX_KID_BYTES => Some(k.clone()),
        Some(_) => return Err(SkipReason::BadKid),
    };
    let kty = o.get("kty").and_then(Value::as_str).unwrap_or("");
    let crv = o.get("crv").and_then(Value::as_str).unwrap_or("");
    let (kind, key, material) = match (kty, crv) {
        ("RSA", _) => {
            let n = b64_field(o, "n")?;
            let e = b64_field(o, "e")?;
            let n_trim: &[u8] = {
                let first = n.iter().position(|b| *b != 0).unwrap_or(n.len());
                &n[first..]
            };
            if n_trim.len() * 8 < MIN_RSA_BITS {
                return Err(SkipReason::WeakRsa);
            }
            if e.is_empty() || e.len() > 8 {
                return Err(SkipReason::Malformed);
            }
            let mut material = b"RSA:".to_vec();
            material.extend_from_slice(n_trim);
            material.push(b':');
            material.extend_from_slice(&e);
            (
                KeyKind::Rsa,
                DecodingKey::from_rsa_raw_components(n_trim, &e),
                material,
            )
        }
        ("EC", "P-256" | "P-384") => {
            let (kind, len) = if crv == "P-256" {
                (KeyKind::EcP256, 32)
            } else {
                (KeyKind::EcP384, 48)
            };
            let x = b64_field(o, "x")?;
            let y = b64_field(o, "y")?;
            if x.len() != len || y.len() != len {
                return Err(SkipReason::Malformed);
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let mut material = format!("EC:{crv}:").into_bytes();
            material.extend_from_slice(&point);
            (kind, DecodingKey::from_ec_der(&point), material)
        }
        ("OKP", "Ed25519") => {
            let x = b64_field(o, "x")?;
            if x.len() != 32 {
                return Err(SkipReason::Malformed);
            }
            let mut material = b"OKP:Ed25519:".to_vec();
            material.extend_from_slice(&x);
            (KeyKind::Ed25519, DecodingKey::from_ed_der(&x), material)
        }
        _ => return Err(SkipReason::Unsupported),
    };
    let alg = match o.get("alg") {
        None => None,
        Some(Value::String(a)) => match Alg::from_name(a) {
            Some(a) if kind.fits(a) => Some(a),
            _ => return Err(SkipReason::BadAlg),
        },
        Some(_) => return Err(SkipReason::BadAlg),
    };
    Ok(VerifyKey {
        kid,
        kind,
        alg,
        material,
        key,
    })
}

/// The keys of one issuer, as last fetched successfully.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    by_kid: HashMap<String, Vec<Arc<VerifyKey>>>,
    all: Vec<Arc<VerifyKey>>,
}

impl KeySet {
    /// Parses a JWKS document; returns the set and the number of keys skipped.
    pub(crate) fn from_jwks(doc: &Value) -> Result<(KeySet, usize), &'static str> {
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("the JWKS has no keys array")?;
        let mut set = KeySet::default();
        let mut skipped = 0;
        for k in keys.iter() {
            if set.all.len() >= MAX_KEYS {
                skipped += 1;
                continue;
            }
            match parse_jwk(k) {
                Ok(key) => set.push(Arc::new(key)),
                Err(reason) => {
                    skipped += 1;
                    tracing::debug!(%reason, "JWK skipped");
                }
            }
        }
        if set.all.is_empty() {
            return Err("the JWKS has no usable signing key");
        }
        Ok((set, skipped))
    }

    fn push(&mut self, key: Arc<VerifyKey>) {
        if let Some(kid) = &key.kid {
            self.by_kid
                .entry(kid.clone())
                .or_default()
                .push(key.clone());
        }
        self.all.push(key);
    }

    /// Keys published under this `kid` (any type).
    pub fn with_kid(&self, kid: &str) -> &[Arc<VerifyKey>] {
        self.by_kid.get(kid).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Up to [`MAX_KIDLESS_CANDIDATES`] keys usable with `alg`, for a token without `kid`.
    pub fn for_alg(&self, alg: Alg) -> Vec<Arc<VerifyKey>> {
        self.all
            .iter()
            .filter(|k| k.accepts(alg))
            .take(MAX_KIDLESS_CANDIDATES)
            .cloned()
            .collect()
    }

    /// Whether this key (the same material) is still published.
    pub(crate) fn contains_key(&self, key: &Arc<VerifyKey>) -> bool {
        self.all
            .iter()
            .any(|k| Arc::ptr_eq(k, key) || k.material == key.material)
    }

    /// Whether this set publishes a key (by material) that `older` did not.
    pub(crate) fn has_keys_not_in(&self, older: &KeySet) -> bool {
        self.all.iter().any(|k| !older.contains_key(k))
    }

    pub(crate) fn len(&self) -> usize {
        self.all.len()
    }

    pub(crate) fn kids(&self) -> Vec<String> {
        self.all.iter().filter_map(|k| k.kid.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn n2048() -> String {
        let mut n = vec![0xC5u8; 256];
        n[255] = 0x01;
        URL_SAFE_NO_PAD.encode(n)
    }

    #[test]
    fn skips_unusable_keys() {
        let n = n2048();
        let doc = json!({"keys": [
            {"kty":"RSA","kid":"a","n":n,"e":"AQAB"},
            {"kty":"RSA","kid":"enc","use":"enc","n":n,"e":"AQAB"},
            {"kty":"RSA","kid":"ops","key_ops":["encrypt"],"n":n,"e":"AQAB"},
            {"kty":"RSA","kid":"weak","n":URL_SAFE_NO_PAD.encode([0xC5u8; 128]),"e":"AQAB"},
            {"kty":"RSA","kid":"badalg","alg":"ES256","n":n,"e":"AQAB"},
            {"kty":"oct","kid":"hmac","k":"c2VjcmV0"},
            {"kty":"EC","kid":"ec","crv":"P-256","x":URL_SAFE_NO_PAD.encode([1u8;32]),"y":URL_SAFE_NO_PAD.encode([2u8;32])},
            {"kty":"EC","kid":"ec-short","crv":"P-256","x":"AQ","y":"AQ"},
            "junk"
        ]});
        let (set, skipped) = KeySet::from_jwks(&doc).expect("set");
        assert_eq!(set.len(), 2);
        assert_eq!(skipped, 7);
        assert_eq!(set.with_kid("a").len(), 1);
        assert!(set.with_kid("enc").is_empty());
        assert_eq!(set.for_alg(Alg::RS256).len(), 1);
        assert_eq!(set.for_alg(Alg::ES256).len(), 1);
        assert!(set.for_alg(Alg::ES384).is_empty());
    }

    #[test]
    fn jwk_alg_pins_the_algorithm() {
        let k = parse_jwk(&json!({"kty":"RSA","alg":"RS256","n":n2048(),"e":"AQAB"})).expect("key");
        assert!(k.accepts(Alg::RS256));
        assert!(!k.accepts(Alg::PS256));
        let k = parse_jwk(&json!({"kty":"RSA","n":n2048(),"e":"AQAB"})).expect("key");
        assert!(k.accepts(Alg::PS256));
        assert!(!k.accepts(Alg::ES256));
    }

    #[test]
    fn empty_sets_are_errors() {
        assert!(KeySet::from_jwks(&json!({"keys": []})).is_err());
        assert!(KeySet::from_jwks(&json!({"nokeys": 1})).is_err());
        assert!(KeySet::from_jwks(&json!({"keys": [{"kty":"oct","k":"AA"}]})).is_err());
    }
}
