//! The forward-auth endpoint behind a real nginx (`auth_request` + `auth_request_set`), and asked
//! directly the way Traefik (`forwardAuth`) and Envoy (`ext_authz` HTTP service) ask.

mod common;

use common::*;
use http::header::WWW_AUTHENTICATE;
use serde_json::Value;
use tw_testkit::{Idp, Nginx};

/// nginx in front of `upstream`, asking the gateway at `/auth` for every request and passing the
/// identity on. `error_page` turns the gateway's 503 (which `auth_request` reports as a 500) back
/// into a 503 with the gateway's `Retry-After`.
fn nginx_conf(gateway: &str, upstream: &str) -> String {
    r#"
server {
    listen 127.0.0.1:{port};

    location / {
        auth_request /_tokenwarden;
        auth_request_set $tw_subject $upstream_http_x_auth_subject;
        auth_request_set $tw_client $upstream_http_x_auth_client_id;
        auth_request_set $tw_sa $upstream_http_x_auth_service_account;
        auth_request_set $tw_scopes $upstream_http_x_auth_scopes;
        auth_request_set $tw_issuer $upstream_http_x_auth_issuer;
        auth_request_set $tw_status $upstream_status;
        auth_request_set $tw_retry $upstream_http_retry_after;
        error_page 500 = @tw_error;

        # Always set (an empty value removes the header), so clients cannot spoof them.
        proxy_set_header X-Auth-Subject $tw_subject;
        proxy_set_header X-Auth-Client-Id $tw_client;
        proxy_set_header X-Auth-Service-Account $tw_sa;
        proxy_set_header X-Auth-Scopes $tw_scopes;
        proxy_set_header X-Auth-Issuer $tw_issuer;
        proxy_pass UPSTREAM;
    }

    location = /_tokenwarden {
        internal;
        proxy_pass GATEWAY/auth;
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_set_header X-Original-URI $request_uri;
        proxy_set_header X-Original-Method $request_method;
        proxy_set_header X-Forwarded-Host $host;
    }

    location @tw_error {
        if ($tw_status = 503) {
            add_header Retry-After $tw_retry always;
            return 503;
        }
        return 500;
    }
}
"#
    .replace("UPSTREAM", upstream)
    .replace("GATEWAY", gateway)
}

#[tokio::test]
async fn nginx_auth_request_passes_identity_and_refusals() {
    let idp = Idp::start_default().await;
    let up = Upstream::start().await;
    let cfg = gateway_config(&idp_gateway_toml(
        &idp,
        "",
        "exempt_paths = [\"/public/*\"]",
    ));
    let gw = RunningGateway::start(&cfg).await;
    let nginx = Nginx::start(&nginx_conf(&gw.url(""), &up.url())).await;
    let token = idp_token(&idp, CLIENT_ID, CLIENT_SECRET).await;
    let info = idp.client_info(CLIENT_ID).await;
    let c = client();

    // A valid token: the upstream answers, with the identity from the gateway.
    let resp = send(c.get(nginx.url("/api/items?x=1")).bearer_auth(&token)).await;
    assert_eq!(resp.status(), 200, "{}", nginx.error_log());
    let echo = json_of(resp).await;
    assert_eq!(echo["path"], "/api/items?x=1");
    assert_agent_basic_identity(&echo, &idp, &info);

    // No token: 401 with the challenge reaching the client.
    let resp = send(c.get(nginx.url("/api/items"))).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(challenge(&resp), BARE_CHALLENGE);

    // A bad token: 401 invalid_token.
    let resp = send(
        c.get(nginx.url("/api/items"))
            .bearer_auth(format!("{token}x")),
    )
    .await;
    assert_eq!(resp.status(), 401);
    let ch = challenge(&resp);
    assert!(ch.contains("error=\"invalid_token\""), "{ch}");

    // A malformed Authorization: 401 (nginx would turn a 400 into a 500), invalid_request.
    let resp = send(
        c.get(nginx.url("/api/items"))
            .header("authorization", "Bearer a b"),
    )
    .await;
    assert_eq!(resp.status(), 401);
    let ch = challenge(&resp);
    assert!(ch.contains("error=\"invalid_request\""), "{ch}");

    // Exempt: no token needed.
    let resp = send(c.get(nginx.url("/public/doc.html"))).await;
    assert_eq!(resp.status(), 200);
    let echo = json_of(resp).await;
    assert!(echoed(&echo, "x-auth-subject").is_empty(), "{echo}");

    // A client sending an identity header is refused (403 behind nginx), with a token or
    // without, on an exempt path too: nothing spoofed reaches the upstream.
    for (path, with_token) in [("/api/items", true), ("/public/doc.html", false)] {
        let mut req = c.get(nginx.url(path)).header("X-Auth-Subject", "admin");
        if with_token {
            req = req.bearer_auth(&token);
        }
        assert_eq!(send(req).await.status(), 403, "{path}");
    }

    // A client adding its own X-Forwarded-Uri cannot borrow an exempt path.
    let resp = send(
        c.get(nginx.url("/api/items"))
            .header("X-Forwarded-Uri", "/public/x"),
    )
    .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(up.count(), 2, "only the valid and the exempt requests");
    assert!(!nginx.access_log().contains(&token));

    gw.stop().await;
}

#[tokio::test]
async fn nginx_reports_unavailable_keys_as_503_with_retry_after() {
    // An issuer whose keys can never load: verification is unavailable, not refused.
    let dead = closed_port().await;
    let up = Upstream::start().await;
    let cfg = gateway_config(&format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\n\n[[gateway.issuers]]\nissuer = \"http://127.0.0.1:{dead}/realms/x\"\n"
    ));
    let gw = RunningGateway::start(&cfg).await;
    let c = client();
    let resp = send(c.get(gw.url("/readyz"))).await;
    assert_eq!(resp.status(), 503);
    let ready = json_of(resp).await;
    assert_eq!(
        ready["issuers"][format!("http://127.0.0.1:{dead}/realms/x")]["keys_loaded"],
        false
    );

    // A token for that issuer (unsigned garbage is enough: keys are needed before the signature).
    use tw_verify::testing::b64;
    let token = format!(
        "{}.{}.{}",
        b64(r#"{"alg":"RS256","kid":"k"}"#),
        b64(format!(
            r#"{{"iss":"http://127.0.0.1:{dead}/realms/x","exp":4000000000}}"#
        )),
        b64("not a signature"),
    );
    let direct = send(
        c.get(gw.url("/auth"))
            .bearer_auth(&token)
            .header("x-forwarded-uri", "/api"),
    )
    .await;
    assert_eq!(direct.headers()["retry-after"], "1");
    assert!(direct.headers().get(WWW_AUTHENTICATE).is_none());
    assert_refused(direct, 503, "temporarily_unavailable").await;

    let nginx = Nginx::start(&nginx_conf(&gw.url(""), &up.url())).await;
    let resp = send(c.get(nginx.url("/api")).bearer_auth(&token)).await;
    assert_eq!(resp.status(), 503, "{}", nginx.error_log());
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(up.count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn traefik_and_envoy_style_requests() {
    let idp = Idp::start_default().await;
    let cfg = gateway_config(&idp_gateway_toml(&idp, "", "exempt_paths = [\"/health\"]"));
    let gw = RunningGateway::start(&cfg).await;
    let token = idp_token(&idp, CLIENT_ID, CLIENT_SECRET).await;
    let c = client();
    let identity = |resp: &reqwest::Response| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = resp
            .headers()
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("x-auth-"))
            .map(|(k, v)| (k.to_string(), v.to_str().expect("ascii").to_owned()))
            .collect();
        v.sort();
        v
    };

    // Traefik forwardAuth: GET to the endpoint, the original request in X-Forwarded-*, the
    // client's headers (Authorization included) copied.
    let traefik = |auth: Option<&str>, uri: &str, method: &str| {
        let mut req = c
            .get(gw.url("/auth"))
            .header("X-Forwarded-Method", method)
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", "api.example.org")
            .header("X-Forwarded-Uri", uri)
            .header("X-Forwarded-For", "203.0.113.7");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        send(req)
    };
    let resp = traefik(
        Some(&format!("Bearer {token}")),
        "/api/items?page=2",
        "POST",
    )
    .await;
    assert_eq!(resp.status(), 200);
    let ids = identity(&resp);
    assert!(
        ids.contains(&("x-auth-client-id".into(), CLIENT_ID.into())),
        "{ids:?}"
    );
    assert!(
        ids.contains(&("x-auth-service-account".into(), "true".into())),
        "{ids:?}"
    );
    assert_eq!(resp.text().await.expect("body"), "");
    let resp = traefik(None, "/api/items", "GET").await;
    assert_eq!(resp.status(), 401);
    assert_eq!(challenge(&resp), BARE_CHALLENGE);
    // Exempt: every identity header named, empty, so the proxy overwrites what a client sent.
    let resp = traefik(None, "/health?probe=1", "GET").await;
    assert_eq!(resp.status(), 200);
    let blank = identity(&resp);
    assert_eq!(blank.len(), 6, "{blank:?}");
    assert!(blank.iter().all(|(_, v)| v.is_empty()), "{blank:?}");
    // Traefik passes statuses through: a malformed header stays a 400.
    let resp = traefik(Some("Bearer a b"), "/api", "GET").await;
    assert_eq!(resp.status(), 400);

    // Envoy ext_authz (HTTP service): the original path after the endpoint path, the original
    // method, the original headers.
    let resp = send(
        c.delete(gw.url("/auth/api/items/7?force=true"))
            .bearer_auth(&token)
            .header("x-envoy-expected-rq-timeout-ms", "200")
            .header("x-request-id", "5d0c5c1e-aaaa-bbbb-cccc-000000000001"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(identity(&resp).iter().any(|(k, _)| k == "x-auth-subject"));
    let resp = send(c.post(gw.url("/auth/api/items"))).await;
    assert_eq!(resp.status(), 401);
    let resp = send(c.get(gw.url("/auth/health"))).await;
    assert_eq!(resp.status(), 200);
    // A client header naming another path than Envoy's: refused as malformed, not exempt.
    let resp = send(
        c.get(gw.url("/auth/admin"))
            .header("x-original-uri", "/health"),
    )
    .await;
    assert_eq!(
        resp.status(),
        401,
        "nginx-style header present: 401 rather than 400"
    );
    let body: Value = json_of(resp).await;
    assert_eq!(body["error"]["code"], "invalid_request");

    gw.stop().await;
}
