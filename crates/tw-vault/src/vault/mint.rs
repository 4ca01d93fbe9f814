//! Minting: the cache, single flight per token lineage (in process and across instances), the
//! refresh at the IdP and the commit of a rotated refresh token.
//!
//! Across instances a lineage is guarded by a lease row ([`Lease`]): taken only after the IdP's
//! discovery is done (so no lease waits on it), renewed in the background while its holder works,
//! and fencing every write its holder makes (tokens, status), so a holder that lost it — stalled
//! past its expiry while another instance took over — writes nothing it learnt from a token the
//! new holder may have spent already.

use super::{COMMIT_ATTEMPTS, Vault};
use crate::binding::EntryBinding;
use crate::codes;
use crate::errors::{entry_not_found, entry_not_found_text, reconsent_required};
use crate::idp::{Grant, expiry};
use crate::metrics_names::*;
use crate::model::*;
use crate::state::random_token;
use std::sync::Arc;
use std::time::Duration;
use tw_core::{Error, ErrorKind, Secret, UnixTime};
use tw_vault_port::{FencedWrite, TokenUpdate, VaultRow, VaultStore};

/// How often a mint waiting for another instance's refresh lease looks again.
const LEASE_POLL: Duration = Duration::from_millis(50);
/// Added to the IdP time budget to make a refresh lease.
const LEASE_SLACK: Duration = Duration::from_secs(5);

/// Entries sharing a session share one refresh token (after a rotation all hold the newest), so
/// refreshes are serialised per session; an entry without a session is its own lineage. (An
/// online and an offline entry of one Keycloak session share the id, not the token: they are
/// serialised too, which costs nothing, but are never each other's siblings.)
pub(super) fn lineage_of(row: &VaultRow) -> String {
    match &row.session_id {
        Some(session) => format!("session:{session}"),
        None => format!("entry:{}", row.id),
    }
}

#[derive(Clone)]
pub(super) struct CachedMint {
    token: MintedToken,
    /// When the IdP said it expires.
    expires_at: Option<UnixTime>,
    /// Served from the cache until then.
    serve_until: UnixTime,
}

impl Vault {
    /// An access token for the entry: from memory while fresh (until `exp - margin`), else one
    /// refresh at the IdP (one per session at a time, however many callers ask). A rotated
    /// refresh token is committed (guarded by the row version) before the access token is
    /// returned; if that commit fails, no access token is returned.
    pub async fn mint(&self, caller: &Caller, id: &EntryId) -> Result<MintedToken, Error> {
        let result = self.mint_counted(caller, id).await;
        let outcome = match &result {
            Ok((_, how)) => *how,
            Err(e) => e.code(),
        };
        metrics::counter!(METRIC_MINTS, "outcome" => outcome).increment(1);
        result.map(|(token, _)| token)
    }

    /// [`Vault::mint`], saying whether the token came from the cache or a refresh.
    async fn mint_counted(
        &self,
        caller: &Caller,
        id: &EntryId,
    ) -> Result<(MintedToken, &'static str), Error> {
        let row = self.visible_row(caller, id, PERM_MINT_ANY).await?;
        if row.status == EntryStatus::ReconsentRequired {
            return Err(reconsent_required(id));
        }
        if let Some(hit) = self.cached_for(&row)? {
            return Ok((hit, "cached"));
        }
        let lineage = lineage_of(&row);
        let entry = *id;
        let leased = lineage.clone();
        self.in_own_task(lineage, codes::VAULT_MINT_FAILED, move |this| async move {
            match this.cached_for(&row)? {
                Some(hit) => Ok((hit, "cached")),
                None => this
                    .refresh_leased(&entry, &leased)
                    .await
                    .map(|t| (t, "refreshed")),
            }
        })
        .await
    }

    /// The in-process lock of a lineage (give it back with [`Vault::release_flight`]).
    pub(super) fn flight(&self, lineage: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut flights = self.inner.flights.lock();
        flights.entry(lineage.to_owned()).or_default().clone()
    }

    pub(super) fn release_flight(&self, lineage: &str) {
        let mut flights = self.inner.flights.lock();
        if let Some(lock) = flights.get(lineage)
            && Arc::strong_count(lock) == 1
        {
            flights.remove(lineage);
        }
    }

    /// The cached token of `row`'s entry, served only while the row (as its visibility was
    /// decided on) still opens: a row whose owner, type, session or attributes were changed in
    /// the database gets nothing from the cache either.
    fn cached_for(&self, row: &VaultRow) -> Result<Option<MintedToken>, Error> {
        match self.cached_mint(&row.id) {
            Some(hit) => {
                self.seals().open_entry(row)?;
                Ok(Some(hit))
            }
            None => Ok(None),
        }
    }

    fn cached_mint(&self, id: &str) -> Option<MintedToken> {
        let hit = self.inner.minted.get(id)?;
        let now = self.now();
        if now >= hit.serve_until {
            self.inner.minted.invalidate(id);
            return None;
        }
        let mut token = hit.token.clone();
        if let Some(exp) = hit.expires_at {
            token.expires_in = now.until(exp).as_secs();
        }
        Some(token)
    }

    /// Under the lineage's in-process lock: discovery first (outside any lease), then the
    /// lineage's lease in the database (other instances), the refresh, the lease given back. A
    /// refresh that lost its lease before it spent anything starts over under a new one.
    async fn refresh_leased(&self, id: &EntryId, lineage: &str) -> Result<MintedToken, Error> {
        self.inner.idp.discovered().await?;
        for _ in 0..COMMIT_ATTEMPTS {
            let lease = self.take_lease(lineage).await?;
            let result = self.refresh_entry(id, &lease).await;
            lease.release().await;
            match result? {
                Some(token) => return Ok(token),
                None => {
                    tracing::info!(entry = %id, "refresh lease lost before anything was spent; starting over")
                }
            }
        }
        Err(lease_lost().with("entry", id.to_string()))
    }

    /// Waits (polling) while another instance holds the lineage's lease, at most one lease
    /// duration, then answers 503 `vault_refresh_in_progress`. The lease is renewed in the
    /// background until released.
    pub(super) async fn take_lease(&self, lineage: &str) -> Result<Lease, Error> {
        let lease_id = random_token(12);
        let ttl = self.lease_ttl();
        // A lease left by a dead holder frees itself within `ttl`: wait a little longer.
        let deadline = tokio::time::Instant::now() + ttl + LEASE_POLL * 20;
        loop {
            let now = self.now();
            if self
                .inner
                .store
                .lease_claim(lineage, &lease_id, now, now.plus(ttl))
                .await?
            {
                return Ok(Lease::hold(self, lineage.to_owned(), lease_id, ttl));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::new(
                    ErrorKind::StorageUnavailable,
                    codes::VAULT_REFRESH_IN_PROGRESS,
                    "another instance is refreshing this entry's token; try again",
                )
                .with_retry_after(Duration::from_secs(1)));
            }
            tokio::time::sleep(LEASE_POLL).await;
        }
    }

    /// Long enough for one refresh and the commit (discovery happens before the lease, and the
    /// holder renews it every third of this while it works).
    fn lease_ttl(&self) -> Duration {
        self.inner.settings.idp.request_timeout * 2 + LEASE_SLACK
    }

    /// Under the lineage's lock and lease: re-read the row, refresh at the IdP, commit a rotation.
    /// `None`: the lease was lost before anything was spent or written (start over).
    async fn refresh_entry(
        &self,
        id: &EntryId,
        lease: &Lease,
    ) -> Result<Option<MintedToken>, Error> {
        let key = id.to_string();
        let store = &self.inner.store;
        let mut attempts = 0;
        let (row, refresh_token, grant) = loop {
            let row = store.get(&key).await?.ok_or_else(|| entry_not_found(id))?;
            if row.status == EntryStatus::ReconsentRequired {
                return Err(reconsent_required(id));
            }
            let refresh_token = self.seals().open_entry(&row)?.secret;
            let started = std::time::Instant::now();
            let refreshed = self.inner.idp.refresh(&refresh_token).await;
            metrics::histogram!(
                METRIC_IDP_REFRESH_SECONDS,
                "outcome" => refreshed.as_ref().map_or_else(|e| e.code(), |_| "ok")
            )
            .record(started.elapsed().as_secs_f64());
            match refreshed {
                Ok(grant) => break (row, refresh_token, grant),
                Err(e) if e.code() == tw_idp::codes::IDP_INVALID_GRANT => {
                    // Marked only if the row still holds the token the IdP refused and this
                    // instance still holds the lease: a refused token that was replaced meanwhile
                    // says nothing about the entry.
                    let marked = store
                        .set_status_fenced(
                            &lease.lineage,
                            &lease.id,
                            &key,
                            row.version,
                            EntryStatus::ReconsentRequired,
                        )
                        .await?;
                    match marked {
                        FencedWrite::Applied => {
                            self.inner.minted.invalidate(&key);
                            tracing::warn!(entry = %key, "the IdP refused the stored token: entry needs a new consent");
                            return Err(reconsent_required(id));
                        }
                        FencedWrite::LeaseLost => return Ok(None),
                        FencedWrite::Conflict => {
                            attempts += 1;
                            if attempts >= COMMIT_ATTEMPTS {
                                return Err(commit_conflict(&key));
                            }
                            tracing::info!(entry = %key, "the IdP refused a token the entry no longer holds; refreshing with the current one");
                        }
                    }
                }
                // IdP down or refusing the client: the entry is untouched.
                Err(e) => return Err(e.with("entry", key)),
            }
        };
        let now = self.now();
        match &grant.token.refresh_token {
            Some(rotated) if rotated != &refresh_token => {
                self.commit_rotation(lease, row, &refresh_token, rotated, &grant, now)
                    .await?;
            }
            _ => {
                if let Err(e) = store.touch(&key, now).await {
                    tracing::warn!(entry = %key, error = %e, "could not record the entry's last use");
                }
            }
        }
        let expires_at = expiry(now, grant.token.expires_in);
        let token = MintedToken {
            access_token: grant.token.access_token.clone(),
            expires_in: grant.token.expires_in.map_or(0, |d| d.as_secs()),
            scope: grant.token.scope.clone(),
            token_type: grant.token.token_type.clone(),
        };
        let margin = self.inner.settings.access_token_reuse_margin;
        if let Some(exp) = expires_at
            && !margin.is_zero()
        {
            let serve_until = exp.minus(margin);
            if serve_until > now {
                self.inner.minted.insert(
                    key.clone(),
                    CachedMint {
                        token: token.clone(),
                        expires_at,
                        serve_until,
                    },
                );
            }
        }
        tracing::debug!(entry = %key, access_token = %token.access_token.fingerprint().short(), "vault minted an access token");
        Ok(Some(token))
    }

    /// Seals the rotated token for the entry (guarded by the version read) and for its siblings
    /// ([`Vault::siblings_of`]: they shared the spent token), in one transaction fenced by the
    /// lease. When the row moved on meanwhile but still holds the token
    /// we refreshed with (a rekey, a status read), the commit is retried on the new version. A
    /// lost lease is a retryable 503: the token was spent, its successor is not written.
    async fn commit_rotation(
        &self,
        lease: &Lease,
        mut row: VaultRow,
        used: &Secret,
        rotated: &Secret,
        grant: &Grant,
        now: UnixTime,
    ) -> Result<(), Error> {
        let store = &self.inner.store;
        let expires_at = expiry(now, grant.refresh_expires_in).or(row.expires_at);
        for _ in 0..COMMIT_ATTEMPTS {
            let mut updates = vec![TokenUpdate {
                id: row.id.clone(),
                expected_version: Some(row.version),
                sealed: self
                    .seals()
                    .seal_entry(EntryBinding::from(&row), rotated.expose())?,
                expires_at,
                used_at: Some(now),
            }];
            for sibling in self.siblings_of(&row).await? {
                updates.push(TokenUpdate {
                    sealed: self
                        .seals()
                        .seal_entry(EntryBinding::from(&sibling), rotated.expose())?,
                    id: sibling.id.clone(),
                    expected_version: None,
                    expires_at,
                    used_at: None,
                });
            }
            match store
                .update_tokens_fenced(&lease.lineage, &lease.id, &updates)
                .await?
            {
                FencedWrite::Applied => {
                    metrics::counter!(METRIC_ROTATIONS).increment(1);
                    tracing::debug!(entry = %row.id, siblings = updates.len() - 1, "rotated refresh token committed");
                    return Ok(());
                }
                FencedWrite::LeaseLost => {
                    tracing::error!(entry = %row.id, "a rotated refresh token was not committed: this instance lost the entry's refresh lease");
                    return Err(lease_lost().with("entry", row.id.clone()));
                }
                FencedWrite::Conflict => {}
            }
            let current = store.get(&row.id).await?;
            let Some(current) = current else {
                return Err(entry_not_found_text().with("entry", row.id.clone()));
            };
            let still_same = self
                .seals()
                .open_entry(&current)
                .is_ok_and(|o| &o.secret == used);
            if !still_same {
                break;
            }
            row = current;
        }
        tracing::error!(entry = %row.id, "a rotated refresh token could not be committed: the entry changed concurrently");
        Err(commit_conflict(&row.id))
    }

    /// The entries that share `row`'s token: the owner's other active entries of the same
    /// session *and token type* (Keycloak's online and offline sessions share an id, not a
    /// token), whose seal opens — a row whose session id was changed in the database is no
    /// sibling, so it is neither handed a rotated token nor counted by the shared-session rule.
    pub(super) async fn siblings_of(&self, row: &VaultRow) -> Result<Vec<VaultRow>, Error> {
        let Some(session) = &row.session_id else {
            return Ok(Vec::new());
        };
        let mut siblings = Vec::new();
        for other in self.inner.store.list_by_session(session).await? {
            if other.id == row.id
                || other.owner_issuer != row.owner_issuer
                || other.owner_subject != row.owner_subject
                || other.token_type != row.token_type
                || other.status != EntryStatus::Active
            {
                continue;
            }
            match self.seals().open_entry(&other) {
                Ok(_) => siblings.push(other),
                Err(e) => {
                    tracing::warn!(entry = %other.id, of = %row.id, code = e.code(), "an entry naming this session does not open: not treated as a sibling")
                }
            }
        }
        Ok(siblings)
    }
}

pub(super) fn commit_conflict(entry: &str) -> Error {
    Error::new(
        ErrorKind::StorageUnavailable,
        codes::VAULT_COMMIT_CONFLICT,
        "the entry was changed concurrently while its token rotated; try again",
    )
    .with("entry", entry.to_owned())
    .with_retry_after(Duration::from_secs(1))
}

pub(super) fn lease_lost() -> Error {
    Error::new(
        ErrorKind::StorageUnavailable,
        codes::VAULT_LEASE_LOST,
        "this instance lost the entry's refresh lease to another one; try again",
    )
    .with_retry_after(Duration::from_secs(1))
}

/// What fences a lease holder's writes: the lineage and the holder's lease id.
#[derive(Debug, Clone)]
pub(super) struct Fence {
    pub(super) lineage: String,
    pub(super) lease_id: String,
}

/// A lineage's refresh lease, held by this instance: renewed in the background (every third of
/// its time) until [`Lease::release`]; the id fences the holder's writes.
pub(super) struct Lease {
    pub(super) lineage: String,
    pub(super) id: String,
    store: Arc<dyn VaultStore>,
    renewer: tokio::task::JoinHandle<()>,
}

impl Lease {
    fn hold(vault: &Vault, lineage: String, id: String, ttl: Duration) -> Lease {
        let store = vault.inner.store.clone();
        let clock = vault.inner.clock.clone();
        let (renew_store, renew_lineage, renew_id) = (store.clone(), lineage.clone(), id.clone());
        let renewer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                let until = clock.now().plus(ttl);
                match renew_store
                    .lease_renew(&renew_lineage, &renew_id, until)
                    .await
                {
                    Ok(true) => {}
                    // Taken over: the fence refuses this holder's writes from now on.
                    Ok(false) => {
                        tracing::warn!(lineage = %renew_lineage, "refresh lease lost while working");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not renew a refresh lease");
                    }
                }
            }
        });
        Lease {
            lineage,
            id,
            store,
            renewer,
        }
    }

    pub(super) fn fence(&self) -> Fence {
        Fence {
            lineage: self.lineage.clone(),
            lease_id: self.id.clone(),
        }
    }

    /// Stops renewing and gives the lease back (if still held).
    pub(super) async fn release(self) {
        self.renewer.abort();
        if let Err(e) = self.store.lease_release(&self.lineage, &self.id).await {
            // It expires by itself; until then other instances wait for it.
            tracing::warn!(error = %e, "could not release a refresh lease");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // A holder that never released (an error path, a cancelled task) stops renewing: the
        // lease then frees itself within its time.
        self.renewer.abort();
    }
}
