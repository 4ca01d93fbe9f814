//! No caller poses as another or as another host: identity-header look-alikes and method
//! overrides never reach the upstream (or are refused in forward-auth mode, where the gateway
//! cannot remove them), rules can name hosts, and the host is one host.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use tw_testkit::{ClientSpec, Idp, IdpConfig};

const RULES: &str = r#"
[gateway.authz]
sources = ["roles"]

[gateway.authz.roles]
"reader" = ["api:read"]

[[gateway.authz.rules]]
name = "admin-host"
hosts = ["Admin.Example.org"]
paths = ["/**"]
require_all = ["admin:all"]

[[gateway.authz.rules]]
name = "admin-user"
paths = ["/api/admin", "/api/admin/users/{id}", "/api/ασ/**", "/api/μ/**"]
require_all = ["admin:all"]

[[gateway.authz.rules]]
name = "export"
methods = ["GET"]
paths = ["/api/reports/export"]
require_all = ["admin:all"]

[[gateway.authz.rules]]
name = "read"
methods = ["GET", "HEAD"]
paths = ["/**"]
require_all = ["api:read"]
"#;

struct Setup {
    idp: Idp,
    up: Upstream,
    token: String,
}

async fn setup() -> Setup {
    let idp = Idp::start(
        IdpConfig::default()
            .client(ClientSpec::secret_basic("reader", "reader-secret").realm_roles(["reader"])),
    )
    .await;
    let token = idp_token(&idp, "reader", "reader-secret").await;
    let up = Upstream::start().await;
    Setup { idp, up, token }
}

async fn gateway(s: &Setup, top: &str) -> RunningGateway {
    let extra = format!("{top}\n{}\n{RULES}", route_toml("/", &s.up.url()));
    RunningGateway::start(&gateway_config(&idp_gateway_toml(&s.idp, "", &extra))).await
}

fn raw(target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    raw_http("GET", target, headers)
}

fn status(answer: &str) -> u16 {
    status_of(answer)
}

/// A Traefik-style forward-auth question about `GET uri`, with one more header.
async fn traefik(
    addr: std::net::SocketAddr,
    auth: &str,
    uri: &str,
    (name, value): (&str, &str),
) -> String {
    let headers = [
        ("Host", "127.0.0.1"),
        ("Authorization", auth),
        ("X-Forwarded-Uri", uri),
        ("X-Forwarded-Method", "GET"),
        (name, value),
    ];
    raw_request(addr, &raw("/auth", &headers)).await
}

#[tokio::test]
async fn identity_look_alikes_and_method_overrides_never_reach_the_upstream() {
    let s = setup().await;
    let gw = gateway(&s, "").await;
    let auth = format!("Bearer {}", s.token);
    let spoofs = [
        ("X_Auth_Permissions", "admin:*"),
        ("X_Auth_Subject", "root"),
        ("x-auth-subject", "root"),
        ("X-AUTH-CLIENT-ID", "ops-console"),
        ("x_auth_service_account", "true"),
        ("X-Auth_Issuer", "https://evil.example"),
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-Method-Override", "DELETE"),
        ("X-HTTP-Method", "DELETE"),
        ("x_http_method_override", "DELETE"),
    ];
    let mut headers = vec![("Host", "127.0.0.1"), ("Authorization", auth.as_str())];
    headers.extend(spoofs);
    let answer = raw_request(gw.addr, &raw("/api/x", &headers)).await;
    assert_eq!(status(&answer), 200, "{answer}");
    let echo: serde_json::Value =
        serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    let received: Vec<(String, String)> = echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_owned(),
                p[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (name, value) in &received {
        let folded = name.replace('_', "-");
        assert!(!folded.contains("method"), "{name} reached the upstream");
        assert!(
            !value.contains("root") && !value.contains("admin:*") && !value.contains("evil"),
            "{name}: {value} reached the upstream"
        );
    }
    assert_eq!(echoed(&echo, "x-auth-permissions"), ["api:read"]);
    assert_eq!(echoed(&echo, "x-auth-client-id"), ["reader"]);

    // Forward-auth: the gateway cannot strip what the front proxy forwards, so it refuses.
    for (name, value) in spoofs {
        let answer = traefik(gw.addr, &auth, "/api/x", (name, value)).await;
        assert_eq!(status(&answer), 400, "{name}: {answer}");
        assert!(answer.contains("\"code\":\"reserved_header\""), "{answer}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_kept_method_override_must_be_allowed_too() {
    let s = setup().await;
    let gw = gateway(&s, "keep_method_override = true").await;
    let auth = format!("Bearer {}", s.token);
    let base = [("Host", "127.0.0.1"), ("Authorization", auth.as_str())];
    let with = |name: &'static str, value: &'static str| {
        let mut h = base.to_vec();
        h.push((name, value));
        h
    };
    for (name, value) in [
        ("X-HTTP-Method-Override", "DELETE"),
        ("x_method_override", "PUT"),
    ] {
        let answer = raw_request(gw.addr, &raw("/api/x", &with(name, value))).await;
        assert_eq!(status(&answer), 403, "{name}: {answer}");
        assert!(answer.contains("no_matching_rule"), "{answer}");
    }
    let answer = raw_request(
        gw.addr,
        &raw("/api/x", &with("X-HTTP-Method-Override", "HEAD")),
    )
    .await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert!(answer.contains("x-http-method-override"), "kept: {answer}");
    let answer = raw_request(
        gw.addr,
        &raw("/api/x", &with("X-HTTP-Method-Override", "G E T")),
    )
    .await;
    assert_eq!(status(&answer), 400, "{answer}");
    assert!(answer.contains("invalid_method_override"), "{answer}");
    gw.stop().await;
}

#[tokio::test]
async fn rules_name_hosts_and_a_request_has_one_host() {
    let s = setup().await;
    let gw = gateway(&s, "").await;
    let auth = format!("Bearer {}", s.token);
    let ask = |target: &'static str, host: Vec<&'static str>| {
        let mut h: Vec<(&str, &str)> = host.into_iter().map(|v| ("Host", v)).collect();
        h.push(("Authorization", &auth));
        raw(target, &h)
    };
    // The host rule applies to every spelling of its host.
    for host in [
        "admin.example.org",
        "ADMIN.Example.ORG",
        "admin.example.org.",
        "admin.example.org:8443",
    ] {
        let answer = raw_request(gw.addr, &ask("/x", vec![host])).await;
        assert_eq!(status(&answer), 403, "{host}: {answer}");
        assert!(answer.contains("\"rule\":\"admin-host\""), "{answer}");
    }
    let answer = raw_request(gw.addr, &ask("/x", vec!["api.example.org"])).await;
    assert_eq!(status(&answer), 200, "{answer}");
    let answer = raw_request(
        gw.addr,
        &ask("http://admin.example.org/x", vec!["admin.example.org"]),
    )
    .await;
    assert_eq!(status(&answer), 403, "{answer}");
    // One host: the absolute form and Host must agree; no userinfo; one Host header.
    for (target, hosts) in [
        ("http://admin.example.org/x", vec!["127.0.0.1"]),
        ("/x", vec!["x@admin.example.org"]),
        ("http://x@admin.example.org/x", vec!["admin.example.org"]),
        ("/x", vec!["api.example.org", "admin.example.org"]),
    ] {
        let answer = raw_request(gw.addr, &ask(target, hosts.clone())).await;
        assert_eq!(status(&answer), 400, "{target} {hosts:?}: {answer}");
    }
    // Forward-auth: the host from X-Forwarded-Host (what the README's nginx snippet sets).
    for (fwd_host, want) in [("admin.example.org", 403), ("api.example.org", 200)] {
        let answer = raw_request(
            gw.addr,
            &raw(
                "/auth",
                &[
                    ("Host", "127.0.0.1:8800"),
                    ("Authorization", &auth),
                    ("X-Original-URI", "/x"),
                    ("X-Original-Method", "GET"),
                    ("X-Forwarded-Host", fwd_host),
                ],
            ),
        )
        .await;
        assert_eq!(status(&answer), want, "{fwd_host}: {answer}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn rules_hold_for_trailing_slashes_head_and_unicode_case() {
    let s = setup().await;
    let gw = gateway(&s, "").await;
    let auth = format!("Bearer {}", s.token);
    let get = |method: &'static str, target: String| {
        raw_http(
            method,
            &target,
            &[("Host", "api.example.org"), ("Authorization", &auth)],
        )
    };
    for (method, target) in [
        ("GET", "/api/admin/users/42/"),
        ("GET", "/api/admin/"),
        ("GET", "/API/ADMIN/USERS/42/"),
        ("HEAD", "/api/reports/export"),
        ("HEAD", "/api/reports/export/"),
        ("GET", "/api/%CE%B1%CF%82/x"),
        ("GET", "/api/%CE%91%CE%A3/x"),
        ("GET", "/api/%C2%B5/x"),
    ] {
        let answer = raw_request(gw.addr, &get(method, target.to_owned())).await;
        assert_eq!(status(&answer), 403, "{method} {target}: {answer}");
    }
    let answer = raw_request(gw.addr, &get("GET", "/api/items/".to_owned())).await;
    assert_eq!(status(&answer), 200, "{answer}");
    gw.stop().await;
}

#[tokio::test]
async fn hosts_with_bad_ports_routing_headers_and_envoy_methods_cannot_be_used() {
    let s = setup().await;
    let gw = gateway(&s, "strip_headers = [\"X-Tenant\"]").await;
    let auth = format!("Bearer {}", s.token);
    // A host that other servers read as admin.example.org is refused, not let past its rule.
    for host in [
        "admin.example.org:80abc",
        "admin.example.org:80:80",
        "admin.example.org:+80",
        "admin.example.org%2e",
        "[admin.example.org]",
        "admin.example.org;x",
    ] {
        let answer = raw_request(
            gw.addr,
            &raw("/x", &[("Host", host), ("Authorization", &auth)]),
        )
        .await;
        assert_eq!(status(&answer), 400, "{host}: {answer}");
        assert!(answer.contains("invalid_host"), "{answer}");
        let answer = traefik(gw.addr, &auth, "/x", ("X-Forwarded-Host", host)).await;
        assert_eq!(status(&answer), 400, "forward-auth {host}: {answer}");
    }

    // Headers that make frameworks route elsewhere or name a user never reach the upstream.
    let routing = [
        ("Forwarded", "host=admin.example.org;proto=https"),
        ("X-Original-URL", "/api/admin/users"),
        ("X-Rewrite-URL", "/api/admin/users"),
        ("X_Original_URL", "/api/admin/users"),
        ("X-Forwarded-Prefix", "/admin"),
        ("X-Original-URI", "/api/admin"),
        ("X-Forwarded-Uri", "/api/admin"),
        ("X-Host", "admin.example.org"),
        ("X-Original-Host", "admin.example.org"),
        ("X-Real-IP", "10.0.0.1"),
        ("Remote-User", "root"),
        ("X-Remote-User", "root"),
        ("X-Tenant", "other"),
        ("x_tenant", "other"),
    ];
    let mut headers = vec![
        ("Host", "api.example.org"),
        ("Authorization", auth.as_str()),
    ];
    headers.extend(routing);
    let answer = raw_request(gw.addr, &raw("/api/items", &headers)).await;
    assert_eq!(status(&answer), 200, "{answer}");
    let body = answer.split_once("\r\n\r\n").unwrap().1.to_lowercase();
    for (name, value) in routing {
        assert!(
            !body.contains(&value.to_lowercase()),
            "{name}: {value} reached the upstream: {body}"
        );
    }
    // In forward-auth mode, the ones front proxies never set themselves are refused.
    for name in [
        "X-Original-URL",
        "X-Rewrite-URL",
        "Remote-User",
        "X-Tenant",
        "x_tenant",
    ] {
        let answer = traefik(gw.addr, &auth, "/api/items", (name, "/api/admin/users")).await;
        assert_eq!(status(&answer), 400, "{name}: {answer}");
    }

    // Envoy asks with the original method: a client's method header cannot replace it.
    let envoy = |method: &str, target: &str, extra: &[(&str, &str)]| {
        let mut headers = vec![
            ("Host", "api.example.org"),
            ("Authorization", auth.as_str()),
        ];
        headers.extend_from_slice(extra);
        raw_http(method, target, &headers)
    };
    let answer = raw_request(gw.addr, &envoy("DELETE", "/auth/api/items/7", &[])).await;
    assert_eq!(status(&answer), 403, "{answer}");
    // (X-Original-Method makes the request look like nginx's, which only takes 401/403.)
    for (name, want) in [("X-Forwarded-Method", 400), ("X-Original-Method", 401)] {
        let answer = raw_request(
            gw.addr,
            &envoy("DELETE", "/auth/api/items/7", &[(name, "GET")]),
        )
        .await;
        assert_eq!(status(&answer), want, "{name}: {answer}");
        assert!(answer.contains("another method"), "{answer}");
    }
    let answer = raw_request(gw.addr, &envoy("GET", "/auth/api/items/7", &[])).await;
    assert_eq!(status(&answer), 200, "{answer}");
    // Dot segments after the endpoint are a forward-auth path, refused, not a proxied request.
    let answer = raw_request(gw.addr, &envoy("GET", "/auth/%2e%2e/api/items", &[])).await;
    assert_eq!(status(&answer), 400, "{answer}");
    assert!(answer.contains("dot_segment"), "{answer}");
    gw.stop().await;
}
