//! The vault's public values: settings, callers, entries, and what each operation answers.

use crate::keyring::KeyRing;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;
use tw_core::{Error, Secret, UnixTime};
use url::Url;

pub use tw_vault_port::{VaultStatus as EntryStatus, VaultTokenType as TokenType};

/// Mint for any entry, not only the caller's own.
pub const PERM_MINT_ANY: &str = "vault:mint-any";
/// List and read any entry.
pub const PERM_READ_ANY: &str = "vault:read-any";
/// Delete (and duplicate) any entry.
pub const PERM_ADMIN: &str = "vault:admin";
/// Every permission the vault honours.
pub const PERMISSIONS: &[&str] = &[PERM_MINT_ANY, PERM_READ_ANY, PERM_ADMIN];

/// The confidential client the vault uses at the IdP.
#[derive(Debug, Clone)]
pub struct IdpClientSettings {
    /// Discovery (`{issuer}/.well-known/openid-configuration`) finds every endpoint.
    pub issuer: Url,
    pub client_id: String,
    /// Required by the `client_secret_*` methods; ignored by `none`.
    pub client_secret: Option<Secret>,
    /// `client_secret_basic`, `client_secret_post` or `none` (a public client).
    pub auth_method: String,
    /// Per IdP request.
    pub request_timeout: Duration,
}

/// Everything [`crate::Vault::new`] needs besides storage and a clock.
#[derive(Debug, Clone)]
pub struct VaultSettings {
    pub idp: IdpClientSettings,
    /// The callback URL the IdP redirects the browser to (registered at the IdP).
    pub redirect_uri: Url,
    /// Default [`DEFAULT_CONSENT_SCOPE`].
    pub consent_scope: String,
    /// How long a consent may take. Default [`DEFAULT_STATE_TTL`].
    pub state_ttl: Duration,
    /// Minted access tokens are served from memory until `exp - margin`. Default
    /// [`DEFAULT_REUSE_MARGIN`]; zero turns the cache off.
    pub access_token_reuse_margin: Duration,
    pub keys: KeyRing,
    /// Open rows sealed in the first associated-data layout (v1, which binds neither an entry's
    /// session id and attributes nor a consent's redirect); see the crate docs. `true` until
    /// [`crate::Vault::rekey`] has re-sealed every row, then `false`.
    pub accept_v1_seals: bool,
    /// The pages a consent may send the browser to afterwards: checked when it begins and again
    /// at its callback.
    pub redirects: RedirectPolicy,
    /// HMAC-SHA256 key of the consent `state` (at least 32 characters).
    pub state_signing_key: Secret,
    /// Consents one owner may have started and not completed (nor let expire). Default
    /// [`DEFAULT_MAX_PENDING_CONSENTS`].
    pub max_pending_consents: u32,
}

pub const DEFAULT_CONSENT_SCOPE: &str = "openid offline_access";
pub const DEFAULT_STATE_TTL: Duration = Duration::from_secs(600);
pub const DEFAULT_REUSE_MARGIN: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_PENDING_CONSENTS: u32 = 10;

/// Who is asking, as the HTTP layer verified it (bearer token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub issuer: String,
    pub subject: String,
    /// Honoured: [`PERM_MINT_ANY`], [`PERM_READ_ANY`], [`PERM_ADMIN`].
    pub permissions: BTreeSet<String>,
}

impl Caller {
    pub fn new(issuer: impl Into<String>, subject: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            subject: subject.into(),
            permissions: BTreeSet::new(),
        }
    }

    pub fn with_permission(mut self, permission: &str) -> Self {
        self.permissions.insert(permission.to_owned());
        self
    }

    pub(crate) fn may(&self, permission: &str) -> bool {
        self.permissions.contains(permission)
    }

    pub(crate) fn owns(&self, issuer: &str, subject: &str) -> bool {
        same_issuer(&self.issuer, issuer) && self.subject == subject
    }
}

/// Issuers compare equal up to a trailing slash.
pub(crate) fn same_issuer(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// An entry's id (a UUID). Knowing one is never enough: every operation checks ownership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(uuid::Uuid);

impl EntryId {
    pub(crate) fn random() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for EntryId {
    type Err = Error;
    /// Only the hyphenated form the vault hands out (either case); anything else, including the
    /// other spellings `uuid` would read (braced, `urn:uuid:`, bare hex), is 400
    /// `invalid_entry_id`, while a well-formed unknown id is a 404 at lookup.
    fn from_str(s: &str) -> Result<Self, Error> {
        const HYPHENATED_LEN: usize = 36;
        if s.len() != HYPHENATED_LEN {
            return Err(crate::errors::invalid_entry_id());
        }
        uuid::Uuid::try_parse(s)
            .map(EntryId)
            .map_err(|_| crate::errors::invalid_entry_id())
    }
}

/// An entry as callers see it (never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryView {
    pub id: EntryId,
    pub owner_issuer: String,
    pub owner_subject: String,
    pub token_type: TokenType,
    /// The IdP session the token belongs to (Keycloak's `session_state`/`sid`), or, when the IdP
    /// names none, a vault-assigned id (`vault:<uuid>`) shared by duplicates of one consent.
    pub session_id: Option<String>,
    pub created_at: UnixTime,
    pub last_used_at: Option<UnixTime>,
    /// When the stored token expires, if the IdP said (`refresh_expires_in`).
    pub expires_at: Option<UnixTime>,
    pub attributes: BTreeMap<String, String>,
    /// Which key seals it.
    pub key_id: String,
    pub status: EntryStatus,
}

/// The first step of a consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentStart {
    /// Where to send the user's browser.
    pub consent_url: Url,
    /// The consent must be completed before this.
    pub expires_at: UnixTime,
}

/// What the IdP's redirect to the callback carried. `Debug` never shows the authorization code
/// (with the PKCE verifier it is a token) nor the `state`: only whether they are there.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConsentCallback {
    pub state: String,
    pub code: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

impl fmt::Debug for ConsentCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |present: bool| if present { "<redacted>" } else { "<none>" };
        f.debug_struct("ConsentCallback")
            .field("state", &shown(!self.state.is_empty()))
            .field("code", &shown(self.code.is_some()))
            .field("error", &self.error)
            .field("error_description", &self.error_description)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentDone {
    pub entry: EntryView,
    /// The `redirect_after` given when the consent began.
    pub redirect_to: Option<Url>,
}

/// A fresh (or cached, still fresh) access token.
#[derive(Debug, Clone, PartialEq)]
pub struct MintedToken {
    pub access_token: Secret,
    /// Seconds left (0 when the IdP gave no lifetime).
    pub expires_in: u64,
    pub scope: Option<String>,
    pub token_type: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// The token was revoked at the IdP (RFC 7009). `false` when another active entry of the
    /// same owner shares its session (revoking would end it for that entry too), or when the row
    /// could not be opened.
    pub revoked_at_idp: bool,
    /// The revocation ended a session the IdP itself named (Keycloak's `session_state`/`sid`:
    /// revoking an offline token ends its offline session). `false` when nothing was revoked,
    /// and for entries whose session id the vault assigned (`vault:<uuid>`, the IdP named none):
    /// then only the token is known to be revoked.
    pub session_revoked: bool,
}

/// What [`crate::Vault::rekey`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RekeyReport {
    /// Re-sealed under the active key.
    pub rewritten: u64,
    /// Already under the active key.
    pub unchanged: u64,
    /// Could not be opened (key missing, or tampered): left as they were, logged by id.
    pub failed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_callback_debug_hides_code_and_state() {
        let cb = ConsentCallback {
            state: "v1.c3RhdGU.c2ln".into(),
            code: Some("auth-code-4f1e9b".into()),
            error: None,
            error_description: None,
        };
        let shown = format!("{cb:?}");
        assert!(!shown.contains("auth-code-4f1e9b"), "{shown}");
        assert!(!shown.contains("c3RhdGU"), "{shown}");
        assert!(shown.contains("code: \"<redacted>\""), "{shown}");
        let refused = ConsentCallback {
            error: Some("access_denied".into()),
            ..ConsentCallback::default()
        };
        assert!(format!("{refused:?}").contains("access_denied"));
    }
}

/// The pages a browser may be sent to after a consent (`[vault.consent]` `redirect_after` and
/// `allowed_redirects`). The vault checks a consent's page when it begins and again at its
/// callback, right before redirecting (the configuration may have changed meanwhile).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedirectPolicy {
    /// `redirect_after`: always allowed.
    pub redirect_after: Option<Url>,
    /// `allowed_redirects`: URL prefixes (same origin, whole path segments).
    pub allowed_redirects: Vec<Url>,
}

impl RedirectPolicy {
    pub fn allows(&self, target: &Url) -> bool {
        redirect_allowed(
            self.redirect_after.as_ref(),
            &self.allowed_redirects,
            target,
        )
    }
}

/// `redirect_after` itself, or under one of `allowed` (same origin, whole path segments).
fn redirect_allowed(redirect_after: Option<&Url>, allowed: &[Url], target: &Url) -> bool {
    let under = |prefix: &Url| {
        if prefix.origin() != target.origin() {
            return false;
        }
        let p = prefix.path().trim_end_matches('/');
        let t = target.path();
        t == p || t.starts_with(&format!("{p}/")) || p.is_empty()
    };
    redirect_after == Some(target) || allowed.iter().any(under)
}
