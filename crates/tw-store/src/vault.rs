//! The token vault's tables: sealed refresh/offline tokens (`vault_entries`), consents in
//! progress (`vault_pending_consents`) and per-lineage refresh leases (`vault_refresh_leases`),
//! as [`VaultTables`], the implementation of the vault's storage port
//! ([`tw_vault_port::VaultStore`], whose docs state the contract kept here). This module stores
//! bytes and metadata only: sealing and opening (AES-256-GCM) is `tw-vault`'s job, so nothing here
//! ever sees a token in clear.
//!
//! Every change of an entry's token bumps its `version`; writers that read a row, talk to the IdP
//! and write back guard their update on the version they read ([`TokenUpdate::expected_version`]),
//! so a concurrent writer (another instance, a rekey) is noticed instead of overwritten.
//!
//! **The lease fence** lives here: refreshes hold a lease per token lineage
//! (`vault_refresh_leases`). Their writes are fenced
//! ([`VaultStore::update_tokens_fenced`], [`VaultStore::set_status_fenced`], and a duplicate's
//! [`VaultStore::insert_fenced`]): the transaction first checks, with a write on the lease row
//! (`sql::LEASE_FENCE`, which also locks it), that the lease is still held by the writer's
//! `lease_id`, then applies the version-guarded writes, all in one transaction. A holder whose
//! lease ran out and was taken over by another instance therefore cannot write what it learnt
//! from a token the new holder may already have spent.

use crate::codes;
use crate::error::db;
use crate::store::{Pool, Store, tx_execute, with_pool};
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use tw_core::{Error, Result, UnixTime};
use tw_vault_port::{
    FencedWrite, InsertFence, PendingConsent, Sealed, TokenUpdate, VAULT_PAGE_MAX, VaultRow,
    VaultStatus, VaultStore, VaultTokenType,
};

/// The vault's tables in a [`Store`]'s database: the [`VaultStore`] the vault is given. Cheap
/// to clone (it shares the store's pool).
#[derive(Clone, Debug)]
pub struct VaultTables {
    store: Store,
}

impl VaultTables {
    /// The vault's tables in `store`'s database (migrated with the rest by [`Store::open`]).
    pub fn new(store: Store) -> VaultTables {
        VaultTables { store }
    }

    fn pool(&self) -> &Pool {
        self.store.pool()
    }
}

fn token_type_of(s: &str) -> Result<VaultTokenType> {
    VaultTokenType::from_name(s).ok_or_else(|| corrupt("token_type", s))
}

fn status_of(s: &str) -> Result<VaultStatus> {
    VaultStatus::from_name(s).ok_or_else(|| corrupt("status", s))
}

type EntryTuple = (
    String,
    String,
    String,
    String,
    String,
    Vec<u8>,
    Vec<u8>,
    Option<String>,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    i64,
);

type PendingTuple = (
    String,
    String,
    String,
    String,
    Vec<u8>,
    Vec<u8>,
    String,
    Option<String>,
    i64,
    i64,
);

mod sql {
    macro_rules! entry_select {
        ($tail:literal) => {
            concat!(
                "SELECT id, owner_issuer, owner_subject, token_type, key_id, nonce, ciphertext, session_id, status, attributes, created_at, last_used_at, expires_at, version FROM vault_entries ",
                $tail
            )
        };
    }

    pub const INSERT: &str = "INSERT INTO vault_entries (id, owner_issuer, owner_subject, token_type, key_id, nonce, ciphertext, session_id, status, attributes, created_at, last_used_at, expires_at, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";
    pub const GET: &str = entry_select!("WHERE id = $1");
    pub const BY_OWNER: &str =
        entry_select!("WHERE owner_issuer = $1 AND owner_subject = $2 ORDER BY created_at, id");
    pub const BY_SESSION: &str = entry_select!("WHERE session_id = $1 ORDER BY created_at, id");
    pub const PAGE: &str = entry_select!("WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2");
    pub const COUNT_SESSION: &str = "SELECT COUNT(*) FROM vault_entries WHERE session_id = $1";
    /// `$2`: the version the row must still be at, or NULL for any.
    pub const UPDATE_TOKEN: &str = "UPDATE vault_entries SET key_id = $3, nonce = $4, ciphertext = $5, expires_at = $6, last_used_at = COALESCE($7, last_used_at), version = version + 1 WHERE id = $1 AND ($2 IS NULL OR version = $2)";
    pub const SET_STATUS: &str =
        "UPDATE vault_entries SET status = $2, version = version + 1 WHERE id = $1";
    /// `$3`: the version the row must still be at.
    pub const SET_STATUS_GUARDED: &str = "UPDATE vault_entries SET status = $2, version = version + 1 WHERE id = $1 AND version = $3";
    pub const TOUCH: &str = "UPDATE vault_entries SET last_used_at = $2 WHERE id = $1";
    /// Matches (and, being a write, locks until the transaction ends) entry `$1` only while it is
    /// at version `$2`; changes nothing.
    pub const HOLD_VERSION: &str =
        "UPDATE vault_entries SET version = version WHERE id = $1 AND version = $2";
    pub const DELETE: &str = "DELETE FROM vault_entries WHERE id = $1 RETURNING id, owner_issuer, owner_subject, token_type, key_id, nonce, ciphertext, session_id, status, attributes, created_at, last_used_at, expires_at, version";

    /// A pending consent, inserted only while its owner has fewer than `$11` pending consents live at `$9`
    /// (one statement: SQLite's writers serialise on it; on PostgreSQL concurrent requests of one
    /// owner may pass the count together, so the cap can be exceeded by that many).
    pub const PENDING_INSERT: &str = "INSERT INTO vault_pending_consents (nonce, owner_issuer, owner_subject, key_id, verifier_nonce, verifier_sealed, attributes, redirect_after, created_at, expires_at) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 WHERE (SELECT COUNT(*) FROM vault_pending_consents WHERE owner_issuer = $2 AND owner_subject = $3 AND expires_at > $9) < $11";
    /// The live pending consents of an owner: how many, and when the first of them expires.
    pub const PENDING_OF_OWNER: &str = "SELECT COUNT(*), MIN(expires_at) FROM vault_pending_consents WHERE owner_issuer = $1 AND owner_subject = $2 AND expires_at > $3";
    /// One statement, so two callbacks racing for one nonce cannot both get the row.
    pub const PENDING_TAKE: &str = "DELETE FROM vault_pending_consents WHERE nonce = $1 RETURNING nonce, owner_issuer, owner_subject, key_id, verifier_nonce, verifier_sealed, attributes, redirect_after, created_at, expires_at";
    pub const PENDING_PURGE: &str = "DELETE FROM vault_pending_consents WHERE expires_at <= $1";

    /// One statement: a free lineage is inserted, an expired lease taken over, a live one left
    /// alone (0 rows). Concurrent claimers serialise on the primary key.
    pub const LEASE_CLAIM: &str = "INSERT INTO vault_refresh_leases (lineage, lease_id, lease_until) VALUES ($1, $2, $3) ON CONFLICT (lineage) DO UPDATE SET lease_id = excluded.lease_id, lease_until = excluded.lease_until WHERE vault_refresh_leases.lease_until <= $4";
    pub const LEASE_RELEASE: &str =
        "DELETE FROM vault_refresh_leases WHERE lineage = $1 AND lease_id = $2";
    pub const LEASE_RENEW: &str =
        "UPDATE vault_refresh_leases SET lease_until = $3 WHERE lineage = $1 AND lease_id = $2";
    /// The fence: a write (so SQLite takes its write lock and PostgreSQL locks the row until the
    /// transaction ends) that matches only while `$2` holds the lease.
    pub const LEASE_FENCE: &str =
        "UPDATE vault_refresh_leases SET lease_id = lease_id WHERE lineage = $1 AND lease_id = $2";

    #[cfg(test)]
    mod tests {
        #[test]
        fn delete_returns_the_selected_columns() {
            let select = super::GET.split(" FROM ").next().unwrap_or_default();
            let returning = super::DELETE
                .split(" RETURNING ")
                .nth(1)
                .unwrap_or_default();
            assert_eq!(select.trim_start_matches("SELECT "), returning);
        }
    }
}

fn corrupt(column: &str, value: &str) -> Error {
    Error::internal(
        codes::STORAGE_ERROR,
        format!("unexpected value `{value}` in vault_entries.{column}"),
    )
}

fn attributes_to_text(attributes: &BTreeMap<String, String>) -> Result<String> {
    serde_json::to_string(attributes).map_err(|e| {
        Error::internal(
            codes::STORAGE_ERROR,
            format!("cannot encode attributes: {e}"),
        )
    })
}

fn attributes_from_text(text: &str) -> Result<BTreeMap<String, String>> {
    serde_json::from_str(text).map_err(|_| {
        Error::internal(
            codes::STORAGE_ERROR,
            "vault attributes are not a JSON object of strings",
        )
    })
}

fn row_from(t: EntryTuple) -> Result<VaultRow> {
    let (
        id,
        owner_issuer,
        owner_subject,
        token_type,
        key_id,
        nonce,
        ciphertext,
        session_id,
        status,
        attributes,
        created_at,
        last_used_at,
        expires_at,
        version,
    ) = t;
    Ok(VaultRow {
        id,
        owner_issuer,
        owner_subject,
        token_type: token_type_of(&token_type)?,
        sealed: Sealed {
            key_id,
            nonce,
            ciphertext,
        },
        session_id,
        status: status_of(&status)?,
        attributes: attributes_from_text(&attributes)?,
        created_at: UnixTime::from_millis(created_at),
        last_used_at: last_used_at.map(UnixTime::from_millis),
        expires_at: expires_at.map(UnixTime::from_millis),
        version,
    })
}

fn pending_from(t: PendingTuple) -> Result<PendingConsent> {
    let (
        nonce,
        owner_issuer,
        owner_subject,
        key_id,
        verifier_nonce,
        verifier_sealed,
        attributes,
        redirect_after,
        created_at,
        expires_at,
    ) = t;
    Ok(PendingConsent {
        nonce,
        owner_issuer,
        owner_subject,
        verifier: Sealed {
            key_id,
            nonce: verifier_nonce,
            ciphertext: verifier_sealed,
        },
        attributes: attributes_from_text(&attributes)?,
        redirect_after,
        created_at: UnixTime::from_millis(created_at),
        expires_at: UnixTime::from_millis(expires_at),
    })
}

/// One statement with `binds` on either backend: the rows it changed.
macro_rules! execute {
    ($store:expr, $sql:expr, $op:literal, [$($bind:expr),* $(,)?]) => {
        with_pool!($store.pool(), |p| sqlx::query($sql)
            $(.bind($bind))*
            .execute(p)
            .await
            .map_err(db($op))?
            .rows_affected())
    };
}

/// Inside a fenced write's transaction `$tx`: rolls back and returns [`FencedWrite::LeaseLost`]
/// unless `$lease_id` still holds the lease of `$lineage` (the write also locks the lease row).
macro_rules! require_lease {
    ($tx:ident, $lineage:expr, $lease_id:expr, $op:expr) => {
        if tx_execute!($tx, sql::LEASE_FENCE, $op, [$lineage, $lease_id])? == 0 {
            $tx.rollback().await.map_err(db($op))?;
            return Ok(FencedWrite::LeaseLost);
        }
    };
}

/// One statement with `binds` that returns entry rows: all of them, decoded.
macro_rules! fetch_entries {
    ($store:expr, $sql:expr, $op:literal, [$($bind:expr),* $(,)?]) => {{
        let rows: Vec<EntryTuple> = with_pool!($store.pool(), |p| sqlx::query_as($sql)
            $(.bind($bind))*
            .fetch_all(p)
            .await
            .map_err(db($op))?);
        rows.into_iter().map(row_from).collect::<Result<Vec<_>>>()
    }};
}

/// One statement with `binds` that returns at most one entry row, decoded.
macro_rules! fetch_entry {
    ($store:expr, $sql:expr, $op:literal, [$($bind:expr),* $(,)?]) => {{
        let row: Option<EntryTuple> = with_pool!($store.pool(), |p| sqlx::query_as($sql)
            $(.bind($bind))*
            .fetch_optional(p)
            .await
            .map_err(db($op))?);
        row.map(row_from).transpose()
    }};
}

impl VaultTables {
    async fn insert_entry(
        &self,
        fence: Option<InsertFence<'_>>,
        row: &VaultRow,
    ) -> Result<FencedWrite> {
        let op = "insert vault entry";
        let attributes = attributes_to_text(&row.attributes)?;
        with_pool!(self.pool(), |p| {
            let mut tx = p.begin().await.map_err(db(op))?;
            if let Some(f) = fence {
                require_lease!(tx, f.lineage, f.lease_id, op);
                if tx_execute!(tx, sql::HOLD_VERSION, op, [f.source_id, f.source_version])? == 0 {
                    tx.rollback().await.map_err(db(op))?;
                    return Ok(FencedWrite::Conflict);
                }
            }
            tx_execute!(
                tx,
                sql::INSERT,
                op,
                [
                    &row.id,
                    &row.owner_issuer,
                    &row.owner_subject,
                    row.token_type.as_str(),
                    &row.sealed.key_id,
                    &row.sealed.nonce,
                    &row.sealed.ciphertext,
                    &row.session_id,
                    row.status.as_str(),
                    &attributes,
                    row.created_at.as_millis(),
                    row.last_used_at.map(UnixTime::as_millis),
                    row.expires_at.map(UnixTime::as_millis),
                    row.version,
                ]
            )?;
            tx.commit().await.map_err(db(op))?;
        });
        Ok(FencedWrite::Applied)
    }

    async fn write_tokens(
        &self,
        fence: Option<(&str, &str)>,
        updates: &[TokenUpdate],
    ) -> Result<FencedWrite> {
        let op = "update vault token";
        with_pool!(self.pool(), |p| {
            let mut tx = p.begin().await.map_err(db(op))?;
            if let Some((lineage, lease_id)) = fence {
                require_lease!(tx, lineage, lease_id, op);
            }
            for u in updates {
                let done = tx_execute!(
                    tx,
                    sql::UPDATE_TOKEN,
                    op,
                    [
                        &u.id,
                        u.expected_version,
                        &u.sealed.key_id,
                        &u.sealed.nonce,
                        &u.sealed.ciphertext,
                        u.expires_at.map(UnixTime::as_millis),
                        u.used_at.map(UnixTime::as_millis),
                    ]
                )?;
                if u.expected_version.is_some() && done == 0 {
                    tx.rollback().await.map_err(db(op))?;
                    return Ok(FencedWrite::Conflict);
                }
            }
            tx.commit().await.map_err(db(op))?;
        });
        Ok(FencedWrite::Applied)
    }

    async fn write_status_fenced(
        &self,
        lineage: &str,
        lease_id: &str,
        id: &str,
        expected_version: i64,
        status: VaultStatus,
    ) -> Result<FencedWrite> {
        let op = "set vault entry status";
        with_pool!(self.pool(), |p| {
            let mut tx = p.begin().await.map_err(db(op))?;
            require_lease!(tx, lineage, lease_id, op);
            let done = tx_execute!(
                tx,
                sql::SET_STATUS_GUARDED,
                op,
                [id, status.as_str(), expected_version]
            )?;
            if done == 0 {
                tx.rollback().await.map_err(db(op))?;
                return Ok(FencedWrite::Conflict);
            }
            tx.commit().await.map_err(db(op))?;
        });
        Ok(FencedWrite::Applied)
    }

    /// How many entries share an IdP session (the vault itself does not ask; for operators and
    /// tests).
    pub async fn count_by_session(&self, session_id: &str) -> Result<u64> {
        let n: i64 = with_pool!(self.pool(), |p| sqlx::query_scalar(sql::COUNT_SESSION)
            .bind(session_id)
            .fetch_one(p)
            .await
            .map_err(db("count vault entries of a session"))?);
        // COUNT(*) is never negative.
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Sets the status (bumping the version), neither fenced nor guarded: an operator's write,
    /// never the vault's (its status writes are [`VaultStore::set_status_fenced`]). `false` if
    /// there is no such entry.
    pub async fn set_status(&self, id: &str, status: VaultStatus) -> Result<bool> {
        let done = execute!(
            self,
            sql::SET_STATUS,
            "set vault entry status",
            [id, status.as_str()]
        );
        Ok(done > 0)
    }
}

impl VaultStore for VaultTables {
    fn insert<'a>(&'a self, row: &'a VaultRow) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.insert_entry(None, row).await.map(|_| ()) })
    }

    fn insert_fenced<'a>(
        &'a self,
        fence: InsertFence<'a>,
        row: &'a VaultRow,
    ) -> BoxFuture<'a, Result<FencedWrite>> {
        Box::pin(self.insert_entry(Some(fence), row))
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<VaultRow>>> {
        Box::pin(async move { fetch_entry!(self, sql::GET, "get vault entry", [id]) })
    }

    fn list_by_owner<'a>(
        &'a self,
        issuer: &'a str,
        subject: &'a str,
    ) -> BoxFuture<'a, Result<Vec<VaultRow>>> {
        Box::pin(async move {
            fetch_entries!(self, sql::BY_OWNER, "list vault entries", [issuer, subject])
        })
    }

    fn list_by_session<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<Vec<VaultRow>>> {
        Box::pin(async move {
            fetch_entries!(
                self,
                sql::BY_SESSION,
                "list vault entries of a session",
                [session_id]
            )
        })
    }

    fn list_page<'a>(
        &'a self,
        after_id: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<VaultRow>>> {
        Box::pin(async move {
            let limit = i64::from(limit.clamp(1, VAULT_PAGE_MAX));
            fetch_entries!(self, sql::PAGE, "page vault entries", [after_id, limit])
        })
    }

    fn update_tokens<'a>(&'a self, updates: &'a [TokenUpdate]) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { Ok(self.write_tokens(None, updates).await? == FencedWrite::Applied) })
    }

    fn update_tokens_fenced<'a>(
        &'a self,
        lineage: &'a str,
        lease_id: &'a str,
        updates: &'a [TokenUpdate],
    ) -> BoxFuture<'a, Result<FencedWrite>> {
        Box::pin(self.write_tokens(Some((lineage, lease_id)), updates))
    }

    fn set_status_fenced<'a>(
        &'a self,
        lineage: &'a str,
        lease_id: &'a str,
        id: &'a str,
        expected_version: i64,
        status: VaultStatus,
    ) -> BoxFuture<'a, Result<FencedWrite>> {
        Box::pin(self.write_status_fenced(lineage, lease_id, id, expected_version, status))
    }

    fn touch<'a>(&'a self, id: &'a str, at: UnixTime) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            execute!(self, sql::TOUCH, "touch vault entry", [id, at.as_millis()]);
            Ok(())
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<VaultRow>>> {
        Box::pin(async move { fetch_entry!(self, sql::DELETE, "delete vault entry", [id]) })
    }

    // ----- refresh leases -----

    fn lease_claim<'a>(
        &'a self,
        lineage: &'a str,
        lease_id: &'a str,
        now: UnixTime,
        until: UnixTime,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let taken = execute!(
                self,
                sql::LEASE_CLAIM,
                "claim refresh lease",
                [lineage, lease_id, until.as_millis(), now.as_millis()]
            );
            Ok(taken > 0)
        })
    }

    fn lease_renew<'a>(
        &'a self,
        lineage: &'a str,
        lease_id: &'a str,
        until: UnixTime,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let renewed = execute!(
                self,
                sql::LEASE_RENEW,
                "renew refresh lease",
                [lineage, lease_id, until.as_millis()]
            );
            Ok(renewed > 0)
        })
    }

    fn lease_release<'a>(
        &'a self,
        lineage: &'a str,
        lease_id: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            execute!(
                self,
                sql::LEASE_RELEASE,
                "release refresh lease",
                [lineage, lease_id]
            );
            Ok(())
        })
    }

    // ----- pending consents -----

    fn pending_insert<'a>(
        &'a self,
        pending: &'a PendingConsent,
        max: u32,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let attributes = attributes_to_text(&pending.attributes)?;
            let inserted = execute!(
                self,
                sql::PENDING_INSERT,
                "insert pending consent",
                [
                    &pending.nonce,
                    &pending.owner_issuer,
                    &pending.owner_subject,
                    &pending.verifier.key_id,
                    &pending.verifier.nonce,
                    &pending.verifier.ciphertext,
                    &attributes,
                    &pending.redirect_after,
                    pending.created_at.as_millis(),
                    pending.expires_at.as_millis(),
                    i64::from(max),
                ]
            );
            Ok(inserted > 0)
        })
    }

    fn pending_of_owner<'a>(
        &'a self,
        issuer: &'a str,
        subject: &'a str,
        now: UnixTime,
    ) -> BoxFuture<'a, Result<(u64, Option<UnixTime>)>> {
        Box::pin(async move {
            let (count, first): (i64, Option<i64>) =
                with_pool!(self.pool(), |p| sqlx::query_as(sql::PENDING_OF_OWNER)
                    .bind(issuer)
                    .bind(subject)
                    .bind(now.as_millis())
                    .fetch_one(p)
                    .await
                    .map_err(db("count pending consents"))?);
            // COUNT(*) is never negative.
            Ok((
                u64::try_from(count).unwrap_or(0),
                first.map(UnixTime::from_millis),
            ))
        })
    }

    fn pending_take<'a>(&'a self, nonce: &'a str) -> BoxFuture<'a, Result<Option<PendingConsent>>> {
        Box::pin(async move {
            let row: Option<PendingTuple> =
                with_pool!(self.pool(), |p| sqlx::query_as(sql::PENDING_TAKE)
                    .bind(nonce)
                    .fetch_optional(p)
                    .await
                    .map_err(db("take pending consent"))?);
            row.map(pending_from).transpose()
        })
    }

    fn pending_purge<'a>(&'a self, now: UnixTime) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            Ok(execute!(
                self,
                sql::PENDING_PURGE,
                "purge pending consents",
                [now.as_millis()]
            ))
        })
    }
}
