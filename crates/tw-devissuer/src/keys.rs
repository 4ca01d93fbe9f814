//! Each realm's signing keys: RS256, generated with aws-lc-rs (fast even in debug builds), named by
//! their RFC 7638 thumbprint. Rotation makes a new key the signer and optionally keeps the old
//! public keys published.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{Value, json};
use tw_core::Error;

/// How many old keys stay published at most after `keep_old` rotations.
const MAX_KEPT_KEYS: usize = 4;

pub(crate) struct SigningKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    n: String,
    e: String,
    /// Base64 SPKI DER, as Keycloak's realm page shows `public_key`.
    spki: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish()
    }
}

impl SigningKey {
    pub fn generate() -> Result<Self, Error> {
        let failed =
            |what: &str| Error::internal("key_generation_failed", format!("cannot {what}"));
        let pair =
            KeyPair::generate(KeySize::Rsa2048).map_err(|_| failed("generate an RSA key"))?;
        let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'static>>::as_der(&pair)
            .map_err(|_| failed("encode the RSA key"))?;
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
        let encoding =
            EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| failed("load the RSA key"))?;
        let public = pair.public_key();
        let spki = AsDer::<aws_lc_rs::encoding::PublicKeyX509Der<'static>>::as_der(public)
            .map_err(|_| failed("encode the public key"))?;
        let spki = base64::engine::general_purpose::STANDARD.encode(spki.as_ref());
        let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
        let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
        let decoding =
            DecodingKey::from_rsa_components(&n, &e).map_err(|_| failed("load the public key"))?;
        // RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order.
        let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        Ok(Self {
            kid: URL_SAFE_NO_PAD.encode(digest.as_ref()),
            encoding,
            decoding,
            n,
            e,
            spki,
        })
    }

    fn jwk(&self) -> Value {
        json!({
            "kid": self.kid,
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "n": self.n,
            "e": self.e,
        })
    }
}

/// The signer and the old keys still published.
#[derive(Debug)]
pub(crate) struct RealmKeys {
    pub signer: SigningKey,
    pub previous: Vec<SigningKey>,
}

impl RealmKeys {
    pub fn generate() -> Result<Self, Error> {
        Ok(Self {
            signer: SigningKey::generate()?,
            previous: Vec::new(),
        })
    }

    pub fn rotate(&mut self, keep_old: bool) -> Result<String, Error> {
        let new = SigningKey::generate()?;
        let old = std::mem::replace(&mut self.signer, new);
        if keep_old {
            self.previous.insert(0, old);
            self.previous.truncate(MAX_KEPT_KEYS);
        } else {
            self.previous.clear();
        }
        Ok(self.signer.kid.clone())
    }

    /// The signer's public key, base64 SPKI DER.
    pub fn public_key(&self) -> &str {
        &self.signer.spki
    }

    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = std::iter::once(&self.signer)
            .chain(self.previous.iter())
            .map(SigningKey::jwk)
            .collect();
        json!({ "keys": keys })
    }

    /// The published key with this kid.
    pub fn verifying_key(&self, kid: &str) -> Option<&DecodingKey> {
        std::iter::once(&self.signer)
            .chain(self.previous.iter())
            .find(|k| k.kid == kid)
            .map(|k| &k.decoding)
    }

    pub fn sign(&self, claims: &Value) -> Result<String, Error> {
        let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
        header.kid = Some(self.signer.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.signer.encoding)
            .map_err(|_| Error::internal("signing_failed", "cannot sign the token"))
    }
}
