//! Rows changed directly in the database, as someone with write access to it (and not the keys)
//! could: every field a row decides by is bound into the seal or re-checked where it is used, so
//! such a row is refused (`vault_decrypt_failed`: nothing minted, redirected, exchanged or
//! written), and rows sealed by earlier versions (the v1 layout) keep working until re-sealed;
//! on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{DbConn, Harness, seal};
use std::collections::BTreeMap;
use std::time::Duration;
use tw_core::Clock;
use tw_store::{TokenUpdate, VaultRow, VaultStore};
use tw_vault::{Caller, EntryId, EntryStatus, RekeyReport, TokenType};

fn assert_tampered<T: std::fmt::Debug>(r: tw_core::Result<T>, what: &str) {
    let e = r.expect_err(what);
    assert_eq!(
        (e.code(), e.http_status()),
        ("vault_decrypt_failed", 500),
        "{what}: {e:?}"
    );
}

async fn row_of(h: &Harness, id: &EntryId) -> VaultRow {
    h.store.get(&id.to_string()).await.unwrap().unwrap()
}

fn authorization_code_exchanges(stats: &tw_testkit::IdpStats) -> u64 {
    stats
        .token_requests_by_grant
        .get("authorization_code")
        .copied()
        .unwrap_or(0)
}

/// The pending consent's page to return to (and its attributes, and owner) changed between the
/// consent's start and its callback: refused before the code is exchanged, nothing stored.
async fn a_changed_pending_consent_is_refused(h: Harness) {
    let changes: &[(&str, Option<&str>)] = &[
        (
            "UPDATE vault_pending_consents SET redirect_after = $1",
            Some("https://evil.example/done"),
        ),
        // Still under allowed_redirects: only the seal can tell.
        (
            "UPDATE vault_pending_consents SET redirect_after = $1",
            Some("https://app.example/other"),
        ),
        (
            "UPDATE vault_pending_consents SET redirect_after = $1",
            Some("https://app.example/done/"),
        ),
        (
            "UPDATE vault_pending_consents SET redirect_after = $1",
            Some("HTTPS://APP.EXAMPLE/done"),
        ),
        (
            "UPDATE vault_pending_consents SET redirect_after = $1",
            None,
        ),
        (
            "UPDATE vault_pending_consents SET attributes = $1",
            Some(r#"{"job":"hourly"}"#),
        ),
        (
            "UPDATE vault_pending_consents SET attributes = $1",
            Some("{}"),
        ),
        (
            "UPDATE vault_pending_consents SET owner_subject = $1",
            Some(h.bob.subject.as_str()),
        ),
    ];
    h.idp.reset_stats().await;
    for (sql, value) in changes {
        let cb = h.browser_consent(&h.alice, "alice", &[]).await;
        assert_eq!(h.storage.exec_with(sql, &[*value]).await, 1, "{sql}");
        assert_tampered(
            h.vault.complete_consent(cb).await,
            &format!("{sql} {value:?}"),
        );
    }
    assert_eq!(
        authorization_code_exchanges(&h.idp.stats().await),
        0,
        "no code was exchanged"
    );
    assert!(h.vault.list(&h.alice).await.unwrap().is_empty());
    assert!(h.vault.list(&h.bob).await.unwrap().is_empty());
    // Untouched, the same flow goes through and redirects where the consent said.
    let done = h.consent(&h.alice, "alice").await.unwrap();
    assert_eq!(
        done.redirect_to.map(String::from),
        Some("https://app.example/done".to_owned())
    );
}
both!(pending, a_changed_pending_consent_is_refused);

/// An entry's session id, attributes, token type or owner changed in the database: the row no
/// longer opens, for minting (even with an access token cached for it), duplicating or rekeying;
/// the IdP is not asked and nothing is written. Put back, it works again.
async fn a_changed_entry_is_refused(h: Harness) {
    let entry = h.consent(&h.alice, "alice").await.unwrap().entry;
    let cached = h.vault.mint(&h.alice, &entry.id).await.unwrap();
    let session = entry.session_id.clone().unwrap();
    let id = entry.id.to_string();
    let before = row_of(&h, &entry.id).await;
    let other_session = h
        .consent(&h.alice, "alice")
        .await
        .unwrap()
        .entry
        .session_id
        .unwrap();
    let upper = session.to_uppercase();
    let spaced = format!("{session} ");
    let changes: Vec<(&str, Option<&str>)> = vec![
        ("session_id", Some(other_session.as_str())),
        ("session_id", None),
        ("session_id", Some("")),
        ("session_id", Some(upper.as_str())),
        ("session_id", Some(spaced.as_str())),
        ("attributes", Some(r#"{"job":"hourly"}"#)),
        ("attributes", Some(r#"{"job":"nightly","owner":"bob"}"#)),
        ("attributes", Some("{}")),
        ("token_type", Some("refresh")),
    ];
    let put_back = |column: &str| match column {
        "session_id" => Some(session.clone()),
        "attributes" => Some(r#"{"job":"nightly"}"#.to_owned()),
        _ => Some("offline".to_owned()),
    };
    h.idp.reset_stats().await;
    // First with the access token minted above still cached (it is not served either), then
    // with the cache past it (a refresh would be next).
    for cache in ["cached", "expired"] {
        if cache == "expired" {
            h.clock.advance(Duration::from_secs(31));
        }
        for (column, value) in &changes {
            let set = format!("UPDATE vault_entries SET {column} = $1 WHERE id = $2");
            assert_eq!(h.storage.exec_with(&set, &[*value, Some(&id)]).await, 1);
            let what = format!("{cache}: {column} = {value:?}");
            assert_tampered(h.vault.mint(&h.alice, &entry.id).await, &what);
            // (A row that now says "refresh" is refused as no offline entry before it opens.)
            let e = h.vault.duplicate(&h.alice, &entry.id).await.unwrap_err();
            assert!(
                ["vault_decrypt_failed", "vault_duplicate_unsupported"].contains(&e.code()),
                "{what}: {e:?}"
            );
            let restore = put_back(column);
            h.storage
                .exec_with(&set, &[restore.as_deref(), Some(&id)])
                .await;
            assert_eq!(
                row_of(&h, &entry.id).await,
                before,
                "{what}: nothing written"
            );
        }
        if cache == "cached" {
            // Back as it was: the cached token is served again.
            assert_eq!(
                h.vault
                    .mint(&h.alice, &entry.id)
                    .await
                    .unwrap()
                    .access_token,
                cached.access_token
            );
        }
    }
    assert_eq!(
        Harness::refresh_grants(&h.idp.stats().await),
        0,
        "the IdP was never asked"
    );
    assert_eq!(h.vault.list(&h.alice).await.unwrap().len(), 2, "no copy");
    let fresh = h.vault.mint(&h.alice, &entry.id).await.unwrap();
    assert_ne!(fresh.access_token, cached.access_token);

    // Handed to bob in the database: bob gets neither the cached token nor a new one.
    let set_owner = "UPDATE vault_entries SET owner_subject = $1 WHERE id = $2";
    h.storage
        .exec_with(set_owner, &[Some(&h.bob.subject), Some(&id)])
        .await;
    assert_tampered(h.vault.mint(&h.bob, &entry.id).await, "owner");
    h.clock.advance(Duration::from_secs(31));
    assert_tampered(h.vault.mint(&h.bob, &entry.id).await, "owner");
    h.storage
        .exec_with(set_owner, &[Some(&h.alice.subject), Some(&id)])
        .await;
    assert_ne!(
        h.vault
            .mint(&h.alice, &entry.id)
            .await
            .unwrap()
            .access_token,
        fresh.access_token,
        "a fresh one"
    );
    assert_eq!(Harness::refresh_grants(&h.idp.stats().await), 2);

    // Rekey counts such a row as failed and leaves it alone.
    h.storage
        .exec_with(
            "UPDATE vault_entries SET session_id = $1 WHERE id = $2",
            &[Some(&other_session), Some(&id)],
        )
        .await;
    let report = h.vault.rekey().await.unwrap();
    assert_eq!(
        report,
        RekeyReport {
            rewritten: 0,
            unchanged: 1,
            failed: 1
        }
    );
}
both!(entry, a_changed_entry_is_refused);

/// A row that claims another entry's session in the database is no sibling of it: a rotation
/// does not hand it the new token (which would launder the change into a seal that opens), and
/// it does not keep that session from being revoked.
async fn a_row_claiming_a_session_is_no_sibling(h: Harness) {
    let a = h.consent(&h.alice, "alice").await.unwrap().entry;
    let b = h.consent(&h.alice, "alice").await.unwrap().entry;
    let b_id = b.id.to_string();
    let set = "UPDATE vault_entries SET session_id = $1 WHERE id = $2";
    h.storage
        .exec_with(set, &[a.session_id.as_deref(), Some(&b_id)])
        .await;
    let b_before = row_of(&h, &b.id).await;
    h.vault.mint(&h.alice, &a.id).await.unwrap();
    assert_eq!(row_of(&h, &b.id).await, b_before, "not handed a's token");
    assert_tampered(h.vault.mint(&h.alice, &b.id).await, "b");
    let deleted = h.vault.delete(&h.alice, &a.id).await.unwrap();
    assert!(
        deleted.revoked_at_idp,
        "b does not count as a sibling: {deleted:?}"
    );
    // Put back, b holds its own token, still live.
    h.storage
        .exec_with(set, &[b.session_id.as_deref(), Some(&b_id)])
        .await;
    h.vault.mint(&h.alice, &b.id).await.unwrap();
}
both!(session_claim, a_row_claiming_a_session_is_no_sibling);

/// Stores, as sealed v2 rows, two entries of alice's that share an IdP session id: an offline
/// and an online one (Keycloak gives the online and offline sessions of one sign-in one id).
async fn online_and_offline_of_one_session(h: &Harness) -> (VaultRow, VaultRow) {
    let mut rows = Vec::new();
    for (token_type, scope) in [
        (TokenType::Offline, "openid offline_access"),
        (TokenType::Refresh, "openid"),
    ] {
        let token = h
            .idp
            .mint_refresh_token(common::CLIENT_ID, "alice", scope)
            .await;
        let mut row = VaultRow {
            id: uuid_like(rows.len()),
            owner_issuer: h.alice.issuer.clone(),
            owner_subject: h.alice.subject.clone(),
            token_type,
            sealed: seal::seal("k1", 1, &[], ""),
            session_id: Some("3f2a-kc-session".into()),
            status: EntryStatus::Active,
            attributes: BTreeMap::new(),
            created_at: h.clock.now(),
            last_used_at: None,
            expires_at: None,
            version: 1,
        };
        row.sealed = seal::seal("k1", 1, &seal::entry_v2(&row), &token);
        h.store.insert(&row).await.unwrap();
        rows.push(row);
    }
    let online = rows.pop().unwrap();
    (rows.pop().unwrap(), online)
}

fn uuid_like(n: usize) -> String {
    format!("0b7c6a4e-9d1f-4c2b-8a3e-00000000000{n}")
}

fn id_of(row: &VaultRow) -> EntryId {
    row.id.parse().unwrap()
}

/// An online and an offline entry of one session: a rotation of either is never written into
/// the other (they hold different tokens), and deleting one revokes its own token even though
/// the other names the same session.
async fn online_and_offline_entries_keep_their_own_tokens(h: Harness) {
    let (offline, online) = online_and_offline_of_one_session(&h).await;
    let (offline_id, online_id) = (id_of(&offline), id_of(&online));
    h.vault.mint(&h.alice, &offline_id).await.unwrap();
    let rotated_offline = row_of(&h, &offline_id).await;
    assert_ne!(rotated_offline.sealed, offline.sealed, "rotated");
    assert_eq!(
        row_of(&h, &online_id).await,
        online,
        "the online entry keeps its token"
    );
    h.vault.mint(&h.alice, &online_id).await.unwrap();
    assert_ne!(row_of(&h, &online_id).await.sealed, online.sealed);
    assert_eq!(row_of(&h, &offline_id).await, rotated_offline);
    // Both keep minting from their own lineage of tokens.
    h.clock.advance(Duration::from_secs(31));
    h.vault.mint(&h.alice, &offline_id).await.unwrap();
    h.vault.mint(&h.alice, &online_id).await.unwrap();
    assert_eq!(h.idp.stats().await.refresh_token_reuse, 0);

    // The offline entry does not keep the online one's token from being revoked.
    let deleted = h.vault.delete(&h.alice, &online_id).await.unwrap();
    assert!(
        deleted.revoked_at_idp && deleted.session_revoked,
        "{deleted:?}"
    );
    h.clock.advance(Duration::from_secs(31));
    h.vault.mint(&h.alice, &offline_id).await.unwrap();
}
both!(
    online_offline,
    online_and_offline_entries_keep_their_own_tokens
);

/// Rows written by earlier versions (v1 layout) open, are re-sealed in the v2 layout by their
/// next rotation or by rekey, and are refused once `accept_v1_seals` is off.
async fn v1_rows_keep_working_until_resealed(h: Harness) {
    let mut legacy = Vec::new();
    for _ in 0..2 {
        let entry = h.consent(&h.alice, "alice").await.unwrap().entry;
        let row = row_of(&h, &entry.id).await;
        let token = h.offline_token_of("alice").await;
        let applied = h
            .store
            .update_tokens(&[TokenUpdate {
                id: row.id.clone(),
                expected_version: Some(row.version),
                sealed: seal::seal("k1", 1, &seal::entry_v1(&row), &token),
                expires_at: None,
                used_at: None,
            }])
            .await
            .unwrap();
        assert!(applied);
        legacy.push(entry.id);
    }
    let strict = {
        let mut settings = common::settings(&h.idp, common::ring("k1", &[("k1", 1)]));
        settings.accept_v1_seals = false;
        common::vault_from(settings, &h.store, &h.clock).await
    };
    assert_tampered(strict.mint(&h.alice, &legacy[0]).await, "v1 refused");

    // Minting opens it; the rotation's commit seals the successor in v2.
    h.vault.mint(&h.alice, &legacy[0]).await.unwrap();
    let row = row_of(&h, &legacy[0]).await;
    assert!(seal::opens(1, &row.sealed, &seal::entry_v2(&row)));
    assert!(!seal::opens(1, &row.sealed, &seal::entry_v1(&row)));
    h.clock.advance(Duration::from_secs(31));
    strict.mint(&h.alice, &legacy[0]).await.unwrap();

    // Rekey re-seals the other one, though it is under the active key already.
    assert_eq!(
        h.vault.rekey().await.unwrap(),
        RekeyReport {
            rewritten: 1,
            unchanged: 1,
            failed: 0
        }
    );
    let row = row_of(&h, &legacy[1]).await;
    assert!(seal::opens(1, &row.sealed, &seal::entry_v2(&row)));
    strict.mint(&h.alice, &legacy[1]).await.unwrap();
    assert_eq!(
        strict.rekey().await.unwrap(),
        RekeyReport {
            rewritten: 0,
            unchanged: 2,
            failed: 0
        }
    );
}
both!(legacy_rows, v1_rows_keep_working_until_resealed);

/// A pending consent sealed in the v1 layout binds no page to return to; the callback re-checks
/// it against the redirect policy all the same (and refuses it with v1 off).
async fn a_v1_pending_consent_still_meets_the_redirect_policy(h: Harness) {
    h.idp.reset_stats().await;
    for (page, code) in [
        ("https://evil.example/done", "redirect_not_allowed"),
        ("https://app.example.evil.example/", "redirect_not_allowed"),
        ("not a url", "redirect_not_allowed"),
    ] {
        let cb = h.browser_consent(&h.alice, "alice", &[]).await;
        rewrite_pending_as_v1(&h, &h.alice, Some(page)).await;
        let e = h.vault.complete_consent(cb).await.unwrap_err();
        assert_eq!((e.code(), e.http_status()), (code, 400), "{page}: {e:?}");
    }
    let cb = h.browser_consent(&h.alice, "alice", &[]).await;
    rewrite_pending_as_v1(&h, &h.alice, Some("https://app.example/done")).await;
    let strict = {
        let mut settings = common::settings(&h.idp, common::ring("k1", &[("k1", 1)]));
        settings.accept_v1_seals = false;
        common::vault_from(settings, &h.store, &h.clock).await
    };
    assert_tampered(strict.complete_consent(cb).await, "v1 pending refused");
    assert_eq!(authorization_code_exchanges(&h.idp.stats().await), 0);
    assert!(h.vault.list(&h.alice).await.unwrap().is_empty());
}
both!(
    legacy_pending,
    a_v1_pending_consent_still_meets_the_redirect_policy
);

/// Rewrites the (only) pending consent as a v1 row would be: its verifier sealed in the v1
/// layout (a made-up one: these consents never reach the code exchange) and `redirect_after`.
async fn rewrite_pending_as_v1(h: &Harness, owner: &Caller, redirect_after: Option<&str>) {
    let select = "SELECT nonce FROM vault_pending_consents";
    let update = "UPDATE vault_pending_consents SET verifier_nonce = $1, verifier_sealed = $2, redirect_after = $3 WHERE nonce = $4";
    let sealed_for = |nonce: &str| {
        seal::seal(
            "k1",
            1,
            &seal::pending_v1(nonce, &owner.issuer, &owner.subject),
            "a-made-up-pkce-verifier",
        )
    };
    let redirect_after = redirect_after.map(str::to_owned);
    let changed = match h.storage.connect().await {
        DbConn::Sqlite(mut c) => {
            let nonce: String = sqlx::query_scalar(select).fetch_one(&mut c).await.unwrap();
            let sealed = sealed_for(&nonce);
            sqlx::query(update)
                .bind(sealed.nonce)
                .bind(sealed.ciphertext)
                .bind(redirect_after)
                .bind(nonce)
                .execute(&mut c)
                .await
                .unwrap()
                .rows_affected()
        }
        DbConn::Postgres(mut c) => {
            let nonce: String = sqlx::query_scalar(select).fetch_one(&mut c).await.unwrap();
            let sealed = sealed_for(&nonce);
            sqlx::query(update)
                .bind(sealed.nonce)
                .bind(sealed.ciphertext)
                .bind(redirect_after)
                .bind(nonce)
                .execute(&mut c)
                .await
                .unwrap()
                .rows_affected()
        }
    };
    assert_eq!(changed, 1);
}
