//! tw-idp's own rules against a local server that misbehaves on purpose: the body cap on every
//! answer (the token endpoint's included), redirects never followed, `Retry-After`, network
//! classes, and errors that never echo a body or a secret.

#![allow(clippy::unwrap_used)]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tw_core::{ErrorKind, NetworkClass, Secret, UnixTime};
use tw_idp::{
    Call, ClientAuthentication, ClientSecretBasic, ClientSecretPost, Grant, HttpSettings, IdpHttp,
    codes,
};
use url::Url;

const SECRET: &str = "s3cr3t-never-shown";

async fn serve(app: Router) -> Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Url::parse(&format!("http://{addr}/")).unwrap()
}

fn basic() -> ClientSecretBasic {
    ClientSecretBasic {
        client_id: "c".into(),
        secret: Secret::new(SECRET),
    }
}

fn call<'a>(http: &'a IdpHttp, auth: &'a dyn ClientAuthentication) -> Call<'a> {
    Call {
        http,
        auth,
        timeout: Some(Duration::from_secs(10)),
        now: UnixTime::from_secs(1_000),
    }
}

/// Chunks of 64 KiB without end: only a reader that stops can finish.
fn endless() -> Body {
    let chunk = bytes::Bytes::from(vec![b' '; 64 * 1024]);
    Body::from_stream(futures::stream::repeat_with(move || {
        Ok::<_, std::io::Error>(chunk.clone())
    }))
}

#[tokio::test]
async fn a_token_answer_over_the_cap_is_refused_not_buffered() {
    let base = serve(
        Router::new()
            // Announced: refused from its Content-Length.
            .route(
                "/sized",
                post(|| async {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        format!(r#"{{"access_token":"{}"}}"#, "x".repeat(4096)),
                    )
                }),
            )
            // Streamed without a length, and without end.
            .route("/endless", post(|| async { Response::new(endless()) })),
    )
    .await;
    let http = HttpSettings::default()
        .with_max_answer_bytes(1024)
        .build()
        .unwrap();
    let auth = basic();
    for path in ["sized", "endless"] {
        let e = tokio::time::timeout(
            Duration::from_secs(20),
            call(&http, &auth).token(&base.join(path).unwrap(), &Grant::ClientCredentials, &[]),
        )
        .await
        .expect("the endless answer is cut, not read to its end")
        .err()
        .unwrap();
        assert_eq!(e.code(), codes::IDP_ANSWER_TOO_LARGE, "{path}: {e}");
        assert_eq!(e.kind(), ErrorKind::IdpUnavailable);
        assert_eq!(e.upstream_status(), Some(200));
        assert!(e.message().contains("larger than 1024 bytes"), "{e}");
    }
    // Under the cap the same answer is a token: the cap is what refused it.
    let roomy = HttpSettings::default().build().unwrap();
    let ok = call(&roomy, &auth)
        .token(&base.join("sized").unwrap(), &Grant::ClientCredentials, &[])
        .await
        .unwrap();
    assert_eq!(ok.token.access_token.expose().len(), 4096);
}

#[tokio::test]
async fn redirects_are_never_followed() {
    let followed = Arc::new(AtomicU64::new(0));
    let f = followed.clone();
    let base = serve(
        Router::new()
            .route(
                "/token",
                post(|| async {
                    (StatusCode::FOUND, [(header::LOCATION, "/elsewhere")]).into_response()
                }),
            )
            .route(
                "/elsewhere",
                post(move || {
                    f.fetch_add(1, Ordering::SeqCst);
                    async { r#"{"access_token":"stolen"}"# }
                })
                .get(|| async { "{}" }),
            ),
    )
    .await;
    let http = IdpHttp::new().unwrap();
    let auth = basic();
    let e = call(&http, &auth)
        .token(&base.join("token").unwrap(), &Grant::ClientCredentials, &[])
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), codes::IDP_REDIRECT);
    assert_eq!(e.kind(), ErrorKind::IdpRejected);
    assert_eq!(e.upstream_status(), Some(302));
    assert_eq!(followed.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn retry_after_is_read_as_seconds_or_a_date() {
    let base = serve(
        Router::new()
            .route(
                "/seconds",
                post(|| async {
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        [(header::RETRY_AFTER, "7")],
                        r#"{"error":"slow_down"}"#,
                    )
                }),
            )
            .route(
                "/date",
                post(|| async {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        // 1 000 s after the epoch + 40 s: the call's `now` is 1 000 s.
                        [(header::RETRY_AFTER, "Thu, 01 Jan 1970 00:17:20 GMT")],
                        "",
                    )
                }),
            ),
    )
    .await;
    let http = IdpHttp::new().unwrap();
    let auth = basic();
    for (path, status, after) in [("seconds", 429, 7), ("date", 503, 40)] {
        let e = call(&http, &auth)
            .token(&base.join(path).unwrap(), &Grant::ClientCredentials, &[])
            .await
            .err()
            .unwrap();
        assert_eq!(e.code(), codes::IDP_UNAVAILABLE);
        assert!(e.is_retryable());
        assert_eq!(e.upstream_status(), Some(status));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(after)), "{path}");
    }
}

#[tokio::test]
async fn credentials_are_never_echoed_from_a_refusal() {
    async fn echo_auth(headers: HeaderMap, body: String) -> Response {
        let basic = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        // A refusal that quotes what it got, as a careless IdP might: only `error` and
        // `error_description` may reach our errors, and they are the IdP's words.
        let seen = format!("{basic} {body}");
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({"error": "invalid_client", "got": seen})),
        )
            .into_response()
    }
    let base = serve(Router::new().route("/token", post(echo_auth))).await;
    let http = IdpHttp::new().unwrap();
    let post_auth = ClientSecretPost {
        client_id: "c".into(),
        secret: Secret::new(SECRET),
    };
    let basic_auth = basic();
    for auth in [&basic_auth as &dyn ClientAuthentication, &post_auth] {
        let e = call(&http, auth)
            .token(
                &base.join("token").unwrap(),
                &Grant::RefreshToken(Secret::new("rt-never-shown")),
                &[],
            )
            .await
            .err()
            .unwrap();
        assert_eq!(e.code(), codes::IDP_INVALID_CLIENT, "{}", auth.method());
        let shown = format!("{e} {e:?}");
        for secret in [SECRET, "rt-never-shown", "Basic "] {
            assert!(!shown.contains(secret), "{}: {shown}", auth.method());
        }
    }
}

#[tokio::test]
async fn network_failures_carry_their_class_and_cause() {
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let http = IdpHttp::new().unwrap();
    let url = Url::parse(&format!("http://127.0.0.1:{closed}/jwks")).unwrap();
    let e = tw_idp::token::fetch_jwks(&http, &url, None, UnixTime::from_secs(0))
        .await
        .unwrap_err();
    assert_eq!(e.code(), codes::IDP_UNREACHABLE);
    assert_eq!(e.network(), Some(NetworkClass::ConnectionRefused));
    assert!(std::error::Error::source(&e).is_some(), "the cause is kept");

    // A server that never answers, and a short timeout.
    let base = serve(Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "{}"
        }),
    ))
    .await;
    let e = tw_idp::token::fetch_jwks(
        &http,
        &base.join("slow").unwrap(),
        Some(Duration::from_millis(200)),
        UnixTime::from_secs(0),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), codes::IDP_TIMEOUT);
    assert_eq!(e.network(), Some(NetworkClass::Timeout));
}

#[tokio::test]
async fn discovery_checks_status_shape_and_issuer() {
    let base =
        serve(
            Router::new().route(
                "/{realm}/.well-known/openid-configuration",
                get(
                    |axum::extract::Path(realm): axum::extract::Path<String>,
                     headers: HeaderMap| async move {
                        let host = headers
                            .get(header::HOST)
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        match realm.as_str() {
                            "good" => axum::Json(serde_json::json!({
                                "issuer": format!("http://{host}/good"),
                                "token_endpoint": format!("http://{host}/good/token"),
                            }))
                            .into_response(),
                            "other" => {
                                axum::Json(serde_json::json!({"issuer": "http://elsewhere/"}))
                                    .into_response()
                            }
                            "html" => "<html>login</html>".into_response(),
                            "ftp" => axum::Json(serde_json::json!({
                                "issuer": format!("http://{host}/ftp"),
                                "jwks_uri": "ftp://x/jwks",
                            }))
                            .into_response(),
                            _ => StatusCode::NOT_FOUND.into_response(),
                        }
                    },
                ),
            ),
        )
        .await;
    let http = IdpHttp::new().unwrap();
    let issuer = |realm: &str| format!("{}{realm}", base);
    let now = UnixTime::from_secs(0);
    let fetch = |realm: &'static str, rule| {
        let http = http.clone();
        let issuer = issuer(realm);
        async move { tw_idp::discovery::fetch(&http, &issuer, rule, None, now).await }
    };
    use tw_idp::IssuerMatch::*;
    let ok = fetch("good", Exact).await.unwrap();
    assert!(ok.doc.token_endpoint().is_ok());
    // A trailing slash: a client accepts it, the verifier does not.
    let slashed = format!("{}/", issuer("good"));
    assert!(
        tw_idp::discovery::fetch(&http, &slashed, IgnoreTrailingSlash, None, now)
            .await
            .is_ok()
    );
    let e = tw_idp::discovery::fetch(&http, &slashed, Exact, None, now)
        .await
        .unwrap_err();
    assert_eq!(e.code(), codes::IDP_ISSUER_MISMATCH);
    assert_eq!(
        fetch("other", Exact).await.unwrap_err().code(),
        codes::IDP_ISSUER_MISMATCH
    );
    let e = fetch("html", Exact).await.unwrap_err();
    assert_eq!(e.code(), codes::IDP_DISCOVERY_MALFORMED);
    let cause = std::error::Error::source(&e)
        .and_then(|s| s.downcast_ref::<serde_json::Error>())
        .expect("the JSON error is the cause");
    assert!(cause.is_syntax());
    assert_eq!(
        fetch("ftp", Exact).await.unwrap_err().code(),
        codes::IDP_DISCOVERY_MALFORMED
    );
    let e = fetch("missing", Exact).await.unwrap_err();
    assert_eq!(e.code(), codes::IDP_DISCOVERY_FAILED);
    assert_eq!(e.upstream_status(), Some(404));
    assert_eq!(e.kind(), ErrorKind::IdpRejected);
}

#[tokio::test]
async fn the_discovery_cache_keeps_one_good_document_and_no_unusable_one() {
    let fetches = Arc::new(AtomicU64::new(0));
    let complete = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (f, c) = (fetches.clone(), complete.clone());
    let base = serve(Router::new().route(
        "/r/.well-known/openid-configuration",
        get(move |headers: HeaderMap| {
            f.fetch_add(1, Ordering::SeqCst);
            let complete = c.load(Ordering::SeqCst);
            async move {
                let host = headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let mut doc = serde_json::json!({"issuer": format!("http://{host}/r")});
                if complete {
                    doc["token_endpoint"] = format!("http://{host}/r/token").into();
                }
                axum::Json(doc)
            }
        }),
    ))
    .await;
    let cache = tw_idp::DiscoveryCache::new(
        format!("{base}r"),
        tw_idp::IssuerMatch::IgnoreTrailingSlash,
        None,
        IdpHttp::new().unwrap(),
    )
    .requiring_token_endpoint();
    let now = UnixTime::from_secs(0);
    for _ in 0..2 {
        let e = cache.get(now).await.unwrap_err();
        assert_eq!(e.code(), codes::IDP_DISCOVERY_MALFORMED);
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        2,
        "an unusable document is not kept"
    );
    complete.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        assert!(cache.get(now).await.unwrap().token_endpoint().is_ok());
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        3,
        "a good one is fetched once"
    );
}
