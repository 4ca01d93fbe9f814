//! Minting: the cache, single flight per token lineage (in process and across instances), the
//! refresh at the IdP and the commit of a rotated refresh token.

use super::{COMMIT_ATTEMPTS, Vault, row_aad};
use crate::errors::{entry_not_found, entry_not_found_text, reconsent_required};
use crate::idp::{Grant, expiry};
use crate::metrics_names::*;
use crate::model::*;
use crate::state::random_token;
use std::sync::Arc;
use std::time::Duration;
use tw_core::{Error, ErrorKind, Secret, UnixTime};
use tw_store::{TokenUpdate, VaultRow};

/// How often a mint waiting for another instance's refresh lease looks again.
const LEASE_POLL: Duration = Duration::from_millis(50);
/// Added to the IdP time budget to make a refresh lease.
const LEASE_SLACK: Duration = Duration::from_secs(5);

/// Entries sharing a session share one refresh token (after a rotation all hold the newest), so
/// refreshes are serialised per session; an entry without a session is its own lineage.
fn lineage_of(row: &VaultRow) -> String {
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
        if let Some(hit) = self.cached_mint(&row.id) {
            return Ok((hit, "cached"));
        }
        let lineage = lineage_of(&row);
        let flight = {
            let mut flights = self.inner.flights.lock();
            flights.entry(lineage.clone()).or_default().clone()
        };
        // The refresh and its commit run in their own task: a caller that gives up must not
        // cancel them between the IdP's answer and the commit.
        let this = self.clone();
        let entry = *id;
        let task = tokio::spawn(async move {
            let guard = flight.lock_owned().await;
            let result = match this.cached_mint(&entry.to_string()) {
                Some(hit) => Ok((hit, "cached")),
                None => this
                    .refresh_leased(&entry, &lineage)
                    .await
                    .map(|t| (t, "refreshed")),
            };
            drop(guard);
            this.release_flight(&lineage);
            result
        });
        task.await.map_err(|e| {
            Error::internal("vault_mint_failed", format!("the mint task failed: {e}"))
        })?
    }

    fn release_flight(&self, lineage: &str) {
        let mut flights = self.inner.flights.lock();
        if let Some(lock) = flights.get(lineage)
            && Arc::strong_count(lock) == 1
        {
            flights.remove(lineage);
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

    /// Under the lineage's in-process lock: takes the lineage's lease in the database (other
    /// instances), refreshes, gives the lease back.
    async fn refresh_leased(&self, id: &EntryId, lineage: &str) -> Result<MintedToken, Error> {
        let lease = self.take_lease(lineage).await?;
        let result = self.refresh_entry(id).await;
        if let Err(e) = self.inner.store.vault_lease_release(lineage, &lease).await {
            // It expires by itself; until then other instances wait for it.
            tracing::warn!(error = %e, "could not release a refresh lease");
        }
        result
    }

    /// Waits (polling) while another instance holds the lineage's lease, at most one lease
    /// duration, then answers 503 `vault_refresh_in_progress`.
    async fn take_lease(&self, lineage: &str) -> Result<String, Error> {
        let lease_id = random_token(12);
        let ttl = self.lease_ttl();
        // A lease left by a dead holder frees itself within `ttl`: wait a little longer.
        let deadline = tokio::time::Instant::now() + ttl + LEASE_POLL * 20;
        loop {
            let now = self.now();
            if self
                .inner
                .store
                .vault_lease_claim(lineage, &lease_id, now, now.plus(ttl))
                .await?
            {
                return Ok(lease_id);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::new(
                    ErrorKind::StorageUnavailable,
                    "vault_refresh_in_progress",
                    "another instance is refreshing this entry's token; try again",
                )
                .with_retry_after(Duration::from_secs(1)));
            }
            tokio::time::sleep(LEASE_POLL).await;
        }
    }

    /// Long enough for discovery, one refresh and the commit.
    fn lease_ttl(&self) -> Duration {
        self.inner.settings.idp.request_timeout * 2 + LEASE_SLACK
    }

    /// Under the lineage's lock and lease: re-read the row, refresh at the IdP, commit a rotation.
    async fn refresh_entry(&self, id: &EntryId) -> Result<MintedToken, Error> {
        let key = id.to_string();
        let store = &self.inner.store;
        let row = store
            .vault_get(&key)
            .await?
            .ok_or_else(|| entry_not_found(id))?;
        if row.status == EntryStatus::ReconsentRequired {
            return Err(reconsent_required(id));
        }
        let refresh_token = self.keys().open(&row.sealed, &row_aad(&row))?;
        let started = std::time::Instant::now();
        let refreshed = self.inner.idp.refresh(&refresh_token).await;
        metrics::histogram!(
            METRIC_IDP_REFRESH_SECONDS,
            "outcome" => refreshed.as_ref().map_or_else(|e| e.code(), |_| "ok")
        )
        .record(started.elapsed().as_secs_f64());
        let grant = match refreshed {
            Ok(g) => g,
            Err(e) if e.code() == "idp_invalid_grant" => {
                store
                    .vault_set_status(&key, EntryStatus::ReconsentRequired)
                    .await?;
                self.inner.minted.invalidate(&key);
                tracing::warn!(entry = %key, "the IdP refused the stored token: entry needs a new consent");
                return Err(reconsent_required(id));
            }
            // IdP down or refusing the client: the entry is untouched.
            Err(e) => return Err(e.with("entry", key)),
        };
        let now = self.now();
        match &grant.token.refresh_token {
            Some(rotated) if rotated != &refresh_token => {
                self.commit_rotation(row, &refresh_token, rotated, &grant, now)
                    .await?;
            }
            _ => {
                if let Err(e) = store.vault_touch(&key, now).await {
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
        Ok(token)
    }

    /// Seals the rotated token for the entry (guarded by the version read) and for every other
    /// active entry of the owner in the same session (they shared the spent token), in one
    /// transaction. When the row moved on meanwhile but still holds the token we refreshed with
    /// (a rekey, a status read), the commit is retried on the new version.
    async fn commit_rotation(
        &self,
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
                sealed: self.keys().seal(&row_aad(&row), rotated.expose())?,
                expires_at,
                used_at: Some(now),
            }];
            if let Some(session) = &row.session_id {
                for sibling in store.vault_list_by_session(session).await? {
                    if sibling.id == row.id
                        || sibling.owner_issuer != row.owner_issuer
                        || sibling.owner_subject != row.owner_subject
                        || sibling.status != EntryStatus::Active
                    {
                        continue;
                    }
                    updates.push(TokenUpdate {
                        sealed: self.keys().seal(&row_aad(&sibling), rotated.expose())?,
                        id: sibling.id.clone(),
                        expected_version: None,
                        expires_at,
                        used_at: None,
                    });
                }
            }
            if store.vault_update_tokens(&updates).await? {
                metrics::counter!(METRIC_ROTATIONS).increment(1);
                tracing::debug!(entry = %row.id, siblings = updates.len() - 1, "rotated refresh token committed");
                return Ok(());
            }
            let current = store.vault_get(&row.id).await?;
            let Some(current) = current else {
                return Err(entry_not_found_text().with("entry", row.id.clone()));
            };
            let still_same = self
                .keys()
                .open(&current.sealed, &row_aad(&current))
                .is_ok_and(|t| &t == used);
            if !still_same {
                break;
            }
            row = current;
        }
        tracing::error!(entry = %row.id, "a rotated refresh token could not be committed: the entry changed concurrently");
        Err(Error::new(
            ErrorKind::StorageUnavailable,
            "vault_commit_conflict",
            "the entry was changed concurrently while its token rotated; try again",
        )
        .with("entry", row.id.clone())
        .with_retry_after(Duration::from_secs(1)))
    }
}
