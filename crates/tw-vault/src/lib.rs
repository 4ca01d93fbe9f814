//! tokenwarden's token vault: refresh and offline tokens stored sealed, minted into access
//! tokens on demand, revocable. No HTTP server types here (the API is `tw-vault-api`); the IdP is
//! reached through `tw_idp` and `tw_verify`.
//!
//! Storage is a port the vault defines, [`VaultStore`] (crate `tw-vault-port`, re-exported as
//! [`store`]): rows of sealed bytes, version-guarded writes and the lease fence, in the vault's
//! own types. The vault never names a database; the binary hands it `tw_store::VaultTables`.
//!
//! - [`KeyRing`]: AES-256-GCM keys by id, one active. A random 96-bit nonce per seal; associated
//!   data (layout v2) binds a sealed token to everything its row decides by: entry id, owner
//!   (issuer + subject), token type, session id and attributes; a consent in progress binds its
//!   PKCE verifier to its nonce, owner, page to return to and attributes. A ciphertext moved to
//!   another row, or a row whose metadata was changed in the database, does not open
//!   (`vault_decrypt_failed`); the status is not sealed (it changes over time) but written only
//!   by lease-fenced, version-guarded writes, and means nothing the IdP does not confirm. Rows
//!   sealed in layout v1 (before) open while [`VaultSettings::accept_v1_seals`] is on and are
//!   re-sealed in v2 by their next rotation or [`Vault::rekey`], which also moves rows to the
//!   active key. A cached access token is served only for a row that still opens.
//! - Consent ([`Vault::begin_consent`] / [`Vault::complete_consent`]): authorization code with
//!   PKCE S256; `state` is HMAC-SHA256-signed, expires by the injected [`tw_core::Clock`], and
//!   carries a nonce naming a pending row that is deleted as it is read (single use, across
//!   instances). The id_token is verified (the IdP's JWKS, audience = the vault's client) and its
//!   `sub` must be the caller who asked. The page to return to is checked against
//!   [`VaultSettings::redirects`] when the consent begins and again at the callback.
//! - [`Vault::mint`]: one IdP refresh per token lineage at a time (a session's entries share one
//!   token): an async lock per lineage in this process, a lease row in the database across
//!   instances (taken after the IdP's discovery, renewed while its holder works, fencing every
//!   token or status write of its holder), the refresh and its commit in a task no caller can
//!   cancel. Minted access tokens
//!   are cached until `exp - margin`. A rotated refresh token is committed under the row's
//!   version, together with its siblings (the other active entries of the same owner, session
//!   and token type whose seals open), before the access token is returned; if the commit fails,
//!   no access token is returned. An IdP `invalid_grant`
//!   marks the entry `ReconsentRequired` (409 from then on, without asking the IdP again) only
//!   while the row still holds the refused token (else the new one is refreshed); an IdP that is
//!   down leaves the entry untouched (503, retryable).
//! - Delete (and duplicate) under the same lock and lease: RFC 7009 revocation, then the row is
//!   removed; when a sibling shares the session nothing is revoked (a revocation ends the IdP
//!   session for all of them: Keycloak's offline-session rule). An unreachable IdP keeps the row
//!   (retryable). A duplicate is inserted by a write fenced by the lease and guarded by the
//!   source's version, as a rotation's commit.
//! - A failure after the IdP issued a grant (consent callback, caller-supplied token) revokes
//!   the grant, so nothing is left live at the IdP without an entry.
//! - Pending consents are capped per owner ([`VaultSettings::max_pending_consents`]).
//! - Caller-supplied tokens ([`Vault::store_token`]) are validated by one refresh, which also
//!   tells whose they are (the caller's, or 403); the rotated successor is what is stored.
//!
//! Error codes (each one the vault raises itself is a constant in [`codes`]):
//! `vault_entry_not_found` (404, also for someone else's entry),
//! `vault_state_invalid` / `vault_state_expired` / `vault_state_used` / `vault_code_missing`
//! (400), `consent_denied` (400, the IdP's `error` in context `idp_error`),
//! `consent_user_mismatch` (another user signed in at the consent), `token_owner_mismatch` (a
//! caller-supplied token is another user's) and `vault_forbidden` (403),
//! `vault_reconsent_required` (409), `invalid_entry_id` (400, an id that is not a UUID),
//! `vault_attributes_invalid`, `vault_token_missing`, `vault_token_rejected`,
//! `vault_duplicate_unsupported`, `redirect_not_allowed` (400, also at the callback), `vault_key_unknown` / `vault_decrypt_failed` (500),
//! `vault_too_many_pending_consents` (429, retry when the owner's oldest pending consent
//! expires), `vault_commit_conflict`, `vault_refresh_in_progress`, `vault_lease_lost` and the
//! store's `storage_unavailable`
//! (503, retryable), the IdP's as
//! `tw_idp` classifies them (`idp_*`: 502 permanent, 503 retryable),
//! `idp_id_token_invalid` / `idp_no_refresh_token` (502). No message ever holds a token or key.

mod binding;
pub mod codes;
mod errors;
mod idp;
mod keyring;
mod metrics_names;
mod model;
mod state;
mod vault;

pub use idp::INTROSPECTION_FIELDS;
pub use keyring::KeyRing;
pub use metrics_names::*;
pub use model::{
    Caller, ConsentCallback, ConsentDone, ConsentStart, DEFAULT_CONSENT_SCOPE,
    DEFAULT_MAX_PENDING_CONSENTS, DEFAULT_REUSE_MARGIN, DEFAULT_STATE_TTL, DeleteOutcome, EntryId,
    EntryStatus, EntryView, IdpClientSettings, MintedToken, PERM_ADMIN, PERM_MINT_ANY,
    PERM_READ_ANY, PERMISSIONS, RedirectPolicy, RekeyReport, TokenType, VaultSettings,
};
pub use tw_vault_port::{self as store, VaultStore};
pub use vault::Vault;
