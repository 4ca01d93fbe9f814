//! The gateway authorizes exactly what the upstream will serve: a corpus of hostile path
//! spellings, sent by a caller who may read everything but `/api/admin/**`, in every mode —
//! proxy mode to an echo upstream and to a real nginx, forward-auth through a real nginx running
//! the README's snippet verbatim (`proxy_pass` with and without a URI part), and the Traefik and
//! Envoy header forms. For each allowed request, the path the upstream resolves (nginx for real;
//! models of ASP.NET Core, IIS, Tomcat, Express and Go for the others) must be one the rules
//! allow this caller too; everything else must be refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use proptest::prelude::*;
use std::net::SocketAddr;
use tw_http::path::{PathPolicy, canonicalize};
use tw_testkit::upstreams::{UPSTREAM_MODELS, resolve_dots};
use tw_testkit::{ClientSpec, Idp, IdpConfig, Nginx, repo_root};

const RULES: &str = r#"
[gateway.authz]
sources = ["roles"]

[gateway.authz.roles]
"reader" = ["public:read", "api:read"]

[[gateway.authz.rules]]
name = "admin"
paths = ["/api/admin", "/api/admin/**"]
require_all = ["admin:all"]

[[gateway.authz.rules]]
name = "public"
paths = ["/api/public", "/api/public/**"]
require_all = ["public:read"]

[[gateway.authz.rules]]
name = "catch-all"
paths = ["/**"]
require_all = ["api:read"]
"#;

/// Where the reader must never arrive, in any case (several servers route case-insensitively).
fn is_admin(routed: &str) -> bool {
    let p = routed.to_lowercase();
    p == "/api/admin" || p.starts_with("/api/admin/")
}

/// Spellings of "from `/api/public/`, go to `/api/admin/users`" and of `/api/admin` itself, and
/// odd spellings of allowed paths.
fn corpus() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let dots = [
        "..",
        "%2e%2e",
        "%2E%2E",
        ".%2e",
        "%2e.",
        "%2E.",
        ".%2E",
        "%2e%2E",
        "..%00",
        "..%20",
        "..%09",
        "...",
        "..;",
        "..;x=1",
        "%2e%2e;",
        "..%3b",
        "%u002e%u002e",
        "%c0%ae%c0%ae",
        "%e0%80%ae%e0%80%ae",
        "%252e%252e",
        "%ef%bc%8e%ef%bc%8e",
    ];
    let slashes = [
        "/",
        "%2f",
        "%2F",
        "\\",
        "%5c",
        "%5C",
        "//",
        "/./",
        "%252f",
        "%c0%af",
        "%ef%bc%8f",
        "%e2%88%95",
    ];
    for d in dots {
        for s in slashes {
            out.push(format!("/api/public/{d}{s}admin/users"));
        }
    }
    for p in [
        "/api/admin/users",
        "/api/ADMIN/users",
        "/API/admin/users",
        "/Api/Admin/users",
        "/api/%61dmin/users",
        "/api/%41DMIN/users",
        "/api/adm%69n/users",
        "/api/admin%2fusers",
        "/api/admin%2Fusers",
        "/api/admin;jsessionid=1/users",
        "/api/admin;/users",
        "/api;/admin/users",
        "/api/admin./users",
        "/api/admin../users",
        "/api/admin%20/users",
        "/api/admin%2e/users",
        "/api//admin/users",
        "///api///admin///users",
        "/api/./admin/users",
        "/api/%2e/admin/users",
        "/./api/admin/users",
        "/api/x/../admin/users",
        "/api/x/%2e%2e/admin/users",
        "/docs/../api/admin/users",
        "/docs/%2e%2e/api/admin/users",
        "/docs/x%252f..%252f..%252fapi/admin/users",
        "/docs/..%2f..%2fapi/admin/users",
        "/api/public/x%3f/../../admin/users",
        "/api/public/x%23/../../admin/users",
        "/api/public/%3f/../../admin/users",
        "/api/admin%00/users",
        "/api/admin%0d%0a/users",
        "/api/admin%ff/users",
        "/api/ad%00min/users",
        "/api/\u{41}dmin/users",
        "/api/%E2%84%AAdmin/users",
        "/api/admin\\users",
        "/api\\admin\\users",
        "/api/public/..\\..\\api/admin",
        "/api/admin#/users",
        "/api/admin?x=/../public",
        "/api/public/../admin",
        "/api/public/..",
        "/api/public/../..",
        "/api/public/../../api/admin",
        "/../api/admin/users",
        "/%2e%2e/api/admin/users",
        "/api/admin",
        "/api/admin/",
        "/api/admin%2f",
        // Odd but unambiguous spellings of paths the reader may use: these must pass.
        "/api/public/x/../items",
        "/api/%70ublic/items",
        "/api//public/items",
        "/API/PUBLIC/items",
        "/api/public/./items",
        "/api/public/items/",
        "/api/public/%7Eitems",
        "/api/public/caf%C3%A9",
        "/api/admin/../public/items",
        "/docs/x",
    ] {
        out.push(p.to_owned());
    }
    out.sort();
    out.dedup();
    out
}

/// What an allowed answer tells about where the request went.
struct Answer {
    status: u16,
    body: String,
}

async fn raw_get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Answer {
    let mut all = vec![("Host", "127.0.0.1")];
    all.extend_from_slice(headers);
    let raw = raw_request(addr, &raw_http("GET", target, &all)).await;
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Answer {
        status: status_of(&raw),
        body,
    }
}

/// The raw path the echo upstream received.
fn echoed_path(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["path"].as_str().expect("path").to_owned()
}

/// Every model's routed path for `raw` must be allowed for the reader.
fn assert_models_allow(raw: &str, context: &str) {
    for (name, model) in UPSTREAM_MODELS {
        if let Some(routed) = model(raw) {
            assert!(
                !is_admin(&routed),
                "{context}: {name} routes {raw:?} to {routed:?}, which the reader may not reach"
            );
        }
    }
}

struct Setup {
    idp: Idp,
    token: String,
}

async fn setup() -> Setup {
    let idp = Idp::start(
        IdpConfig::default()
            .client(ClientSpec::secret_basic("reader", "reader-secret").realm_roles(["reader"])),
    )
    .await;
    let token = idp_token(&idp, "reader", "reader-secret").await;
    Setup { idp, token }
}

fn gateway_toml(idp: &Idp, upstream: Option<&str>) -> String {
    let route = upstream.map(|u| route_toml("/", u)).unwrap_or_default();
    idp_gateway_toml(
        idp,
        "",
        &format!("exempt_paths = [\"/docs/*\"]\n{route}\n{RULES}"),
    )
}

/// A real nginx upstream: the answer names the location that served the request.
const NGINX_UPSTREAM: &str = r#"
server {
    listen 127.0.0.1:{port};
    location /api/admin/ { return 200 "admin"; }
    location = /api/admin { return 200 "admin"; }
    location /api/public/ { return 200 "public"; }
    location / { return 200 "other"; }
}
"#;

#[tokio::test]
async fn proxy_mode_forwards_only_what_it_authorized() {
    let s = setup().await;
    let auth = format!("Bearer {}", s.token);
    let echo = Upstream::start().await;
    let to_echo =
        RunningGateway::start(&gateway_config(&gateway_toml(&s.idp, Some(&echo.url())))).await;
    let nginx = Nginx::start(NGINX_UPSTREAM).await;
    let to_nginx =
        RunningGateway::start(&gateway_config(&gateway_toml(&s.idp, Some(&nginx.url(""))))).await;

    let cases = corpus();
    assert!(cases.len() >= 150, "{} cases", cases.len());
    let mut allowed = 0;
    for case in &cases {
        let headers = [("Authorization", auth.as_str())];
        let a = raw_get(to_echo.addr, case, &headers).await;
        match a.status {
            200 => {
                allowed += 1;
                let received = echoed_path(&a.body);
                assert_models_allow(&received, &format!("proxy mode, sent {case:?}"));
                // What the upstream received is canonical: every decoding server agrees on it.
                let received_path = received.split('?').next().unwrap_or_default();
                let again = canonicalize(received_path, PathPolicy::default()).expect("canonical");
                assert_eq!(again.encoded(), received_path, "{case:?}");
            }
            400 | 403 | 404 => {}
            other => panic!("{case:?}: unexpected status {other}: {}", a.body),
        }
        let a = raw_get(to_nginx.addr, case, &headers).await;
        assert!(
            !(a.status == 200 && a.body == "admin"),
            "{case:?} reached nginx's admin location through the gateway"
        );
    }
    // The corpus is not all refusals: resolvable spellings of allowed paths pass.
    assert!(allowed >= 5, "only {allowed} allowed");
    let ok = raw_get(
        to_echo.addr,
        "/api/public/x/../items",
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(echoed_path(&ok.body), "/api/public/items");
    let denied = raw_get(
        to_echo.addr,
        "/api/public/../admin/users",
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert!(
        denied.body.contains("insufficient_scope"),
        "{}",
        denied.body
    );
    assert!(
        denied.body.contains("\"rule\":\"admin\""),
        "{}",
        denied.body
    );
    let absolute = raw_get(
        to_echo.addr,
        "http://127.0.0.1/api/public/../admin/users",
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!(absolute.status, 403, "{}", absolute.body);

    to_echo.stop().await;
    to_nginx.stop().await;
}

/// The README's nginx snippet, as written, with the gateway and upstream ports put in, plus an
/// nginx location of its own for `/api/admin/` (the location an escaping path would reach).
fn readme_nginx(gateway: SocketAddr, upstream: SocketAddr, proxy_pass_uri: bool) -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let start = readme
        .find("```nginx\n")
        .expect("an nginx block in the README")
        + 9;
    let len = readme[start..].find("```").expect("end of the block");
    let snippet: String = readme[start..start + len]
        .lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        snippet.contains("proxy_pass http://127.0.0.1:8000;"),
        "{snippet}"
    );
    let mut snippet = snippet
        .replace("127.0.0.1:8800", &gateway.to_string())
        .replace("127.0.0.1:8000", &upstream.to_string());
    if proxy_pass_uri {
        snippet = snippet.replace(
            &format!("proxy_pass http://{upstream};"),
            &format!("proxy_pass http://{upstream}/;"),
        );
    }
    // (`return` would answer before `auth_request` runs: nginx's rewrite phase comes first.)
    format!(
        "server {{\n    listen 127.0.0.1:{{port}};\n{snippet}\n    location /api/admin/ {{\n        auth_request /_tokenwarden;\n        proxy_set_header X-Nginx-Location admin;\n        proxy_pass http://{upstream};\n    }}\n}}\n"
    )
}

#[tokio::test]
async fn forward_auth_through_the_readme_nginx_snippet_authorizes_what_nginx_routes() {
    let s = setup().await;
    let auth = format!("Bearer {}", s.token);
    let echo = Upstream::start().await;
    let gw = RunningGateway::start(&gateway_config(&gateway_toml(&s.idp, None))).await;
    let cases = corpus();
    for proxy_pass_uri in [false, true] {
        let nginx = Nginx::start(&readme_nginx(gw.addr, echo.addr, proxy_pass_uri)).await;
        let front: SocketAddr = format!("127.0.0.1:{}", nginx.port()).parse().expect("addr");
        let mut allowed = 0;
        for case in &cases {
            let a = raw_get(front, case, &[("Authorization", &auth)]).await;
            let context = format!(
                "nginx forward-auth (proxy_pass URI part: {proxy_pass_uri}), sent {case:?}"
            );
            assert!(
                !a.body.contains("x-nginx-location"),
                "{context}: reached nginx's admin location"
            );
            match a.status {
                200 => {
                    allowed += 1;
                    assert_models_allow(&echoed_path(&a.body), &context);
                }
                // 301: nginx's own redirect to `location /api/admin/`, which then needs the admin rule.
                301 | 400 | 401 | 403 | 404 => {}
                other => panic!(
                    "{context}: unexpected status {other}\n{}",
                    nginx.error_log()
                ),
            }
        }
        assert!(allowed >= 5, "only {allowed} allowed");
        // Spoofed identity headers and look-alikes never reach the upstream.
        for name in [
            "X-Auth-Permissions",
            "X_Auth_Permissions",
            "x-auth-subject",
            "X-HTTP-Method-Override",
        ] {
            let a = raw_get(
                front,
                "/api/public/x",
                &[("Authorization", &auth), (name, "admin:*")],
            )
            .await;
            assert!(
                a.status == 403 || (a.status == 200 && !a.body.to_lowercase().contains("admin:*")),
                "{name}: {} {}",
                a.status,
                a.body
            );
        }
        let a = raw_get(front, "/api/public/x", &[("Authorization", &auth)]).await;
        assert_eq!(a.status, 200, "{}", nginx.error_log());
        let echo_json: serde_json::Value = serde_json::from_str(&a.body).expect("json");
        assert_eq!(
            echoed(&echo_json, "x-auth-permissions"),
            ["api:read public:read"]
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn traefik_and_envoy_forms_refuse_what_any_upstream_would_route_to_admin() {
    let s = setup().await;
    let auth = format!("Bearer {}", s.token);
    let gw = RunningGateway::start(&gateway_config(&gateway_toml(&s.idp, None))).await;
    for case in corpus() {
        if case.contains('#') {
            continue; // not a path a proxy forwards
        }
        let traefik = raw_get(
            gw.addr,
            "/auth",
            &[
                ("Authorization", &auth),
                ("X-Forwarded-Method", "GET"),
                ("X-Forwarded-Host", "api.example.org"),
                ("X-Forwarded-Uri", &case),
            ],
        )
        .await;
        if traefik.status == 200 {
            assert_models_allow(&case, "traefik form");
        } else {
            assert!(
                matches!(traefik.status, 400 | 403),
                "{case:?}: {}",
                traefik.status
            );
        }
        let envoy = raw_get(
            gw.addr,
            &format!("/auth{case}"),
            &[("Authorization", &auth)],
        )
        .await;
        if envoy.status == 200 {
            assert_models_allow(&case, "envoy form");
        } else {
            assert!(
                matches!(envoy.status, 400 | 403 | 404),
                "{case:?}: {}",
                envoy.status
            );
        }
    }
    gw.stop().await;
}

#[test]
fn documented_traefik_and_envoy_contracts_name_every_identity_header() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let identity = [
        "x-auth-subject",
        "x-auth-client-id",
        "x-auth-service-account",
        "x-auth-scopes",
        "x-auth-issuer",
        "x-auth-permissions",
    ];
    let traefik = readme
        .lines()
        .find(|l| l.contains("authResponseHeaders:"))
        .expect("Traefik authResponseHeaders in the README")
        .to_lowercase();
    let envoy = readme
        .lines()
        .skip_while(|l| !l.contains("allowed_upstream_headers:"))
        .nth(1)
        .expect("Envoy allowed_upstream_headers in the README")
        .to_lowercase();
    for h in identity {
        assert!(
            traefik.contains(h),
            "Traefik's authResponseHeaders lacks {h}"
        );
        assert!(
            envoy.contains(&format!("exact: {h}")),
            "Envoy's allowed_upstream_headers lacks {h}"
        );
    }
    let envoy_request = readme
        .lines()
        .skip_while(|l| !l.contains("allowed_headers:"))
        .nth(1)
        .expect("Envoy allowed_headers")
        .to_lowercase();
    for p in [
        "prefix: x-auth",
        "prefix: x_",
        "exact: authorization",
        "exact: x-http-method-override",
        "exact: x-http-method",
        "exact: x-method-override",
    ] {
        assert!(
            envoy_request.contains(p),
            "Envoy's allowed_headers lacks {p}"
        );
    }
}

/// Paths built from the pieces attackers combine.
fn hostile_path() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "api",
        "API",
        "admin",
        "Admin",
        "%61dmin",
        "public",
        "x",
        "docs",
        ".",
        "..",
        "%2e",
        "%2e%2e",
        ".%2e",
        "",
        "%2f",
        "%5c",
        "\\",
        ";",
        ";x=1",
        "%3b",
        "%25",
        "%00",
        "%20",
        "%ff",
        "%c0%ae",
        "admin.",
        "%3f",
        "%2F..",
        "..%2f",
        "ad",
        "min",
        "%ef%bc%8f",
        "~",
        "-",
        "%7e",
    ]);
    prop::collection::vec(prop::collection::vec(piece, 1..4), 1..7).prop_map(|segs| {
        let mut p = String::new();
        for seg in segs {
            p.push('/');
            p.push_str(&seg.concat());
        }
        p
    })
}

/// Found by the property below: Express routes the raw `/api/admin/..` into the admin area while
/// its canonical path is `/api/`. The raw spelling never reaches an upstream: the gateway marks
/// it as having dot segments (forward-auth refuses it) and proxies the canonical spelling.
#[test]
fn a_dot_segment_leaving_the_admin_area_is_marked() {
    let policy = PathPolicy {
        case_insensitive: true,
        ..PathPolicy::default()
    };
    let c = canonicalize("/api/admin/..", policy).expect("canonical");
    assert!(!is_admin(c.matching()), "{:?}", c.matching());
    assert!(c.had_dot_segments());
    assert!(!is_admin(c.encoded()), "{:?}", c.encoded());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    /// Whatever a modelled server routes to the admin area, the canonical path names the admin
    /// area too (so the admin rule applies), or canonicalization refuses the path, or the raw
    /// path had dot segments: such a path never reaches an upstream raw (proxy mode forwards the
    /// canonical spelling, checked next; forward-auth refuses it, see `had_dot_segments`). And
    /// the forwarded spelling resolves, on every server that decodes, to what was authorized.
    #[test]
    fn canonical_paths_cover_what_upstreams_route(raw in hostile_path()) {
        let policy = PathPolicy { case_insensitive: true, ..PathPolicy::default() };
        if let Ok(c) = canonicalize(&raw, policy) {
            for (name, model) in UPSTREAM_MODELS {
                if let Some(routed) = model(&raw) {
                    prop_assert!(
                        !is_admin(&routed) || is_admin(c.matching()) || c.had_dot_segments(),
                        "{} routes {:?} to {:?}; the gateway matched {:?}", name, raw, routed, c.matching()
                    );
                }
                if *name != "express" && let Some(routed) = model(c.encoded()) {
                    let routed = resolve_dots(&routed, true, false).unwrap_or(routed);
                    prop_assert_eq!(routed.to_lowercase(), c.matching().to_owned(), "{} {:?}", name, raw);
                }
            }
            let again = canonicalize(c.encoded(), policy).expect("canonical is canonical");
            prop_assert_eq!(again.encoded(), c.encoded());
        }
    }
}
