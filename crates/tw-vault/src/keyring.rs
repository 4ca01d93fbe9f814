//! [`KeyRing`]: AES-256-GCM keys by key id, one of them active for new writes.
//!
//! Invariants: a fresh 96-bit random nonce per encryption; associated data binds each sealed value
//! to where it belongs (what each layout binds: [`crate::binding`]), so a row copied onto another
//! row, or whose metadata was changed, fails to open; the key id is stored with the row so old
//! keys keep working until `rekey` has moved every row to the active key.

use crate::codes;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use rand::RngCore;
use std::collections::BTreeMap;
use std::fmt;
use tw_core::{Error, ErrorKind, Secret};
use tw_vault_port::Sealed;

/// AES-GCM's standard nonce length.
const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;
const MAX_KEY_ID_LEN: usize = 64;

/// The associated-data layouts, each with its own prefix (a new layout gets a new prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AadLayout {
    /// Written before v2: (entry id, owner, token type) / (nonce, owner).
    V1,
    /// Every new seal: v1's parts and what else the row decides by (see [`crate::binding`]).
    V2,
}

impl AadLayout {
    fn prefix(self) -> &'static [u8] {
        match self {
            AadLayout::V1 => b"tokenwarden-vault-v1",
            AadLayout::V2 => b"tokenwarden-vault-v2",
        }
    }
}

/// AES-256-GCM keys by key id. `Debug` shows the key ids only.
#[derive(Clone)]
pub struct KeyRing {
    active: String,
    keys: BTreeMap<String, Aes256Gcm>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("active", &self.active)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn key_error(key_id: &str, why: &str) -> Error {
    Error::config(
        codes::VAULT_KEY_INVALID,
        format!("vault key `{key_id}`: {why}"),
    )
    .with("key_id", key_id)
}

impl KeyRing {
    /// `keys`: (key id, 32 random bytes as base64 text — standard or URL-safe alphabet, padding
    /// optional; e.g. `openssl rand -base64 32`). `active` must be one of them.
    pub fn new(active: &str, keys: Vec<(String, Secret)>) -> Result<KeyRing, Error> {
        let mut ring = BTreeMap::new();
        for (id, material) in keys {
            if id.is_empty()
                || id.len() > MAX_KEY_ID_LEN
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(key_error(
                    &id,
                    "a key id is 1 to 64 characters of A-Z a-z 0-9 - _ .",
                ));
            }
            let bytes =
                decode_key(material.expose()).ok_or_else(|| key_error(&id, "not base64 text"))?;
            if bytes.len() != KEY_LEN {
                return Err(key_error(
                    &id,
                    &format!(
                        "must be {KEY_LEN} bytes (base64 of 32 random bytes), found {} bytes",
                        bytes.len()
                    ),
                ));
            }
            let cipher = Aes256Gcm::new_from_slice(&bytes)
                .map_err(|_| key_error(&id, "not a usable AES-256 key"))?;
            if ring.insert(id.clone(), cipher).is_some() {
                return Err(key_error(&id, "listed twice"));
            }
        }
        if !ring.contains_key(active) {
            return Err(Error::config(
                codes::VAULT_KEY_INVALID,
                format!("the active vault key `{active}` is not among the configured keys"),
            )
            .with("key_id", active));
        }
        Ok(KeyRing {
            active: active.to_owned(),
            keys: ring,
        })
    }

    pub fn active_key_id(&self) -> &str {
        &self.active
    }

    /// Encrypts under the active key with a fresh random nonce.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &str) -> Result<Sealed, Error> {
        let cipher = self
            .keys
            .get(&self.active)
            .ok_or_else(|| unknown(&self.active))?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad,
                },
            )
            .map_err(|_| Error::internal(codes::VAULT_ENCRYPT_FAILED, "encryption failed"))?;
        Ok(Sealed {
            key_id: self.active.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Decrypts and authenticates. `vault_key_unknown` when the row's key is not in the ring;
    /// `vault_decrypt_failed` when the ciphertext, nonce or associated data was altered (or the
    /// key under that id is another key).
    pub(crate) fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<Secret, Error> {
        let cipher = self
            .keys
            .get(&sealed.key_id)
            .ok_or_else(|| unknown(&sealed.key_id))?;
        if sealed.nonce.len() != NONCE_LEN {
            return Err(decrypt_failed(&sealed.key_id));
        }
        let plain = cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad,
                },
            )
            .map_err(|_| decrypt_failed(&sealed.key_id))?;
        let text = String::from_utf8(plain).map_err(|_| decrypt_failed(&sealed.key_id))?;
        Ok(Secret::new(text))
    }
}

fn decode_key(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = text.trim();
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

fn unknown(key_id: &str) -> Error {
    Error::new(
        ErrorKind::Internal,
        codes::VAULT_KEY_UNKNOWN,
        format!(
            "the vault key `{key_id}` that sealed this value is not configured (add it back to the key ring)"
        ),
    )
    .with("key_id", key_id)
}

fn decrypt_failed(key_id: &str) -> Error {
    Error::new(
        ErrorKind::Internal,
        codes::VAULT_DECRYPT_FAILED,
        format!(
            "a sealed value failed authentication under key `{key_id}`: it was altered, moved to another row, or the key under this id changed"
        ),
    )
    .with("key_id", key_id)
}

/// Associated data: the layout's prefix, a context label and length-prefixed parts (no two part
/// lists collide).
pub(crate) fn aad<S: AsRef<str>>(layout: AadLayout, context: &str, parts: &[S]) -> Vec<u8> {
    let mut out = layout.prefix().to_vec();
    for part in std::iter::once(context).chain(parts.iter().map(AsRef::as_ref)) {
        out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Secret {
        Secret::new(base64::engine::general_purpose::STANDARD.encode([byte; 32]))
    }

    #[test]
    fn seals_and_opens_with_the_same_associated_data_only() {
        let ring = KeyRing::new("k1", vec![("k1".into(), key(1))]).unwrap();
        let ad = aad(AadLayout::V2, "entry", &["id", "iss", "sub", "offline"]);
        let sealed = ring.seal(&ad, "refresh-token-value").unwrap();
        assert_eq!(sealed.key_id, "k1");
        assert_eq!(
            ring.open(&sealed, &ad).unwrap().expose(),
            "refresh-token-value"
        );
        let other = aad(
            AadLayout::V2,
            "entry",
            &["id", "iss", "someone-else", "offline"],
        );
        assert_eq!(
            ring.open(&sealed, &other).unwrap_err().code(),
            "vault_decrypt_failed"
        );
        // Same nonce twice would break GCM: every seal draws a new one.
        assert_ne!(
            ring.seal(&ad, "x").unwrap().nonce,
            ring.seal(&ad, "x").unwrap().nonce
        );
    }

    #[test]
    fn length_prefixes_keep_part_boundaries() {
        assert_ne!(
            aad(AadLayout::V2, "c", &["ab", "c"]),
            aad(AadLayout::V2, "c", &["a", "bc"])
        );
        assert_ne!(
            aad(AadLayout::V1, "c", &["a"]),
            aad(AadLayout::V2, "c", &["a"])
        );
    }

    #[test]
    fn bad_configurations_are_refused_without_showing_key_material() {
        let short = Secret::new(base64::engine::general_purpose::STANDARD.encode([7u8; 16]));
        let e = KeyRing::new("k1", vec![("k1".into(), short)]).unwrap_err();
        assert_eq!(e.code(), "vault_key_invalid");
        assert!(e.message().contains("32 bytes"), "{e}");
        let e = KeyRing::new("k2", vec![("k1".into(), key(1))]).unwrap_err();
        assert_eq!(e.code(), "vault_key_invalid");
        let e = KeyRing::new("k1", vec![("k1".into(), Secret::new("not base64 !!"))]).unwrap_err();
        assert!(!e.to_string().contains("not base64 !!"));
        let ring = KeyRing::new("k1", vec![("k1".into(), key(1)), ("k0".into(), key(0))]).unwrap();
        let shown = format!("{ring:?}");
        assert!(
            shown.contains("k0") && !shown.contains(key(1).expose()),
            "{shown}"
        );
    }
}
