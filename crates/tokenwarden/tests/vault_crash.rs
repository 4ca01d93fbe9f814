//! Crash safety of `tokenwarden vault`, by really killing it (`kill -9`):
//! - between the IdP's answer and the commit: the test IdP processes the refresh (the old
//!   refresh token is spent, a new one issued) and holds its answer back; the vault dies before
//!   hearing it. With refresh-token reuse grace (Keycloak's default, `revokeRefreshToken=false`)
//!   the restarted vault mints with the stored token and then holds the newest one; with strict
//!   one-time tokens the answer is the clear `vault_reconsent_required` (409, not a 500, no retry
//!   storm) and the entry is listed as needing consent.
//! - right after a successful mint (after the commit): the restarted vault mints with the new
//!   token.
//!
//! Also: `tokenwarden vault rekey` moves every entry to a new key, after which the old key can go.
//! Every scenario runs on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod vault_support;

use serde_json::{Value, json};
use std::time::Duration;
use tw_testkit::{Endpoint, Fault, Idp, free_port};
use vault_support::*;

/// The test IdP, a vault configuration on `storage`, alice's caller token and one entry of hers
/// (stored through the first vault process, which is returned running).
struct Scene {
    idp: Idp,
    setup: VaultSetup,
    alice: String,
    id: String,
}

impl Scene {
    /// `reuse_grace`: the IdP accepts a rotated refresh token once more (Keycloak's default).
    async fn start(storage: Storage, reuse_grace: bool) -> (Scene, VaultProcess) {
        let port = free_port();
        let idp = start_idp(port).await;
        if reuse_grace {
            idp.set_refresh_token_reuse_grace(true).await;
        }
        let setup = VaultSetup::new(&idp, port, storage).await;
        let vault = setup.start().await;
        let alice = user_token(&idp, "alice").await;
        let id = alice_entry(&idp, &vault, &alice).await;
        let scene = Scene {
            idp,
            setup,
            alice,
            id,
        };
        (scene, vault)
    }
}

/// An entry of alice's holding a refresh token issued to the vault's client.
async fn alice_entry(idp: &Idp, vault: &VaultProcess, alice: &str) -> String {
    let supplied = idp
        .mint_refresh_token(VAULT_CLIENT, "alice", "openid offline_access")
        .await;
    let (status, stored) = vault
        .post(
            alice,
            "/v1/refresh-token",
            json!({ "refresh_token": supplied }),
        )
        .await;
    assert_eq!(status, 201, "{stored}");
    stored["id"].as_str().unwrap().to_owned()
}

/// Calls mint while the IdP holds its answer, waits until the IdP has processed the refresh,
/// then kills the vault. Returns the vault's output.
async fn kill_while_the_idp_holds_the_answer(
    idp: &Idp,
    vault: VaultProcess,
    alice: &str,
    id: &str,
) -> String {
    let before = idp.stats().await;
    idp.fault(Fault::hold(Endpoint::Token, Duration::from_secs(30)).times(1))
        .await;
    let url = vault.url("/v1/access-token");
    let (token, body) = (alice.to_owned(), json!({ "id": id }));
    let pending =
        tokio::spawn(async move { http().post(url).bearer_auth(token).json(&body).send().await });
    let mut processed = false;
    for _ in 0..500 {
        if idp.stats().await.held_responses > before.held_responses {
            processed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(processed, "the IdP processed the refresh");
    assert!(!pending.is_finished(), "the vault has not answered yet");
    let out = vault.kill9().await;
    assert!(
        pending.await.unwrap().is_err(),
        "the killed vault never answered"
    );
    idp.clear_faults().await;
    out
}

on_both_backends!(
    killed_before_the_commit_with_reuse_grace,
    killed_before_the_commit_with_reuse_grace_loses_nothing
);

async fn killed_before_the_commit_with_reuse_grace_loses_nothing(storage: Storage) {
    let (scene, vault) = Scene::start(storage, true).await;
    let (status, body) = vault.mint(&scene.alice, &scene.id).await;
    assert_eq!(status, 200, "{body}");
    let first = body["access_token"].as_str().unwrap().to_owned();

    // The cache would answer without the IdP: restart to empty it, then crash mid-refresh.
    vault.stop().await;
    let vault = scene.setup.start().await;
    kill_while_the_idp_holds_the_answer(&scene.idp, vault, &scene.alice, &scene.id).await;
    assert_eq!(scene.idp.stats().await.refresh_token_reuse, 0);

    // Restarted on the same database: the stored token was rotated at the IdP but is still
    // valid under reuse grace, so the mint succeeds...
    let vault = scene.setup.start().await;
    let (status, body) = vault.mint(&scene.alice, &scene.id).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["access_token"], first.as_str());
    assert_eq!(
        scene.idp.stats().await.refresh_token_reuse,
        1,
        "the stored token was the one rotated during the crash"
    );
    // ...and stores the newest token: the next refresh presents a token never rotated before.
    vault.stop().await;
    let vault = scene.setup.start().await;
    let (status, body) = vault.mint(&scene.alice, &scene.id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(scene.idp.stats().await.refresh_token_reuse, 1);
    let (_, entry) = vault
        .get(&scene.alice, &format!("/v1/entries/{}", scene.id))
        .await;
    assert_eq!(entry["status"], "active");
    vault.stop().await;
}

on_both_backends!(
    killed_before_the_commit_with_strict_rotation,
    killed_before_the_commit_with_strict_rotation_asks_for_reconsent
);

async fn killed_before_the_commit_with_strict_rotation_asks_for_reconsent(storage: Storage) {
    let (scene, vault) = Scene::start(storage, false).await;
    let out_1 =
        kill_while_the_idp_holds_the_answer(&scene.idp, vault, &scene.alice, &scene.id).await;

    let vault = scene.setup.start().await;
    let refreshes = scene.idp.stats().await.token_requests_for(VAULT_CLIENT);
    let (status, body) = vault.mint(&scene.alice, &scene.id).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "vault_reconsent_required");
    assert_eq!(body["error"]["retryable"], false);
    assert_eq!(
        scene.idp.stats().await.refresh_token_reuse,
        1,
        "the spent token was presented once"
    );
    let (_, list) = vault.get(&scene.alice, "/v1/entries").await;
    let listed: Vec<&Value> = list["entries"].as_array().unwrap().iter().collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["status"], "reconsent_required", "{list}");
    // Asked again: the same clear answer, and no new request to the IdP (no retry storm).
    let (status, body) = vault.mint(&scene.alice, &scene.id).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        scene.idp.stats().await.token_requests_for(VAULT_CLIENT),
        refreshes + 1
    );
    let out_2 = vault.stop().await;
    assert!(!out_1.is_empty() && !out_2.is_empty());
    assert_no_secret(&format!("{out_1}{out_2}"), &[&scene.alice, VAULT_SECRET]);
}

on_both_backends!(
    killed_after_the_commit,
    killed_after_the_commit_mints_with_the_new_token
);

async fn killed_after_the_commit_mints_with_the_new_token(storage: Storage) {
    let (scene, vault) = Scene::start(storage, false).await;
    // A mint that answered has committed the rotated token; kill -9 right after it.
    let (status, body) = vault.mint(&scene.alice, &scene.id).await;
    assert_eq!(status, 200, "{body}");
    vault.kill9().await;

    let vault = scene.setup.start().await;
    let (status, body) = vault.mint(&scene.alice, &scene.id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        scene.idp.stats().await.refresh_token_reuse,
        0,
        "strict rotation: only never-used tokens were presented"
    );
    vault.stop().await;
}

on_both_backends!(rekey, rekey_moves_every_entry_to_the_new_key);

async fn rekey_moves_every_entry_to_the_new_key(storage: Storage) {
    let (mut scene, vault) = Scene::start(storage, false).await;
    let ids = [
        scene.id.clone(),
        alice_entry(&scene.idp, &vault, &scene.alice).await,
    ];
    vault.stop().await;

    // A new active key: old entries stay readable, rekey moves them.
    scene.setup.keys.push(("k2".into(), new_key()));
    scene.setup.active = "k2".into();
    scene.setup.write();
    let (code, out, err) = scene.setup.run_cli(&["rekey"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("2 re-sealed, 0 already under the active key, 0 could not be opened"),
        "{out}"
    );
    let (code, out, err) = scene.setup.run_cli(&["list", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["key_id"] == "k2"),
        "{listed}"
    );
    let (code, out, _) = scene.setup.run_cli(&["rekey"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("0 re-sealed, 2 already"), "{out}");

    // The old key removed: every entry still mints.
    let old = scene.setup.keys.remove(0);
    scene.setup.write();
    let vault = scene.setup.start().await;
    for id in &ids {
        let (status, body) = vault.mint(&scene.alice, id).await;
        assert_eq!(status, 200, "{body}");
    }
    let out = vault.stop().await;
    assert_no_secret(&out, &[&old.1, &scene.setup.keys[0].1]);

    // keygen prints a fresh 32-byte key each time.
    let (code, a, _) = scene.setup.run_cli_plain(&["keygen"]).await;
    let (_, b, _) = scene.setup.run_cli_plain(&["keygen"]).await;
    assert_eq!(code, 0);
    assert_ne!(a, b);
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(a.trim())
        .unwrap();
    assert_eq!(bytes.len(), 32);
}
