//! The `/dev` controls have no authentication: only callers on this machine reach them, never a
//! cross-site request from a browser; the realm endpoints stay open to every caller.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use axum::body::Body;
use axum::http::{Request, header};
use common::*;
use std::net::SocketAddr;

const REMOTE: &str = "192.0.2.7:41000";

fn peer(addr: &str) -> Option<SocketAddr> {
    Some(addr.parse().unwrap())
}

fn rotate(origin: Option<&str>) -> Request<Body> {
    let mut req = Request::post("/dev/realms/lab/rotate-keys");
    if let Some(origin) = origin {
        req = req.header(header::ORIGIN, origin);
    }
    req.body(Body::empty()).unwrap()
}

async fn signing_kid(issuer: &tw_devissuer::DevIssuer) -> String {
    header_kid(&access_token(
        &client_credentials(issuer, "lab", LAB_AGENT.0, LAB_AGENT.1).await,
    ))
}

fn assert_refused(r: &Reply, says: &str) {
    assert_eq!(r.status, 403, "{}", r.json);
    assert_eq!(r.json["error"]["code"], "dev_control_refused", "{}", r.json);
    let message = r.json["error"]["message"].as_str().unwrap();
    assert!(message.contains(says), "{message}");
}

#[tokio::test]
async fn another_host_cannot_use_the_controls_but_gets_tokens() {
    let issuer = issuer_with(&[fixture("lab-realm.json")], &clock());
    let kid = signing_kid(&issuer).await;

    let r = send_from(&issuer, rotate(None), peer(REMOTE)).await;
    assert_refused(&r, "192.0.2.7");
    assert_refused(&r, "no authentication");
    assert_eq!(signing_kid(&issuer).await, kid, "the key was not rotated");
    for req in [
        Request::post("/dev/reload").body(Body::empty()).unwrap(),
        Request::get("/dev/report").body(Body::empty()).unwrap(),
    ] {
        assert_refused(&send_from(&issuer, req, peer(REMOTE)).await, "loopback");
    }

    // The OAuth endpoints answer remote callers as before.
    let token = Request::post(token_path("lab"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(
            header::AUTHORIZATION,
            "Basic bGFiLWFnZW50OmxhYi1hZ2VudC1zZWNyZXQ=",
        )
        .body(Body::from("grant_type=client_credentials"))
        .unwrap();
    let r = send_from(&issuer, token, peer(REMOTE)).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(payload(&access_token(&r))["clientAddress"], "192.0.2.7");
}

#[tokio::test]
async fn loopback_callers_of_either_family_and_unix_sockets_may_use_the_controls() {
    let issuer = issuer_with(&[fixture("lab-realm.json")], &clock());
    for addr in ["127.0.0.1:50000", "[::1]:50000", "[::ffff:127.0.0.1]:50000"] {
        let before = signing_kid(&issuer).await;
        let r = send_from(&issuer, rotate(None), peer(addr)).await;
        assert_eq!(r.status, 200, "{addr}: {}", r.json);
        assert_ne!(signing_kid(&issuer).await, before, "{addr}");
    }
    // tw-http's connect info on a Unix socket: no address, and only the owner can connect.
    let mut req = rotate(None);
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(tw_http::PeerAddr(None)));
    assert_eq!(send_from(&issuer, req, None).await.status, 200);
}

#[tokio::test]
async fn a_server_without_connect_info_refuses_the_controls() {
    let issuer = issuer_with(&[fixture("lab-realm.json")], &clock());
    let kid = signing_kid(&issuer).await;
    let r = send_from(&issuer, rotate(None), None).await;
    assert_refused(&r, "cannot tell where the caller is");
    assert_eq!(signing_kid(&issuer).await, kid);
}

#[tokio::test]
async fn cross_site_requests_from_a_browser_are_refused() {
    let issuer = issuer_with(&[fixture("lab-realm.json")], &clock());
    let kid = signing_kid(&issuer).await;
    // A page elsewhere POSTs to the loopback issuer (a "simple" request: no preflight).
    for origin in ["http://evil.example", "http://127.0.0.1:9999", "null"] {
        let r = send(&issuer, rotate(Some(origin))).await;
        assert_refused(&r, "cross-site");
        assert_eq!(signing_kid(&issuer).await, kid, "{origin}");
    }
    // The issuer's own origin (e.g. a page it serves) is not cross-site.
    let r = send(&issuer, rotate(Some(BASE))).await;
    assert_eq!(r.status, 200, "{}", r.json);
}

#[tokio::test]
async fn a_dns_rebound_page_naming_another_host_is_refused() {
    let issuer = issuer_with(&[fixture("lab-realm.json")], &clock());
    let kid = signing_kid(&issuer).await;
    // evil.example now resolves to 127.0.0.1: the page is same-origin to itself, so it sends its
    // own Host (and no Origin on a GET).
    for (method, path) in [
        ("POST", "/dev/realms/lab/rotate-keys"),
        ("GET", "/dev/report"),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "evil.example:8780")
            .body(Body::empty())
            .unwrap();
        assert_refused(&send(&issuer, req).await, "Host evil.example:8780");
    }
    assert_eq!(signing_kid(&issuer).await, kid);
    // Names of this machine and the issuer's own host are fine.
    for host in [
        "127.0.0.1:8780",
        "localhost:8780",
        "[::1]:8780",
        "LOCALHOST",
    ] {
        let req = Request::get("/dev/report")
            .header(header::HOST, host)
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&issuer, req).await.status, 200, "{host}");
    }
}

#[tokio::test]
async fn the_public_url_is_the_issuers_own_host_and_origin() {
    let settings = tw_devissuer::DevIssuerSettings {
        base_url: url::Url::parse("http://devbox.lan:8780").unwrap(),
        ..settings()
    };
    let issuer = tw_devissuer::DevIssuer::from_files(
        &[fixture("lab-realm.json")],
        settings,
        std::sync::Arc::new(clock()),
    )
    .unwrap();
    let req = Request::post("/dev/realms/lab/rotate-keys")
        .header(header::HOST, "devbox.lan:8780")
        .header(header::ORIGIN, "http://devbox.lan:8780")
        .body(Body::empty())
        .unwrap();
    let r = send(&issuer, req).await;
    assert_eq!(r.status, 200, "{}", r.json);
    // Its own origin, not 127.0.0.1's, is the one accepted.
    assert_refused(&send(&issuer, rotate(Some(BASE))).await, "cross-site");
}
