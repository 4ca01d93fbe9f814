//! Every request axum cannot decode is refused with a JSON body, never axum's plain text: the
//! realm endpoints in OAuth's shape (RFC 6749 §5.2), the `/dev` controls in tw-http's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use axum::body::Body;
use axum::http::{Request, header};
use common::*;

fn post(path: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut req = Request::post(path).header(
        header::AUTHORIZATION,
        "Basic bGFiLWFnZW50OmxhYi1hZ2VudC1zZWNyZXQ=",
    );
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    req.body(body.into()).unwrap()
}

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

fn assert_oauth_refusal(r: &Reply, status: u16, says: &str) {
    assert_eq!(r.status, status, "{}", r.json);
    assert_eq!(r.json["error"], "invalid_request", "{}", r.json);
    let description = r.json["error_description"].as_str().unwrap();
    assert!(description.contains(says), "{description}");
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
}

#[tokio::test]
async fn an_oversized_body_is_an_oauth_error_413() {
    let issuer = issuer_with(&[fixture("lab-realm.json")], &clock());
    let padding = "x".repeat(70 * 1024);
    for path in [
        token_path("lab"),
        introspect_path("lab"),
        revoke_path("lab"),
    ] {
        let body = format!("grant_type=client_credentials&pad={padding}");
        let r = send(&issuer, post(&path, FORM, body)).await;
        assert_oauth_refusal(&r, 413, "larger than 65536 bytes");
    }
}

#[tokio::test]
async fn a_body_that_is_not_a_utf8_form_is_an_oauth_error() {
    let issuer = issuer_with(&[fixture("lab-realm.json")], &clock());
    let token = token_path("lab");

    let json = r#"{"grant_type":"client_credentials"}"#;
    let r = send(&issuer, post(&token, Some("application/json"), json)).await;
    assert_oauth_refusal(&r, 400, "application/x-www-form-urlencoded");
    let r = send(&issuer, post(&token, None, "grant_type=client_credentials")).await;
    assert_oauth_refusal(&r, 400, "application/x-www-form-urlencoded");

    // Percent-escapes that decode to bytes that are not UTF-8, and raw bytes that are not.
    for body in [
        b"grant_type=client_credentials&scope=%FF".to_vec(),
        b"grant_type=client_credentials&scope=\xC3".to_vec(),
    ] {
        let r = send(&issuer, post(&token, FORM, body)).await;
        assert_oauth_refusal(&r, 400, "not valid UTF-8");
    }

    // A charset parameter is fine; so is the same form spelled with + and escapes.
    let r = send(
        &issuer,
        post(
            &token,
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
            "grant_type=client%5Fcredentials",
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json);
}

#[tokio::test]
async fn a_path_that_cannot_be_decoded_is_a_json_error() {
    let issuer = issuer_with(&[fixture("lab-realm.json")], &clock());
    let r = send(
        &issuer,
        post("/realms/%FF/protocol/openid-connect/token", FORM, ""),
    )
    .await;
    assert_oauth_refusal(&r, 400, "");
    for path in [
        "/realms/%FF/.well-known/openid-configuration",
        "/realms/%FF/protocol/openid-connect/certs",
        "/realms/%FF",
    ] {
        assert_oauth_refusal(&get(&issuer, path).await, 400, "");
    }
}

#[tokio::test]
async fn the_dev_controls_refuse_bad_paths_and_queries_as_json() {
    let issuer = issuer_with(&[fixture("lab-realm.json")], &clock());
    for path in [
        "/dev/realms/lab/rotate-keys?keep_old=maybe",
        "/dev/realms/%FF/rotate-keys",
    ] {
        let r = post_form(&issuer, path, &[], None).await;
        assert_eq!(r.status, 400, "{path}: {}", r.json);
        assert_eq!(
            r.json["error"]["code"], "bad_dev_request",
            "{path}: {}",
            r.json
        );
    }
}
