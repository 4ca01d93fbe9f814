//! What a sealed value is bound to: the AEAD's associated data, by layout.
//!
//! A row holds more than its ciphertext, and some of it decides what the vault does with it. Each
//! such field is either bound into the associated data (a row whose field was changed in the
//! database no longer opens: `vault_decrypt_failed`, and nothing is minted, redirected or
//! written) or re-validated where it is used:
//!
//! | Row | Field | How |
//! |---|---|---|
//! | entry | id, owner (issuer, subject), token type | bound (v1 and v2) |
//! | entry | session id (the lineage, the siblings a rotation writes, the shared-session rule) | bound (v2) |
//! | entry | attributes (what callers pick entries by) | bound (v2) |
//! | entry | status | re-validated: it changes over time without a new seal. Its writes are fenced by the lease and guarded by the version; `active` only ever means "present the token to the IdP", which refuses a dead one; `reconsent_required` only stops minting. |
//! | entry | key id | names the key: another one does not open |
//! | entry | version, timestamps, expiry | informational (version: write guards only) |
//! | pending consent | nonce, owner | bound (v1 and v2) |
//! | pending consent | redirect after consent, attributes | bound (v2); the redirect is also re-checked against `allowed_redirects` at the callback |
//!
//! Listings show a row's stored metadata without opening it (they decide nothing); every use
//! (mint, a cached token included, duplicate, delete's revocation, rotation of siblings, rekey)
//! opens it first.
//!
//! Layouts: every new seal is v2. Rows written before it (v1) still open while
//! [`VaultSettings::accept_v1_seals`] is on (the default), are re-sealed as v2 by their next write
//! (a rotation) or by [`crate::Vault::rekey`], and stop opening once it is off. A v2 ciphertext
//! never opens under a v1 associated data (they differ), so trying v1 after v2 is no downgrade:
//! it opens only what was sealed as v1.
//!
//! A v2 string: the prefix `tokenwarden-vault-v2`, then the context (`entry` / `pending`) and each
//! part, each as a 4-byte big-endian length and its bytes. An optional part is two parts: `0` and
//! an empty one, or `1` and the value. Attributes are their JSON object with sorted keys.

use crate::codes;
use crate::keyring::{AadLayout, KeyRing, aad};
use crate::model::{TokenType, VaultSettings};
use std::collections::BTreeMap;
use tw_core::{Error, Secret};
use tw_vault_port::{PendingConsent, Sealed, VaultRow};

/// What an entry's token is bound to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryBinding<'a> {
    pub(crate) id: &'a str,
    pub(crate) owner_issuer: &'a str,
    pub(crate) owner_subject: &'a str,
    pub(crate) token_type: TokenType,
    pub(crate) session_id: Option<&'a str>,
    pub(crate) attributes: &'a BTreeMap<String, String>,
}

impl<'a> From<&'a VaultRow> for EntryBinding<'a> {
    fn from(row: &'a VaultRow) -> Self {
        Self {
            id: &row.id,
            owner_issuer: &row.owner_issuer,
            owner_subject: &row.owner_subject,
            token_type: row.token_type,
            session_id: row.session_id.as_deref(),
            attributes: &row.attributes,
        }
    }
}

impl EntryBinding<'_> {
    fn aad(&self, layout: AadLayout) -> Result<Vec<u8>, Error> {
        let mut parts = vec![
            self.id.to_owned(),
            self.owner_issuer.to_owned(),
            self.owner_subject.to_owned(),
            self.token_type.as_str().to_owned(),
        ];
        if layout == AadLayout::V2 {
            push_optional(&mut parts, self.session_id);
            parts.push(attributes_text(self.attributes)?);
        }
        Ok(aad(layout, "entry", &parts))
    }
}

/// What a pending consent's PKCE verifier is bound to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PendingBinding<'a> {
    pub(crate) nonce: &'a str,
    pub(crate) owner_issuer: &'a str,
    pub(crate) owner_subject: &'a str,
    pub(crate) redirect_after: Option<&'a str>,
    pub(crate) attributes: &'a BTreeMap<String, String>,
}

impl<'a> From<&'a PendingConsent> for PendingBinding<'a> {
    fn from(p: &'a PendingConsent) -> Self {
        Self {
            nonce: &p.nonce,
            owner_issuer: &p.owner_issuer,
            owner_subject: &p.owner_subject,
            redirect_after: p.redirect_after.as_deref(),
            attributes: &p.attributes,
        }
    }
}

impl PendingBinding<'_> {
    fn aad(&self, layout: AadLayout) -> Result<Vec<u8>, Error> {
        let mut parts = vec![
            self.nonce.to_owned(),
            self.owner_issuer.to_owned(),
            self.owner_subject.to_owned(),
        ];
        if layout == AadLayout::V2 {
            push_optional(&mut parts, self.redirect_after);
            parts.push(attributes_text(self.attributes)?);
        }
        Ok(aad(layout, "pending", &parts))
    }
}

fn push_optional(parts: &mut Vec<String>, value: Option<&str>) {
    match value {
        Some(v) => parts.extend(["1".to_owned(), v.to_owned()]),
        None => parts.extend(["0".to_owned(), String::new()]),
    }
}

/// Sorted keys (a `BTreeMap`), serde_json's escaping: one text per map.
fn attributes_text(attributes: &BTreeMap<String, String>) -> Result<String, Error> {
    serde_json::to_string(attributes)
        .map_err(|_| Error::internal(codes::VAULT_ENCRYPT_FAILED, "attributes cannot be encoded"))
}

/// Seals and opens rows with the key ring, in the current layout (v2), opening v1 rows while
/// allowed.
#[derive(Debug, Clone)]
pub(crate) struct Seals {
    keys: KeyRing,
    accept_v1: bool,
}

/// A value opened, and the layout it was sealed in.
pub(crate) struct Opened {
    pub(crate) secret: Secret,
    pub(crate) layout: AadLayout,
}

impl Seals {
    pub(crate) fn new(settings: &VaultSettings) -> Self {
        Self {
            keys: settings.keys.clone(),
            accept_v1: settings.accept_v1_seals,
        }
    }

    pub(crate) fn keys(&self) -> &KeyRing {
        &self.keys
    }

    pub(crate) fn seal_entry(&self, to: EntryBinding<'_>, token: &str) -> Result<Sealed, Error> {
        self.keys.seal(&to.aad(AadLayout::V2)?, token)
    }

    pub(crate) fn open_entry(&self, row: &VaultRow) -> Result<Opened, Error> {
        let to = EntryBinding::from(row);
        self.open(&row.sealed, |layout| to.aad(layout))
    }

    pub(crate) fn seal_pending(
        &self,
        to: PendingBinding<'_>,
        verifier: &str,
    ) -> Result<Sealed, Error> {
        self.keys.seal(&to.aad(AadLayout::V2)?, verifier)
    }

    pub(crate) fn open_pending(&self, pending: &PendingConsent) -> Result<Opened, Error> {
        let to = PendingBinding::from(pending);
        self.open(&pending.verifier, |layout| to.aad(layout))
    }

    /// v2, else (when allowed, and only when the v2 attempt failed authentication) v1. A missing
    /// key is reported as such, whichever layout.
    fn open(
        &self,
        sealed: &Sealed,
        aad_of: impl Fn(AadLayout) -> Result<Vec<u8>, Error>,
    ) -> Result<Opened, Error> {
        match self.keys.open(sealed, &aad_of(AadLayout::V2)?) {
            Ok(secret) => Ok(Opened {
                secret,
                layout: AadLayout::V2,
            }),
            Err(e) if self.accept_v1 && e.code() == codes::VAULT_DECRYPT_FAILED => {
                match self.keys.open(sealed, &aad_of(AadLayout::V1)?) {
                    Ok(secret) => Ok(Opened {
                        secret,
                        layout: AadLayout::V1,
                    }),
                    Err(_) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use tw_core::UnixTime;
    use tw_vault_port::VaultStatus;

    fn ring() -> KeyRing {
        let key = Secret::new(base64::engine::general_purpose::STANDARD.encode([7u8; 32]));
        KeyRing::new("k1", vec![("k1".into(), key)]).expect("ring")
    }

    fn seals(accept_v1: bool) -> Seals {
        Seals {
            keys: ring(),
            accept_v1,
        }
    }

    fn row() -> VaultRow {
        VaultRow {
            id: "0b7c".into(),
            owner_issuer: "https://kc/realms/r".into(),
            owner_subject: "alice".into(),
            token_type: TokenType::Offline,
            sealed: Sealed {
                key_id: "k1".into(),
                nonce: Vec::new(),
                ciphertext: Vec::new(),
            },
            session_id: Some("s-1".into()),
            status: VaultStatus::Active,
            attributes: BTreeMap::from([("job".to_owned(), "nightly".to_owned())]),
            created_at: UnixTime::from_secs(0),
            last_used_at: None,
            expires_at: None,
            version: 1,
        }
    }

    fn sealed_row(s: &Seals, layout: AadLayout) -> VaultRow {
        let mut r = row();
        let to = EntryBinding::from(&r).aad(layout).expect("aad");
        r.sealed = s.keys.seal(&to, "refresh-token").expect("seal");
        r
    }

    #[test]
    fn every_field_a_row_decides_by_is_bound() {
        let s = seals(true);
        let good = sealed_row(&s, AadLayout::V2);
        let opened = s.open_entry(&good).expect("opens");
        assert_eq!(opened.secret.expose(), "refresh-token");
        assert!(opened.layout == AadLayout::V2);
        type Change = Box<dyn Fn(&mut VaultRow)>;
        let tampered: Vec<(&str, Change)> = vec![
            ("id", Box::new(|r| r.id.push('x'))),
            ("issuer", Box::new(|r| r.owner_issuer.push('/'))),
            ("subject", Box::new(|r| r.owner_subject = "Alice".into())),
            ("type", Box::new(|r| r.token_type = TokenType::Refresh)),
            ("session", Box::new(|r| r.session_id = Some("s-2".into()))),
            ("no session", Box::new(|r| r.session_id = None)),
            (
                "empty session",
                Box::new(|r| r.session_id = Some(String::new())),
            ),
            (
                "session space",
                Box::new(|r| r.session_id = Some("s-1 ".into())),
            ),
            (
                "attribute value",
                Box::new(|r| {
                    r.attributes.insert("job".into(), "hourly".into());
                }),
            ),
            (
                "attribute added",
                Box::new(|r| {
                    r.attributes.insert("owner".into(), "bob".into());
                }),
            ),
            ("attributes gone", Box::new(|r| r.attributes.clear())),
        ];
        for (what, change) in tampered {
            let mut r = good.clone();
            change(&mut r);
            let e = s.open_entry(&r).err().expect(what);
            assert_eq!(e.code(), "vault_decrypt_failed", "{what}");
        }
        // Status, version and timestamps change without a new seal.
        let mut r = good.clone();
        r.status = VaultStatus::ReconsentRequired;
        r.version = 9;
        r.last_used_at = Some(UnixTime::from_secs(5));
        assert!(s.open_entry(&r).is_ok());
    }

    #[test]
    fn v1_rows_open_only_while_allowed_and_v2_never_as_v1() {
        let s = seals(true);
        let legacy = sealed_row(&s, AadLayout::V1);
        let opened = s.open_entry(&legacy).expect("v1 opens");
        assert!(opened.layout == AadLayout::V1);
        // What v1 did not bind stays unbound for such a row (hence rekey, then off).
        let mut moved = legacy.clone();
        moved.session_id = Some("s-2".into());
        assert!(s.open_entry(&moved).is_ok());
        let mut owner = legacy.clone();
        owner.owner_subject = "bob".into();
        assert_eq!(
            s.open_entry(&owner).err().map(|e| e.code()),
            Some("vault_decrypt_failed")
        );
        assert_eq!(
            seals(false).open_entry(&legacy).err().map(|e| e.code()),
            Some("vault_decrypt_failed")
        );
        // A v2 row with a changed session does not fall back to the looser v1.
        let mut v2 = sealed_row(&s, AadLayout::V2);
        v2.session_id = Some("s-2".into());
        assert_eq!(
            s.open_entry(&v2).err().map(|e| e.code()),
            Some("vault_decrypt_failed")
        );
        // A missing key is named as such.
        let mut gone = legacy;
        gone.sealed.key_id = "k9".into();
        assert_eq!(
            s.open_entry(&gone).err().map(|e| e.code()),
            Some("vault_key_unknown")
        );
    }

    #[test]
    fn pending_consents_bind_their_redirect_and_attributes() {
        let s = seals(true);
        let attributes = BTreeMap::from([("job".to_owned(), "nightly".to_owned())]);
        let mut pending = PendingConsent {
            nonce: "n-1".into(),
            owner_issuer: "https://kc/realms/r".into(),
            owner_subject: "alice".into(),
            verifier: Sealed {
                key_id: "k1".into(),
                nonce: Vec::new(),
                ciphertext: Vec::new(),
            },
            attributes,
            redirect_after: Some("https://app.example/done".into()),
            created_at: UnixTime::from_secs(0),
            expires_at: UnixTime::from_secs(600),
        };
        pending.verifier = s
            .seal_pending(PendingBinding::from(&pending), "verifier")
            .expect("seal");
        assert_eq!(
            s.open_pending(&pending).expect("opens").secret.expose(),
            "verifier"
        );
        for redirect in [
            Some("https://evil.example/done"),
            Some("https://app.example/done/"),
            Some(""),
            None,
        ] {
            let mut p = pending.clone();
            p.redirect_after = redirect.map(str::to_owned);
            assert_eq!(
                s.open_pending(&p).err().map(|e| e.code()),
                Some("vault_decrypt_failed"),
                "{redirect:?}"
            );
        }
        let mut p = pending.clone();
        p.attributes.clear();
        assert!(s.open_pending(&p).is_err());
        // None and Some("") are different bindings.
        assert_ne!(
            {
                let mut parts = Vec::new();
                push_optional(&mut parts, None);
                parts
            },
            {
                let mut parts = Vec::new();
                push_optional(&mut parts, Some(""));
                parts
            }
        );
    }
}
