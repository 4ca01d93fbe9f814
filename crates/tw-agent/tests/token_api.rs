//! The local token API against a real IdP.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tw_config::ListenAddr;
use tw_core::{Clock, SystemClock};

async fn agent(h: &Harness) -> RunningAgent {
    let toml = format!(
        "{}\n[agent]\nlisten = \"127.0.0.1:0\"\n",
        h.profile_toml("api")
    );
    RunningAgent::start(&toml, Arc::new(SystemClock)).await
}

#[tokio::test]
async fn token_endpoint_returns_the_idps_jwt_with_the_documented_fields() {
    let h = Harness::start().await;
    let a = agent(&h).await;
    let resp = client()
        .get(a.api_url("/v1/token/api"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body = json_of(resp).await;
    let obj = body.as_object().expect("object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "access_token",
            "expires_at",
            "expires_in",
            "profile",
            "token_type"
        ]
    );
    assert_eq!(body["profile"], "api");
    assert!(
        body["token_type"]
            .as_str()
            .expect("type")
            .eq_ignore_ascii_case("bearer")
    );

    let token = body["access_token"].as_str().expect("token");
    let claims = jwt_claims(token);
    assert_eq!(claims["iss"], h.idp.issuer());
    assert_eq!(
        claims["exp"], body["expires_at"],
        "expires_at is the token's own exp"
    );

    let expires_in = body["expires_in"].as_u64().expect("expires_in");
    assert!(
        (TOKEN_TTL - 30..=TOKEN_TTL).contains(&expires_in),
        "expires_in {expires_in}"
    );
    let now = SystemClock.now().as_secs();
    let expires_at = body["expires_at"].as_i64().expect("expires_at");
    assert!((expires_at - now - expires_in as i64).abs() <= 2);

    // Served from the cache: the same token, no second IdP request.
    let again = json_of(
        client()
            .get(a.api_url("/v1/token/api"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(again["access_token"], body["access_token"]);
    assert_eq!(h.token_requests().await, 1);
    a.stop().await;
}

#[tokio::test]
async fn min_ttl_beyond_the_token_lifetime_is_a_clear_error_not_a_hang() {
    let h = Harness::start().await;
    let a = agent(&h).await;
    a.token("api").await;
    let c = client();

    let resp = tokio::time::timeout(
        Duration::from_secs(5),
        c.get(a.api_url("/v1/token/api?min_ttl=2h")).send(),
    )
    .await
    .expect("answered promptly")
    .expect("send");
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body = json_of(resp).await;
    assert_eq!(body["error"]["code"], "min_ttl_unsatisfiable");
    assert_eq!(body["error"]["profile"], "api");
    let msg = body["error"]["message"].as_str().expect("message");
    assert!(msg.contains("7200"), "names what was asked: {msg}");

    // Satisfiable demands work, by query and by header.
    let ok = c
        .get(a.api_url("/v1/token/api?min_ttl=30s"))
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), 200);
    let ok = c
        .get(a.api_url("/v1/token/api"))
        .header("X-Min-TTL", "60")
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), 200);

    let bad = c
        .get(a.api_url("/v1/token/api?min_ttl=soonish"))
        .send()
        .await
        .expect("send");
    assert_eq!(bad.status(), 400);
    assert_eq!(json_of(bad).await["error"]["code"], "invalid_min_ttl");
    let bad = c
        .get(a.api_url("/v1/token/api"))
        .header("X-Min-TTL", "ten")
        .send()
        .await
        .expect("send");
    assert_eq!(bad.status(), 400);
    assert_eq!(json_of(bad).await["error"]["code"], "invalid_min_ttl");
    a.stop().await;
}

#[tokio::test]
async fn unknown_profile_path_and_method_get_json_errors() {
    let h = Harness::start().await;
    let a = agent(&h).await;
    let c = client();

    let resp = c
        .get(a.api_url("/v1/token/nope"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 404);
    let body = json_of(resp).await;
    assert_eq!(body["error"]["code"], "profile_not_found");
    assert_eq!(body["error"]["profile"], "nope");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("api"),
        "lists the configured profiles"
    );

    let resp = c.get(a.api_url("/v2/whatever")).send().await.expect("send");
    assert_eq!(resp.status(), 404);
    assert_eq!(json_of(resp).await["error"]["code"], "not_found");

    let resp = c
        .delete(a.api_url("/v1/token/api"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 405);
    assert_eq!(json_of(resp).await["error"]["code"], "method_not_allowed");
    a.stop().await;
}

#[tokio::test]
async fn refresh_endpoint_fetches_a_new_token() {
    let h = Harness::start().await;
    let a = agent(&h).await;
    let first = a.token("api").await;
    let before = h.token_requests().await;
    let resp = client()
        .post(a.api_url("/v1/token/api/refresh"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let body = json_of(resp).await;
    assert_ne!(body["access_token"], first.access_token.expose());
    assert_eq!(h.token_requests().await, before + 1);
    a.stop().await;
}

#[tokio::test]
async fn probes_report_health_readiness_and_metrics() {
    let h = Harness::start().await;
    h.idp.down().await;
    let a = agent(&h).await;
    let c = client();
    let health = c.get(a.api_url("/healthz")).send().await.expect("send");
    assert_eq!(health.status(), 200);
    let ready = c.get(a.api_url("/readyz")).send().await.expect("send");
    assert_eq!(ready.status(), 503, "no token while the IdP is down");
    let body = json_of(ready).await;
    assert_eq!(body["ready"], false);
    assert_eq!(body["profiles"]["api"]["usable"], false);

    h.idp.up().await;
    // The broker's background retry picks the IdP up again; wait for it rather than racing it.
    a.token("api").await;
    let resp = c
        .get(a.api_url("/v1/token/api"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let ready = c.get(a.api_url("/readyz")).send().await.expect("send");
    assert_eq!(ready.status(), 200);
    let metrics = c.get(a.api_url("/metrics")).send().await.expect("send");
    assert_eq!(metrics.text().await.expect("text"), "# test\n");
    a.stop().await;
}

#[tokio::test]
async fn requests_addressed_to_a_dns_name_are_refused() {
    let h = Harness::start().await;
    let a = agent(&h).await;
    let resp = client()
        .get(a.api_url("/v1/token/api"))
        .header("Host", "rebound.example:8790")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 403);
    assert_eq!(json_of(resp).await["error"]["code"], "host_not_allowed");
    a.stop().await;
}

#[tokio::test]
async fn token_api_on_a_private_unix_socket() {
    let h = Harness::start().await;
    let sock = h.path("agent.sock");
    let toml = format!(
        "{}\n[agent]\nlisten = \"unix:{}\"\n",
        h.profile_toml("api"),
        sock.display()
    );
    let a = RunningAgent::start(&toml, Arc::new(SystemClock)).await;
    assert_eq!(a.api, ListenAddr::Unix(sock.clone()));
    let mode = std::fs::metadata(&sock)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    let mut s = tokio::net::UnixStream::connect(&sock)
        .await
        .expect("connect");
    s.write_all(b"GET /v1/token/api HTTP/1.1\r\nHost: anything\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut reply = String::new();
    tokio::time::timeout(LIMIT, s.read_to_string(&mut reply))
        .await
        .expect("in time")
        .expect("read");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let body = &reply[reply.find("\r\n\r\n").expect("body") + 4..];
    let v: serde_json::Value = serde_json::from_str(body).expect("json");
    jwt_claims(v["access_token"].as_str().expect("token"));
    a.stop().await;
    assert!(!sock.exists(), "socket removed at shutdown");
}
