//! Proves the test-IdP harness: tokens, claims, counters, faults, outages,
//! key rotation and refresh-token rotation. Needs `npm ci` in testing/idp.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use tw_testkit::{ClientSpec, Endpoint, Fault, Idp, IdpConfig, UserSpec, fixture_path};

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

async fn cc_basic(http: &reqwest::Client, idp: &Idp, id: &str, secret: &str) -> reqwest::Response {
    http.post(idp.token_url())
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token request")
}

async fn cc_post(http: &reqwest::Client, idp: &Idp, id: &str, secret: &str) -> reqwest::Response {
    http.post(idp.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ])
        .send()
        .await
        .expect("token request")
}

async fn json_ok(resp: reqwest::Response) -> Value {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    assert!(
        status.is_success(),
        "expected success, got {status}: {text}"
    );
    serde_json::from_str(&text).expect("JSON body")
}

fn jwt_part(token: &str, i: usize) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a three-part JWT: {token}");
    let bytes = URL_SAFE_NO_PAD.decode(parts[i]).expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON JWT part")
}

#[tokio::test]
async fn client_credentials_tokens_are_keycloak_shaped_jwts() {
    let idp = Idp::start_default().await;
    let http = http();

    let basic = json_ok(cc_basic(&http, &idp, "agent-basic", "agent-basic-secret").await).await;
    assert_eq!(basic["token_type"], "Bearer");
    assert_eq!(basic["expires_in"], 60);
    let at = basic["access_token"].as_str().expect("access_token");
    let header = jwt_part(at, 0);
    assert_eq!(header["alg"], "RS256");
    assert!(header["kid"].is_string());
    let claims = jwt_part(at, 1);
    assert_eq!(claims["iss"], idp.issuer());
    assert_eq!(claims["azp"], "agent-basic");
    assert_eq!(claims["preferred_username"], "service-account-agent-basic");
    assert_eq!(claims["aud"], "api");
    assert_eq!(
        claims["realm_access"]["roles"],
        serde_json::json!(["agent"])
    );
    assert_eq!(
        claims["resource_access"]["api"]["roles"],
        serde_json::json!(["read"])
    );
    assert!(claims["scope"].as_str().expect("scope").contains("profile"));
    let info = idp.client_info("agent-basic").await;
    assert_eq!(claims["sub"], info.service_account_id.as_str());
    assert_eq!(
        claims["exp"].as_u64().expect("exp") - claims["iat"].as_u64().expect("iat"),
        60
    );

    let post = json_ok(cc_post(&http, &idp, "agent-post", "agent-post-secret").await).await;
    let claims = jwt_part(post["access_token"].as_str().expect("access_token"), 1);
    assert_eq!(claims["azp"], "agent-post");
    assert_eq!(claims["preferred_username"], "service-account-agent-post");

    // A wrong secret is refused. (Like Keycloak, a secret client may send
    // its secret either way, Basic or form.)
    let wrong = cc_basic(&http, &idp, "agent-basic", "nope").await;
    assert_eq!(wrong.status(), 401);
}

#[tokio::test]
async fn configured_clients_get_their_service_account_id_as_sub() {
    let cfg = IdpConfig::default()
        .realm("corp")
        .access_token_ttl(30)
        .client(
            ClientSpec::secret_basic("svc", "svc-secret")
                .service_account_id("0d0c6c6e-1111-4222-8333-444455556666")
                .realm_roles(["agent", "ops"])
                .client_roles("api", ["read", "write"]),
        )
        .client(ClientSpec::private_key_jwt(
            "svc-jwt",
            [fixture_path("keys/agent-ec.pem")],
        ))
        .user(UserSpec::new("bob").id("11111111-2222-4333-8444-555555555555"));
    let idp = Idp::start(cfg).await;
    assert!(idp.issuer().ends_with("/realms/corp"));
    let http = http();

    let t = json_ok(cc_basic(&http, &idp, "svc", "svc-secret").await).await;
    assert_eq!(t["expires_in"], 30);
    let claims = jwt_part(t["access_token"].as_str().expect("access_token"), 1);
    assert_eq!(claims["sub"], "0d0c6c6e-1111-4222-8333-444455556666");
    assert_eq!(
        claims["realm_access"]["roles"],
        serde_json::json!(["agent", "ops"])
    );
    assert_eq!(
        claims["resource_access"]["api"]["roles"],
        serde_json::json!(["read", "write"])
    );

    let jwt_client = idp.client_info("svc-jwt").await;
    assert_eq!(jwt_client.auth_method, "private_key_jwt");
    assert_eq!(jwt_client.key_ids.len(), 1);
    assert_eq!(
        idp.user_id("bob").await,
        "11111111-2222-4333-8444-555555555555"
    );
}

#[tokio::test]
async fn stats_count_token_requests_per_client_and_grant() {
    let idp = Idp::start_default().await;
    let http = http();
    for _ in 0..3 {
        json_ok(cc_basic(&http, &idp, "agent-basic", "agent-basic-secret").await).await;
    }
    json_ok(cc_post(&http, &idp, "agent-post", "agent-post-secret").await).await;
    // A failed request is counted too.
    cc_basic(&http, &idp, "agent-basic", "wrong").await;
    let jwks = http.get(idp.jwks_url()).send().await.expect("jwks");
    assert!(jwks.status().is_success());

    let s = idp.stats().await;
    assert_eq!(s.token_requests, 5);
    assert_eq!(s.token_requests_for("agent-basic"), 4);
    assert_eq!(s.token_requests_for("agent-post"), 1);
    assert_eq!(
        s.token_requests_by_grant.get("client_credentials"),
        Some(&5)
    );
    assert_eq!(s.jwks_requests, 1);

    idp.reset_stats().await;
    assert_eq!(idp.stats().await.token_requests, 0);
}

#[tokio::test]
async fn injected_503_carries_retry_after_and_is_counted() {
    let idp = Idp::start_default().await;
    let http = http();
    idp.fault(
        Fault::status(Endpoint::Token, 503)
            .retry_after("7")
            .times(2),
    )
    .await;
    for _ in 0..2 {
        let r = cc_basic(&http, &idp, "agent-basic", "agent-basic-secret").await;
        assert_eq!(r.status(), 503);
        assert_eq!(
            r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
            Some("7")
        );
        let body: Value = r.json().await.expect("JSON error body");
        assert_eq!(body["error"], "temporarily_unavailable");
    }
    // count = 2: the third request goes through.
    json_ok(cc_basic(&http, &idp, "agent-basic", "agent-basic-secret").await).await;
    assert_eq!(idp.stats().await.token_requests_for("agent-basic"), 3);

    // Until cleared: garbled answers.
    idp.fault(Fault::garbled(Endpoint::Token)).await;
    let r = cc_basic(&http, &idp, "agent-basic", "agent-basic-secret").await;
    assert_eq!(r.status(), 200);
    assert!(serde_json::from_str::<Value>(&r.text().await.expect("body")).is_err());
    idp.clear_faults().await;
    json_ok(cc_basic(&http, &idp, "agent-basic", "agent-basic-secret").await).await;

    idp.fault(Fault::reset(Endpoint::Token).times(1)).await;
    let err = http
        .post(idp.token_url())
        .basic_auth("agent-basic", Some("agent-basic-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await;
    assert!(err.is_err(), "a reset connection must fail the request");

    idp.fault(Fault::delay(Endpoint::Jwks, Duration::from_millis(300)).times(1))
        .await;
    let t0 = std::time::Instant::now();
    let r = http.get(idp.jwks_url()).send().await.expect("jwks");
    assert!(r.status().is_success());
    assert!(t0.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn down_refuses_connections_and_up_restores_the_same_port() {
    let idp = Idp::start_default().await;
    let http = http();
    let port = idp.port();
    json_ok(cc_basic(&http, &idp, "agent-basic", "agent-basic-secret").await).await;

    idp.down().await;
    let err = http
        .post(idp.token_url())
        .basic_auth("agent-basic", Some("agent-basic-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect_err("the IdP is down");
    assert!(err.is_connect(), "expected a connect error, got {err:?}");

    idp.up().await;
    assert_eq!(idp.port(), port);
    json_ok(cc_basic(&http, &idp, "agent-basic", "agent-basic-secret").await).await;
}

#[tokio::test]
async fn rotate_keys_changes_the_signing_kid() {
    let idp = Idp::start_default().await;
    let http = http();
    let kids = |jwks: Value| -> Vec<String> {
        jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k["kid"].as_str().expect("kid").to_owned())
            .collect()
    };
    let before = kids(json_ok(http.get(idp.jwks_url()).send().await.expect("jwks")).await);
    assert_eq!(before.len(), 1);
    let t = json_ok(cc_basic(&http, &idp, "agent-basic", "agent-basic-secret").await).await;
    assert_eq!(
        jwt_part(t["access_token"].as_str().expect("at"), 0)["kid"],
        before[0].as_str()
    );

    let new_kid = idp.rotate_keys(true).await;
    assert_ne!(new_kid, before[0]);
    let after = kids(json_ok(http.get(idp.jwks_url()).send().await.expect("jwks")).await);
    assert_eq!(after, vec![new_kid.clone(), before[0].clone()]);
    let t = json_ok(cc_basic(&http, &idp, "agent-basic", "agent-basic-secret").await).await;
    assert_eq!(
        jwt_part(t["access_token"].as_str().expect("at"), 0)["kid"],
        new_kid.as_str()
    );

    let newest = idp.rotate_keys(false).await;
    let only = kids(json_ok(http.get(idp.jwks_url()).send().await.expect("jwks")).await);
    assert_eq!(only, vec![newest]);
}

#[tokio::test]
async fn minted_refresh_token_rotates_and_is_single_use() {
    let idp = Idp::start_default().await;
    let http = http();
    let rt1 = idp
        .mint_refresh_token("refresh-client", "alice", "openid offline_access")
        .await;

    let refresh = |rt: String| refresh_request(&http, &idp, rt);

    let first = json_ok(refresh(rt1.clone()).await.expect("refresh")).await;
    let rt2 = first["refresh_token"]
        .as_str()
        .expect("rotated refresh_token")
        .to_owned();
    assert_ne!(rt2, rt1);
    let claims = jwt_part(first["access_token"].as_str().expect("access_token"), 1);
    assert_eq!(claims["sub"], idp.user_id("alice").await.as_str());
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["azp"], "refresh-client");

    // The old token is single use...
    let reused = refresh(rt1).await.expect("refresh");
    assert_eq!(reused.status(), 400);
    let body: Value = reused.json().await.expect("JSON");
    assert_eq!(body["error"], "invalid_grant");

    // ...and a fresh one rotates again.
    let rt3 = idp
        .mint_refresh_token("refresh-client", "alice", "openid offline_access")
        .await;
    let a = json_ok(refresh(rt3).await.expect("refresh")).await;
    let rt4 = a["refresh_token"].as_str().expect("rotated").to_owned();
    let b = json_ok(refresh(rt4.clone()).await.expect("refresh")).await;
    assert_ne!(b["refresh_token"].as_str().expect("rotated"), rt4);
    assert_eq!(
        idp.stats()
            .await
            .token_requests_by_grant
            .get("refresh_token"),
        Some(&4)
    );
}

#[tokio::test]
async fn ttl_secret_and_disable_controls_work() {
    let idp = Idp::start_default().await;
    let http = http();
    idp.set_access_token_ttl(5).await;
    let t = json_ok(cc_basic(&http, &idp, "agent-basic", "agent-basic-secret").await).await;
    assert_eq!(t["expires_in"], 5);

    idp.set_client_secret("agent-basic", "rotated-secret").await;
    assert_eq!(
        cc_basic(&http, &idp, "agent-basic", "agent-basic-secret")
            .await
            .status(),
        401
    );
    json_ok(cc_basic(&http, &idp, "agent-basic", "rotated-secret").await).await;

    idp.disable_client("agent-post").await;
    let r = cc_post(&http, &idp, "agent-post", "agent-post-secret").await;
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.expect("JSON");
    assert_eq!(body["error"], "invalid_client");
    idp.enable_client("agent-post").await;
    json_ok(cc_post(&http, &idp, "agent-post", "agent-post-secret").await).await;

    let stderr = idp.stderr_output();
    for secret in ["agent-basic-secret", "rotated-secret", "agent-post-secret"] {
        assert!(!stderr.contains(secret), "IdP stderr shows a secret");
    }
}

#[tokio::test]
async fn introspection_sees_issued_jwts() {
    let idp = Idp::start_default().await;
    let http = http();
    let t = json_ok(cc_basic(&http, &idp, "agent-basic", "agent-basic-secret").await).await;
    let at = t["access_token"].as_str().expect("at").to_owned();
    let r = json_ok(
        http.post(idp.introspection_url())
            .basic_auth("agent-post", Some("agent-post-secret"))
            .form(&[("token", at.as_str())])
            .send()
            .await
            .expect("introspect"),
    )
    .await;
    assert_eq!(r["active"], true);
    assert_eq!(r["client_id"], "agent-basic");
    assert_eq!(idp.stats().await.introspection_requests, 1);
}

#[tokio::test]
async fn dropping_the_idp_kills_it() {
    let idp = Idp::start_default().await;
    let port = idp.port();
    drop(idp);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = http()
        .get(format!("http://127.0.0.1:{port}/realms/test"))
        .send()
        .await;
    assert!(err.is_err(), "the IdP still answers after drop");
}

#[tokio::test]
async fn nginx_starts_with_a_test_server_block() {
    let nginx = tw_testkit::Nginx::start(
        "server { listen 127.0.0.1:{port}; location / { return 200 \"hello from nginx\"; } }",
    )
    .await;
    let body = reqwest::get(nginx.url("/x"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "hello from nginx");
}

#[tokio::test]
async fn hold_fault_spends_the_grant_before_the_client_hears_of_it_and_reuse_is_counted() {
    let idp = Idp::start_default().await;
    let http = http();
    let rt = idp
        .mint_refresh_token("refresh-client", "alice", "openid offline_access")
        .await;
    let refresh = |rt: String| refresh_request(&http, &idp, rt);
    idp.fault(Fault::hold(Endpoint::Token, Duration::from_secs(2)).times(1))
        .await;
    let pending = tokio::spawn(refresh(rt.clone()));
    let mut held = 0;
    for _ in 0..100 {
        held = idp.stats().await.held_responses;
        if held > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(held, 1, "the answer was processed and held");
    assert!(!pending.is_finished(), "the client is still waiting");
    // Spent already: presenting it again is reuse (strict rotation refuses it).
    let again = refresh(rt).await.expect("refresh");
    assert_eq!(again.status(), 400);
    assert_eq!(idp.stats().await.refresh_token_reuse, 1);
    let first = pending.await.expect("join").expect("held answer arrives");
    assert_eq!(first.status(), 200);
}

#[tokio::test]
async fn reuse_grace_keeps_a_rotated_refresh_token_valid() {
    let idp = Idp::start_default().await;
    idp.set_refresh_token_reuse_grace(true).await;
    let http = http();
    let refresh = |rt: String| refresh_request(&http, &idp, rt);
    let rt1 = idp
        .mint_refresh_token("refresh-client", "alice", "openid offline_access")
        .await;
    let a = json_ok(refresh(rt1.clone()).await.expect("refresh")).await;
    let rt2 = a["refresh_token"].as_str().expect("rotated").to_owned();
    assert_ne!(rt2, rt1);
    assert_eq!(idp.stats().await.refresh_token_reuse, 0);
    let b = json_ok(refresh(rt1).await.expect("refresh")).await;
    assert!(b["refresh_token"].is_string());
    assert_eq!(idp.stats().await.refresh_token_reuse, 1);
    json_ok(refresh(rt2).await.expect("refresh")).await;
    assert_eq!(
        idp.stats().await.refresh_token_reuse,
        1,
        "rt2 was not rotated before"
    );
}

#[tokio::test]
async fn browser_login_runs_the_authorization_code_flow_to_the_redirect_uri() {
    let idp = Idp::start_default().await;
    let mut auth = url::Url::parse(&idp.authorization_url()).expect("url");
    auth.query_pairs_mut()
        .append_pair("client_id", "refresh-client")
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", "http://127.0.0.1/cb")
        .append_pair("scope", "openid offline_access")
        .append_pair("prompt", "consent")
        .append_pair("state", "s-123");
    let back = idp.browser_login(auth.as_str(), "alice").await;
    assert_eq!(back.path(), "/cb");
    let q: std::collections::BTreeMap<String, String> = back.query_pairs().into_owned().collect();
    assert_eq!(q.get("state").map(String::as_str), Some("s-123"));
    let code = q.get("code").expect("code in the redirect").clone();
    let tokens = json_ok(
        http()
            .post(idp.token_url())
            .basic_auth("refresh-client", Some("refresh-client-secret"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", "http://127.0.0.1/cb"),
            ])
            .send()
            .await
            .expect("code exchange"),
    )
    .await;
    assert!(tokens["refresh_token"].is_string());
    let claims = jwt_part(tokens["id_token"].as_str().expect("id_token"), 1);
    assert_eq!(claims["sub"], idp.user_id("alice").await.as_str());
}

/// A refresh-token grant by the default `refresh-client` at `idp`'s token endpoint.
fn refresh_request(
    http: &reqwest::Client,
    idp: &Idp,
    rt: String,
) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> + use<> {
    http.post(idp.token_url())
        .basic_auth("refresh-client", Some("refresh-client-secret"))
        .form(&[
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", rt),
        ])
        .send()
}
