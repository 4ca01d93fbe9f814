//! Failures: the IdP down (retryable, entries untouched), the IdP refusing a spent token
//! (reconsent, no retry storm), and a database that refuses the rotation's commit (no access
//! token handed out); on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{CLIENT_ID, CLIENT_SECRET, Db, DbConn, Harness};
use std::collections::BTreeMap;
use std::time::Duration;
use tw_core::{ErrorKind, Secret};
use tw_store::VaultStore;
use tw_testkit::{Endpoint, Fault};
use tw_vault::{EntryId, EntryStatus};

async fn row_of(h: &Harness, id: &EntryId) -> tw_store::VaultRow {
    h.store.get(&id.to_string()).await.unwrap().unwrap()
}

async fn idp_down_leaves_entries_untouched(h: Harness) {
    let entry = h.consent(&h.alice, "alice").await.unwrap().entry;
    let before = row_of(&h, &entry.id).await;

    h.idp.down().await;
    let e = h.vault.mint(&h.alice, &entry.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::IdpUnavailable, "{e:?}");
    assert_eq!(e.http_status(), 503);
    assert!(e.is_retryable());
    assert_eq!(row_of(&h, &entry.id).await, before, "nothing written");
    // Delete needs the revocation first: the row stays, the error is retryable.
    let e = h.vault.delete(&h.alice, &entry.id).await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert_eq!(row_of(&h, &entry.id).await, before);
    h.idp.up().await;

    // An IdP answering 503 with Retry-After: same, and the hint is passed on.
    h.idp
        .fault(
            Fault::status(Endpoint::Token, 503)
                .retry_after("7")
                .times(1),
        )
        .await;
    let e = h.vault.mint(&h.alice, &entry.id).await.unwrap_err();
    assert_eq!(
        (e.http_status(), e.retry_after()),
        (503, Some(Duration::from_secs(7)))
    );
    assert_eq!(row_of(&h, &entry.id).await, before);

    // Back: the same entry mints and deletes.
    h.vault.mint(&h.alice, &entry.id).await.unwrap();
    assert!(
        h.vault
            .delete(&h.alice, &entry.id)
            .await
            .unwrap()
            .revoked_at_idp
    );
}
both!(idp_down, idp_down_leaves_entries_untouched);

/// Presents a refresh token at the IdP's token endpoint as the vault's client would.
async fn refresh_directly(h: &Harness, token: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(h.idp.token_url())
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .unwrap()
        .status()
}

async fn spent_tokens_need_a_new_consent(h: Harness) {
    // The vault validates a given token by refreshing it, and keeps the successor...
    let given = h.offline_token_of("alice").await;
    let entry = h
        .vault
        .store_token(&h.alice, Secret::new(given.clone()), BTreeMap::new())
        .await
        .unwrap();
    // ...so someone replaying the old one trips the IdP's reuse detection, which revokes the
    // whole grant, the vault's successor included.
    assert_eq!(refresh_directly(&h, &given).await, 400);

    h.idp.reset_stats().await;
    let e = h.vault.mint(&h.alice, &entry.id).await.unwrap_err();
    assert_eq!(
        (e.code(), e.http_status()),
        ("vault_reconsent_required", 409),
        "{e:?}"
    );
    assert!(!e.is_retryable());
    assert_eq!(
        h.vault.get(&h.alice, &entry.id).await.unwrap().status,
        EntryStatus::ReconsentRequired
    );
    // Asking again does not go back to the IdP.
    for _ in 0..3 {
        let e = h.vault.mint(&h.alice, &entry.id).await.unwrap_err();
        assert_eq!(e.code(), "vault_reconsent_required");
    }
    assert_eq!(Harness::refresh_grants(&h.idp.stats().await), 1);
    // The entry can still be deleted (its revocation at the IdP is a no-op success).
    h.vault.delete(&h.alice, &entry.id).await.unwrap();
}
both!(reconsent, spent_tokens_need_a_new_consent);

/// Makes the database refuse writes to the vault's entries, as a real failure would: SQLite
/// locked by another writer (past the busy timeout), PostgreSQL answering `disk_full` to updates
/// of `vault_entries`.
struct StorageFault(DbConn);

impl StorageFault {
    async fn inject(h: &Harness) -> StorageFault {
        let mut conn = h.storage.connect().await;
        conn.exec(match h.storage.db {
            Db::Sqlite => "BEGIN IMMEDIATE",
            Db::Postgres => {
                "CREATE FUNCTION tw_test_refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'injected: disk full' USING ERRCODE = '53100'; END; $$ LANGUAGE plpgsql; \
                 CREATE TRIGGER tw_test_refuse BEFORE UPDATE ON vault_entries FOR EACH ROW EXECUTE FUNCTION tw_test_refuse();"
            }
        })
        .await;
        StorageFault(conn)
    }

    async fn lift(mut self) {
        self.0
            .exec(match self.0 {
                DbConn::Sqlite(_) => "ROLLBACK",
                DbConn::Postgres(_) => {
                    "DROP TRIGGER tw_test_refuse ON vault_entries; DROP FUNCTION tw_test_refuse();"
                }
            })
            .await;
    }
}

async fn failed_commit_returns_no_token(h: Harness) {
    let entry = h.consent(&h.alice, "alice").await.unwrap().entry;
    h.vault.mint(&h.alice, &entry.id).await.unwrap();
    let before = row_of(&h, &entry.id).await;
    h.clock.advance(Duration::from_secs(31));

    // The IdP holds its answer for a moment; meanwhile the database starts refusing writes.
    h.idp
        .fault(Fault::delay(Endpoint::Token, Duration::from_secs(2)).times(1))
        .await;
    h.idp.reset_stats().await;
    let (vault, alice, id) = (h.vault.clone(), h.alice.clone(), entry.id);
    let mint = tokio::spawn(async move { vault.mint(&alice, &id).await });
    while Harness::refresh_grants(&h.idp.stats().await) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fault = StorageFault::inject(&h).await;
    let e = mint.await.unwrap().unwrap_err();
    assert_eq!(
        (e.code(), e.http_status()),
        ("storage_unavailable", 503),
        "{e:?}"
    );
    assert!(e.is_retryable());
    fault.lift().await;
    assert_eq!(
        row_of(&h, &entry.id).await,
        before,
        "the row was not changed"
    );
    assert_eq!(Harness::refresh_grants(&h.idp.stats().await), 1);

    // The rotated token was never handed to anyone and is gone with the failed commit; the IdP
    // holds the stored one as spent, so the entry asks for a new consent instead of failing in
    // a loop. (The clock first passes the refresh lease the failed attempt may have kept.)
    h.clock.advance(Duration::from_secs(20));
    let e = h.vault.mint(&h.alice, &entry.id).await.unwrap_err();
    assert_eq!(e.code(), "vault_reconsent_required", "{e:?}");
}
both!(commit_failure, failed_commit_returns_no_token);

/// A caller that gives up while the IdP is answering does not cancel the refresh: the rotated
/// token is still committed, so the entry never ends up holding a spent token.
async fn a_caller_giving_up_cancels_nothing(h: Harness) {
    let entry = h.consent(&h.alice, "alice").await.unwrap().entry;
    let before = row_of(&h, &entry.id).await;
    h.idp
        .fault(Fault::delay(Endpoint::Token, Duration::from_millis(800)).times(1))
        .await;
    // The caller gives up while the IdP is working on the refresh (the request has arrived and
    // its answer is held back), not at a fixed time that a slow machine could reach before
    // the vault even started.
    h.idp.reset_stats().await;
    let refresh_arrived = async {
        while h.idp.stats().await.token_requests == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let gave_up = tokio::select! {
        _ = h.vault.mint(&h.alice, &entry.id) => false,
        () = refresh_arrived => true,
    };
    assert!(gave_up, "the caller stopped waiting");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while row_of(&h, &entry.id).await.version == before.version {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotation was never committed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_ne!(row_of(&h, &entry.id).await.sealed, before.sealed);
    // The committed token is the live one: later refreshes work.
    h.clock.advance(Duration::from_secs(31));
    h.vault.mint(&h.alice, &entry.id).await.unwrap();
    h.clock.advance(Duration::from_secs(31));
    h.vault.mint(&h.alice, &entry.id).await.unwrap();
}
both!(caller_gives_up, a_caller_giving_up_cancels_nothing);

/// Makes the database refuse new entries (a trigger raising an error on insert), on either
/// backend; dropped by [`refuse_inserts_lift`].
async fn refuse_inserts(h: &Harness) {
    let sql = match h.storage.db {
        Db::Sqlite => {
            "CREATE TRIGGER tw_test_refuse_insert BEFORE INSERT ON vault_entries BEGIN SELECT RAISE(ABORT, 'injected: disk full'); END;"
        }
        Db::Postgres => {
            "CREATE FUNCTION tw_test_refuse_insert() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'injected: disk full' USING ERRCODE = '53100'; END; $$ LANGUAGE plpgsql; \
             CREATE TRIGGER tw_test_refuse_insert BEFORE INSERT ON vault_entries FOR EACH ROW EXECUTE FUNCTION tw_test_refuse_insert();"
        }
    };
    h.storage.exec(sql).await;
}

async fn refuse_inserts_lift(h: &Harness) {
    let sql = match h.storage.db {
        Db::Sqlite => "DROP TRIGGER tw_test_refuse_insert;",
        Db::Postgres => {
            "DROP TRIGGER tw_test_refuse_insert ON vault_entries; DROP FUNCTION tw_test_refuse_insert();"
        }
    };
    h.storage.exec(sql).await;
}

/// A failure after the IdP answered (here: the entry cannot be inserted) ends the grant the IdP
/// just issued instead of leaving it live with no entry holding it: the rotated successor of a
/// supplied token, and the offline session of a consent.
async fn grants_are_not_left_behind(h: Harness) {
    // Keycloak's default: the presented token stays valid after a rotation, so only the end of
    // the whole grant makes it inactive.
    h.idp.set_refresh_token_reuse_grace(true).await;
    let given = h.offline_token_of("alice").await;
    refuse_inserts(&h).await;
    h.idp.reset_stats().await;
    let e = h
        .vault
        .store_token(&h.alice, Secret::new(given.clone()), BTreeMap::new())
        .await
        .unwrap_err();
    assert!(e.code().starts_with("storage"), "{e:?}");
    assert_eq!(h.idp.stats().await.revocation_requests, 1);
    let answer = h
        .vault
        .introspect(&h.alice, Secret::new(given.clone()))
        .await
        .unwrap();
    assert_eq!(
        answer["active"],
        serde_json::json!(false),
        "the grant was ended: {answer}"
    );
    assert_eq!(refresh_directly(&h, &given).await, 400);

    // A consent whose entry cannot be stored: its grant is revoked at the IdP too.
    let cb = h.browser_consent(&h.alice, "alice", &[]).await;
    h.idp.reset_stats().await;
    let e = h.vault.complete_consent(cb).await.unwrap_err();
    assert!(e.code().starts_with("storage"), "{e:?}");
    assert_eq!(h.idp.stats().await.revocation_requests, 1);
    refuse_inserts_lift(&h).await;
    assert!(h.vault.list(&h.alice).await.unwrap().is_empty());
    // And the vault works again once the database does.
    h.consent(&h.alice, "alice").await.unwrap();
}
both!(grant_left_behind, grants_are_not_left_behind);
