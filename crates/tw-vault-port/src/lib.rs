//! The token vault's storage port: what `tw-vault` needs from a database, in the vault's own
//! types. `tw-vault` holds an `Arc<dyn VaultStore>` and never names a database; `tw-store`
//! implements the trait over SQLite and PostgreSQL (`tw_store::VaultTables`). This crate knows
//! no HTTP and no SQL, so the storage crate implementing it pulls in neither the IdP client nor
//! the JOSE stack.
//!
//! Nothing here ever holds a token in clear: rows carry [`Sealed`] bytes only (sealing and
//! opening is `tw-vault`'s job).
//!
//! # The contract an implementation keeps
//!
//! - **Versions.** Every change of an entry's token, key or status bumps its `version`; writers
//!   that read a row, talk to the IdP and write back guard their update on the version they read
//!   ([`TokenUpdate::expected_version`]), so a concurrent writer (another instance, a rekey) is
//!   noticed instead of overwritten.
//! - **The lease fence.** Refreshes hold a lease per token lineage
//!   ([`VaultStore::lease_claim`], renewed by [`VaultStore::lease_renew`]). Their writes
//!   ([`VaultStore::update_tokens_fenced`], [`VaultStore::set_status_fenced`], and a duplicate's
//!   [`VaultStore::insert_fenced`]) run in one transaction that first checks, with a write on the
//!   lease row (which also locks it), that the lease is still held by the writer's `lease_id`
//!   ([`FencedWrite::LeaseLost`] otherwise), then applies the version-guarded writes
//!   ([`FencedWrite::Conflict`] if one finds its row gone or moved), all or nothing. A holder
//!   whose lease ran out and was taken over by another instance therefore cannot write what it
//!   learnt from a token the new holder may already have spent.
//! - **Single use.** [`VaultStore::pending_take`] removes and returns a pending consent in one
//!   step: of concurrent callers (on any instance) at most one gets it.
//! - **Errors** are [`tw_core::Error`]s: a duplicate id is 409 `storage_conflict`, an unreachable
//!   database 503 `storage_unavailable` (retryable), anything else 500 `storage_error`.

use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::fmt;
use tw_core::{Result, UnixTime};

/// Largest page [`VaultStore::list_page`] returns.
pub const VAULT_PAGE_MAX: u32 = 1000;

/// The kind of long-lived token an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VaultTokenType {
    /// An ordinary refresh token (bound to the user's SSO session at the IdP).
    Refresh,
    /// An offline token (`offline_access`): outlives the SSO session.
    Offline,
}

impl VaultTokenType {
    pub fn as_str(self) -> &'static str {
        match self {
            VaultTokenType::Refresh => "refresh",
            VaultTokenType::Offline => "offline",
        }
    }

    /// The inverse of [`VaultTokenType::as_str`]; `None` for any other text.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "refresh" => Some(VaultTokenType::Refresh),
            "offline" => Some(VaultTokenType::Offline),
            _ => None,
        }
    }
}

/// Whether an entry can still mint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VaultStatus {
    Active,
    /// The IdP refused the stored token as spent, revoked or expired: the user must consent again.
    ReconsentRequired,
}

impl VaultStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VaultStatus::Active => "active",
            VaultStatus::ReconsentRequired => "reconsent_required",
        }
    }

    /// The inverse of [`VaultStatus::as_str`]; `None` for any other text.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "active" => Some(VaultStatus::Active),
            "reconsent_required" => Some(VaultStatus::ReconsentRequired),
            _ => None,
        }
    }
}

/// AEAD output as stored: which key, the nonce, the ciphertext with its tag.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .field("nonce_len", &self.nonce.len())
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

/// One stored entry: a sealed refresh or offline token and what it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultRow {
    pub id: String,
    pub owner_issuer: String,
    pub owner_subject: String,
    pub token_type: VaultTokenType,
    pub sealed: Sealed,
    pub session_id: Option<String>,
    pub status: VaultStatus,
    /// Free attributes (stored as a JSON object).
    pub attributes: BTreeMap<String, String>,
    pub created_at: UnixTime,
    pub last_used_at: Option<UnixTime>,
    pub expires_at: Option<UnixTime>,
    /// Bumped by every change of the token, key or status.
    pub version: i64,
}

/// A new sealed token for one entry (a rotation, a rekey, a sibling sharing the session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUpdate {
    pub id: String,
    /// `Some(v)`: apply only while the row is still at version `v` (else the whole batch rolls
    /// back). `None`: apply to the row whatever its version (a row deleted meanwhile is skipped).
    pub expected_version: Option<i64>,
    pub sealed: Sealed,
    /// The token's new expiry (`None`: unknown or no expiry).
    pub expires_at: Option<UnixTime>,
    /// Set `last_used_at` too (a mint); `None` leaves it.
    pub used_at: Option<UnixTime>,
}

/// What a fenced write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FencedWrite {
    /// Written.
    Applied,
    /// Nothing written: the lease is no longer this holder's (it expired and another took it, or
    /// it was released).
    LeaseLost,
    /// Nothing written: a guarded row is gone or at another version.
    Conflict,
}

/// A consent started and not yet completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingConsent {
    /// The nonce the signed `state` carries (the key).
    pub nonce: String,
    pub owner_issuer: String,
    pub owner_subject: String,
    /// The PKCE verifier, sealed.
    pub verifier: Sealed,
    pub attributes: BTreeMap<String, String>,
    pub redirect_after: Option<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// Where a fenced insert comes from: the lease its writer holds and the entry it copies, at the
/// version the writer read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsertFence<'a> {
    pub lineage: &'a str,
    pub lease_id: &'a str,
    pub source_id: &'a str,
    pub source_version: i64,
}

/// The vault's storage: sealed entries, pending consents and per-lineage refresh leases (see the
/// crate docs for the contract).
pub trait VaultStore: Send + Sync + fmt::Debug + 'static {
    /// Inserts a new entry (409 `storage_conflict` if the id exists).
    fn insert<'a>(&'a self, row: &'a VaultRow) -> BoxFuture<'a, Result<()>>;

    /// Inserts a copy of entry `fence.source_id` (a duplicate) in a transaction that first checks
    /// that `fence.lease_id` still holds the lease of `fence.lineage` ([`FencedWrite::LeaseLost`])
    /// and that the source is still at `fence.source_version` ([`FencedWrite::Conflict`]);
    /// nothing is written otherwise. The source row stays locked until the commit, so no
    /// rotation can land between the check and the insert.
    fn insert_fenced<'a>(
        &'a self,
        fence: InsertFence<'a>,
        row: &'a VaultRow,
    ) -> BoxFuture<'a, Result<FencedWrite>>;

    /// The entry with this id, if any.
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<VaultRow>>>;

    /// An owner's entries, oldest first.
    fn list_by_owner<'a>(
        &'a self,
        issuer: &'a str,
        subject: &'a str,
    ) -> BoxFuture<'a, Result<Vec<VaultRow>>>;

    /// The entries that share an IdP session, oldest first.
    fn list_by_session<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<Vec<VaultRow>>>;

    /// All entries by id, `limit` (at most [`VAULT_PAGE_MAX`]) at a time after `after_id`
    /// (keyset paging: rows inserted or deleted meanwhile never shift a page).
    fn list_page<'a>(
        &'a self,
        after_id: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<VaultRow>>>;

    /// Applies the updates in one transaction. Returns `false`, changing nothing, when a guarded
    /// update finds its row gone or at another version; unguarded updates of rows that are gone
    /// are skipped.
    fn update_tokens<'a>(&'a self, updates: &'a [TokenUpdate]) -> BoxFuture<'a, Result<bool>>;

    /// [`VaultStore::update_tokens`] in a transaction that first checks that `lease_id` still
    /// holds the lease of `lineage` ([`FencedWrite::LeaseLost`] otherwise, nothing written).
    fn update_tokens_fenced<'a>(
        &'a self,
        lineage: &'a str,
        lease_id: &'a str,
        updates: &'a [TokenUpdate],
    ) -> BoxFuture<'a, Result<FencedWrite>>;

    /// Sets the status of entry `id` while it is still at `expected_version` (bumping it), in a
    /// transaction that first checks that `lease_id` still holds the lease of `lineage`.
    fn set_status_fenced<'a>(
        &'a self,
        lineage: &'a str,
        lease_id: &'a str,
        id: &'a str,
        expected_version: i64,
        status: VaultStatus,
    ) -> BoxFuture<'a, Result<FencedWrite>>;

    /// Records a use without touching the token (the version stays).
    fn touch<'a>(&'a self, id: &'a str, at: UnixTime) -> BoxFuture<'a, Result<()>>;

    /// Deletes the entry and returns what it held (`None`: there was none).
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<VaultRow>>>;

    /// Takes the refresh lease of `lineage` for `lease_id` until `until`, unless another holder's
    /// lease is still live at `now`. `true`: taken.
    fn lease_claim<'a>(
        &'a self,
        lineage: &'a str,
        lease_id: &'a str,
        now: UnixTime,
        until: UnixTime,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Extends the lease to `until` while `lease_id` still holds it. `false`: it does not (it
    /// expired and another holder took it, or it was released).
    fn lease_renew<'a>(
        &'a self,
        lineage: &'a str,
        lease_id: &'a str,
        until: UnixTime,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Gives the lease back (only if `lease_id` still holds it).
    fn lease_release<'a>(
        &'a self,
        lineage: &'a str,
        lease_id: &'a str,
    ) -> BoxFuture<'a, Result<()>>;

    /// Inserts the pending consent unless its owner already has `max` pending consents that have
    /// not expired at `pending.created_at`. `false`: refused, nothing inserted.
    fn pending_insert<'a>(
        &'a self,
        pending: &'a PendingConsent,
        max: u32,
    ) -> BoxFuture<'a, Result<bool>>;

    /// How many consents the owner has pending (not expired at `now`), and when the first of
    /// them expires.
    fn pending_of_owner<'a>(
        &'a self,
        issuer: &'a str,
        subject: &'a str,
        now: UnixTime,
    ) -> BoxFuture<'a, Result<(u64, Option<UnixTime>)>>;

    /// Removes and returns the pending consent: of concurrent callers (on any instance) at most
    /// one gets `Some`. Expiry is the caller's check (the row is returned even when past it).
    fn pending_take<'a>(&'a self, nonce: &'a str) -> BoxFuture<'a, Result<Option<PendingConsent>>>;

    /// Deletes pending consents that expired at or before `now`; returns how many.
    fn pending_purge<'a>(&'a self, now: UnixTime) -> BoxFuture<'a, Result<u64>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_read_back() {
        for t in [VaultTokenType::Refresh, VaultTokenType::Offline] {
            assert_eq!(VaultTokenType::from_name(t.as_str()), Some(t));
        }
        for s in [VaultStatus::Active, VaultStatus::ReconsentRequired] {
            assert_eq!(VaultStatus::from_name(s.as_str()), Some(s));
        }
        assert_eq!(VaultTokenType::from_name("Offline"), None);
        assert_eq!(VaultStatus::from_name(""), None);
    }

    #[test]
    fn sealed_debug_shows_no_bytes() {
        let s = Sealed {
            key_id: "k1".into(),
            nonce: vec![0xAB; 12],
            ciphertext: vec![0xCD; 40],
        };
        let shown = format!("{s:?}");
        assert!(shown.contains("k1") && shown.contains("40"), "{shown}");
        assert!(!shown.contains("171") && !shown.contains("205"), "{shown}");
    }
}
