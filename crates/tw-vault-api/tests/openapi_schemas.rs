//! The generated OpenAPI document against the real vault: every documented operation is called
//! over HTTP (the real test IdP, a consent signed in through its login page, SQLite), with a
//! success and, where the operation has one, an error answer, and every answer's body is
//! validated against the schema the served document gives for that path, method and status
//! (`tw_http::openapi::testing`, the `jsonschema` crate).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use tw_config::VaultConfig;
use tw_core::SystemClock;
use tw_http::openapi::testing::Schemas;
use tw_testkit::TestServer;
use tw_vault::Vault;
use tw_vault_api::CallerAuth;
use tw_verify::Verifier;

/// The vault's router on a free port, with `/metrics`; `keys`: whether the callers' keys are
/// loaded (without them every caller is answered 503 and the vault is not ready).
async fn serve(cfg: &VaultConfig, store: tw_store::Store, keys: bool) -> TestServer {
    let clock = Arc::new(SystemClock);
    let settings = tw_config::vault_settings(cfg).unwrap();
    let tables = Arc::new(tw_store::VaultTables::new(store.clone()));
    let vault = Vault::new(settings, tables, clock.clone()).await.unwrap();
    let verifier =
        Arc::new(Verifier::new(&cfg.callers.verifier_settings(), clock.clone()).unwrap());
    if keys {
        verifier.start().await;
    }
    let auth =
        Arc::new(CallerAuth::new(&tw_config::vault_caller_settings(cfg), verifier, clock).unwrap());
    let storage = tw_store::health::StoreHealth::start(store);
    let metrics: tw_http::MetricsRender = Arc::new(|| "tokenwarden_up 1\n".to_owned());
    let router = tw_vault_api::router(
        vault,
        auth,
        storage,
        &tw_config::vault_api_settings(cfg),
        Some(metrics),
    );
    TestServer::start(router).await
}

struct Calls {
    http: reqwest::Client,
    schemas: Schemas,
}

impl Calls {
    /// Calls `base` + `path` (`template`: the documented path), checks the status and the body
    /// against the document; returns the JSON body (`Null` when none or not JSON).
    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        base: &str,
        method: Method,
        template: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        expect: u16,
    ) -> Value {
        let mut req = self.http.request(method.clone(), format!("{base}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let json_answer = resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let text = resp.text().await.unwrap();
        assert_eq!(status, expect, "{method} {path}: {text}");
        let json: Option<Value> = json_answer.then(|| serde_json::from_str(&text).unwrap());
        self.schemas
            .check(method.as_str(), template, status, json.as_ref())
            .unwrap_or_else(|e| panic!("{e}"));
        json.unwrap_or(Value::Null)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_as_documented() {
    let idp = start_idp().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = vault_config(dir.path(), &idp.issuer(), true);
    let server = serve(&cfg, sqlite_store(dir.path()).await, true).await;
    let base = server.url();
    let http = http_client();
    let alice = user_token(&http, &idp, "alice").await;
    let doc: Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let c = Calls {
        http: http.clone(),
        schemas: Schemas::new(doc),
    };
    let a = Some(alice.as_str());
    let b = base.as_str();
    use Method as M;
    let other = "7d5b1c1e-0000-4000-8000-000000000000";

    // Consent: the URL, the user's sign-in at the IdP, the callback.
    let consent = "/v1/offline-token";
    let start = c.call(b, M::GET, consent, consent, a, None, 200).await;
    c.call(
        b,
        M::GET,
        consent,
        "/v1/offline-token?colour=blue",
        a,
        None,
        400,
    )
    .await;
    c.call(b, M::GET, consent, consent, None, None, 401).await;
    let back = idp
        .browser_login(start["consent_url"].as_str().unwrap(), "alice")
        .await;
    let callback = back.as_str().replacen(PUBLIC_URL, "", 1);
    let template = "/v1/offline-token/callback";
    let consented = c
        .call(b, M::GET, template, &callback, None, None, 200)
        .await;
    assert_eq!(consented["token_type"], "offline", "{consented}");
    c.call(
        b,
        M::GET,
        template,
        &format!("{template}?state=forged&code=x"),
        None,
        None,
        400,
    )
    .await;

    // Storing a token the caller holds.
    let store = "/v1/refresh-token";
    let rt = idp
        .mint_refresh_token(VAULT_CLIENT, "alice", "openid offline_access")
        .await;
    let entry = c
        .call(
            b,
            M::POST,
            store,
            store,
            a,
            Some(json!({ "refresh_token": rt })),
            201,
        )
        .await;
    let id = entry["id"].as_str().unwrap().to_owned();
    c.call(b, M::POST, store, store, a, Some(json!({})), 400)
        .await;
    let bobs = idp
        .mint_refresh_token(VAULT_CLIENT, "bob", "openid offline_access")
        .await;
    c.call(
        b,
        M::POST,
        store,
        store,
        a,
        Some(json!({ "refresh_token": bobs })),
        403,
    )
    .await;

    // Mint.
    let mint = "/v1/access-token";
    let minted = c
        .call(b, M::POST, mint, mint, a, Some(json!({ "id": id })), 200)
        .await;
    assert!(minted["access_token"].is_string(), "{minted}");
    c.call(b, M::POST, mint, mint, a, Some(json!({ "id": other })), 404)
        .await;
    c.call(b, M::POST, mint, mint, a, None, 400).await;

    // Entries.
    let entries = "/v1/entries";
    let list = c.call(b, M::GET, entries, entries, a, None, 200).await;
    assert_eq!(list["entries"].as_array().unwrap().len(), 2, "{list}");
    c.call(b, M::GET, entries, "/v1/entries?all=true", a, None, 403)
        .await;
    c.call(b, M::GET, entries, "/v1/entries?all=maybe", a, None, 400)
        .await;
    let one = "/v1/entries/{id}";
    c.call(b, M::GET, one, &format!("/v1/entries/{id}"), a, None, 200)
        .await;
    c.call(b, M::GET, one, "/v1/entries/not-an-id", a, None, 400)
        .await;
    c.call(
        b,
        M::GET,
        one,
        &format!("/v1/entries/{other}"),
        a,
        None,
        404,
    )
    .await;
    let dup = "/v1/entries/{id}/duplicate";
    let consented_id = consented["id"].as_str().unwrap();
    c.call(
        b,
        M::POST,
        dup,
        &format!("/v1/entries/{consented_id}/duplicate"),
        a,
        None,
        201,
    )
    .await;
    c.call(
        b,
        M::POST,
        dup,
        &format!("/v1/entries/{other}/duplicate"),
        a,
        None,
        404,
    )
    .await;

    // Introspection.
    let validate = "/v1/validate-token";
    let answer = c
        .call(
            b,
            M::POST,
            validate,
            validate,
            a,
            Some(json!({ "token": alice })),
            200,
        )
        .await;
    assert_eq!(answer["active"], true, "{answer}");
    c.call(
        b,
        M::POST,
        validate,
        validate,
        a,
        Some(json!({ "tokn": "x" })),
        400,
    )
    .await;

    // Delete.
    c.call(
        b,
        M::DELETE,
        one,
        &format!("/v1/entries/{id}"),
        a,
        None,
        200,
    )
    .await;
    c.call(
        b,
        M::DELETE,
        one,
        &format!("/v1/entries/{id}"),
        a,
        None,
        404,
    )
    .await;

    // Probes and version.
    for path in ["/health", "/health/ready", "/version", "/metrics"] {
        c.call(b, M::GET, path, path, None, None, 200).await;
    }

    // A vault whose callers' keys are not loaded: not ready, and callers are asked to retry.
    let cold = serve(&cfg, sqlite_store(dir.path()).await, false).await;
    let cold = cold.url();
    let ready = c
        .call(
            &cold,
            M::GET,
            "/health/ready",
            "/health/ready",
            None,
            None,
            503,
        )
        .await;
    assert_eq!(ready["caller_keys_loaded"], false, "{ready}");
    c.call(
        &cold,
        M::POST,
        validate,
        validate,
        a,
        Some(json!({ "token": "x" })),
        503,
    )
    .await;

    // Every documented operation was seen succeeding, and failing where it documents a failure.
    let checked = c.schemas.checked();
    for (method, path) in c.schemas.operations() {
        let statuses: BTreeSet<u16> = checked
            .iter()
            .filter(|(m, p, _)| *m == method && *p == path)
            .map(|(_, _, s)| *s)
            .collect();
        assert!(
            statuses.iter().any(|s| (200..300).contains(s)),
            "{method} {path}: no success checked"
        );
        let fails = c.schemas.statuses(&method, &path).iter().any(|s| *s >= 400);
        assert!(
            !fails || statuses.iter().any(|s| *s >= 400),
            "{method} {path}: no error checked"
        );
    }
}

#[tokio::test]
async fn a_body_that_breaks_the_document_fails_validation() {
    let doc = tw_vault_api::openapi_document("/v1/offline-token/callback");
    let s = Schemas::new(doc);
    let entry = json!({
        "id": "7d5b1c1e-0000-4000-8000-000000000000",
        "owner": { "issuer": "https://idp", "subject": "alice" },
        "token_type": "offline", "status": "active", "session_id": null,
        "created_at": 1, "last_used_at": null, "expires_at": null, "key_id": "k1",
        "attributes": { "job": "nightly" },
    });
    let one = "/v1/entries/{id}";
    assert_eq!(s.check("GET", one, 200, Some(&entry)), Ok(()));
    let mut wrong = entry.clone();
    wrong["token_type"] = json!("access");
    assert!(s.check("GET", one, 200, Some(&wrong)).is_err());
    let mut wrong = entry.clone();
    wrong["owner"] = json!({ "issuer": "https://idp" });
    assert!(s.check("GET", one, 200, Some(&wrong)).is_err());
    let mut wrong = entry.clone();
    wrong["attributes"] = json!({ "job": 7 });
    assert!(s.check("GET", one, 200, Some(&wrong)).is_err());
    // In a list, two $refs down.
    let list = json!({ "entries": [wrong], "sessions": [] });
    assert!(s.check("GET", "/v1/entries", 200, Some(&list)).is_err());
    // A mint answer without its token.
    let minted = json!({ "expires_in": 60, "token_type": "Bearer" });
    assert!(
        s.check("POST", "/v1/access-token", 200, Some(&minted))
            .is_err()
    );
    // A readiness answer whose storage says nothing.
    let ready = json!({ "ready": true, "storage": {}, "caller_keys_loaded": true });
    assert!(s.check("GET", "/health/ready", 200, Some(&ready)).is_err());
}
