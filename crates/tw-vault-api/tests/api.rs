//! The API's own rules, in process against the real test IdP: input validation answers 400 with
//! stable codes (never 500), unknown routes and methods are JSON, bodies are bounded, tokens are
//! taken from `Authorization` only.

mod common;

use common::*;
use serde_json::{Value, json};

async fn call(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn bad_input_is_answered_with_stable_codes() {
    let idp = start_idp().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = vault_config(dir.path(), &idp.issuer(), true);
    let base = serve_vault(&cfg, sqlite_store(dir.path()).await).await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let caller = user_token(&http, &idp, "alice").await;
    let rt = idp
        .mint_refresh_token(VAULT_CLIENT, "alice", "openid offline_access")
        .await;
    let id = store_entry(&http, &base, &caller, &rt).await;
    let other = "7d5b1c1e-0000-4000-8000-000000000000";
    let post = |path: &str| http.post(format!("{base}{path}")).bearer_auth(&caller);
    let get = |path: &str| http.get(format!("{base}{path}")).bearer_auth(&caller);

    let cases = [
        (
            post(&format!("/v1/access-token?id={other}")).json(&json!({ "id": id })),
            400,
            "invalid_entry_id",
        ),
        (post("/v1/access-token"), 400, "invalid_entry_id"),
        (
            post("/v1/access-token").body("{\"id\": 5"),
            400,
            "invalid_json",
        ),
        (
            post("/v1/access-token").json(&json!({ "id": id, "extra": 1 })),
            400,
            "invalid_json",
        ),
        (
            post(&format!("/v1/access-token?id={id}&id={id}")),
            400,
            "invalid_query",
        ),
        (
            post(&format!("/v1/access-token?id={other}")),
            404,
            "vault_entry_not_found",
        ),
        (
            get("/v1/offline-token?attributes=not-json"),
            400,
            "invalid_attributes",
        ),
        (get("/v1/offline-token?colour=blue"), 400, "invalid_query"),
        (
            get("/v1/offline-token?redirect=https%3A%2F%2Fevil.example%2F"),
            400,
            "redirect_not_allowed",
        ),
        (get("/v1/entries?all=maybe"), 400, "invalid_query"),
        (get("/v1/entries?all=true"), 403, "vault_forbidden"),
        (
            post("/v1/validate-token").json(&json!({})),
            400,
            "invalid_json",
        ),
        (
            post("/v1/refresh-token").json(&json!({ "refresh_token": "" })),
            400,
            "vault_token_missing",
        ),
        (
            post("/v1/refresh-token").body(vec![b' '; 70 * 1024]),
            413,
            "body_too_large",
        ),
        (
            http.delete(format!("{base}/v1/access-token"))
                .bearer_auth(&caller),
            405,
            "method_not_allowed",
        ),
        (get("/v1/nothing-here"), 404, "not_found"),
        (
            http.get(format!("{base}/v1/entries?access_token={caller}")),
            401,
            "missing_token",
        ),
        (
            http.get(format!("{base}/v1/offline-token/callback")),
            400,
            "vault_state_invalid",
        ),
        (
            http.get(format!(
                "{base}/v1/offline-token/callback?state=forged&code=x"
            )),
            400,
            "vault_state_invalid",
        ),
    ];
    for (n, (req, status, code)) in cases.into_iter().enumerate() {
        let (got, body) = call(req).await;
        assert_eq!(got, status, "case {n}: {body}");
        if !code.is_empty() {
            assert_eq!(body["error"]["code"], code, "case {n}: {body}");
        }
    }

    // Mint works by body or query alike, and the answer is never cached by intermediaries.
    let resp = post(&format!("/v1/access-token?id={id}"))
        .send()
        .await
        .expect("mint");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["pragma"], "no-cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_mints_for_one_entry_share_one_refresh() {
    let idp = start_idp().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = vault_config(dir.path(), &idp.issuer(), true);
    let base = serve_vault(&cfg, sqlite_store(dir.path()).await).await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let caller = user_token(&http, &idp, "alice").await;
    let rt = idp
        .mint_refresh_token(VAULT_CLIENT, "alice", "openid offline_access")
        .await;
    let id = store_entry(&http, &base, &caller, &rt).await;
    // Storing checked the token with one refresh, whose access token is not handed out.
    let before = idp.stats().await.token_requests_for(VAULT_CLIENT);
    let mints = (0..8).map(|_| {
        let (http, base, caller, id) = (http.clone(), base.clone(), caller.clone(), id.clone());
        async move {
            let v: Value = http
                .post(format!("{base}/v1/access-token"))
                .bearer_auth(caller)
                .json(&json!({ "id": id }))
                .send()
                .await
                .expect("mint")
                .json()
                .await
                .expect("JSON");
            v["access_token"].as_str().expect("access_token").to_owned()
        }
    });
    let tokens: Vec<String> = futures_join(mints).await;
    assert!(tokens.windows(2).all(|w| w[0] == w[1]), "one token for all");
    assert_eq!(
        idp.stats().await.token_requests_for(VAULT_CLIENT),
        before + 1,
        "one refresh at the IdP for eight callers"
    );
}

async fn futures_join<F: std::future::Future<Output = String> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<String> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("join"));
    }
    out
}
