//! The verifying reverse proxy against the real test IdP, fed by a real agent, in front of a real
//! upstream: identity headers, spoofing, exempt paths, RFC 6750 refusals, routing, upstream
//! failures, streaming, probes and the decision hook.

mod common;

use common::*;
use serde_json::json;
use std::sync::Arc;
use tw_core::SystemClock;
use tw_gateway::{Decision, DecisionRequest, Denied, Mode, Verdict};
use tw_testkit::Idp;

#[tokio::test]
async fn agent_feeds_the_gateway_identity_headers_are_set_and_spoofs_removed() {
    let (idp, _up, cfg) = idp_and_routed_upstream("exempt_paths = [\"/health\"]", "/").await;
    let gw = RunningGateway::start(&cfg).await;
    let agent = FeedingAgent::start(&idp, &gw.url("/")).await;
    let token = agent.token().await;
    let info = idp.client_info(CLIENT_ID).await;

    let resp = send(
        client()
            .get(agent.url("/api/items?page=2"))
            .header("X-Auth-Subject", "admin")
            .header("x-auth-subject", "root")
            .header("X-Auth-Service-Account", "false")
            .header("X-Auth-Scopes", "admin")
            .header("X-Auth-Issuer", "https://evil.example")
            .header("X-Auth-Client-Id", "evil"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let echo = json_of(resp).await;
    assert_eq!(echo["path"], "/api/items?page=2");
    assert_agent_basic_identity(&echo, &idp, &info);
    let scopes = echoed_one(&echo, "x-auth-scopes").expect("scopes");
    assert!(scopes.split(' ').any(|s| s == "profile"), "{scopes}");
    assert!(!scopes.contains("admin"), "{scopes}");
    // The caller's Authorization (here: the agent's token) goes on unchanged.
    assert_eq!(
        echoed_one(&echo, "authorization"),
        Some(format!("Bearer {token}"))
    );

    // Exempt: no token needed, and still no spoofed identity reaches the API.
    let resp = send(
        client()
            .get(gw.url("/health"))
            .header("X-Auth-Subject", "admin")
            .header("X-Auth-Service-Account", "true"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let echo = json_of(resp).await;
    for h in ["x-auth-subject", "x-auth-service-account", "x-auth-issuer"] {
        assert!(echoed(&echo, h).is_empty(), "{h} reached the upstream");
    }

    agent.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn refusals_follow_rfc_6750_with_json_bodies() {
    let (idp, _up, cfg) =
        idp_and_routed_upstream("exempt_paths = [\"/health\", \"/docs/*\"]", "/").await;
    let gw = RunningGateway::start(&cfg).await;
    let c = client();

    // No credentials (or another scheme): 401 with the bare challenge.
    for auth in [None, Some("Basic YWxhZGRpbjpvcGVuc2VzYW1l")] {
        let mut req = c.get(gw.url("/api"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = send(req).await;
        assert_eq!(challenge(&resp), BARE_CHALLENGE);
        assert_eq!(resp.headers()["cache-control"], "no-store");
        assert_refused(resp, 401, "missing_token").await;
    }

    // Malformed Authorization: 400 invalid_request.
    for auth in ["Bearer", "Bearer a b", "Bearer a,b", "Bearer \"quoted\""] {
        let resp = send(c.get(gw.url("/api")).header("authorization", auth)).await;
        assert_eq!(resp.status(), 400, "{auth}");
        let ch = challenge(&resp);
        assert!(
            ch.starts_with(
                "Bearer realm=\"tokenwarden\", error=\"invalid_request\", error_description=\""
            ),
            "{ch}"
        );
        assert_eq!(json_of(resp).await["error"]["code"], "invalid_request");
    }
    let resp = send(
        c.get(gw.url("/api"))
            .header("authorization", "Bearer a")
            .header("authorization", "Bearer b"),
    )
    .await;
    assert_eq!(resp.status(), 400);

    // A bad token: 401 invalid_token naming the check, never echoing the token.
    let real = idp_token(&idp, CLIENT_ID, CLIENT_SECRET).await;
    let mut parts: Vec<&str> = real.split('.').collect();
    let forged_sig = "A".repeat(parts[2].len());
    parts[2] = &forged_sig;
    let forged = parts.join(".");
    let resp = send(c.get(gw.url("/api")).bearer_auth(&forged)).await;
    assert_eq!(resp.status(), 401);
    let ch = challenge(&resp);
    assert_eq!(
        ch,
        "Bearer realm=\"tokenwarden\", error=\"invalid_token\", error_description=\"the signature does not verify\""
    );
    let text = resp.text().await.expect("body");
    assert!(
        !text.contains(&forged) && !text.contains(parts[1]),
        "{text}"
    );
    let body: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(body["error"]["code"], "invalid_token");
    assert_eq!(body["error"]["check"], "signature");

    // Non-UTF-8 bytes in Authorization and identity headers: a 4xx, never a 5xx or a panic.
    let raw = raw_request(
        gw.addr,
        b"GET /api HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\nX-Auth-Subject: \xc3\x28\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    // A huge token: refused by size (401), a huge header block by the server (431).
    let huge = "a".repeat(64 * 1024);
    let resp = send(c.get(gw.url("/api")).bearer_auth(&huge)).await;
    assert_eq!(resp.status(), 401);
    assert!(
        challenge(&resp).contains("larger than"),
        "{}",
        challenge(&resp)
    );
    let enormous = format!(
        "GET /api HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        "a".repeat(1024 * 1024)
    );
    let raw = raw_request(gw.addr, enormous.as_bytes()).await;
    assert!(
        raw.is_empty() || raw.starts_with("HTTP/1.1 4"),
        "{}",
        &raw[..raw.len().min(200)]
    );

    // Exempt paths: exact and prefix; a path that could escape the prefix is not exempt.
    for path in ["/health", "/docs/", "/docs/index.html"] {
        let resp = send(c.get(gw.url(path))).await;
        assert_eq!(resp.status(), 200, "{path}");
    }
    let resp = send(c.get(gw.url("/health/x"))).await;
    assert_eq!(resp.status(), 401);
    // Spellings upstreams resolve differently are refused before anything else.
    for path in [
        "/docs%2f..%2fadmin",
        "/docs/..;/admin",
        "/docs/x%252f..%252f..%252fadmin",
    ] {
        let resp = send(c.get(gw.url(path))).await;
        assert_refused(resp, 400, "invalid_path").await;
    }
    // `..` is resolved before the exempt check: `/docs/../admin` is `/admin`, which needs a token.
    let raw = raw_request(
        gw.addr,
        b"GET /docs/../admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 401"), "{raw}");
    let raw = raw_request(
        gw.addr,
        b"GET /../admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(raw.contains("invalid_path"), "{raw}");

    gw.stop().await;
}

#[tokio::test]
async fn routes_by_host_and_longest_prefix_strip_prefix_and_upstream_failures() {
    let idp = Idp::start_default().await;
    let general = Upstream::start().await;
    let special = Upstream::start().await;
    let down = closed_port().await;
    let routes = format!(
        r#"
[[gateway.routes]]
prefix = "/svc/"
upstream = "{general}/base/"
strip_prefix = true

[[gateway.routes]]
prefix = "/svc/special"
upstream = "{special}"

[[gateway.routes]]
host = "admin.example.org"
prefix = "/svc"
upstream = "{special}/admin"
strip_prefix = true

[[gateway.routes]]
prefix = "/down"
upstream = "http://127.0.0.1:{down}"

[[gateway.routes]]
prefix = "/slow"
upstream = "{general}"
timeout = "300ms"
"#,
        general = general.url(),
        special = special.url(),
    );
    let cfg = gateway_config(&idp_gateway_toml(&idp, "", &routes));
    let gw = RunningGateway::start(&cfg).await;
    let token = idp_token(&idp, CLIENT_ID, CLIENT_SECRET).await;
    let c = client();
    let get = |path: &str, host: Option<&str>| {
        let mut req = c.get(gw.url(path)).bearer_auth(&token);
        if let Some(h) = host {
            req = req.header("host", h);
        }
        req.send()
    };

    let echo = json_of(get("/svc/a/b?q=1", None).await.expect("send")).await;
    assert_eq!(echo["path"], "/base/a/b?q=1");
    assert_eq!(general.count(), 1);
    let echo = json_of(get("/svc/special/x", None).await.expect("send")).await;
    assert_eq!(echo["path"], "/svc/special/x");
    assert_eq!(special.count(), 1);
    let echo = json_of(
        get("/svc/x", Some("Admin.Example.org:8443"))
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(echo["path"], "/admin/x");
    assert_eq!(
        echoed_one(&echo, "x-forwarded-host").as_deref(),
        Some("Admin.Example.org:8443")
    );
    assert_eq!(
        echoed_one(&echo, "x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(
        echoed_one(&echo, "x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );

    // No route: 404 JSON (after no token check: the path is simply not served).
    let resp = get("/elsewhere", None).await.expect("send");
    assert_refused(resp, 404, "route_not_found").await;

    // Upstream down: 502; too slow: 504. JSON, never the token.
    let resp = get("/down/x", None).await.expect("send");
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.expect("body");
    assert!(
        text.contains("upstream_unreachable") && !text.contains(&token),
        "{text}"
    );
    let resp = get("/slow/slow", None).await.expect("send");
    assert_eq!(resp.status(), 504);
    let text = resp.text().await.expect("body");
    assert!(
        text.contains("upstream_timeout") && !text.contains(&token),
        "{text}"
    );

    gw.stop().await;
}

#[tokio::test]
async fn bodies_stream_both_ways_and_hop_by_hop_headers_are_dropped() {
    let (idp, _up, cfg) = idp_and_routed_upstream("", "/").await;
    let gw = RunningGateway::start(&cfg).await;
    let token = idp_token(&idp, CLIENT_ID, CLIENT_SECRET).await;

    // 8 MiB in chunks of unknown total length.
    let chunks = (0..128).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 64 * 1024]));
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let resp = send(
        client()
            .post(gw.url("/upload"))
            .bearer_auth(&token)
            .header("connection", "x-hop")
            .header("x-hop", "1")
            .header("keep-alive", "timeout=5")
            .header("x-kept", "1")
            .body(body),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let echo = json_of(resp).await;
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body_len"], 8 * 1024 * 1024);
    assert!(echoed(&echo, "x-hop").is_empty());
    assert!(echoed(&echo, "keep-alive").is_empty());
    assert_eq!(echoed_one(&echo, "x-kept").as_deref(), Some("1"));

    gw.stop().await;
}

#[tokio::test]
async fn probes_metrics_and_the_decision_hook() {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder in this test binary");
    let (idp, up, cfg) = idp_and_routed_upstream("", "/api").await;
    // The next issue's route rules plug in here: this one refuses DELETE.
    let no_delete: Arc<dyn Decision> = Arc::new(|r: &DecisionRequest<'_>| {
        assert_eq!(r.mode, Mode::Proxy);
        assert_eq!(r.route, Some("/api"));
        if r.method == http::Method::DELETE {
            Verdict::Deny(
                Denied::new(format!(
                    "{} may not delete",
                    r.token.client_id.as_deref().unwrap_or("?")
                ))
                .with_scope("api:delete"),
            )
        } else {
            Verdict::allow()
        }
    });
    let gw = RunningGateway::start_with(
        &cfg,
        Arc::new(SystemClock),
        Some(no_delete),
        Some(Arc::new(move || handle.render())),
    )
    .await;
    let token = idp_token(&idp, CLIENT_ID, CLIENT_SECRET).await;
    let c = client();

    let resp = send(c.delete(gw.url("/api/x")).bearer_auth(&token)).await;
    assert_eq!(
        challenge(&resp),
        "Bearer realm=\"tokenwarden\", error=\"insufficient_scope\", error_description=\"agent-basic may not delete\", scope=\"api:delete\""
    );
    assert_refused(resp, 403, "insufficient_scope").await;
    assert_eq!(up.count(), 0);
    let resp = send(c.get(gw.url("/api/x")).bearer_auth(&token)).await;
    assert_eq!(resp.status(), 200);
    let resp = send(c.get(gw.url("/api/x"))).await;
    assert_eq!(resp.status(), 401);

    // Probes are not routed (no route serves /healthz) and need no token.
    let resp = send(c.get(gw.url("/healthz"))).await;
    assert_eq!(resp.status(), 200);
    let resp = send(c.get(gw.url("/readyz"))).await;
    assert_eq!(resp.status(), 200);
    let ready = json_of(resp).await;
    assert_eq!(ready["ready"], true);
    let detail = &ready["issuers"][idp.issuer()];
    assert_eq!(detail["keys_loaded"], true);
    assert_eq!(detail["key_ids"], json!(idp.key_ids().await));

    let text = send(c.get(gw.url("/metrics")))
        .await
        .text()
        .await
        .expect("body");
    for needle in [
        "tokenwarden_gateway_requests_total{mode=\"proxy\",route=\"/api\",method=\"DELETE\",outcome=\"forbidden\"} 1",
        "tokenwarden_gateway_requests_total{mode=\"proxy\",route=\"/api\",method=\"GET\",outcome=\"allowed\"} 1",
        "tokenwarden_gateway_requests_total{mode=\"proxy\",route=\"/api\",method=\"GET\",outcome=\"missing_token\"} 1",
        "tokenwarden_gateway_decision_seconds",
        "tokenwarden_gateway_upstream_seconds",
        "tokenwarden_verify_decisions_total",
        "tokenwarden_jwks_fetches_total",
    ] {
        assert!(text.contains(needle), "{needle} missing in:\n{text}");
    }
    assert!(!text.contains(&token));

    gw.stop().await;
}

#[tokio::test]
async fn introspecting_routes_see_revocation() {
    let idp = Idp::start_default().await;
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("introspect-secret");
    std::fs::write(&secret, CLIENT_SECRET).expect("secret");
    let issuer_extra = format!(
        "\n[gateway.issuers.introspection]\nclient_id = \"{CLIENT_ID}\"\nclient_secret = {{ file = \"{}\" }}\ncache_ttl = \"1s\"\nnegative_cache_ttl = \"1s\"\n",
        secret.display()
    );
    let routes = format!(
        "{}introspect = true\n{}",
        route_toml("/strict", &up.url()),
        route_toml("/", &up.url())
    );
    // Routes come first in the document; the issuer (with its introspection) after.
    let cfg = gateway_config(&idp_gateway_toml(&idp, &issuer_extra, &routes));
    let gw = RunningGateway::start(&cfg).await;
    let token = idp_token(&idp, CLIENT_ID, CLIENT_SECRET).await;
    let c = client();
    for path in ["/strict/x", "/plain"] {
        let resp = send(c.get(gw.url(path)).bearer_auth(&token)).await;
        assert_eq!(resp.status(), 200, "{path}");
    }
    let resp = send(
        c.post(idp.revocation_url())
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[("token", token.as_str())]),
    )
    .await;
    assert!(resp.status().is_success(), "revocation: {}", resp.status());
    // Past the positive introspection cache: the introspecting route refuses, the other (JWT
    // checked locally) still accepts until exp.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let resp = send(c.get(gw.url("/strict/x")).bearer_auth(&token)).await;
    assert_eq!(resp.status(), 401);
    assert!(
        challenge(&resp).contains("not active"),
        "{}",
        challenge(&resp)
    );
    let resp = send(c.get(gw.url("/plain")).bearer_auth(&token)).await;
    assert_eq!(resp.status(), 200);
    gw.stop().await;
}
