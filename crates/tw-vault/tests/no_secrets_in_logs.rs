//! Every vault operation with TRACE logging captured: no token, code, state, key or client
//! secret appears in a log line, an error or a `Debug` output. (Its own test binary: capture
//! is per thread, and the current-thread runtime keeps the vault's tasks on this thread.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{CLIENT_SECRET, Db, Harness, STATE_KEY, key_material, ring};
use std::collections::BTreeMap;
use std::time::Duration;
use tw_core::Secret;

#[tokio::test]
async fn no_secret_reaches_logs_errors_or_debug_output() {
    let (_guard, logs) = tw_testkit::logcapture::capture();
    let h = Harness::start(Db::Sqlite).await;
    let mut secrets: Vec<String> = vec![
        CLIENT_SECRET.into(),
        STATE_KEY.into(),
        key_material(1).expose().into(),
        key_material(2).expose().into(),
    ];
    let mut shown = Vec::new();

    // Consent, with the state and code the browser carried.
    let cb = h.browser_consent(&h.alice, "alice", &[]).await;
    secrets.push(cb.state.clone());
    secrets.push(cb.code.clone().unwrap());
    let done = h.vault.complete_consent(cb.clone()).await.unwrap();
    shown.push(format!("{done:?}"));
    shown.push(format!(
        "{:?}",
        h.vault.complete_consent(cb).await.unwrap_err()
    ));
    let id = done.entry.id;

    // Mints with rotation, from the cache, and concurrently.
    for _ in 0..2 {
        let minted = h.vault.mint(&h.alice, &id).await.unwrap();
        shown.push(format!("{minted:?}"));
        secrets.push(minted.access_token.expose().to_owned());
        h.clock.advance(Duration::from_secs(31));
    }
    // A caller-supplied token, and a refused one.
    let given = h.offline_token_of("alice").await;
    secrets.push(given.clone());
    let stored = h
        .vault
        .store_token(&h.alice, Secret::new(given.clone()), BTreeMap::new())
        .await
        .unwrap();
    let bogus = "bogus-refresh-token-0123456789abcdef";
    secrets.push(bogus.into());
    let refused = h
        .vault
        .store_token(&h.alice, Secret::new(bogus), BTreeMap::new())
        .await
        .unwrap_err();
    shown.push(format!("{refused:?} {refused}"));
    let other = h.offline_token_of("alice").await;
    secrets.push(other.clone());
    shown.push(format!(
        "{:?}",
        h.vault
            .store_token(&h.bob, Secret::new(other), BTreeMap::new())
            .await
            .unwrap_err()
    ));
    shown.push(format!(
        "{:?}",
        h.vault
            .introspect(&h.alice, Secret::new(given))
            .await
            .unwrap()
    ));

    // Duplicate, rekey, wrong keys, tampering, IdP down, deletes.
    let dup = h.vault.duplicate(&h.alice, &id).await.unwrap();
    let rotating = h.vault_with_keys(ring("k2", &[("k1", 1), ("k2", 2)])).await;
    shown.push(format!("{:?}", rotating.rekey().await.unwrap()));
    shown.push(format!("{rotating:?}"));
    shown.push(format!(
        "{:?}",
        h.vault.mint(&h.alice, &dup.id).await.unwrap_err()
    ));
    let impostor = h.vault_with_keys(ring("k2", &[("k2", 9)])).await;
    shown.push(format!(
        "{:?}",
        impostor.mint(&h.alice, &stored.id).await.unwrap_err()
    ));
    h.idp.down().await;
    shown.push(format!(
        "{:?}",
        rotating.mint(&h.alice, &stored.id).await.unwrap_err()
    ));
    shown.push(format!(
        "{:?}",
        rotating.delete(&h.alice, &stored.id).await.unwrap_err()
    ));
    h.idp.up().await;
    let minted = rotating.mint(&h.alice, &stored.id).await.unwrap();
    secrets.push(minted.access_token.expose().to_owned());
    rotating.delete(&h.alice, &dup.id).await.unwrap();
    rotating.delete(&h.alice, &id).await.unwrap();
    rotating.delete(&h.alice, &stored.id).await.unwrap();
    shown.push(format!("{:?}", h.vault.list(&h.alice).await.unwrap()));

    // The capture works (these are the vault's own lines)...
    for line in [
        "vault consent completed",
        "vault minted an access token",
        "vault rekey done",
    ] {
        assert!(
            logs.contains(line),
            "expected `{line}` in the captured logs"
        );
    }
    // ...and holds no secret; nor does any error or Debug output.
    for secret in &secrets {
        assert!(secret.len() >= 16, "a real secret, not a fragment");
        logs.assert_absent(secret);
        for text in &shown {
            assert!(!text.contains(secret.as_str()), "a secret in: {text}");
        }
    }
}
