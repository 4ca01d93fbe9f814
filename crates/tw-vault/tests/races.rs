//! Two vault instances on one database racing for one token lineage: a refresh whose lease ran
//! out while it waited, and concurrent deletes of entries sharing a session; on SQLite and on
//! PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Harness;
use std::time::Duration;
use tw_core::Secret;
use tw_testkit::{Endpoint, Fault};
use tw_vault::{EntryStatus, Vault};

/// Another instance on the same database, IdP, clock and keys.
async fn second_instance(h: &Harness) -> Vault {
    let store = h.storage.open(&h.clock).await;
    common::vault_with(&h.idp, &store, &h.clock, common::ring("k1", &[("k1", 1)])).await
}

/// Instance B starts its first mint while the IdP's discovery is slow. Waiting on it must not
/// happen under the refresh lease: otherwise the lease runs out, instance A takes it and rotates
/// the token, and B presents the spent one and marks a healthy entry `reconsent_required`.
async fn a_slow_first_refresh_does_not_spend_the_entry(h: Harness) {
    let entry = h.consent(&h.alice, "alice").await.unwrap().entry;
    let b = second_instance(&h).await;
    h.idp
        .fault(Fault::delay(Endpoint::Discovery, Duration::from_secs(2)).times(1))
        .await;
    h.idp.reset_stats().await;
    let (b2, alice, id) = (b.clone(), h.alice.clone(), entry.id);
    let slow = tokio::spawn(async move { b2.mint(&alice, &id).await });
    while h.idp.stats().await.discovery_requests == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // B is waiting on the IdP; time passes beyond any lease it could hold.
    h.clock.advance(Duration::from_secs(60));
    h.vault.mint(&h.alice, &entry.id).await.unwrap();
    slow.await.unwrap().unwrap();
    assert_eq!(
        h.vault.get(&h.alice, &entry.id).await.unwrap().status,
        EntryStatus::Active
    );
    assert_eq!(h.idp.stats().await.refresh_token_reuse, 0);
    assert_eq!(Harness::refresh_grants(&h.idp.stats().await), 2);
    // Both instances keep minting from the newest token.
    h.clock.advance(Duration::from_secs(31));
    b.mint(&h.alice, &entry.id).await.unwrap();
    h.clock.advance(Duration::from_secs(31));
    h.vault.mint(&h.alice, &entry.id).await.unwrap();
}
both!(
    slow_first_refresh,
    a_slow_first_refresh_does_not_spend_the_entry
);

/// Entries and their duplicates (one offline session per pair) deleted at once through two
/// instances: of each pair, the second delete sees no sibling left and revokes, so exactly one
/// revocation per session ends it; nothing stays live at the IdP without an entry.
async fn concurrent_deletes_of_siblings_revoke_once(h: Harness) {
    const SESSIONS: usize = 4;
    let b = second_instance(&h).await;
    let mut pairs = Vec::new();
    for _ in 0..SESSIONS {
        let entry = h.consent(&h.alice, "alice").await.unwrap().entry;
        let dup = h.vault.duplicate(&h.alice, &entry.id).await.unwrap();
        let minted = h.vault.mint(&h.alice, &entry.id).await.unwrap();
        pairs.push((entry.id, dup.id, minted.access_token));
    }
    // B has discovered the IdP and opened its connections too: the deletes race on the
    // database only.
    b.introspect(&h.alice, Secret::new("warm-up"))
        .await
        .unwrap();
    assert_eq!(b.list(&h.alice).await.unwrap().len(), 2 * SESSIONS);
    h.idp.reset_stats().await;
    let deletes = pairs.iter().flat_map(|(entry, dup, _)| {
        [
            futures::future::Either::Left(h.vault.delete(&h.alice, entry)),
            futures::future::Either::Right(b.delete(&h.alice, dup)),
        ]
    });
    let outcomes: Vec<_> = futures::future::join_all(deletes)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    for pair in outcomes.chunks(2) {
        assert_eq!(
            pair.iter().filter(|o| o.revoked_at_idp).count(),
            1,
            "{outcomes:?}"
        );
    }
    assert_eq!(
        h.idp.stats().await.revocation_requests,
        SESSIONS as u64,
        "{outcomes:?}"
    );
    assert!(h.vault.list(&h.alice).await.unwrap().is_empty());
    for (_, _, minted) in pairs {
        let answer = h.vault.introspect(&h.alice, minted).await.unwrap();
        assert_eq!(answer["active"], serde_json::json!(false), "{answer}");
    }
}
both!(sibling_deletes, concurrent_deletes_of_siblings_revoke_once);

/// The shared-session rule counts only the owner's other *active* entries: a sibling that needs
/// a new consent holds nothing worth keeping the session for, so deleting the last active entry
/// revokes.
async fn a_dead_sibling_does_not_keep_the_session(h: Harness) {
    let entry = h.consent(&h.alice, "alice").await.unwrap().entry;
    let dup = h.vault.duplicate(&h.alice, &entry.id).await.unwrap();
    h.store
        .set_status(&dup.id.to_string(), EntryStatus::ReconsentRequired)
        .await
        .unwrap();
    let outcome = h.vault.delete(&h.alice, &entry.id).await.unwrap();
    assert!(outcome.revoked_at_idp, "{outcome:?}");
    assert!(h.vault.list(&h.alice).await.unwrap().len() == 1);
}
both!(dead_sibling, a_dead_sibling_does_not_keep_the_session);

/// A duplicate is inserted by a write fenced by the lineage's lease (as a rotation's commit):
/// the copy and the lease check are one transaction that holds the lease row, so another
/// instance taking the lease over (its holder stalled past it) waits for the copy and then
/// rotates it with the rest; it never finds a copy holding the token it has just spent appear
/// after its commit. The stall is a slow insert (a trigger sleeping), which only PostgreSQL can
/// inject; SQLite runs one writer at a time anyway (and the fence itself is tested on both in
/// tw-store's tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_duplicate_never_holds_a_spent_token() {
    let h = Harness::start(common::Db::Postgres).await;
    let entry = h.consent(&h.alice, "alice").await.unwrap().entry;
    h.vault.mint(&h.alice, &entry.id).await.unwrap();
    let b = second_instance(&h).await;
    let mut watcher = h.storage.connect().await;
    watcher
        .exec(
            "CREATE FUNCTION tw_test_slow() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(1.5); RETURN NEW; END; $$ LANGUAGE plpgsql; \
             CREATE TRIGGER tw_test_slow BEFORE INSERT ON vault_entries FOR EACH ROW EXECUTE FUNCTION tw_test_slow();",
        )
        .await;
    h.idp.reset_stats().await;
    let (b2, alice, id) = (b.clone(), h.alice.clone(), entry.id);
    let duplicate = tokio::spawn(async move { b2.duplicate(&alice, &id).await });
    // B is inside its insert, under its lease; time passes beyond that lease...
    let common::DbConn::Postgres(conn) = &mut watcher else {
        unreachable!("postgres")
    };
    loop {
        let inserting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'INSERT INTO vault_entries%'",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        if inserting > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.clock.advance(Duration::from_secs(60));
    // ...and A mints: its refresh rotates the token.
    h.vault.mint(&h.alice, &entry.id).await.unwrap();
    let copy = duplicate.await.unwrap();
    watcher
        .exec("DROP TRIGGER tw_test_slow ON vault_entries; DROP FUNCTION tw_test_slow();")
        .await;
    match copy {
        // The copy was written under B's lease, before A took it: A's rotation reached it.
        Ok(copy) => {
            h.clock.advance(Duration::from_secs(31));
            b.mint(&h.alice, &copy.id).await.unwrap();
            h.vault.mint(&h.alice, &entry.id).await.unwrap();
            assert_eq!(
                h.vault.get(&h.alice, &copy.id).await.unwrap().status,
                EntryStatus::Active
            );
        }
        // Or B found its lease gone and wrote nothing.
        Err(e) => {
            assert_eq!(e.code(), "vault_lease_lost", "{e:?}");
            assert_eq!(h.vault.list(&h.alice).await.unwrap().len(), 1);
        }
    }
    assert_eq!(h.idp.stats().await.refresh_token_reuse, 0);
    assert_eq!(
        h.vault.get(&h.alice, &entry.id).await.unwrap().status,
        EntryStatus::Active
    );
}
