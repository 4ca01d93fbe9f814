//! Everything the vault logs at TRACE level (consent, callback, store, mint with rotation,
//! validation, refusals, malformed bodies, delete with revocation) holds no token, code, client
//! secret or key. Its own test binary: log capture is per thread.

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn trace_logs_hold_no_token_code_or_key() {
    let (_guard, logs) = tw_testkit::logcapture::capture();
    let scene = Scene::start(false).await;
    let (idp, http, base, caller) = (&scene.idp, &scene.http, &scene.base, &scene.caller);

    // Consent; the IdP redirects to the configured public URL, which is this vault.
    let start: Value = http
        .get(format!("{base}/v1/offline-token"))
        .bearer_auth(caller)
        .send()
        .await
        .expect("consent URL")
        .json()
        .await
        .expect("JSON");
    let back = idp
        .browser_login(start["consent_url"].as_str().expect("consent_url"), "alice")
        .await;
    let query: std::collections::BTreeMap<String, String> =
        back.query_pairs().into_owned().collect();
    let code = query["code"].clone();
    let state = query["state"].clone();
    let callback = back.as_str().replacen(PUBLIC_URL, base, 1);
    let entry: Value = http
        .get(&callback)
        .send()
        .await
        .expect("callback")
        .json()
        .await
        .expect("JSON");
    let consented = entry["id"].as_str().expect("entry id").to_owned();

    // A caller-supplied token; two mints, each a refresh that rotates it.
    let supplied = scene.alice_refresh_token().await;
    let stored = store_entry(http, base, caller, &supplied).await;
    let mut minted = Vec::new();
    for id in [&stored, &stored, &consented] {
        let v = scene.mint(id).await;
        minted.push(v["access_token"].as_str().expect("access_token").to_owned());
    }
    let v: Value = http
        .post(format!("{base}/v1/validate-token"))
        .bearer_auth(caller)
        .json(&json!({ "token": minted[0] }))
        .send()
        .await
        .expect("validate")
        .json()
        .await
        .expect("JSON");
    assert_eq!(v["active"], true);

    // Refusals and malformed bodies that carry secrets.
    let refused = http
        .get(format!("{base}/v1/entries"))
        .bearer_auth(format!("{caller}x"))
        .send()
        .await
        .expect("refused");
    assert_eq!(refused.status(), 401);
    let bad = http
        .post(format!("{base}/v1/refresh-token"))
        .bearer_auth(caller)
        .body(format!(
            "{{\"refresh_token\": \"{supplied}\", \"oops\": 1}}"
        ))
        .send()
        .await
        .expect("bad body");
    assert_eq!(bad.status(), 400);
    let replayed = http.get(&callback).send().await.expect("replay");
    assert_eq!(replayed.status(), 400);

    for id in [&stored, &consented] {
        let r = http
            .delete(format!("{base}/v1/entries/{id}"))
            .bearer_auth(caller)
            .send()
            .await
            .expect("delete");
        assert_eq!(r.status(), 200);
    }

    let key = std::fs::read_to_string(scene.dir.path().join("key")).expect("key");
    let text = logs.contents();
    assert!(text.contains("vault"), "the vault logged: {text}");
    for secret in [
        caller.as_str(),
        supplied.as_str(),
        code.as_str(),
        state.as_str(),
        VAULT_SECRET,
        key.trim(),
    ]
    .into_iter()
    .chain(minted.iter().map(String::as_str))
    {
        logs.assert_absent(secret);
    }
}
