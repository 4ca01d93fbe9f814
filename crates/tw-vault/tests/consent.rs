//! The consent's `state` (signature, expiry, single use), IdP error redirects, the owner check,
//! and storing a caller's own refresh token; on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{CLIENT_ID, Harness, follow_consent};
use std::collections::BTreeMap;
use std::time::Duration;
use tw_core::Secret;
use tw_vault::{ConsentCallback, TokenType};

fn assert_code<T: std::fmt::Debug>(r: tw_core::Result<T>, code: &str, status: u16) {
    let e = r.expect_err("expected an error");
    assert_eq!((e.code(), e.http_status()), (code, status), "{e:?}");
}

async fn state_is_signed_expiring_and_single_use(h: Harness) {
    // Tampered: another nonce under the old signature, a flipped character, garbage.
    let cb = h.browser_consent(&h.alice, "alice", &[]).await;
    let mut chars: Vec<char> = cb.state.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    for state in [
        chars.into_iter().collect::<String>(),
        "v1.e30.AAAA".into(),
        String::new(),
    ] {
        let forged = ConsentCallback {
            state,
            ..cb.clone()
        };
        assert_code(
            h.vault.complete_consent(forged).await,
            "vault_state_invalid",
            400,
        );
    }
    // The genuine one still works once, then never again.
    h.vault.complete_consent(cb.clone()).await.unwrap();
    assert_code(h.vault.complete_consent(cb).await, "vault_state_used", 400);

    // Expired: the clock moves past the state's ttl before the callback.
    let late = h.browser_consent(&h.alice, "alice", &[]).await;
    h.clock.advance(Duration::from_secs(601));
    assert_code(
        h.vault.complete_consent(late).await,
        "vault_state_expired",
        400,
    );
    assert_eq!(h.vault.list(&h.alice).await.unwrap().len(), 1);
}
both!(state, state_is_signed_expiring_and_single_use);

async fn idp_errors_and_the_wrong_user(h: Harness) {
    // The IdP refuses without a signed-in session (`prompt=none`): an error redirect.
    let refused = h
        .browser_consent(&h.alice, "alice", &[("prompt", "none")])
        .await;
    assert!(refused.code.is_none());
    let e = h.vault.complete_consent(refused.clone()).await.unwrap_err();
    assert_eq!((e.code(), e.http_status()), ("consent_denied", 400));
    let idp_error = refused.error.clone().unwrap();
    assert_eq!(e.context_value("idp_error"), Some(idp_error.as_str()));
    assert!(e.message().contains(&idp_error), "{e}");
    // The state of a refused consent is spent too.
    assert_code(
        h.vault.complete_consent(refused).await,
        "vault_state_used",
        400,
    );

    // A callback with neither code nor error.
    let mut empty = h.browser_consent(&h.alice, "alice", &[]).await;
    empty.code = None;
    assert_code(
        h.vault.complete_consent(empty).await,
        "vault_code_missing",
        400,
    );

    // Alice asked, Bob signed in: refused, and nothing stored for either.
    h.idp.reset_stats().await;
    let swapped = h.browser_consent(&h.alice, "bob", &[]).await;
    let e = h.vault.complete_consent(swapped).await.unwrap_err();
    assert_eq!((e.code(), e.http_status()), ("consent_user_mismatch", 403));
    assert!(e.message().contains("signed in"), "about the consent: {e}");
    assert!(h.vault.list(&h.alice).await.unwrap().is_empty());
    assert!(h.vault.list(&h.bob).await.unwrap().is_empty());
    assert_eq!(
        h.idp.stats().await.revocation_requests,
        1,
        "bob's grant was revoked"
    );

    // A code replayed into another consent's state: the code is bound to the first PKCE
    // verifier, the IdP refuses it.
    let first = h.browser_consent(&h.alice, "alice", &[]).await;
    let second = h.browser_consent(&h.alice, "alice", &[]).await;
    let mixed = ConsentCallback {
        state: second.state,
        ..first
    };
    let e = h.vault.complete_consent(mixed).await.unwrap_err();
    assert_eq!(e.code(), "idp_invalid_grant", "{e}");
}
both!(idp_errors, idp_errors_and_the_wrong_user);

async fn caller_supplied_tokens(h: Harness) {
    let token = h.offline_token_of("alice").await;
    let attrs = BTreeMap::from([("source".to_owned(), "import".to_owned())]);
    // Not Bob's to store: its own code and words, nothing about a consent.
    let e = h
        .vault
        .store_token(&h.bob, Secret::new(token.clone()), attrs.clone())
        .await
        .unwrap_err();
    assert_eq!((e.code(), e.http_status()), ("token_owner_mismatch", 403));
    assert_eq!(e.message(), "the refresh token belongs to another user");
    assert!(!e.to_string().contains(&token), "the token was echoed: {e}");
    // Bob's attempt rotated it at the IdP: the same value is now spent.
    assert_code(
        h.vault
            .store_token(&h.alice, Secret::new(token), attrs.clone())
            .await,
        "vault_token_rejected",
        400,
    );

    let token = h.offline_token_of("alice").await;
    let entry = h
        .vault
        .store_token(&h.alice, Secret::new(token.clone()), attrs)
        .await
        .unwrap();
    assert_eq!(entry.token_type, TokenType::Offline);
    assert_eq!(entry.owner_subject, h.alice.subject);
    assert_eq!(
        entry.attributes.get("source").map(String::as_str),
        Some("import")
    );
    // Validated by one refresh: what was given is spent, the vault holds its successor.
    let answer = h
        .vault
        .introspect(&h.alice, Secret::new(token))
        .await
        .unwrap();
    assert_eq!(answer["active"], serde_json::json!(false), "{answer}");
    let minted = h.vault.mint(&h.alice, &entry.id).await.unwrap();
    let answer = h
        .vault
        .introspect(&h.alice, minted.access_token)
        .await
        .unwrap();
    assert_eq!(answer["active"], serde_json::json!(true));
    assert_eq!(answer["client_id"].as_str(), Some(CLIENT_ID));
    // Only the standard members are passed on.
    assert!(
        answer
            .as_object()
            .unwrap()
            .keys()
            .all(|k| tw_vault::INTROSPECTION_FIELDS.contains(&k.as_str())),
        "{answer}"
    );

    assert_code(
        h.vault
            .store_token(&h.alice, Secret::new("not-a-token"), BTreeMap::new())
            .await,
        "vault_token_rejected",
        400,
    );
    assert_code(
        h.vault
            .store_token(&h.alice, Secret::new(""), BTreeMap::new())
            .await,
        "vault_token_missing",
        400,
    );
    let too_many: BTreeMap<_, _> = (0..33).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    assert_code(
        h.vault.begin_consent(&h.alice, too_many, None).await,
        "vault_attributes_invalid",
        400,
    );
}
both!(store_token, caller_supplied_tokens);

/// The consent URL asks for what the contract says: code + PKCE S256, the configured scope,
/// offline access with `prompt=consent`, a signed state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consent_url_carries_pkce_and_state() {
    let h = Harness::start(common::Db::Sqlite).await;
    let start = h
        .vault
        .begin_consent(&h.alice, BTreeMap::new(), None)
        .await
        .unwrap();
    let q: BTreeMap<String, String> = start.consent_url.query_pairs().into_owned().collect();
    assert!(
        start
            .consent_url
            .as_str()
            .starts_with(&h.idp.authorization_url())
    );
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["redirect_uri"], common::REDIRECT_URI);
    assert_eq!(q["scope"], "openid offline_access");
    assert_eq!(q["prompt"], "consent");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
    assert!(q["state"].starts_with("v1."));
    assert_eq!(
        start.expires_at,
        tw_core::Clock::now(&h.clock).plus(Duration::from_secs(600))
    );
    // And a browser can complete it.
    let cb = follow_consent(start.consent_url, "alice", &[]).await;
    let done = h.vault.complete_consent(cb).await.unwrap();
    assert!(done.redirect_to.is_none());
}
