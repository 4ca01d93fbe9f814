//! `tokenwarden vault serve` end to end, against the real test IdP: consent with a scripted
//! browser login → callback → entry listed → mint → mint again (cached) → the stored refresh
//! token is the rotated one → another caller is refused, a `vault:mint-any` caller is not →
//! store, duplicate, validate → delete revokes at the IdP → state reuse and IdP error redirects
//! reported → no secret in the vault's output. On SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod vault_support;

use serde_json::{Value, json};
use tw_testkit::free_port;
use vault_support::*;

on_both_backends!(consent_mint_revoke, main_path);

async fn main_path(storage: Storage) {
    let port = free_port();
    let idp = start_idp(port).await;
    let setup = VaultSetup::new(&idp, port, storage).await;
    let vault = setup.start().await;
    let alice = user_token(&idp, "alice").await;
    let bob = user_token(&idp, "bob").await;
    let alice_id = idp.user_id("alice").await;

    // No token: an RFC 6750 challenge; never a 500.
    let r = http()
        .get(vault.url("/v1/entries"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"tokenwarden\""
    );
    let (status, body) = vault.get("not-a-jwt", "/v1/entries").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_token");

    // The consent URL is PKCE S256 with the scope asked.
    let (status, start) = vault.get(&alice, "/v1/offline-token").await;
    assert_eq!(status, 200, "{start}");
    let consent = url::Url::parse(start["consent_url"].as_str().unwrap()).unwrap();
    let q: std::collections::BTreeMap<String, String> =
        consent.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["scope"], "openid offline_access");
    assert_eq!(q["client_id"], VAULT_CLIENT);
    assert!(q["state"].len() > 20);

    // Consent with a scripted login: the callback stores the offline token.
    let (callback, (status, entry)) = vault.consent(&idp, &alice, "alice").await;
    assert_eq!(status, 200, "{entry}");
    let id = entry["id"].as_str().unwrap().to_owned();
    assert_eq!(entry["owner"]["subject"], alice_id.as_str());
    assert_eq!(entry["token_type"], "offline");
    assert_eq!(entry["status"], "active");
    assert_eq!(entry["attributes"]["job"], "nightly");
    assert_eq!(entry["key_id"], "k1");

    // The state is single use.
    let r = http().get(callback.clone()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "vault_state_used", "{body}");

    // Listed, with its session.
    let (status, list) = vault.get(&alice, "/v1/entries").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["entries"].as_array().unwrap().len(), 1);
    assert_eq!(list["entries"][0]["id"], id.as_str());

    // Mint: a real refresh at the IdP; then the cached token, no second refresh.
    let before = idp.stats().await;
    let r = http()
        .post(vault.url("/v1/access-token"))
        .bearer_auth(&alice)
        .json(&json!({ "id": id }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let minted: Value = r.json().await.unwrap();
    let first = minted["access_token"].as_str().unwrap().to_owned();
    assert!(minted["expires_in"].as_u64().unwrap() > 0, "{minted}");
    assert!(
        minted["token_type"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case("bearer")
    );
    let c = claims(&first);
    assert_eq!(c["sub"], alice_id.as_str());
    assert_eq!(c["azp"], VAULT_CLIENT);
    let after_first = idp.stats().await;
    assert_eq!(
        after_first.token_requests_for(VAULT_CLIENT),
        before.token_requests_for(VAULT_CLIENT) + 1
    );
    let (status, again) = vault
        .post(&alice, &format!("/v1/access-token?id={id}"), json!({}))
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        again["access_token"],
        first.as_str(),
        "served from the cache"
    );
    assert_eq!(
        idp.stats().await.token_requests_for(VAULT_CLIENT),
        after_first.token_requests_for(VAULT_CLIENT)
    );

    // Knowing the id is not enough: bob gets 404 for every operation on alice's entry...
    for (status, body) in [
        vault.mint(&bob, &id).await,
        vault.get(&bob, &format!("/v1/entries/{id}")).await,
        vault.delete(&bob, &format!("/v1/entries/{id}")).await,
        vault
            .post(&bob, &format!("/v1/entries/{id}/duplicate"), json!({}))
            .await,
    ] {
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"]["code"], "vault_entry_not_found");
    }
    let (_, bobs) = vault.get(&bob, "/v1/entries").await;
    assert_eq!(bobs["entries"], json!([]));
    let (status, body) = vault.get(&bob, "/v1/entries?all=true").await;
    assert_eq!(status, 403, "{body}");
    // ...while a scheduler holding vault:mint-any (by its realm role) may mint for alice.
    let scheduler = idp
        .client_credentials_token(SCHEDULER, SCHEDULER_SECRET)
        .await;
    let (status, body) = vault.mint(&scheduler, &id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["sub"],
        alice_id.as_str()
    );
    let (status, body) = vault.get(&scheduler, &format!("/v1/entries/{id}")).await;
    assert_eq!(status, 404, "mint-any does not include read-any: {body}");

    // Validation by introspection.
    let (status, v) = vault
        .post(&alice, "/v1/validate-token", json!({ "token": first }))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["active"], true);

    // The IdP rotated the refresh token at the first mint. A restart empties the cache, so the
    // next mint refreshes with the stored token: it works, and the IdP saw no spent token
    // presented again, so the stored token is the rotated one.
    let stderr_1 = vault.stop().await;
    let vault = setup.start().await;
    let (status, body) = vault.mint(&alice, &id).await;
    assert_eq!(status, 200, "{body}");
    let second = body["access_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(idp.stats().await.refresh_token_reuse, 0);

    // A caller-supplied refresh token (one issued to the vault's client) becomes an entry.
    let supplied = idp
        .mint_refresh_token(VAULT_CLIENT, "alice", "openid offline_access")
        .await;
    let (status, stored) = vault
        .post(
            &alice,
            "/v1/refresh-token",
            json!({ "refresh_token": supplied, "attributes": { "source": "cli" } }),
        )
        .await;
    assert_eq!(status, 201, "{stored}");
    let stored_id = stored["id"].as_str().unwrap().to_owned();
    let (status, body) = vault.mint(&alice, &stored_id).await;
    assert_eq!(status, 200, "{body}");
    // ...but one of someone else is refused.
    let bobs_token = idp
        .mint_refresh_token(VAULT_CLIENT, "bob", "openid offline_access")
        .await;
    let (status, body) = vault
        .post(
            &alice,
            "/v1/refresh-token",
            json!({ "refresh_token": bobs_token }),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "token_owner_mismatch");

    // Duplicate: two entries on one session; deleting one keeps the session for the other.
    let (status, dup) = vault
        .post(&alice, &format!("/v1/entries/{id}/duplicate"), json!({}))
        .await;
    assert_eq!(status, 201, "{dup}");
    let dup_id = dup["id"].as_str().unwrap().to_owned();
    assert_eq!(dup["session_id"], entry["session_id"]);
    let (_, list) = vault.get(&alice, "/v1/entries").await;
    let shared = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session_id"] == entry["session_id"])
        .expect("the consent's session is listed");
    assert_eq!(shared["entries"].as_array().unwrap().len(), 2, "{list}");
    let revocations = idp.stats().await.revocation_requests;
    let (status, gone) = vault.delete(&alice, &format!("/v1/entries/{dup_id}")).await;
    assert_eq!(status, 200, "{gone}");
    assert_eq!(gone["revoked_at_idp"], false, "the session is shared");
    assert_eq!(idp.stats().await.revocation_requests, revocations);
    let (status, body) = vault.mint(&alice, &id).await;
    assert_eq!(status, 200, "the original still works: {body}");

    // Delete the last entry of the session: revoked at the IdP, the grant with it.
    let (status, gone) = vault.delete(&alice, &format!("/v1/entries/{id}")).await;
    assert_eq!(status, 200, "{gone}");
    assert_eq!(gone["revoked_at_idp"], true);
    assert_eq!(idp.stats().await.revocation_requests, revocations + 1);
    let (status, _) = vault.get(&alice, &format!("/v1/entries/{id}")).await;
    assert_eq!(status, 404);
    let (status, v) = vault
        .post(&alice, "/v1/validate-token", json!({ "token": second }))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["active"], false,
        "the revoked grant's access token is dead"
    );

    // An IdP error redirect is reported clearly. Here the browser has no IdP session and the
    // request says prompt=none, so the IdP answers error=login_required on the callback.
    let (_, start) = vault.get(&alice, "/v1/offline-token").await;
    let mut bad = url::Url::parse(start["consent_url"].as_str().unwrap()).unwrap();
    let pairs: Vec<(String, String)> = bad
        .query_pairs()
        .filter(|(k, _)| k != "prompt")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    bad.query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair("prompt", "none");
    let back = idp.browser_login(bad.as_str(), "alice").await;
    assert!(back.query().unwrap_or("").contains("error="), "{back}");
    let r = http().get(back).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "consent_denied", "{body}");
    assert_eq!(body["error"]["idp_error"], "login_required", "{body}");

    // Malformed input is a 400 with a stable code, never a 500, and never echoes the body.
    let (status, body) = vault
        .post(
            &alice,
            "/v1/refresh-token",
            json!({ "refresh_token": ["x-secret-y"] }),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_json");
    assert!(!body.to_string().contains("x-secret-y"));
    let (status, body) = vault.mint(&alice, "not-a-uuid").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_entry_id");

    // Nothing secret in what the vault wrote, across both runs.
    let out = format!("{stderr_1}{}", vault.stop().await);
    assert!(out.contains("vault"), "the vault did log: {out}");
    let code = url::Url::parse(callback.as_str())
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let keys: Vec<String> = setup.keys.iter().map(|(_, k)| k.clone()).collect();
    assert_no_secret(
        &out,
        &[
            &first,
            &second,
            &supplied,
            &bobs_token,
            &alice,
            &bob,
            &scheduler,
            &code,
            VAULT_SECRET,
            &keys[0],
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_redirects_to_an_allowed_page_and_refuses_others() {
    let port = free_port();
    let idp = start_idp(port).await;
    let mut setup = VaultSetup::new(&idp, port, Storage::Sqlite).await;
    setup.extra = "\n[vault.consent]\nredirect_after = \"https://jobs.example.org/vault/connected\"\nallowed_redirects = [\"https://jobs.example.org/vault/\"]\n".into();
    setup.write();
    let vault = setup.start().await;
    let alice = user_token(&idp, "alice").await;

    let (status, body) = vault
        .get(
            &alice,
            "/v1/offline-token?redirect=https%3A%2F%2Fevil.example%2Fx",
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "redirect_not_allowed");

    let (status, start) = vault
        .get(
            &alice,
            "/v1/offline-token?redirect=https%3A%2F%2Fjobs.example.org%2Fvault%2Fjob-7",
        )
        .await;
    assert_eq!(status, 200, "{start}");
    let back = idp
        .browser_login(start["consent_url"].as_str().unwrap(), "alice")
        .await;
    let r = http().get(back).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "https://jobs.example.org/vault/job-7"
    );
    let (_, list) = vault.get(&alice, "/v1/entries").await;
    assert_eq!(list["entries"].as_array().unwrap().len(), 1);

    // Bob signing in on alice's consent URL does not give alice an entry of bob's.
    let (_, start) = vault.get(&alice, "/v1/offline-token").await;
    let back = idp
        .browser_login(start["consent_url"].as_str().unwrap(), "bob")
        .await;
    let r = http().get(back).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "consent_user_mismatch", "{body}");

    // Probes, version, OpenAPI and docs are public.
    for path in [
        "/health",
        "/health/ready",
        "/version",
        "/openapi.json",
        "/docs",
        "/metrics",
    ] {
        let r = http().get(vault.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let doc: Value = http()
        .get(vault.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/access-token"]["post"].is_object());
    let metrics = http()
        .get(vault.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tokenwarden_vault_requests_total"),
        "{metrics}"
    );
    vault.stop().await;
}
