//! Custom (non-OAuth) login endpoints, like the RAG bot's `getAuthToken`: POST JSON credentials,
//! read the token and its lifetime by JSON pointer (or absolute expiry, or the JWT's `exp`), and
//! error answers sent with HTTP 200. The endpoint is a small real HTTP service standing in for the
//! third-party portal, answering as each test tells it and counting the logins.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Json;
use axum::http::StatusCode;
use axum::routing::post;
use base64::Engine;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tw_broker::source::{CUSTOM_LOGIN_MESSAGE, CustomLoginFailure};
use tw_broker::{Broker, Profile, TokenRequest};
use tw_core::{Clock, ErrorKind, ManualClock, UnixTime};

/// The broker's clock in these tests: 2027-01-15T08:00:00Z.
const NOW: i64 = 1_800_000_000;

struct Portal {
    url: String,
    logins: Arc<AtomicUsize>,
}

impl Portal {
    fn logins(&self) -> usize {
        self.logins.load(Ordering::SeqCst)
    }
}

type Answer = dyn Fn(usize) -> (StatusCode, Value) + Send + Sync;

/// Accepts `{"email":"bot@example.com","password":"pw-123"}` (401 otherwise); answers login `n`
/// (from 1) with `answer(n)`.
async fn start_portal(
    answer: impl Fn(usize) -> (StatusCode, Value) + Send + Sync + 'static,
) -> Portal {
    let logins = Arc::new(AtomicUsize::new(0));
    let counter = logins.clone();
    let answer: Arc<Answer> = Arc::new(answer);
    let app = axum::Router::new().route(
        "/api/v1/getAuthToken",
        post(move |Json(body): Json<Value>| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            let answer = answer.clone();
            async move {
                if body["email"] != "bot@example.com" || body["password"] != "pw-123" {
                    return (
                        StatusCode::UNAUTHORIZED,
                        Json(json!({"message": "bad credentials"})),
                    );
                }
                let (status, body) = answer(n);
                (status, Json(body))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    Portal {
        url: format!("http://{addr}/api/v1/getAuthToken"),
        logins,
    }
}

/// A 200 answer `{"data": data}`.
fn ok(data: Value) -> (StatusCode, Value) {
    (StatusCode::OK, json!({ "data": data }))
}

/// A JWT-shaped token with these claims (unsigned: the broker reads `exp` and never verifies).
fn jwt(claims: Value) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.c2lnbmF0dXJl",
        b64(&json!({"alg": "RS256", "typ": "JWT"})),
        b64(&claims)
    )
}

struct Setup {
    _dir: tempfile::TempDir,
    password_file: std::path::PathBuf,
}

fn password(pw: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("pw");
    std::fs::write(&password_file, pw).unwrap();
    Setup {
        _dir: dir,
        password_file,
    }
}

/// The RAG bot's profile at `url` with more `[profiles.ragbot.custom]` lines.
fn config_toml(url: &str, setup: &Setup, custom_lines: &str) -> String {
    format!(
        r#"
[profiles.ragbot]
[profiles.ragbot.custom]
url = "{url}"
fields = {{ email = "bot@example.com" }}
secret_fields = {{ password = {{ file = "{}" }} }}
token_pointer = "/data/token"
{custom_lines}
[profiles.ragbot.timing]
default_lifetime = "1h"
"#,
        setup.password_file.display()
    )
}

fn profile(url: &str, setup: &Setup, custom_lines: &str, clock: &ManualClock) -> Arc<Profile> {
    let cfg = tw_config::load_str(&config_toml(url, setup, custom_lines), "t.toml")
        .unwrap_or_else(|e| panic!("config: {e}"));
    let b = Broker::from_profiles_manual(&cfg.profiles, Arc::new(clock.clone())).unwrap();
    b.profile("ragbot").unwrap().clone()
}

fn clock_at_now() -> ManualClock {
    ManualClock::new(UnixTime::from_secs(NOW))
}

const EXPIRES_IN: &str = r#"expires_in_pointer = "/data/expiresIn""#;
const EXPIRES_AT: &str = r#"expires_at_pointer = "/data/expiresAt""#;
const ERROR_ANSWER: &str = r#"error_pointer = "/status"
error_values = ["error", "failed"]
error_message_pointer = "/message""#;

#[tokio::test]
async fn lifetime_is_read_by_pointer_or_defaulted() {
    let pw = password("pw-123");
    let clock = ManualClock::starting_now();

    let portal =
        start_portal(|n| ok(json!({"token": format!("custom-token-{n}"), "expiresIn": "120"})))
            .await;
    let p = profile(&portal.url, &pw, EXPIRES_IN, &clock);
    let s = p.token(TokenRequest::default()).await.unwrap();
    assert_eq!(s.token.access_token.expose(), "custom-token-1");
    assert_eq!(s.token.expires_in(clock.now()), Duration::from_secs(120));
    assert!(!s.token.lifetime_assumed);

    let portal = start_portal(|n| ok(json!({"token": format!("custom-token-{n}")}))).await;
    let p = profile(&portal.url, &pw, EXPIRES_IN, &clock);
    let s = p.token(TokenRequest::default()).await.unwrap();
    assert!(s.token.lifetime_assumed);
    assert_eq!(s.token.expires_in(clock.now()), Duration::from_secs(3600));
    // Cached: no second login for repeated calls.
    for _ in 0..20 {
        p.token(TokenRequest::default()).await.unwrap();
    }
    assert_eq!(portal.logins(), 1);
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
async fn an_absolute_expiry_is_read_as_epoch_seconds_or_rfc3339() {
    let pw = password("pw-123");
    // The RAG bot's portal: tokens that die after 3 s, said as an absolute time.
    for expires_at in [
        json!(NOW + 3),
        json!((NOW + 3).to_string()),
        json!(format!(" {}.0 ", NOW + 3)),
        json!((NOW + 3) * 1000),
        json!("2027-01-15T08:00:03Z"),
        json!("2027-01-15t08:00:03z"),
        json!("2027-01-15T08:00:03.000Z"),
        json!("2027-01-15T10:00:03+02:00"),
        json!("2027-01-15T03:30:03-04:30"),
    ] {
        let clock = clock_at_now();
        let answer = expires_at.clone();
        let portal = start_portal(move |n| {
            // Login 2, after the first token died, gets a new expiry.
            let at = if n == 1 {
                answer.clone()
            } else {
                json!(NOW + 100)
            };
            ok(json!({"token": format!("short-{n}"), "expiresAt": at}))
        })
        .await;
        let p = profile(&portal.url, &pw, EXPIRES_AT, &clock);
        let s = p.token(TokenRequest::default()).await.unwrap();
        assert_eq!(
            s.token.expires_in(clock.now()),
            Duration::from_secs(3),
            "{expires_at}"
        );
        assert!(!s.token.lifetime_assumed, "{expires_at}");
        // The token dies after 3 s: it is not served past that, a new login is made.
        clock.advance(Duration::from_secs(3));
        let s = p.token(TokenRequest::default()).await.unwrap();
        assert_eq!(s.token.access_token.expose(), "short-2", "{expires_at}");
        assert_eq!(portal.logins(), 2, "{expires_at}");
    }

    // What is not an instant is ignored (the next source applies: here the default lifetime).
    for not_a_time in [
        json!("2027-01-15T08:00:03"),
        json!("2027-01-15T08:00:03+2:00"),
        json!("2027-01-15T08:00:03+24:00"),
        json!("tomorrow"),
        json!(""),
        json!(-5),
        json!(true),
        json!({"at": NOW + 3}),
        json!("9".repeat(400)),
    ] {
        let clock = clock_at_now();
        let answer = not_a_time.clone();
        let portal =
            start_portal(move |_| ok(json!({"token": "t", "expiresAt": answer.clone()}))).await;
        let p = profile(&portal.url, &pw, EXPIRES_AT, &clock);
        let s = p.token(TokenRequest::default()).await.unwrap();
        assert!(s.token.lifetime_assumed, "{not_a_time}");
        assert_eq!(
            s.token.expires_in(clock.now()),
            Duration::from_secs(3600),
            "{not_a_time}"
        );
    }
}

#[tokio::test]
async fn a_jwt_tokens_exp_gives_the_lifetime() {
    let pw = password("pw-123");
    let clock = clock_at_now();
    let portal =
        start_portal(|n| ok(json!({"token": jwt(json!({"sub": "bot", "n": n, "exp": NOW + 42}))})))
            .await;
    let p = profile(&portal.url, &pw, "", &clock);
    let s = p.token(TokenRequest::default()).await.unwrap();
    assert_eq!(s.token.expires_in(clock.now()), Duration::from_secs(42));
    assert!(!s.token.lifetime_assumed);

    // No exp, an exp that is no number, an opaque token, a token that only looks like a JWT:
    // the default lifetime.
    for token in [
        jwt(json!({"sub": "bot"})),
        jwt(json!({"exp": (NOW + 42).to_string()})),
        jwt(json!({"exp": null})),
        "opaque.token".to_owned(),
        "not.a.jwt".to_owned(),
        format!("{}.extra", jwt(json!({"exp": NOW + 42}))),
    ] {
        let answer = token.clone();
        let portal = start_portal(move |_| ok(json!({"token": answer.clone()}))).await;
        let p = profile(&portal.url, &pw, "", &clock);
        let s = p.token(TokenRequest::default()).await.unwrap();
        assert!(s.token.lifetime_assumed, "{token}");
        assert_eq!(s.token.expires_in(clock.now()), Duration::from_secs(3600));
    }
}

/// The lifetime (seconds, and whether assumed) of the token a portal answering `data` gives a
/// profile with `lines`.
async fn lifetime_of(data: Value, lines: &str, pw: &Setup) -> (u64, bool) {
    let clock = clock_at_now();
    let portal = start_portal(move |_| ok(data.clone())).await;
    let s = profile(&portal.url, pw, lines, &clock)
        .token(TokenRequest::default())
        .await
        .unwrap();
    (
        s.token.expires_in(clock.now()).as_secs(),
        s.token.lifetime_assumed,
    )
}

#[tokio::test]
async fn lifetime_sources_take_precedence_in_the_documented_order() {
    let pw = password("pw-123");
    let all = format!("{EXPIRES_IN}\n{EXPIRES_AT}");
    let token = jwt(json!({"exp": NOW + 300}));
    let full = json!({"token": token, "expiresIn": 100, "expiresAt": NOW + 200});
    // 1. expires_in, 2. expires_at, 3. the JWT's exp, 4. the default.
    assert_eq!(lifetime_of(full.clone(), &all, &pw).await, (100, false));
    assert_eq!(
        lifetime_of(full.clone(), EXPIRES_AT, &pw).await,
        (200, false)
    );
    assert_eq!(lifetime_of(full, "", &pw).await, (300, false));
    let opaque = json!({"token": "opaque", "expiresIn": 100, "expiresAt": NOW + 200});
    assert_eq!(lifetime_of(opaque, "", &pw).await, (3600, true));
    // A pointer with nothing usable behind it passes to the next source.
    let no_expires_in = json!({"token": token, "expiresIn": 0, "expiresAt": NOW + 200});
    assert_eq!(lifetime_of(no_expires_in, &all, &pw).await, (200, false));
    let neither = json!({"token": token, "expiresAt": "soon"});
    assert_eq!(lifetime_of(neither, &all, &pw).await, (300, false));
}

#[tokio::test]
async fn an_expiry_already_past_is_a_transient_malformed_answer() {
    let pw = password("pw-123");
    for (lines, data) in [
        (EXPIRES_AT, json!({"token": "t", "expiresAt": NOW - 1})),
        (EXPIRES_AT, json!({"token": "t", "expiresAt": NOW})),
        ("", json!({"token": jwt(json!({"exp": NOW - 10}))})),
    ] {
        let clock = clock_at_now();
        let answer = data.clone();
        let portal = start_portal(move |_| ok(answer.clone())).await;
        let p = profile(&portal.url, &pw, lines, &clock);
        let e = p.token(TokenRequest::default()).await.unwrap_err();
        assert_eq!(e.code(), CustomLoginFailure::Malformed.code(), "{data}");
        assert_eq!(e.code(), "custom_login_malformed");
        assert_eq!(e.kind(), ErrorKind::IdpUnavailable);
        assert!(e.is_retryable());
        assert!(e.to_string().contains("already passed"), "{e}");
    }
}

#[tokio::test]
async fn rejected_credentials_are_permanent_and_not_retried() {
    let pw = password("wrong");
    let portal =
        start_portal(|n| ok(json!({"token": format!("custom-token-{n}"), "expiresIn": "120"})))
            .await;
    let clock = ManualClock::starting_now();
    let p = profile(&portal.url, &pw, EXPIRES_IN, &clock);
    for _ in 0..10 {
        let e = p.token(TokenRequest::default()).await.unwrap_err();
        assert_eq!(e.code(), "custom_login_rejected");
        assert!(!e.to_string().contains("wrong"));
    }
    assert_eq!(portal.logins(), 1);
}

#[tokio::test]
async fn a_declared_error_answer_with_200_is_one_login_and_a_permanent_rejection() {
    let pw = password("pw-123");
    for status in [
        json!("error"),
        json!("ERROR"),
        json!(" Failed "),
        json!("failed"),
    ] {
        let answer = status.clone();
        let portal = start_portal(move |_| {
            (
                StatusCode::OK,
                json!({"status": answer.clone(), "message": "Invalid email or password\u{1b}[2J\u{202e}", "token": null}),
            )
        })
        .await;
        let clock = clock_at_now();
        let p = profile(
            &portal.url,
            &pw,
            &format!("{ERROR_ANSWER}\n{EXPIRES_IN}"),
            &clock,
        );
        // Callers keep asking for 6 s (the RAG bot's storm was 4 logins in 6 s).
        for _ in 0..12 {
            let e = p.token(TokenRequest::default()).await.unwrap_err();
            assert_eq!(e.code(), CustomLoginFailure::Rejected.code(), "{status}");
            assert_eq!(
                CustomLoginFailure::of(&e),
                Some(CustomLoginFailure::Rejected)
            );
            assert_eq!(e.kind(), ErrorKind::IdpRejected);
            assert!(!e.is_retryable());
            let text = e.to_string();
            assert!(text.contains("Invalid email or password"), "{text}");
            assert!(
                !text.contains('\u{1b}') && !text.contains('\u{202e}'),
                "{text:?}"
            );
            assert!(!text.contains("pw-123"), "{text}");
            assert_eq!(
                e.context_value(CUSTOM_LOGIN_MESSAGE),
                Some("Invalid email or password[2J")
            );
            clock.advance(Duration::from_millis(500));
        }
        assert_eq!(portal.logins(), 1, "{status}");
    }

    // The portal's message is capped.
    let portal = start_portal(|_| {
        (
            StatusCode::OK,
            json!({"status": "error", "message": "x".repeat(100_000)}),
        )
    })
    .await;
    let clock = clock_at_now();
    let e = profile(&portal.url, &pw, ERROR_ANSWER, &clock)
        .token(TokenRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "custom_login_rejected");
    assert!(e.to_string().len() < 1000, "{}", e.to_string().len());
    assert_eq!(
        e.context_value(CUSTOM_LOGIN_MESSAGE)
            .map(|m| m.chars().count()),
        Some(201)
    );

    // A 4xx also carries the portal's message.
    let wrong = password("wrong");
    let portal = start_portal(|_| ok(json!({"token": "t"}))).await;
    let e = profile(&portal.url, &wrong, ERROR_ANSWER, &clock)
        .token(TokenRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "custom_login_rejected");
    assert_eq!(
        e.context_value(CUSTOM_LOGIN_MESSAGE),
        Some("bad credentials")
    );
}

#[tokio::test]
async fn only_the_declared_values_make_an_error_answer() {
    let pw = password("pw-123");
    // Look-alikes are not errors: the answer is judged by its token.
    for status in [
        json!("errors"),
        json!("ok"),
        json!("error!"),
        json!(["error"]),
        json!({"error": true}),
    ] {
        let answer = status.clone();
        let portal = start_portal(move |_| {
            (
                StatusCode::OK,
                json!({"status": answer.clone(), "data": {"token": "good"}}),
            )
        })
        .await;
        let clock = clock_at_now();
        let s = profile(&portal.url, &pw, ERROR_ANSWER, &clock)
            .token(TokenRequest::default())
            .await
            .unwrap_or_else(|e| panic!("{status}: {e}"));
        assert_eq!(s.token.access_token.expose(), "good");
    }
    // Without a token and without a declared error value: malformed, transient.
    let portal = start_portal(|_| (StatusCode::OK, json!({"status": "denied"}))).await;
    let clock = clock_at_now();
    let e = profile(&portal.url, &pw, ERROR_ANSWER, &clock)
        .token(TokenRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "custom_login_malformed");
    assert!(e.is_retryable());

    // Booleans and numbers, by value or by their text.
    let lines = "error_pointer = \"/success\"\nerror_values = [false, 0]";
    for success in [json!(false), json!("false"), json!(0), json!("0")] {
        let answer = success.clone();
        let portal =
            start_portal(move |_| (StatusCode::OK, json!({"success": answer.clone()}))).await;
        let clock = clock_at_now();
        let e = profile(&portal.url, &pw, lines, &clock)
            .token(TokenRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), "custom_login_rejected", "{success}");
    }
}

#[test]
fn error_answer_keys_are_checked_together() {
    let pw = password("pw-123");
    for (lines, key) in [
        (
            "error_pointer = \"/status\"",
            "profiles.ragbot.custom.error_values",
        ),
        (
            "error_values = [\"error\"]",
            "profiles.ragbot.custom.error_pointer",
        ),
        (
            "error_message_pointer = \"/message\"",
            "profiles.ragbot.custom.error_message_pointer",
        ),
        (
            "error_pointer = \"/status\"\nerror_values = [[\"error\"]]",
            "profiles.ragbot.custom.error_values",
        ),
        (
            "error_pointer = \"status\"\nerror_values = [\"error\"]",
            "profiles.ragbot.custom.error_pointer",
        ),
        (
            "expires_at_pointer = \"data.expiresAt\"",
            "profiles.ragbot.custom.expires_at_pointer",
        ),
    ] {
        let e = tw_config::load_str(
            &config_toml("http://127.0.0.1:1/login", &pw, lines),
            "t.toml",
        )
        .expect_err(lines);
        assert_eq!(e.context_value("key"), Some(key), "{lines}: {e}");
    }
}

#[test]
fn the_example_ragbot_profile_loads_with_its_expiry_and_error_answer() {
    let path =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/agent.toml");
    let cfg = tw_config::load(&path).unwrap_or_else(|e| panic!("examples/agent.toml: {e}"));
    let custom = cfg.profiles["ragbot"]
        .custom
        .as_ref()
        .expect("a custom login");
    assert_eq!(
        custom.expires_at_pointer.as_deref(),
        Some("/data/expiresAt")
    );
    assert_eq!(custom.error_pointer.as_deref(), Some("/status"));
    assert_eq!(custom.error_values, vec![json!("error"), json!("failed")]);
    assert_eq!(custom.error_message_pointer.as_deref(), Some("/message"));
}
