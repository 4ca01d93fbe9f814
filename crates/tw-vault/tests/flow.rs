//! The consent-to-mint-to-revoke path against the real test IdP (refresh-token rotation on),
//! on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Harness;
use std::time::Duration;
use tw_core::Secret;
use tw_store::VaultStore;
use tw_vault::{EntryStatus, PERM_ADMIN, PERM_MINT_ANY, PERM_READ_ANY, TokenType};

fn active(answer: &serde_json::Value) -> bool {
    answer["active"].as_bool().expect("active in the answer")
}

async fn consent_mint_rotate_share_revoke(h: Harness) {
    // ----- consent -----
    let done = h.consent(&h.alice, "alice").await.unwrap();
    let entry = done.entry.clone();
    assert_eq!(
        done.redirect_to.unwrap().as_str(),
        "https://app.example/done"
    );
    assert_eq!(entry.owner_issuer, h.alice.issuer);
    assert_eq!(entry.owner_subject, h.alice.subject);
    assert_eq!(entry.token_type, TokenType::Offline);
    assert_eq!(entry.status, EntryStatus::Active);
    assert_eq!(entry.key_id, "k1");
    assert_eq!(
        entry.attributes.get("job").map(String::as_str),
        Some("nightly")
    );
    assert!(entry.session_id.is_some());
    assert_eq!(h.vault.list(&h.alice).await.unwrap(), vec![entry.clone()]);
    assert_eq!(h.vault.get(&h.alice, &entry.id).await.unwrap(), entry);
    let stored = h.store.get(&entry.id.to_string()).await.unwrap().unwrap();

    // ----- mint: a refresh at the IdP, the rotated token committed -----
    h.idp.reset_stats().await;
    let first = h.vault.mint(&h.alice, &entry.id).await.unwrap();
    assert!(
        first.expires_in > 0 && first.expires_in <= 60,
        "{}",
        first.expires_in
    );
    assert_eq!(first.token_type.to_ascii_lowercase(), "bearer");
    assert_eq!(Harness::refresh_grants(&h.idp.stats().await), 1);
    let rotated = h.store.get(&entry.id.to_string()).await.unwrap().unwrap();
    assert_ne!(
        rotated.sealed.ciphertext, stored.sealed.ciphertext,
        "the row holds a new token"
    );
    assert_eq!(rotated.version, stored.version + 1);
    assert!(rotated.last_used_at.is_some());
    // The access token is genuine: the IdP vouches for it, for alice.
    let answer = h
        .vault
        .introspect(&h.alice, first.access_token.clone())
        .await
        .unwrap();
    assert!(active(&answer), "{answer}");
    assert_eq!(answer["sub"].as_str(), Some(h.alice.subject.as_str()));

    // ----- cached until exp - margin -----
    let again = h.vault.mint(&h.alice, &entry.id).await.unwrap();
    assert_eq!(again.access_token, first.access_token);
    assert_eq!(
        Harness::refresh_grants(&h.idp.stats().await),
        1,
        "served from memory"
    );
    h.clock.advance(Duration::from_secs(31));
    let fresh = h.vault.mint(&h.alice, &entry.id).await.unwrap();
    assert_ne!(
        fresh.access_token, first.access_token,
        "inside the margin: a new one"
    );
    assert_eq!(Harness::refresh_grants(&h.idp.stats().await), 2);

    // ----- concurrent mints: one refresh -----
    h.clock.advance(Duration::from_secs(31));
    let mints = (0..8).map(|_| h.vault.mint(&h.alice, &entry.id));
    let results = futures::future::join_all(mints).await;
    let tokens: Vec<Secret> = results
        .into_iter()
        .map(|r| r.unwrap().access_token)
        .collect();
    assert!(
        tokens.iter().all(|t| t == &tokens[0]),
        "every caller got the same token"
    );
    assert_eq!(
        Harness::refresh_grants(&h.idp.stats().await),
        3,
        "one refresh for 8 callers"
    );

    // ----- another owner -----
    for result in [
        h.vault.mint(&h.bob, &entry.id).await.map(|_| ()),
        h.vault.get(&h.bob, &entry.id).await.map(|_| ()),
        h.vault.duplicate(&h.bob, &entry.id).await.map(|_| ()),
        h.vault.delete(&h.bob, &entry.id).await.map(|_| ()),
    ] {
        let e = result.unwrap_err();
        assert_eq!(
            (e.code(), e.http_status()),
            ("vault_entry_not_found", 404),
            "{e}"
        );
    }
    assert!(h.vault.list(&h.bob).await.unwrap().is_empty());
    assert_eq!(
        h.vault.list_all(&h.bob).await.unwrap_err().code(),
        "vault_forbidden"
    );
    let reader = h.bob.clone().with_permission(PERM_READ_ANY);
    assert_eq!(h.vault.list_all(&reader).await.unwrap().len(), 1);
    assert_eq!(h.vault.get(&reader, &entry.id).await.unwrap().id, entry.id);
    assert_eq!(
        h.vault.mint(&reader, &entry.id).await.unwrap_err().code(),
        "vault_entry_not_found",
        "reading is not minting"
    );
    let minter = h.bob.clone().with_permission(PERM_MINT_ANY);
    assert_eq!(
        h.vault.mint(&minter, &entry.id).await.unwrap().access_token,
        tokens[0]
    );
    // Not a UUID (or not the hyphenated spelling): 400, never confused with an unknown entry.
    let id = entry.id.to_string();
    for text in [
        "not-a-uuid".to_owned(),
        String::new(),
        format!("{{{id}}}"),
        format!("urn:uuid:{id}"),
        id.replace('-', ""),
        format!(" {id}"),
        format!("{id}\0"),
        id.replacen('-', "\u{2011}", 1),
        "f".repeat(100_000),
    ] {
        let e = text.parse::<tw_vault::EntryId>().unwrap_err();
        assert_eq!(
            (e.code(), e.http_status()),
            ("invalid_entry_id", 400),
            "{text:?}"
        );
    }
    assert_eq!(
        id.to_uppercase().parse::<tw_vault::EntryId>().unwrap(),
        entry.id
    );

    // ----- duplicate: same session; rotation keeps both usable -----
    let dup = h.vault.duplicate(&h.alice, &entry.id).await.unwrap();
    assert_ne!(dup.id, entry.id);
    assert_eq!(dup.session_id, entry.session_id);
    assert_eq!(dup.token_type, TokenType::Offline);
    h.clock.advance(Duration::from_secs(31));
    let via_dup = h.vault.mint(&h.alice, &dup.id).await.unwrap();
    h.clock.advance(Duration::from_secs(31));
    // The original was handed the rotated token with the duplicate's mint: still good.
    let via_original = h.vault.mint(&h.alice, &entry.id).await.unwrap();
    assert_ne!(via_dup.access_token, via_original.access_token);
    assert_eq!(h.vault.list(&h.alice).await.unwrap().len(), 2);

    // ----- delete: the shared one only loses its row; the last one revokes -----
    let shared = h.vault.delete(&h.alice, &dup.id).await.unwrap();
    assert!(!shared.revoked_at_idp && !shared.session_revoked);
    assert!(active(
        &h.vault
            .introspect(&h.alice, via_original.access_token.clone())
            .await
            .unwrap()
    ));
    h.clock.advance(Duration::from_secs(31));
    let last = h.vault.mint(&h.alice, &entry.id).await.unwrap();
    assert!(active(
        &h.vault
            .introspect(&h.alice, last.access_token.clone())
            .await
            .unwrap()
    ));
    let before = h.idp.stats().await.revocation_requests;
    let gone = h.vault.delete(&h.alice, &entry.id).await.unwrap();
    assert!(gone.revoked_at_idp);
    // The test IdP names no session in its answers: the vault's own `vault:` id ends nothing at
    // the IdP, so no session is claimed to be revoked.
    let session = entry.session_id.clone().unwrap();
    assert!(session.starts_with("vault:"), "{session}");
    assert!(!gone.session_revoked);
    assert_eq!(h.idp.stats().await.revocation_requests, before + 1);
    // Revoking the offline token ended its grant: its access tokens are dead too.
    assert!(!active(
        &h.vault
            .introspect(&h.alice, last.access_token.clone())
            .await
            .unwrap()
    ));
    assert!(h.vault.list(&h.alice).await.unwrap().is_empty());
    assert_eq!(
        h.vault.mint(&h.alice, &entry.id).await.unwrap_err().code(),
        "vault_entry_not_found"
    );
    let admin = h.bob.clone().with_permission(PERM_ADMIN);
    assert_eq!(
        h.vault.delete(&admin, &entry.id).await.unwrap_err().code(),
        "vault_entry_not_found"
    );
}
both!(full_path, consent_mint_rotate_share_revoke);

/// Two instances on one database: their refreshes of one token lineage take turns (a database
/// lease), so the spent-once refresh token is never presented twice and nothing needs a new
/// consent.
async fn instances_take_turns(h: Harness) {
    let entry = h.consent(&h.alice, "alice").await.unwrap().entry;
    let dup = h.vault.duplicate(&h.alice, &entry.id).await.unwrap();
    let other_store = h.storage.open(&h.clock).await;
    let other = common::vault_with(
        &h.idp,
        &other_store,
        &h.clock,
        common::ring("k1", &[("k1", 1)]),
    )
    .await;
    h.idp.reset_stats().await;
    let here = (0..4).map(|_| h.vault.mint(&h.alice, &entry.id));
    let ids = [entry.id, dup.id, entry.id, dup.id];
    let there = ids.iter().map(|id| other.mint(&h.alice, id));
    let (here, there) = tokio::join!(
        futures::future::join_all(here),
        futures::future::join_all(there)
    );
    for result in here.into_iter().chain(there) {
        result.unwrap();
    }
    // Here: one refresh for the entry. There: one for the entry and one for the duplicate
    // (one lineage, one lock, but separate cached access tokens).
    let refreshes = Harness::refresh_grants(&h.idp.stats().await);
    assert_eq!(refreshes, 3);
    for id in [entry.id, dup.id] {
        assert_eq!(
            h.vault.get(&h.alice, &id).await.unwrap().status,
            EntryStatus::Active
        );
    }
    // And both keep working afterwards, from either instance.
    h.clock.advance(Duration::from_secs(31));
    other.mint(&h.alice, &entry.id).await.unwrap();
    h.vault.mint(&h.alice, &dup.id).await.unwrap();
}
both!(two_instances, instances_take_turns);
