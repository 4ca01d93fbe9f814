//! The vault tables, each scenario on SQLite and on a real PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{START, Target};
use std::collections::BTreeMap;
use std::time::Duration;
use tw_core::UnixTime;
use tw_store::{
    FencedWrite, InsertFence, PendingConsent, Sealed, TokenUpdate, VaultRow, VaultStatus,
    VaultStore, VaultTables, VaultTokenType,
};

const ISS: &str = "https://kc.example/realms/dls";

/// The vault's tables through a new `Store` on this database (a new "instance").
async fn tables(t: &Target) -> VaultTables {
    VaultTables::new(t.open().await)
}

fn sealed(key: &str, byte: u8) -> Sealed {
    Sealed {
        key_id: key.into(),
        nonce: vec![byte; 12],
        ciphertext: vec![byte; 48],
    }
}

fn row(id: &str, subject: &str, session: Option<&str>) -> VaultRow {
    VaultRow {
        id: id.into(),
        owner_issuer: ISS.into(),
        owner_subject: subject.into(),
        token_type: VaultTokenType::Offline,
        sealed: sealed("k1", 1),
        session_id: session.map(str::to_owned),
        status: VaultStatus::Active,
        attributes: BTreeMap::from([("job".to_owned(), "nightly \"sync\"".to_owned())]),
        created_at: START,
        last_used_at: None,
        expires_at: Some(START.plus(Duration::from_secs(3600))),
        version: 1,
    }
}

fn update(id: &str, version: Option<i64>, byte: u8) -> TokenUpdate {
    TokenUpdate {
        id: id.into(),
        expected_version: version,
        sealed: sealed("k2", byte),
        expires_at: None,
        used_at: Some(START.plus(Duration::from_secs(5))),
    }
}

async fn entries_crud(t: Target) {
    let s = tables(&t).await;
    let a = row("a", "alice", Some("s1"));
    s.insert(&a).await.unwrap();
    assert_eq!(s.get("a").await.unwrap().as_ref(), Some(&a), "round trip");
    assert_eq!(s.get("nope").await.unwrap(), None);
    let dup = s.insert(&a).await.unwrap_err();
    assert_eq!(dup.code(), "storage_conflict");

    let mut b = row("b", "alice", Some("s1"));
    b.token_type = VaultTokenType::Refresh;
    b.created_at = START.plus(Duration::from_secs(1));
    b.session_id = Some("s1".into());
    s.insert(&b).await.unwrap();
    let c = row("c", "bob", None);
    s.insert(&c).await.unwrap();

    let mine = s.list_by_owner(ISS, "alice").await.unwrap();
    assert_eq!(
        mine.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(mine[1].token_type, VaultTokenType::Refresh);
    assert!(s.list_by_owner("other", "alice").await.unwrap().is_empty());
    assert_eq!(s.count_by_session("s1").await.unwrap(), 2);
    assert_eq!(s.count_by_session("s2").await.unwrap(), 0);
    assert_eq!(s.list_by_session("s1").await.unwrap().len(), 2);

    // Keyset pages by id.
    let p1 = s.list_page(None, 2).await.unwrap();
    assert_eq!(
        p1.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let p2 = s.list_page(Some("b"), 2).await.unwrap();
    assert_eq!(p2.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["c"]);

    // Touch keeps the version; status bumps it.
    s.touch("a", START.plus(Duration::from_secs(9)))
        .await
        .unwrap();
    let a1 = s.get("a").await.unwrap().unwrap();
    assert_eq!(a1.last_used_at, Some(START.plus(Duration::from_secs(9))));
    assert_eq!(a1.version, 1);
    assert!(
        s.set_status("a", VaultStatus::ReconsentRequired)
            .await
            .unwrap()
    );
    let a2 = s.get("a").await.unwrap().unwrap();
    assert_eq!((a2.status, a2.version), (VaultStatus::ReconsentRequired, 2));
    assert!(!s.set_status("nope", VaultStatus::Active).await.unwrap());

    // Delete returns the row once.
    let gone = s.delete("c").await.unwrap().unwrap();
    assert_eq!(gone, c);
    assert_eq!(s.delete("c").await.unwrap(), None);
}
both!(entries, entries_crud);

async fn guarded_token_updates(t: Target) {
    let s = tables(&t).await;
    s.insert(&row("a", "alice", Some("s1"))).await.unwrap();
    s.insert(&row("b", "alice", Some("s1"))).await.unwrap();

    // A stale version changes nothing, siblings included.
    assert!(
        !s.update_tokens(&[update("a", Some(7), 2), update("b", None, 2)])
            .await
            .unwrap()
    );
    let a = s.get("a").await.unwrap().unwrap();
    let b = s.get("b").await.unwrap().unwrap();
    assert_eq!((a.version, a.sealed.clone()), (1, sealed("k1", 1)));
    assert_eq!(b.sealed, sealed("k1", 1), "the sibling rolled back too");

    // The right version applies, with the sibling, in one go.
    assert!(
        s.update_tokens(&[
            update("a", Some(1), 3),
            update("b", None, 4),
            update("gone", None, 5)
        ])
        .await
        .unwrap()
    );
    let a = s.get("a").await.unwrap().unwrap();
    assert_eq!((a.version, a.sealed.clone()), (2, sealed("k2", 3)));
    assert_eq!(a.last_used_at, Some(START.plus(Duration::from_secs(5))));
    assert_eq!(a.expires_at, None);
    let b = s.get("b").await.unwrap().unwrap();
    assert_eq!((b.version, b.sealed), (2, sealed("k2", 4)));

    // The version just read no longer works once used: a second writer loses.
    assert!(!s.update_tokens(&[update("a", Some(1), 6)]).await.unwrap());
    let mut keep_use = update("a", Some(2), 6);
    keep_use.used_at = None;
    assert!(s.update_tokens(&[keep_use]).await.unwrap());
    let a = s.get("a").await.unwrap().unwrap();
    assert_eq!(
        a.last_used_at,
        Some(START.plus(Duration::from_secs(5))),
        "COALESCE keeps it"
    );

    // Concurrent guarded writers on one version: exactly one applies.
    let (first, second) = ([update("a", Some(3), 7)], [update("a", Some(3), 8)]);
    let (x, y) = tokio::join!(s.update_tokens(&first), s.update_tokens(&second));
    assert_eq!([x.unwrap(), y.unwrap()].iter().filter(|ok| **ok).count(), 1);
}
both!(updates, guarded_token_updates);

fn pending(nonce: &str, expires_at: UnixTime) -> PendingConsent {
    PendingConsent {
        nonce: nonce.into(),
        owner_issuer: ISS.into(),
        owner_subject: "alice".into(),
        verifier: sealed("k1", 9),
        attributes: BTreeMap::from([("purpose".to_owned(), "batch".to_owned())]),
        redirect_after: Some("https://app.example/done".into()),
        created_at: START,
        expires_at,
    }
}

/// No cap on pending consents, for tests about other things.
const NO_CAP: u32 = u32::MAX;

async fn pending_taken_once(t: Target) {
    let s = tables(&t).await;
    let p = pending("n1", START.plus(Duration::from_secs(600)));
    s.pending_insert(&p, NO_CAP).await.unwrap();
    assert_eq!(
        s.pending_insert(&p, NO_CAP).await.unwrap_err().code(),
        "storage_conflict"
    );
    assert_eq!(s.pending_take("n1").await.unwrap(), Some(p));
    assert_eq!(s.pending_take("n1").await.unwrap(), None, "single use");

    // Two instances racing for one nonce: one wins.
    s.pending_insert(&pending("n2", START.plus(Duration::from_secs(600))), NO_CAP)
        .await
        .unwrap();
    let other = tables(&t).await;
    let (x, y) = tokio::join!(s.pending_take("n2"), other.pending_take("n2"));
    assert_eq!(
        [x.unwrap(), y.unwrap()]
            .iter()
            .filter(|r| r.is_some())
            .count(),
        1
    );

    // Purge removes what expired at or before `now`.
    s.pending_insert(&pending("old", START), NO_CAP)
        .await
        .unwrap();
    s.pending_insert(&pending("new", START.plus(Duration::from_secs(1))), NO_CAP)
        .await
        .unwrap();
    assert_eq!(s.pending_purge(START).await.unwrap(), 1);
    assert!(s.pending_take("old").await.unwrap().is_none());
    assert!(s.pending_take("new").await.unwrap().is_some());
}
both!(pending, pending_taken_once);

/// At most `max` live pending consents per owner; expired ones and other owners' do not count.
async fn pending_capped_per_owner(t: Target) {
    let s = tables(&t).await;
    let at = |secs: u64| START.plus(Duration::from_secs(secs));
    let mut expired = pending("expired", START);
    expired.created_at = at(0).minus(Duration::from_secs(600));
    s.pending_insert(&expired, NO_CAP).await.unwrap();
    assert!(s.pending_insert(&pending("a", at(600)), 2).await.unwrap());
    assert!(s.pending_insert(&pending("b", at(300)), 2).await.unwrap());
    assert!(!s.pending_insert(&pending("c", at(600)), 2).await.unwrap());
    assert!(s.pending_take("c").await.unwrap().is_none(), "not inserted");
    assert_eq!(
        s.pending_of_owner(ISS, "alice", START).await.unwrap(),
        (2, Some(at(300)))
    );
    let mut bobs = pending("bob-1", at(600));
    bobs.owner_subject = "bob".into();
    assert!(s.pending_insert(&bobs, 2).await.unwrap());
    // One completed: room again.
    s.pending_take("a").await.unwrap().unwrap();
    assert!(s.pending_insert(&pending("d", at(600)), 2).await.unwrap());
    // Later, when "b" has expired, it no longer counts.
    let mut later = pending("e", at(900));
    later.created_at = at(300);
    assert!(s.pending_insert(&later, 2).await.unwrap());
}
both!(pending_cap, pending_capped_per_owner);

async fn refresh_leases(t: Target) {
    let s = tables(&t).await;
    let other = tables(&t).await;
    let at = |secs: u64| START.plus(Duration::from_secs(secs));
    assert!(
        s.lease_claim("session-1", "me", at(0), at(10))
            .await
            .unwrap()
    );
    // Live: another instance cannot take it, nor can it release it.
    assert!(
        !other
            .lease_claim("session-1", "them", at(5), at(15))
            .await
            .unwrap()
    );
    other.lease_release("session-1", "them").await.unwrap();
    assert!(
        !other
            .lease_claim("session-1", "them", at(9), at(19))
            .await
            .unwrap()
    );
    // Other lineages are independent.
    assert!(
        other
            .lease_claim("session-2", "them", at(5), at(15))
            .await
            .unwrap()
    );
    // Released: free at once.
    s.lease_release("session-1", "me").await.unwrap();
    assert!(
        other
            .lease_claim("session-1", "them", at(6), at(16))
            .await
            .unwrap()
    );
    // Expired (its holder died): taken over.
    assert!(
        s.lease_claim("session-1", "me", at(16), at(26))
            .await
            .unwrap()
    );
    // Racing claimers on a free lineage: one wins.
    let (x, y) = tokio::join!(
        s.lease_claim("session-3", "me", at(0), at(10)),
        other.lease_claim("session-3", "them", at(0), at(10))
    );
    assert_eq!(
        [x.unwrap(), y.unwrap()].iter().filter(|won| **won).count(),
        1
    );
}
both!(leases, refresh_leases);

/// A holder whose lease ran out and was taken over can no longer write: neither the tokens it
/// got from the IdP nor a status; the new holder can, and a status change is guarded by the
/// version read. Renewing keeps a lease out of reach of others.
async fn fenced_writes(t: Target) {
    let s = tables(&t).await;
    let other = tables(&t).await;
    let at = |secs: u64| START.plus(Duration::from_secs(secs));
    s.insert(&row("a", "alice", Some("s1"))).await.unwrap();
    assert!(
        s.lease_claim("session:s1", "slow", at(0), at(7))
            .await
            .unwrap()
    );
    // Renewed while working: still the holder's at 8 s.
    assert!(s.lease_renew("session:s1", "slow", at(14)).await.unwrap());
    assert!(
        !other
            .lease_claim("session:s1", "fast", at(8), at(15))
            .await
            .unwrap()
    );
    // Not renewed in time: taken over at 15 s.
    assert!(
        other
            .lease_claim("session:s1", "fast", at(15), at(22))
            .await
            .unwrap()
    );
    assert!(!s.lease_renew("session:s1", "slow", at(30)).await.unwrap());
    let before = s.get("a").await.unwrap().unwrap();
    assert_eq!(
        s.update_tokens_fenced("session:s1", "slow", &[update("a", Some(1), 7)])
            .await
            .unwrap(),
        FencedWrite::LeaseLost
    );
    assert_eq!(
        s.set_status_fenced("session:s1", "slow", "a", 1, VaultStatus::ReconsentRequired)
            .await
            .unwrap(),
        FencedWrite::LeaseLost
    );
    assert_eq!(
        s.get("a").await.unwrap().unwrap(),
        before,
        "nothing written"
    );

    // The new holder's commit goes through, and moves the version on...
    assert_eq!(
        other
            .update_tokens_fenced("session:s1", "fast", &[update("a", Some(1), 8)])
            .await
            .unwrap(),
        FencedWrite::Applied
    );
    // ...so a status change decided on the version read before is refused as a conflict.
    assert_eq!(
        other
            .set_status_fenced("session:s1", "fast", "a", 1, VaultStatus::ReconsentRequired)
            .await
            .unwrap(),
        FencedWrite::Conflict
    );
    let now = s.get("a").await.unwrap().unwrap();
    assert_eq!((now.status, now.version), (VaultStatus::Active, 2));
    assert_eq!(
        other
            .set_status_fenced("session:s1", "fast", "a", 2, VaultStatus::ReconsentRequired)
            .await
            .unwrap(),
        FencedWrite::Applied
    );
    assert_eq!(
        s.get("a").await.unwrap().unwrap().status,
        VaultStatus::ReconsentRequired
    );
    // Released: fenced writes are refused too.
    other.lease_release("session:s1", "fast").await.unwrap();
    assert_eq!(
        other
            .update_tokens_fenced("session:s1", "fast", &[update("a", None, 9)])
            .await
            .unwrap(),
        FencedWrite::LeaseLost
    );
}
both!(fenced, fenced_writes);

/// A duplicate's insert is fenced as a rotation's commit is: by the lease (a holder whose lease
/// was taken over inserts nothing) and by the version of the entry it copies (a copy of a row
/// that moved on is refused); check and insert are one transaction.
async fn fenced_inserts(t: Target) {
    let s = tables(&t).await;
    let other = tables(&t).await;
    let at = |secs: u64| START.plus(Duration::from_secs(secs));
    s.insert(&row("a", "alice", Some("s1"))).await.unwrap();
    let fence = |lease_id: &'static str, source_id: &'static str, version: i64| InsertFence {
        lineage: "session:s1",
        lease_id,
        source_id,
        source_version: version,
    };
    let copy = row("a-copy", "alice", Some("s1"));
    assert!(
        s.lease_claim("session:s1", "slow", at(0), at(7))
            .await
            .unwrap()
    );
    assert_eq!(
        s.insert_fenced(fence("slow", "a", 1), &copy).await.unwrap(),
        FencedWrite::Applied,
        "the holder's copy"
    );
    assert_eq!(s.get("a-copy").await.unwrap().as_ref(), Some(&copy));
    // Taken over at 8 s: the old holder writes no copy any more.
    assert!(
        other
            .lease_claim("session:s1", "fast", at(8), at(15))
            .await
            .unwrap()
    );
    let second = row("a-copy-2", "alice", Some("s1"));
    for lease in ["slow", "SLOW", "slow ", ""] {
        assert_eq!(
            s.insert_fenced(fence(lease, "a", 1), &second)
                .await
                .unwrap(),
            FencedWrite::LeaseLost,
            "{lease:?}"
        );
    }
    assert_eq!(s.get("a-copy-2").await.unwrap(), None);
    // The new holder rotates; a copy decided on the version read before is refused.
    assert_eq!(
        other
            .update_tokens_fenced("session:s1", "fast", &[update("a", Some(1), 2)])
            .await
            .unwrap(),
        FencedWrite::Applied
    );
    assert_eq!(
        other
            .insert_fenced(fence("fast", "a", 1), &second)
            .await
            .unwrap(),
        FencedWrite::Conflict
    );
    assert_eq!(
        other
            .insert_fenced(fence("fast", "gone", 1), &second)
            .await
            .unwrap(),
        FencedWrite::Conflict,
        "a source that is gone"
    );
    assert_eq!(s.get("a-copy-2").await.unwrap(), None);
    assert_eq!(
        other
            .insert_fenced(fence("fast", "a", 2), &second)
            .await
            .unwrap(),
        FencedWrite::Applied
    );
    assert_eq!(
        s.get("a").await.unwrap().unwrap().version,
        2,
        "the check changes nothing"
    );
    // An id that exists is the usual conflict, and rolls back.
    let e = other
        .insert_fenced(fence("fast", "a", 2), &second)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "storage_conflict");
    // Released: refused too.
    other.lease_release("session:s1", "fast").await.unwrap();
    assert_eq!(
        other
            .insert_fenced(fence("fast", "a", 2), &row("a-copy-3", "alice", Some("s1")))
            .await
            .unwrap(),
        FencedWrite::LeaseLost
    );
    assert_eq!(s.list_by_session("s1").await.unwrap().len(), 3);

    // A takeover racing the holder's fenced insert, round after round: both always finish (the
    // fence's lock on the lease row is held only for the insert's transaction), and the insert
    // either applied or wrote nothing, never half.
    s.insert(&row("b", "alice", Some("s2"))).await.unwrap();
    for n in 0..10 {
        let t = 100 * n;
        assert!(
            s.lease_claim("session:s2", "holder", at(t), at(t + 5))
                .await
                .unwrap()
        );
        let id = format!("b-copy-{n}");
        let copy = row(&id, "alice", Some("s2"));
        let thief = format!("thief-{n}");
        let (inserted, claimed) = tokio::join!(
            s.insert_fenced(
                InsertFence {
                    lineage: "session:s2",
                    lease_id: "holder",
                    source_id: "b",
                    source_version: 1,
                },
                &copy
            ),
            other.lease_claim("session:s2", &thief, at(t + 10), at(t + 20))
        );
        assert!(claimed.unwrap(), "the expired lease is taken over");
        let inserted = inserted.unwrap();
        assert!(
            matches!(inserted, FencedWrite::Applied | FencedWrite::LeaseLost),
            "{inserted:?}"
        );
        assert_eq!(
            s.get(&id).await.unwrap().is_some(),
            inserted == FencedWrite::Applied
        );
        other.lease_release("session:s2", &thief).await.unwrap();
    }
}
both!(fenced_insert, fenced_inserts);

/// PostgreSQL's SQLSTATEs are often all digits: a serialisation failure (40001) or a full disk
/// (53100) is transient (503 `storage_unavailable`), not a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_transient_sqlstates_are_retryable() {
    use sqlx::Connection;
    use std::str::FromStr;
    let t = common::postgres().await;
    let s = tables(&t).await;
    s.insert(&row("a", "alice", None)).await.unwrap();
    let pg = t.pg.as_ref().unwrap();
    let opts = sqlx::postgres::PgConnectOptions::from_str(&t.cfg.url)
        .unwrap()
        .password(pg.password());
    let mut conn = sqlx::PgConnection::connect_with(&opts).await.unwrap();
    for sqlstate in ["40001", "53100"] {
        let sql = format!(
            "CREATE OR REPLACE FUNCTION tw_test_refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '{sqlstate}'; END; $$ LANGUAGE plpgsql; \
             DROP TRIGGER IF EXISTS tw_test_refuse ON vault_entries; \
             CREATE TRIGGER tw_test_refuse BEFORE UPDATE ON vault_entries FOR EACH ROW EXECUTE FUNCTION tw_test_refuse();"
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
        let e = s
            .update_tokens(&[update("a", Some(1), 2)])
            .await
            .unwrap_err();
        assert_eq!(
            (e.code(), e.http_status()),
            ("storage_unavailable", 503),
            "{sqlstate}: {e:?}"
        );
        assert!(e.is_retryable());
    }
}
