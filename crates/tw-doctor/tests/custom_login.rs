//! The token step for custom login endpoints: each failure under the API's own code
//! (`CustomLoginFailure`), against a small real HTTP service standing in for the portal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Json;
use axum::http::StatusCode;
use base64::Engine;
use serde_json::{Value, json};
use std::sync::Arc;
use tw_broker::source::CustomLoginFailure;
use tw_core::{ManualClock, UnixTime};
use tw_doctor::{Doctor, Options, Report, Status};
use tw_testkit::TestServer;

const NOW: i64 = 1_800_000_000;

/// A portal answering every login with `status` and `body`.
async fn portal(status: StatusCode, body: Value) -> TestServer {
    TestServer::start(axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { (status, Json(body)) }
    }))
    .await
}

async fn diagnose(portal: &TestServer, custom_lines: &str) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "portal-password-1").unwrap();
    let toml = format!(
        r#"[profiles.ragbot.custom]
url = "{}/getAuthToken"
secret_fields = {{ password = {{ file = "{}" }} }}
token_pointer = "/data/token"
{custom_lines}
"#,
        portal.url(),
        pw.display()
    );
    let cfg = tw_config::load_str(&toml, "ragbot.toml").unwrap_or_else(|e| panic!("{e}"));
    Doctor::new(Arc::new(ManualClock::new(UnixTime::from_secs(NOW))))
        .diagnose(&cfg, "ragbot.toml", &Options::default())
        .await
}

fn token_step(r: &Report) -> &tw_doctor::Step {
    r.step("token", Some("ragbot"))
        .unwrap_or_else(|| panic!("no token step: {r}"))
}

const ERROR_ANSWER: &str = r#"error_pointer = "/status"
error_values = ["error", "failed"]
error_message_pointer = "/message""#;

#[tokio::test]
async fn each_custom_login_failure_has_the_apis_code() {
    // The answer holds the token elsewhere: the pointer is named.
    let p = portal(
        StatusCode::OK,
        json!({"data": {"jwt": "opaque-login-token"}}),
    )
    .await;
    let r = diagnose(&p, "").await;
    let step = token_step(&r);
    assert_eq!(step.status, Status::Fail);
    assert_eq!(step.cause, Some(CustomLoginFailure::Malformed.code()));
    assert_eq!(step.cause, Some("custom_login_malformed"));
    let text = r.to_string();
    assert!(text.contains("custom.token_pointer"), "{text}");
    // A profile without a declared error answer is told how to declare one.
    assert!(text.contains("custom.error_pointer"), "{text}");
    assert!(!text.contains("opaque-login-token"), "{text}");

    // A 200 error answer, declared: a refusal, with the portal's words, not the token pointer.
    let p = portal(
        StatusCode::OK,
        json!({"status": "error", "message": "Invalid password\u{1b}[2J"}),
    )
    .await;
    let r = diagnose(&p, ERROR_ANSWER).await;
    let step = token_step(&r);
    assert_eq!(step.cause, Some(CustomLoginFailure::Rejected.code()));
    assert_eq!(step.cause, Some("custom_login_rejected"));
    let text = r.to_string();
    assert!(text.contains("Invalid password"), "{text}");
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert!(text.contains("custom.secret_fields"), "{text}");
    assert!(!text.contains("token_pointer"), "{text}");
    assert!(!text.contains("portal-password-1"), "{text}");

    // A 4xx: refused as well.
    let p = portal(StatusCode::FORBIDDEN, json!({"message": "locked"})).await;
    let r = diagnose(&p, "").await;
    assert_eq!(token_step(&r).cause, Some("custom_login_rejected"));

    // A 5xx: the portal is unavailable.
    let p = portal(StatusCode::SERVICE_UNAVAILABLE, json!({})).await;
    let r = diagnose(&p, "").await;
    assert_eq!(
        token_step(&r).cause,
        Some(CustomLoginFailure::Unavailable.code())
    );

    // An expiry already past: malformed, and the clock is named.
    let p = portal(
        StatusCode::OK,
        json!({"data": {"token": "t", "expiresAt": NOW - 60}}),
    )
    .await;
    let r = diagnose(&p, r#"expires_at_pointer = "/data/expiresAt""#).await;
    assert_eq!(token_step(&r).cause, Some("custom_login_malformed"));
    assert!(r.to_string().contains("clock"), "{r}");
}

#[tokio::test]
async fn a_working_custom_login_reports_the_lifetime_it_found() {
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let token = format!(
        "{}.{}.c2ln",
        b64(json!({"alg": "RS256"})),
        b64(json!({"exp": NOW + 600}))
    );
    let p = portal(
        StatusCode::OK,
        json!({"status": "ok", "data": {"token": token}}),
    )
    .await;
    let r = diagnose(&p, ERROR_ANSWER).await;
    let step = token_step(&r);
    assert_eq!(step.status, Status::Pass, "{r}");
    assert!(step.summary.contains("lifetime 10 min"), "{r}");
}
