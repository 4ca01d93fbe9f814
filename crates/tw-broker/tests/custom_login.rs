//! Custom (non-OAuth) login endpoints, like the RAG bot's `getAuthToken`: POST JSON credentials,
//! read the token and its lifetime by JSON pointer. The endpoint is a small real HTTP service.

use axum::Json;
use axum::http::StatusCode;
use axum::routing::post;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tw_broker::{Broker, TokenRequest};
use tw_core::{Clock, ManualClock};

struct Login {
    url: String,
    calls: Arc<AtomicUsize>,
}

/// Accepts `{"email":"bot@example.com","password":"pw-123"}`; answers per `mode`.
async fn start_login(mode: &'static str) -> Login {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = axum::Router::new().route(
        "/api/v1/getAuthToken",
        post(move |Json(body): Json<serde_json::Value>| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if body["email"] != "bot@example.com" || body["password"] != "pw-123" {
                    return (StatusCode::UNAUTHORIZED, Json(serde_json::json!({"message": "bad credentials"})));
                }
                let data = match mode {
                    "with_lifetime" => serde_json::json!({"token": format!("custom-token-{n}"), "expiresIn": "120"}),
                    _ => serde_json::json!({"token": format!("custom-token-{n}")}),
                };
                (StatusCode::OK, Json(serde_json::json!({ "data": data })))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    Login {
        url: format!("http://{addr}/api/v1/getAuthToken"),
        calls,
    }
}

fn config(url: &str, password_file: &std::path::Path) -> String {
    format!(
        r#"
[profiles.ragbot]
[profiles.ragbot.custom]
url = "{url}"
fields = {{ email = "bot@example.com" }}
secret_fields = {{ password = {{ file = "{}" }} }}
token_pointer = "/data/token"
expires_in_pointer = "/data/expiresIn"
[profiles.ragbot.timing]
default_lifetime = "1h"
"#,
        password_file.display()
    )
}

#[tokio::test]
async fn lifetime_is_read_by_pointer_or_defaulted() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "pw-123").unwrap();
    let clock = ManualClock::starting_now();

    let login = start_login("with_lifetime").await;
    let cfg = tw_config::load_str(&config(&login.url, &pw), "t.toml").unwrap();
    let b = Broker::from_config_manual(&cfg, Arc::new(clock.clone())).unwrap();
    let s = b
        .profile("ragbot")
        .unwrap()
        .token(TokenRequest::default())
        .await
        .unwrap();
    assert_eq!(s.token.access_token.expose(), "custom-token-1");
    assert_eq!(s.token.expires_in(clock.now()), Duration::from_secs(120));
    assert!(!s.token.lifetime_assumed);

    let login = start_login("no_lifetime").await;
    let cfg = tw_config::load_str(&config(&login.url, &pw), "t.toml").unwrap();
    let b = Broker::from_config_manual(&cfg, Arc::new(clock.clone())).unwrap();
    let p = b.profile("ragbot").unwrap();
    let s = p.token(TokenRequest::default()).await.unwrap();
    assert!(s.token.lifetime_assumed);
    assert_eq!(s.token.expires_in(clock.now()), Duration::from_secs(3600));
    // Cached: no second login for repeated calls.
    for _ in 0..20 {
        p.token(TokenRequest::default()).await.unwrap();
    }
    assert_eq!(login.calls.load(Ordering::SeqCst), 1);
    clock.advance(Duration::from_secs(3600));
    assert_eq!(
        p.token(TokenRequest::default())
            .await
            .unwrap()
            .token
            .access_token
            .expose(),
        "custom-token-2"
    );
}

#[tokio::test]
async fn rejected_credentials_are_permanent_and_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "wrong").unwrap();
    let login = start_login("with_lifetime").await;
    let cfg = tw_config::load_str(&config(&login.url, &pw), "t.toml").unwrap();
    let clock = ManualClock::starting_now();
    let b = Broker::from_config_manual(&cfg, Arc::new(clock.clone())).unwrap();
    let p = b.profile("ragbot").unwrap();
    for _ in 0..10 {
        let e = p.token(TokenRequest::default()).await.unwrap_err();
        assert_eq!(e.code(), "custom_login_rejected");
        assert!(!e.to_string().contains("wrong"));
    }
    assert_eq!(login.calls.load(Ordering::SeqCst), 1);
}
