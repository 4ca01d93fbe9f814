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
    let scene = Scene::start(true).await;
    let id = scene.alice_entry().await;
    let (http, base, caller) = (&scene.http, &scene.base, &scene.caller);
    let other = "7d5b1c1e-0000-4000-8000-000000000000";
    let post = |path: &str| http.post(format!("{base}{path}")).bearer_auth(caller);
    let get = |path: &str| http.get(format!("{base}{path}")).bearer_auth(caller);

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
                .bearer_auth(caller),
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
    let scene = Scene::start(true).await;
    let id = scene.alice_entry().await;
    let idp = &scene.idp;
    // Storing checked the token with one refresh, whose access token is not handed out.
    let before = idp.stats().await.token_requests_for(VAULT_CLIENT);
    let mints = (0..8).map(|_| {
        let (http, base, caller, id) = (
            scene.http.clone(),
            scene.base.clone(),
            scene.caller.clone(),
            id.clone(),
        );
        async move {
            let v = mint(&http, &base, &caller, &id).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_follows_the_storage_without_waiting_on_it() {
    let idp = start_idp().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let pg = tw_testkit::Postgres::start().await;
    let store = postgres_store(dir.path(), &pg).await;
    let base = serve_vault(&vault_config(dir.path(), &idp.issuer(), true), store).await;
    let http = http_client();
    let (status, ready) = call(http.get(format!("{base}/health/ready"))).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(
        ready["storage"],
        json!({ "backend": "postgres", "reachable": true, "error": null })
    );
    assert_eq!(ready["caller_keys_loaded"], true);

    // The database goes away: the background ping notices, and the probe says so (503, with the
    // store's reason) instead of waiting on a connection.
    drop(pg);
    let mut last = (0, Value::Null);
    for _ in 0..200 {
        last = call(http.get(format!("{base}/health/ready"))).await;
        if last.0 == 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, ready) = last;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["ready"], false);
    assert_eq!(ready["storage"]["reachable"], false);
    assert!(ready["storage"]["error"].is_string(), "{ready}");
    // The liveness probe does not depend on the storage.
    let (status, _) = call(http.get(format!("{base}/health"))).await;
    assert_eq!(status, 200);
}

/// An access token the vault minted (azp = the vault's own client) is refused as a caller, even
/// though its issuer and audience would pass: otherwise one leaked minted token would let its
/// holder mint (and store, delete...) as the user for as long as the entry lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_minted_by_the_vault_are_not_callers() {
    let scene = Scene::start(false).await;
    let id = scene.alice_entry().await;
    let minted = scene.mint(&id).await["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let claims = token_claims(&minted);
    assert_eq!(claims["azp"], VAULT_CLIENT, "{claims}");

    let resp = scene
        .http
        .post(format!("{}/v1/access-token", scene.base))
        .bearer_auth(&minted)
        .json(&json!({ "id": id }))
        .send()
        .await
        .expect("mint with a minted token");
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "invalid_token", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("the vault itself minted"),
        "{body}"
    );
    // The caller's own token still works.
    assert!(scene.mint(&id).await["access_token"].is_string());
}

/// The claims of a JWT (not verified: for assertions only).
fn token_claims(jwt: &str) -> Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

/// Malformed paths and queries (bytes that are not UTF-8 once decoded, broken escapes) are
/// answered like every other refusal: JSON with a stable code, never axum's plain-text
/// rejections.
#[tokio::test]
async fn malformed_paths_and_queries_are_answered_in_json() {
    let scene = Scene::start(true).await;
    let (http, base, caller) = (&scene.http, &scene.base, &scene.caller);
    let cases = [
        (http.get(format!("{base}/v1/entries/%FF%FE")), 400),
        (http.delete(format!("{base}/v1/entries/%C3%28")), 400),
        (http.get(format!("{base}/v1/entries/%E2%82")), 400),
        (http.post(format!("{base}/v1/entries/%FF/duplicate")), 400),
        (http.get(format!("{base}/v1/entries/not-a-uuid")), 400),
        (http.get(format!("{base}/v1/entries?all=%FF")), 400),
        (
            http.get(format!("{base}/v1/offline-token?attributes=%FF")),
            400,
        ),
        (http.post(format!("{base}/v1/access-token?id=%FF%FE")), 400),
        (http.post(format!("{base}/v1/access-token?id=%")), 400),
        (http.get(format!("{base}/%FF%FE")), 404),
        (
            http.get(format!(
                "{base}/v1/offline-token/callback?state=%FF%FE&code=%"
            )),
            400,
        ),
    ];
    for (n, (req, status)) in cases.into_iter().enumerate() {
        let resp = req.bearer_auth(caller).send().await.expect("request");
        let got = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = resp.text().await.expect("body");
        assert_eq!(got, status, "case {n}: {text}");
        assert!(
            content_type.starts_with("application/json"),
            "case {n}: {content_type} {text}"
        );
        let body: Value = serde_json::from_str(&text).expect("JSON body");
        assert!(body["error"]["code"].is_string(), "case {n}: {body}");
    }
}

/// Each caller has a budget (`[vault.limits]`): requests over its rate get 429 with
/// `Retry-After` before any IdP request, and consents started but not completed are capped per
/// user. Time from a manual clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_are_rate_limited_and_pending_consents_capped() {
    let idp = start_idp().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = vault_config_with(
        dir.path(),
        &idp.issuer(),
        true,
        "[vault.limits]\nrate_limit = { per_second = 1, burst = 3 }\nmax_pending_consents = 2\n",
    );
    let clock = tw_core::ManualClock::starting_now();
    let base = serve_vault_with_clock(
        &cfg,
        sqlite_store(dir.path()).await,
        std::sync::Arc::new(clock.clone()),
    )
    .await;
    let http = http_client();
    let caller = user_token(&http, &idp, "alice").await;
    let consent = || {
        http.get(format!("{base}/v1/offline-token"))
            .bearer_auth(&caller)
    };

    // Two consents may wait at once; the third is refused until one completes or expires.
    let mut urls = Vec::new();
    for _ in 0..2 {
        let (status, body) = call(consent()).await;
        assert_eq!(status, 200, "{body}");
        urls.push(
            body["consent_url"]
                .as_str()
                .expect("consent_url")
                .to_owned(),
        );
    }
    let resp = consent().send().await.expect("third consent");
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("seconds");
    assert!(
        (590..=600).contains(&retry),
        "until the oldest expires: {retry}"
    );
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(
        body["error"]["code"], "vault_too_many_pending_consents",
        "{body}"
    );

    // The burst (3) is spent: the next request is refused before reaching the vault, with the
    // time to wait; the IdP sees nothing of it.
    let before = idp.stats().await;
    let resp = http
        .post(format!("{base}/v1/validate-token"))
        .bearer_auth(&caller)
        .json(&json!({ "token": "x" }))
        .send()
        .await
        .expect("over the limit");
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert_eq!(
        idp.stats().await.introspection_requests,
        before.introspection_requests
    );

    // A second later there is room for one more; ten minutes later the consents expired.
    clock.advance(std::time::Duration::from_secs(1));
    let (status, body) = call(
        http.post(format!("{base}/v1/validate-token"))
            .bearer_auth(&caller)
            .json(&json!({ "token": "x" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["active"], false);
    // One consent completed (the callback is not a caller's request): room for another.
    let back = idp.browser_login(&urls[0], "alice").await;
    let (status, body) = call(http.get(back.as_str().replacen(PUBLIC_URL, &base, 1))).await;
    assert_eq!(status, 200, "{body}");
    clock.advance(std::time::Duration::from_secs(1));
    let (status, body) = call(consent()).await;
    assert_eq!(status, 200, "{body}");
}

/// An entry id is a UUID in the hyphenated form the vault hands out: anything else is 400
/// `invalid_entry_id` (JSON, the input never echoed) on every route that takes one, including
/// the other spellings a UUID parser reads and look-alikes; a well-formed id that names no entry
/// of the caller's is 404. Upper-case hex is the same UUID.
#[tokio::test]
async fn entry_ids_that_are_not_uuids_are_400_and_unknown_ones_404() {
    // Many requests from one caller: a budget they fit in.
    let scene = Scene::start_with(
        true,
        "[vault.limits]\nrate_limit = { per_second = 1000, burst = 1000 }\n",
    )
    .await;
    let id = scene.alice_entry().await;
    let (http, base, caller) = (&scene.http, &scene.base, &scene.caller);
    let unknown = "7d5b1c1e-0000-4000-8000-000000000000";
    let simple = id.replace('-', "");
    let not_uuids = [
        "not-a-uuid".to_owned(),
        format!("{{{id}}}"),
        format!("urn:uuid:{id}"),
        simple.clone(),
        format!("{id} "),
        format!(" {id}"),
        format!("{id}0"),
        id[..35].to_owned(),
        format!("+{}", &id[1..]),
        id.replacen('-', "\u{2010}", 1),
        id.replacen('-', "_", 1),
        id.replacen(&id[..1], "\u{ff10}", 1),
        format!("{id}\n"),
        format!("{id}/../{id}"),
        "g".repeat(36),
        "a".repeat(4000),
        String::new(),
    ];
    let path_of = |text: &str| -> String {
        url::form_urlencoded::byte_serialize(text.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    };
    for text in &not_uuids {
        let escaped = path_of(text);
        let mut requests = vec![(
            "mint (body)",
            http.post(format!("{base}/v1/access-token"))
                .json(&json!({ "id": text })),
        )];
        if !text.is_empty() {
            requests.extend([
                (
                    "mint (query)",
                    http.post(format!("{base}/v1/access-token?id={escaped}")),
                ),
                ("get", http.get(format!("{base}/v1/entries/{escaped}"))),
                (
                    "delete",
                    http.delete(format!("{base}/v1/entries/{escaped}")),
                ),
                (
                    "duplicate",
                    http.post(format!("{base}/v1/entries/{escaped}/duplicate")),
                ),
            ]);
        }
        for (what, req) in requests {
            let (status, body) = call(req.bearer_auth(caller)).await;
            assert_eq!(status, 400, "{what} {text:?}: {body}");
            assert_eq!(body["error"]["code"], "invalid_entry_id", "{what} {text:?}");
            if text.len() > 4 {
                assert!(
                    !body.to_string().contains(text.trim()),
                    "{what}: the id was echoed: {body}"
                );
            }
        }
    }

    for (what, req) in [
        (
            "mint",
            http.post(format!("{base}/v1/access-token"))
                .json(&json!({ "id": unknown })),
        ),
        ("get", http.get(format!("{base}/v1/entries/{unknown}"))),
        (
            "delete",
            http.delete(format!("{base}/v1/entries/{unknown}")),
        ),
        (
            "duplicate",
            http.post(format!("{base}/v1/entries/{unknown}/duplicate")),
        ),
    ] {
        let (status, body) = call(req.bearer_auth(caller)).await;
        assert_eq!(status, 404, "{what}: {body}");
        assert_eq!(body["error"]["code"], "vault_entry_not_found", "{what}");
    }

    // The same UUID in upper case names the same entry.
    let (status, body) = call(
        http.get(format!("{base}/v1/entries/{}", id.to_uppercase()))
            .bearer_auth(caller),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], id.as_str());
}

/// Storing another user's refresh token is refused with its own code and words (not the
/// consent's `consent_user_mismatch`), and stores nothing.
#[tokio::test]
async fn storing_another_users_refresh_token_is_token_owner_mismatch() {
    let scene = Scene::start(true).await;
    let (http, base) = (&scene.http, &scene.base);
    let bob = user_token(http, &scene.idp, "bob").await;
    let alices = scene.alice_refresh_token().await;
    let (status, body) = call(
        http.post(format!("{base}/v1/refresh-token"))
            .bearer_auth(&bob)
            .json(&json!({ "refresh_token": alices })),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "token_owner_mismatch", "{body}");
    assert_eq!(
        body["error"]["message"], "the refresh token belongs to another user",
        "{body}"
    );
    assert!(!body.to_string().contains(&alices), "the token was echoed");
    for who in [&bob, &scene.caller] {
        let (status, list) = call(http.get(format!("{base}/v1/entries")).bearer_auth(who)).await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["entries"], json!([]), "nothing stored: {list}");
    }
    // A token of the caller's own is stored as before.
    let own = scene.alice_refresh_token().await;
    let (status, body) = call(
        http.post(format!("{base}/v1/refresh-token"))
            .bearer_auth(&scene.caller)
            .json(&json!({ "refresh_token": own })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}
