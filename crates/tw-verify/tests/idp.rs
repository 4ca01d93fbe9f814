//! Against the real test IdP (oidc-provider laid out like Keycloak): tokens, key rotation, outages,
//! random-kid floods, readiness, introspection with caching and revocation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Secrets;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tw_core::{ErrorKind, ManualClock};
use tw_testkit::{Endpoint, Fault, Idp};
use tw_verify::testing::{decode_segment, with_header};
use tw_verify::{Check, VerifiedBy, Verifier, VerifyOptions};

const PLAIN: VerifyOptions = VerifyOptions { introspect: false };
const INTROSPECT: VerifyOptions = VerifyOptions { introspect: true };

fn config(idp: &Idp, secrets: &Secrets) -> tw_verify::VerifierSettings {
    common::gateway(json!([{
        "issuer": idp.issuer(),
        "audiences": ["api"],
        "jwks_ttl": "100s",
        "jwks_refetch_cooldown": "30s",
        "introspection": {
            "client_id": "agent-basic",
            "client_secret": { "file": secrets.file("introspect", "agent-basic-secret") },
            "cache_ttl": "10s",
            "negative_cache_ttl": "5s",
        },
    }]))
}

async fn setup() -> (Idp, Secrets, ManualClock, Arc<Verifier>) {
    let idp = Idp::start_default().await;
    let secrets = Secrets::new();
    let clock = ManualClock::starting_now();
    let v = common::verifier(&config(&idp, &secrets), &clock);
    v.start().await;
    assert!(v.is_ready());
    (idp, secrets, clock, v)
}

async fn basic_token(idp: &Idp) -> String {
    common::idp_token(&idp.token_url(), "agent-basic", "agent-basic-secret").await
}

#[tokio::test]
async fn idp_tokens_are_accepted_and_mapped() {
    let (idp, _s, _clock, v) = setup().await;
    let stats = idp.stats().await;
    assert_eq!((stats.discovery_requests, stats.jwks_requests), (1, 1));

    let t = basic_token(&idp).await;
    let got = v.verify(&t, PLAIN).await.expect("agent-basic token");
    let info = idp.client_info("agent-basic").await;
    assert_eq!(got.issuer, idp.issuer());
    assert_eq!(got.client_id.as_deref(), Some("agent-basic"));
    assert_eq!(
        got.subject.as_deref(),
        Some(info.service_account_id.as_str())
    );
    assert_eq!(got.username.as_deref(), Some("service-account-agent-basic"));
    assert!(got.service_account);
    assert!(got.audiences.contains(&"api".to_owned()));
    assert!(
        got.scopes.contains(&"profile".to_owned()),
        "{:?}",
        got.scopes
    );
    assert_eq!(got.via, VerifiedBy::Jwt);
    assert_eq!(got.claims["realm_access"]["roles"], json!(["agent"]));
    assert_eq!(
        got.claims["resource_access"]["api"]["roles"],
        json!(["read"])
    );
    assert_eq!(
        got.expires_at.as_secs(),
        decode_segment(&t, 1)["exp"].as_i64().unwrap()
    );

    // client_secret_post client.
    let resp: serde_json::Value = reqwest::Client::new()
        .post(idp.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "agent-post"),
            ("client_secret", "agent-post-secret"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let t2 = resp["access_token"].as_str().unwrap();
    let got2 = v.verify(t2, PLAIN).await.expect("agent-post token");
    assert_eq!(got2.client_id.as_deref(), Some("agent-post"));
    assert_eq!(idp.stats().await.jwks_requests, 1);
}

#[tokio::test]
async fn key_rotation_is_followed_by_one_refetch() {
    let (idp, _s, clock, v) = setup().await;
    let old = basic_token(&idp).await;
    v.verify(&old, PLAIN).await.expect("old key");

    // keep_old: the new kid is fetched once; a burst of new tokens all pass.
    let new_kid = idp.rotate_keys(true).await;
    let mut fresh = Vec::new();
    for _ in 0..10 {
        fresh.push(basic_token(&idp).await);
    }
    assert_eq!(decode_segment(&fresh[0], 0)["kid"], json!(new_kid));
    let before = idp.stats().await.jwks_requests;
    let results = futures::future::join_all(fresh.iter().map(|t| v.verify(t, PLAIN))).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(idp.stats().await.jwks_requests, before + 1);
    v.verify(&old, PLAIN)
        .await
        .expect("old key kept by the IdP");

    // Without keep_old, after the cooldown: one refetch again, and the old kid is gone.
    clock.advance(Duration::from_secs(31));
    let newer_kid = idp.rotate_keys(false).await;
    let newer = basic_token(&idp).await;
    assert_eq!(decode_segment(&newer, 0)["kid"], json!(newer_kid));
    v.verify(&newer, PLAIN).await.expect("newest key");
    assert_eq!(idp.stats().await.jwks_requests, before + 2);
    let e = v.verify(&fresh[0], PLAIN).await.expect_err("withdrawn key");
    assert_eq!(e.check(), Check::Key);
    assert_eq!(
        idp.stats().await.jwks_requests,
        before + 2,
        "cooldown: no new fetch"
    );
}

#[tokio::test]
async fn an_idp_outage_keeps_the_cached_keys() {
    let (idp, _s, clock, v) = setup().await;
    let a = basic_token(&idp).await;
    let b = basic_token(&idp).await;
    let c = basic_token(&idp).await;
    v.verify(&a, PLAIN).await.expect("a");

    idp.down().await;
    v.verify(&b, PLAIN)
        .await
        .expect("b, signature checked with cached keys");
    assert!(!v.refresh_keys().await);
    // The background refresher fails too (80 % of the 100 s TTL), and keeps them.
    clock.advance(Duration::from_secs(85));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(v.is_ready());
    v.verify(&c, PLAIN)
        .await
        .expect("c, after the failed refreshes");
    idp.up().await;

    // Error answers (503, garbled) are failures too: keys kept.
    idp.fault(Fault::status(Endpoint::Jwks, 503)).await;
    assert!(!v.refresh_keys().await);
    idp.fault(Fault::garbled(Endpoint::Jwks)).await;
    assert!(!v.refresh_keys().await);
    idp.clear_faults().await;
    let d = basic_token(&idp).await;
    v.verify(&d, PLAIN).await.expect("d");
    assert!(v.refresh_keys().await);
}

#[tokio::test]
async fn a_random_kid_flood_causes_at_most_one_jwks_fetch_per_cooldown() {
    let (idp, _s, clock, v) = setup().await;
    let real = basic_token(&idp).await;
    let header = decode_segment(&real, 0);
    let before = idp.stats().await.jwks_requests;
    let forged: Vec<String> = (0..1000)
        .map(|i| {
            let mut h = header.clone();
            h["kid"] = json!(format!("random-{i}-{}", uuid_like(i)));
            with_header(&real, &h)
        })
        .collect();
    let results = futures::future::join_all(forged.iter().map(|t| v.verify(t, PLAIN))).await;
    for r in &results {
        assert_eq!(r.as_ref().expect_err("forged").check(), Check::Key);
    }
    let after = idp.stats().await.jwks_requests;
    assert!(
        after - before <= 1,
        "{} JWKS fetches for 1000 random kids",
        after - before
    );
    // Again, sequentially: nothing more.
    for t in forged.iter().take(200) {
        assert!(v.verify(t, PLAIN).await.is_err());
    }
    assert_eq!(idp.stats().await.jwks_requests, after);
    // The next cooldown allows one more.
    clock.advance(Duration::from_secs(31));
    let results = futures::future::join_all(forged.iter().map(|t| v.verify(t, PLAIN))).await;
    assert!(results.iter().all(Result::is_err));
    assert!(idp.stats().await.jwks_requests - after <= 1);
    v.verify(&real, PLAIN).await.expect("real token still fine");
}

fn uuid_like(i: usize) -> u64 {
    (i as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17)
}

#[tokio::test]
async fn ready_only_after_the_keys_are_loaded() {
    let idp = Idp::start_default().await;
    let secrets = Secrets::new();
    let clock = ManualClock::starting_now();
    idp.down().await;
    let v = common::verifier(&config(&idp, &secrets), &clock);
    v.start().await;
    assert!(!v.is_ready());
    idp.up().await;
    let t = basic_token(&idp).await;
    let e = v.verify(&t, PLAIN).await.expect_err("not ready");
    assert_eq!(e.check(), Check::KeysUnavailable);
    assert_eq!(e.into_error().http_status(), 503);
    // The refresher retries (1 s by the clock after the failure).
    clock.advance(Duration::from_secs(2));
    assert!(common::eventually(Duration::from_secs(10), async || v.is_ready()).await);
    v.verify(&t, PLAIN).await.expect("ready now");
}

async fn revoke(idp: &Idp, token: &str) {
    let resp = reqwest::Client::new()
        .post(idp.revocation_url())
        .basic_auth("agent-basic", Some("agent-basic-secret"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "revocation: {}", resp.status());
}

#[tokio::test]
async fn introspection_is_cached_and_sees_revocation_after_the_ttl() {
    let (idp, _s, clock, v) = setup().await;
    let t = basic_token(&idp).await;
    let n0 = idp.stats().await.introspection_requests;
    let got = v.verify(&t, INTROSPECT).await.expect("active");
    assert_eq!(got.via, VerifiedBy::Jwt);
    assert_eq!(idp.stats().await.introspection_requests, n0 + 1);
    v.verify(&t, INTROSPECT).await.expect("cached");
    assert_eq!(
        idp.stats().await.introspection_requests,
        n0 + 1,
        "second verify: no request"
    );

    revoke(&idp, &t).await;
    v.verify(&t, INTROSPECT)
        .await
        .expect("positive answer still cached");
    v.verify(&t, PLAIN)
        .await
        .expect("a plain JWT check does not see revocation");
    clock.advance(Duration::from_secs(11));
    let e = v.verify(&t, INTROSPECT).await.expect_err("revoked");
    assert_eq!(e.check(), Check::Introspection);
    assert_eq!(e.into_error().http_status(), 401);
    assert_eq!(idp.stats().await.introspection_requests, n0 + 2);
    assert!(v.verify(&t, INTROSPECT).await.is_err());
    assert_eq!(
        idp.stats().await.introspection_requests,
        n0 + 2,
        "negative answer cached"
    );
    clock.advance(Duration::from_secs(6));
    assert!(v.verify(&t, INTROSPECT).await.is_err());
    assert_eq!(
        idp.stats().await.introspection_requests,
        n0 + 3,
        "negative TTL passed"
    );
}

#[tokio::test]
async fn opaque_tokens_are_introspected() {
    let (idp, _s, clock, v) = setup().await;
    let t = basic_token(&idp).await;
    // The IdP stores each access token under its jti: that handle is an opaque access token.
    let handle = decode_segment(&t, 1)["jti"].as_str().unwrap().to_owned();
    let n0 = idp.stats().await.introspection_requests;
    let got = v.verify(&handle, PLAIN).await.expect("opaque token");
    assert_eq!(got.via, VerifiedBy::Introspection);
    assert_eq!(got.issuer, idp.issuer());
    assert_eq!(got.client_id.as_deref(), Some("agent-basic"));
    v.verify(&handle, PLAIN).await.expect("cached");
    assert_eq!(idp.stats().await.introspection_requests, n0 + 1);
    let report = v.inspect(&handle).await;
    assert!(report.is_valid(), "{report}");

    // Unknown opaque token: inactive.
    let e = v
        .verify("no-such-token-0123456789", PLAIN)
        .await
        .expect_err("unknown");
    assert_eq!(e.check(), Check::Introspection);
    // A refresh token is not an access token.
    let rt = idp
        .mint_refresh_token("refresh-client", "alice", "openid offline_access")
        .await;
    let e = v.verify(&rt, PLAIN).await.expect_err("refresh token");
    assert_eq!(e.check(), Check::Audience, "{e:?}");
    // Without an audience rule it is still refused: the answer does not vouch for an access token.
    let secrets = Secrets::new();
    let mut cfg = config(&idp, &secrets);
    cfg.issuers[0].audiences.clear();
    let v2 = common::verifier(&cfg, &clock);
    v2.start().await;
    let e = v2.verify(&rt, PLAIN).await.expect_err("refresh token");
    assert_eq!(e.check(), Check::TokenType, "{e:?}");
    v2.verify(&handle, PLAIN)
        .await
        .expect("the access token handle is still fine");
    // Not a bearer token at all.
    let e = v.verify("a b", PLAIN).await.expect_err("malformed");
    assert_eq!(e.check(), Check::Format);
}

#[tokio::test]
async fn introspection_failures_are_transient() {
    let (idp, _s, _clock, v) = setup().await;
    let t = basic_token(&idp).await;
    idp.fault(Fault::status(Endpoint::Introspect, 503)).await;
    let e = v.verify(&t, INTROSPECT).await.expect_err("IdP failing");
    assert_eq!(e.check(), Check::IntrospectionUnavailable);
    let err = e.into_error();
    assert_eq!(err.kind(), ErrorKind::IdpUnavailable);
    assert_eq!(err.http_status(), 503);
    assert_eq!(err.code(), "temporarily_unavailable");
    idp.fault(Fault::garbled(Endpoint::Introspect)).await;
    assert_eq!(
        v.verify(&t, INTROSPECT).await.expect_err("garbled").check(),
        Check::IntrospectionUnavailable
    );
    // Failures are not cached: once the IdP is back, the token is active.
    idp.clear_faults().await;
    v.verify(&t, INTROSPECT).await.expect("active");
}

// --- Unknown-kid refetches: a made-up kid must not hold up a real rotation ---------------------

/// `token` with its `kid` replaced (signature left as is: it can only fail).
fn with_kid(token: &str, kid: &str) -> String {
    let mut h = decode_segment(token, 0);
    h["kid"] = json!(kid);
    with_header(token, &h)
}

async fn jwks_fetches(idp: &Idp) -> u64 {
    idp.stats().await.jwks_requests
}

/// Presents `token` every 100 ms of clock time (as callers retrying would) until it is accepted,
/// at most `limit` of clock time; returns the clock time from `first` (its first presentation) to
/// acceptance. Every refusal must be a `kid` refusal.
async fn accepted_after(
    v: &Verifier,
    clock: &ManualClock,
    token: &str,
    first: tw_core::UnixTime,
    limit: Duration,
) -> Option<Duration> {
    use tw_core::Clock;
    while first.until(clock.now()) < limit {
        clock.advance(Duration::from_millis(100));
        match v.verify(token, PLAIN).await {
            Ok(_) => return Some(first.until(clock.now())),
            Err(e) => assert_eq!(e.check(), Check::Key, "{e:?}"),
        }
    }
    None
}

#[tokio::test]
async fn a_junk_kid_just_before_a_rotation_delays_the_new_key_by_at_most_two_seconds() {
    use tw_core::Clock;
    let (idp, _s, clock, v) = setup().await;
    let real = basic_token(&idp).await;
    v.verify(&real, PLAIN).await.expect("control");
    let before = jwks_fetches(&idp).await;

    // One token with a made-up kid: one fruitless refetch.
    let e = v
        .verify(&with_kid(&real, "made-up-kid"), PLAIN)
        .await
        .expect_err("junk kid");
    assert_eq!(e.check(), Check::Key);
    assert_eq!(jwks_fetches(&idp).await, before + 1);

    // Less than a second later the IdP rotates, and tokens with the new kid arrive.
    clock.advance(Duration::from_millis(400));
    let new_kid = idp.rotate_keys(true).await;
    let fresh = basic_token(&idp).await;
    assert_eq!(decode_segment(&fresh, 0)["kid"], json!(new_kid));
    let first = clock.now();
    let e = v
        .verify(&fresh, PLAIN)
        .await
        .expect_err("refused at first: the junk kid's refetch was 0.4 s ago");
    assert_eq!(e.check(), Check::Key);
    assert_eq!(
        jwks_fetches(&idp).await,
        before + 1,
        "a refusal within the cooldown costs no fetch"
    );

    let took = accepted_after(&v, &clock, &fresh, first, Duration::from_secs(2))
        .await
        .expect("the new key must be accepted within 2 s of its first token");
    eprintln!("new key accepted {took:?} (clock) after its first token");
    assert!(took <= Duration::from_secs(2), "{took:?}");
    assert_eq!(
        jwks_fetches(&idp).await,
        before + 2,
        "exactly one refetch for the rotation"
    );
    // Other holders of new tokens: accepted, no fetch.
    let other = basic_token(&idp).await;
    v.verify(&other, PLAIN).await.expect("another new token");
    v.verify(&real, PLAIN)
        .await
        .expect("old key kept by the IdP");
    assert_eq!(jwks_fetches(&idp).await, before + 2);
}

#[tokio::test]
async fn a_sparse_caller_s_next_token_after_a_junk_kid_is_accepted() {
    // A caller that does not retry: its first new token is refused 0.9 s after the junk kid's
    // refetch; its next one (same new kid, 1.1 s later, 2 s after the junk kid) is accepted.
    let (idp, _s, clock, v) = setup().await;
    let real = basic_token(&idp).await;
    let before = jwks_fetches(&idp).await;
    assert!(v.verify(&with_kid(&real, "made-up"), PLAIN).await.is_err());
    clock.advance(Duration::from_millis(900));
    idp.rotate_keys(true).await;
    let fresh = basic_token(&idp).await;
    assert_eq!(
        v.verify(&fresh, PLAIN)
            .await
            .expect_err("within 1 s")
            .check(),
        Check::Key
    );
    assert_eq!(jwks_fetches(&idp).await, before + 1);
    clock.advance(Duration::from_millis(1100));
    let fresh2 = basic_token(&idp).await;
    v.verify(&fresh2, PLAIN)
        .await
        .expect("new kid accepted 1.1 s after its first token");
    v.verify(&fresh, PLAIN).await.expect("and the first one");
    assert_eq!(jwks_fetches(&idp).await, before + 2);
}

#[tokio::test]
async fn a_random_kid_flood_costs_a_handful_of_fetches_then_one_per_cooldown() {
    let (idp, _s, clock, v) = setup().await;
    // The control token must outlive two minutes of clock time.
    idp.set_access_token_ttl(3600).await;
    let real = basic_token(&idp).await;
    let before = jwks_fetches(&idp).await;
    // One new random kid every 100 ms of clock time, for two minutes.
    let mut per_minute = Vec::new();
    let mut mark = before;
    for i in 0..1200usize {
        let forged = with_kid(&real, &format!("flood-{i}-{:016x}", uuid_like(i)));
        assert_eq!(
            v.verify(&forged, PLAIN).await.expect_err("forged").check(),
            Check::Key
        );
        clock.advance(Duration::from_millis(100));
        if (i + 1) % 600 == 0 {
            let now = jwks_fetches(&idp).await;
            per_minute.push(now - mark);
            mark = now;
        }
    }
    eprintln!("JWKS fetches per minute of flood: {per_minute:?}");
    assert!(per_minute[0] <= 8, "first minute: {per_minute:?}");
    assert!(per_minute[1] <= 3, "second minute: {per_minute:?}");
    v.verify(&real, PLAIN)
        .await
        .expect("valid tokens undisturbed");
}

#[tokio::test]
async fn a_rotation_during_a_random_kid_flood_is_accepted_within_two_seconds() {
    use tw_core::Clock;
    let (idp, _s, clock, v) = setup().await;
    let real = basic_token(&idp).await;
    let before = jwks_fetches(&idp).await;
    let flood = |i: usize| with_kid(&real, &format!("flood-{i}-{:016x}", uuid_like(i)));
    // 30 s of flood: the cooldown has grown to its cap (the last refetch was by the kid at 30 s).
    for i in 0..=300usize {
        assert!(v.verify(&flood(i), PLAIN).await.is_err());
        if i < 300 {
            clock.advance(Duration::from_millis(100));
        }
    }
    let during = jwks_fetches(&idp).await - before;
    assert!(during <= 5, "{during} fetches in 30 s of flood");

    // The IdP rotates now; its tokens arrive among the flood.
    idp.rotate_keys(true).await;
    let fresh = basic_token(&idp).await;
    let first = clock.now();
    assert_eq!(
        v.verify(&fresh, PLAIN).await.expect_err("first").check(),
        Check::Key
    );
    let mut accepted = None;
    for i in 301..=330usize {
        clock.advance(Duration::from_millis(100));
        assert!(v.verify(&flood(i), PLAIN).await.is_err());
        if v.verify(&fresh, PLAIN).await.is_ok() {
            accepted = Some(first.until(clock.now()));
            break;
        }
    }
    let took = accepted.expect("the new key must be accepted within 2 s, flood or not");
    eprintln!("new key accepted {took:?} (clock) after its first token, during the flood");
    assert!(took <= Duration::from_secs(2), "{took:?}");
    assert_eq!(
        jwks_fetches(&idp).await - before,
        during + 1,
        "one refetch for the rotation"
    );
}

#[tokio::test]
async fn a_new_kid_that_joins_a_fetch_begun_before_the_rotation_is_not_remembered_as_unknown() {
    use tw_core::Clock;
    let (idp, _s, clock, v) = setup().await;
    let real = basic_token(&idp).await;
    let before = jwks_fetches(&idp).await;
    // The junk kid's refetch is answered with the keys of before the rotation, and that answer
    // is held back while the IdP rotates and a new token arrives (which joins that fetch).
    idp.fault(Fault::hold(Endpoint::Jwks, Duration::from_secs(2)).times(1))
        .await;
    let junk = with_kid(&real, "made-up");
    let v2 = v.clone();
    let junk_task = tokio::spawn(async move { v2.verify(&junk, PLAIN).await.map(|_| ()) });
    assert!(
        common::eventually(Duration::from_secs(5), async || idp
            .stats()
            .await
            .held_responses
            == 1)
        .await
    );
    idp.rotate_keys(true).await;
    let fresh = basic_token(&idp).await;
    assert!(
        !junk_task.is_finished(),
        "test premise: the stale answer is still held back"
    );
    let first = clock.now();
    let e = v
        .verify(&fresh, PLAIN)
        .await
        .expect_err("the joined fetch had the old keys");
    assert_eq!(e.check(), Check::Key);
    assert_eq!(
        junk_task.await.unwrap().expect_err("junk").check(),
        Check::Key
    );
    assert_eq!(jwks_fetches(&idp).await, before + 1);

    let took = accepted_after(&v, &clock, &fresh, first, Duration::from_secs(2))
        .await
        .expect("not remembered as unknown: accepted within 2 s");
    eprintln!("new key accepted {took:?} (clock) after its first token");
    assert!(took <= Duration::from_secs(2), "{took:?}");
    assert_eq!(jwks_fetches(&idp).await, before + 2);
}
