//! The broker against a real, independent OAuth2 server (oidc-provider, laid out like a Keycloak
//! realm), started per test by tw-testkit. Time-sensitive tests move a ManualClock instead of
//! sleeping; the IdP counts the requests it really received.

mod common;

use common::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tw_broker::{Broker, Served, TokenRequest};
use tw_core::{Error, ErrorKind, ManualClock};
use tw_testkit::{Endpoint, Fault, Idp, fixture_path};

#[tokio::test]
async fn every_client_authentication_method_is_accepted() {
    let idp = Idp::start_default().await;
    let s = Secrets::new();
    let toml = format!(
        r#"
{basic}
{post}
[profiles.jwt_rs256]
token_url = "{token_url}"
client_id = "agent-jwt"
auth_method = "private_key_jwt"
private_key = {{ file = "{rsa}" }}

[profiles.jwt_ps256]
issuer = "{issuer}"
client_id = "agent-jwt"
auth_method = "private_key_jwt"
signing_alg = "PS256"
private_key = {{ file = "{rsa}" }}

[profiles.jwt_es256]
token_url = "{token_url}"
client_id = "agent-jwt"
auth_method = "private_key_jwt"
signing_alg = "ES256"
private_key = {{ file = "{ec}" }}
"#,
        basic = basic_profile(&idp, &s, "basic"),
        post = post_profile(&idp, &s, "post", "agent-post-secret"),
        issuer = idp.issuer(),
        token_url = idp.token_url(),
        rsa = fixture_path("keys/agent-rsa.pem").display(),
        ec = fixture_path("keys/agent-ec.pem").display(),
    );
    let clock = ManualClock::starting_now();
    let b = broker(&toml, &clock);
    for (name, client) in [
        ("basic", "agent-basic"),
        ("post", "agent-post"),
        ("jwt_rs256", "agent-jwt"),
        ("jwt_ps256", "agent-jwt"),
        ("jwt_es256", "agent-jwt"),
    ] {
        let served = profile(&b, name)
            .token(TokenRequest::default())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let claims = payload(served.token.access_token.expose());
        assert_eq!(claims["azp"], client, "{name}");
        assert_eq!(
            claims["preferred_username"],
            format!("service-account-{client}"),
            "{name}"
        );
        assert!(
            served.token.expires_in(clock.now_for_test()) > Duration::from_secs(30),
            "{name}"
        );
    }
    let stats = idp.stats().await;
    assert_eq!(stats.token_requests_for("agent-basic"), 1);
    assert_eq!(stats.token_requests_for("agent-post"), 1);
    assert_eq!(stats.token_requests_for("agent-jwt"), 3);
}

/// `ManualClock::now` through the trait, without importing it at every call.
trait NowForTest {
    fn now_for_test(&self) -> tw_core::UnixTime;
}
impl NowForTest for ManualClock {
    fn now_for_test(&self) -> tw_core::UnixTime {
        tw_core::Clock::now(self)
    }
}

/// `callers` concurrent tasks, each asking profile `name` for a token once.
fn spawn_token_callers(
    b: &Arc<Broker>,
    name: &'static str,
    callers: usize,
) -> Vec<JoinHandle<Result<Served, Error>>> {
    (0..callers)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move { profile(&b, name).token(TokenRequest::default()).await })
        })
        .collect()
}

#[tokio::test]
async fn five_hundred_callers_at_expiry_make_one_token_request() {
    let idp = Idp::start_default().await;
    let s = Secrets::new();
    let clock = ManualClock::starting_now();
    let b = Arc::new(broker(&basic_profile(&idp, &s, "p"), &clock));
    let first = profile(&b, "p")
        .token(TokenRequest::default())
        .await
        .unwrap()
        .token;
    idp.reset_stats().await;
    clock.advance(first.expires_in(clock.now_for_test()) + Duration::from_millis(1));

    let tasks = spawn_token_callers(&b, "p", 500);
    let mut tokens = std::collections::HashSet::new();
    for t in tasks {
        tokens.insert(t.await.unwrap().unwrap().token.fingerprint);
    }
    assert_eq!(tokens.len(), 1, "everyone got the same new token");
    assert!(!tokens.contains(&first.fingerprint));
    assert_eq!(
        idp.stats().await.token_requests,
        1,
        "single-flight at the IdP"
    );
}

#[tokio::test]
async fn idp_outage_serves_cached_token_until_expiry_then_503_then_resumes() {
    let idp = Idp::start_default().await;
    let s = Secrets::new();
    let clock = ManualClock::starting_now();
    let b = broker(&basic_profile(&idp, &s, "p"), &clock);
    let p = profile(&b, "p");
    let t1 = p.token(TokenRequest::default()).await.unwrap().token;
    let lifetime = t1.expires_in(clock.now_for_test());

    idp.down().await;
    clock.advance(lifetime.mul_f64(0.9)); // stale: served, background refresh fails
    let served = p.token(TokenRequest::default()).await.unwrap();
    assert_eq!(served.token.fingerprint, t1.fingerprint);
    while p.status().fetching {
        tokio::task::yield_now().await; // let the failing background refresh finish
    }
    assert!(p.status().last_error.is_some());

    clock.advance(lifetime); // now expired
    let err = p.token(TokenRequest::default()).await.unwrap_err();
    assert_eq!(err.http_status(), 503, "{err}");
    assert!(err.is_retryable());
    assert!(!err.to_string().contains(t1.access_token.expose()));
    let err = p.token(TokenRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), "token_unavailable");
    assert!(
        err.retry_after()
            .is_some_and(|d| d <= Duration::from_secs(1))
    );

    idp.up().await;
    clock.advance(Duration::from_secs(1));
    let t2 = p
        .token(TokenRequest::default())
        .await
        .expect("resumes within a second of the IdP's return");
    assert_ne!(t2.token.fingerprint, t1.fingerprint);
}

#[tokio::test]
async fn invalid_client_causes_no_storm() {
    let idp = Idp::start_default().await;
    let s = Secrets::new();
    let toml = format!(
        "[profiles.p]\ntoken_url = \"{}\"\nclient_id = \"agent-basic\"\nclient_secret = {{ file = \"{}\" }}\n",
        idp.token_url(),
        s.file("wrong", "not-the-secret")
    );
    let clock = ManualClock::starting_now();
    let b = Arc::new(broker(&toml, &clock));
    let tasks = spawn_token_callers(&b, "p", 200);
    for t in tasks {
        let e = t.await.unwrap().unwrap_err();
        assert_eq!(e.code(), "idp_invalid_client", "{e}");
        assert_eq!(e.kind(), ErrorKind::IdpRejected);
    }
    for _ in 0..60 {
        clock.advance(Duration::from_secs(1));
        assert!(
            profile(&b, "p")
                .token(TokenRequest::default())
                .await
                .is_err()
        );
    }
    assert_eq!(
        idp.stats().await.token_requests,
        1,
        "one request, then a pause"
    );

    // Fixing the secret file is picked up once the pause is over, without a restart.
    s.file("wrong", "agent-basic-secret");
    clock.advance(Duration::from_secs(300));
    profile(&b, "p")
        .token(TokenRequest::default())
        .await
        .expect("recovers after the fix");
    assert_eq!(idp.stats().await.token_requests, 2);
}

#[tokio::test]
async fn retry_after_from_the_idp_is_honoured() {
    let idp = Idp::start_default().await;
    let s = Secrets::new();
    let clock = ManualClock::starting_now();
    let b = broker(&basic_profile(&idp, &s, "p"), &clock);
    let p = profile(&b, "p");
    idp.fault(
        Fault::status(Endpoint::Token, 503)
            .retry_after("5")
            .times(1),
    )
    .await;
    let e = p.token(TokenRequest::default()).await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(5)));
    for _ in 0..4 {
        clock.advance(Duration::from_secs(1));
        let e = p.token(TokenRequest::default()).await.unwrap_err();
        assert_eq!(e.code(), "token_unavailable");
    }
    assert_eq!(
        idp.stats().await.token_requests,
        1,
        "nothing sent during Retry-After"
    );
    clock.advance(Duration::from_secs(1));
    p.token(TokenRequest::default())
        .await
        .expect("after Retry-After");
    assert_eq!(idp.stats().await.token_requests, 2);
}

#[tokio::test]
async fn garbled_200_is_transient_and_recovers() {
    let idp = Idp::start_default().await;
    let s = Secrets::new();
    let clock = ManualClock::starting_now();
    let b = broker(&basic_profile(&idp, &s, "p"), &clock);
    let p = profile(&b, "p");
    idp.fault(Fault::garbled(Endpoint::Token).times(1)).await;
    let e = p.token(TokenRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), "idp_malformed_response");
    assert!(e.is_retryable());
    clock.advance(Duration::from_secs(1));
    p.token(TokenRequest::default())
        .await
        .expect("a garbled answer does not stop refreshing");
}

#[tokio::test]
async fn rotated_refresh_tokens_are_kept_and_persisted() {
    let idp = Idp::start_default().await;
    let s = Secrets::new();
    let rt = idp
        .mint_refresh_token("refresh-client", "alice", "openid offline_access")
        .await;
    let state_file = s.path("rt-state");
    let toml = format!(
        r#"
[profiles.user]
issuer = "{}"
client_id = "refresh-client"
client_secret = {{ file = "{}" }}
grant = "refresh_token"
refresh_token = {{ file = "{}" }}
refresh_token_state_file = "{state_file}"
"#,
        idp.issuer(),
        s.file("secret", "refresh-client-secret"),
        s.file("rt", &rt),
    );
    let clock = ManualClock::starting_now();
    let b = broker(&toml, &clock);
    let p = profile(&b, "user");
    let t1 = p
        .token(TokenRequest::default())
        .await
        .expect("first refresh");
    assert_eq!(
        payload(t1.token.access_token.expose())["preferred_username"],
        "alice"
    );
    let persisted1 = std::fs::read_to_string(&state_file).expect("rotated token persisted");
    assert_ne!(persisted1, rt, "the IdP rotated the refresh token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&state_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // The rotated token is the one used next (the original is spent: reusing it would fail).
    let t2 = p
        .force_refresh(None)
        .await
        .expect("second refresh uses the rotated token");
    assert_ne!(t2.fingerprint, t1.token.fingerprint);
    let persisted2 = std::fs::read_to_string(&state_file).unwrap();
    assert_ne!(persisted2, persisted1);

    // A restart picks up the persisted token, not the spent one in the secret reference.
    let b2 = broker(&toml, &clock);
    profile(&b2, "user")
        .token(TokenRequest::default())
        .await
        .expect("restart continues the chain");
}

#[tokio::test]
async fn spent_refresh_token_is_a_clear_permanent_error() {
    let idp = Idp::start_default().await;
    let s = Secrets::new();
    let rt = idp
        .mint_refresh_token("refresh-client", "alice", "openid offline_access")
        .await;
    let toml = refresh_profile(&idp, &s, "user", &rt);
    let clock = ManualClock::starting_now();
    broker(&toml, &clock)
        .profile("user")
        .unwrap()
        .token(TokenRequest::default())
        .await
        .unwrap();
    // A second process with the same (now spent) token.
    let e = broker(&toml, &clock)
        .profile("user")
        .unwrap()
        .token(TokenRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "idp_invalid_grant", "{e}");
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn a_thousand_concurrent_forced_refreshes_make_one_token_request() {
    let idp = Idp::start_default().await;
    let s = Secrets::new();
    let clock = ManualClock::starting_now();
    let b = Arc::new(broker(&basic_profile(&idp, &s, "p"), &clock));
    let p = profile(&b, "p").clone();
    let first = p.token(TokenRequest::default()).await.unwrap().token;
    idp.reset_stats().await;

    // All spawned before this task yields, so all arrive while the one fetch is in flight.
    let tasks: Vec<JoinHandle<Result<_, Error>>> = (0..1000)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move { p.force_refresh(None).await })
        })
        .collect();
    let mut tokens = std::collections::HashSet::new();
    for t in tasks {
        tokens.insert(t.await.unwrap().expect("refreshed").fingerprint);
    }
    assert_eq!(tokens.len(), 1, "every caller got the same new token");
    let shared = *tokens.iter().next().unwrap();
    assert_ne!(shared, first.fingerprint, "a new token, not the old one");
    assert_eq!(
        idp.stats().await.token_requests_for("agent-basic"),
        1,
        "one IdP request for 1,000 forced refreshes"
    );

    // Afterwards: a refresh for the token the shared one replaced gets it without a request,
    // and so does one naming no token within the coalescing window (a late caller of the burst);
    // one naming the current token gets its own, within the limit (the burst took one unit).
    let late = p.force_refresh(Some(first.fingerprint)).await.unwrap();
    assert_eq!(late.fingerprint, shared);
    let unnamed = p.force_refresh(None).await.unwrap();
    assert_eq!(unnamed.fingerprint, shared);
    assert_eq!(idp.stats().await.token_requests_for("agent-basic"), 1);
    let own = p.force_refresh(Some(shared)).await.unwrap();
    assert_ne!(own.fingerprint, shared);
    assert_ne!(own.fingerprint, first.fingerprint);
    assert_eq!(idp.stats().await.token_requests_for("agent-basic"), 2);
    let next = p.force_refresh(Some(own.fingerprint)).await.unwrap();
    let e = p.force_refresh(Some(next.fingerprint)).await.unwrap_err();
    assert_eq!(e.code(), "forced_refresh_limited");
    assert_eq!(idp.stats().await.token_requests_for("agent-basic"), 3);
}
