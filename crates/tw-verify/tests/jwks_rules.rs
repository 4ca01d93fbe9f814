//! JWKS rules against a real (static, local) key publisher: unknown-kid refetch limits, rotation,
//! last good keys, background refresh by the clock, readiness, discovery, the verified cache.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use jsonwebtoken::Algorithm;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tw_core::{Clock, ErrorKind, ManualClock};
use tw_verify::testing::{
    CorpusParams, KeyPublisher, RSA_KID, fixture_jwks, public_jwk, rsa_key, sign, untrusted_key,
    with_header,
};
use tw_verify::{Check, Verifier, VerifyOptions};

const ISSUER: &str = "https://idp.example/realms/test";

fn config(jwks_url: &str, extra: Value) -> tw_verify::VerifierSettings {
    let mut iss = json!({
        "issuer": ISSUER,
        "jwks_url": jwks_url,
        "audiences": ["api"],
        "jwks_ttl": "100s",
        "jwks_refetch_cooldown": "30s",
    });
    for (k, v) in extra.as_object().unwrap() {
        iss[k] = v.clone();
    }
    common::gateway(json!([iss]))
}

async fn setup(extra: Value) -> (KeyPublisher, ManualClock, Arc<Verifier>) {
    let publisher = KeyPublisher::start(fixture_jwks()).await;
    let clock = ManualClock::starting_now();
    let v = common::verifier(&config(&publisher.jwks_url(), extra), &clock);
    v.start().await;
    assert!(v.is_ready());
    assert_eq!(publisher.jwks_requests(), 1);
    (publisher, clock, v)
}

fn token(clock: &ManualClock, kid: &str) -> String {
    let claims = CorpusParams::new(ISSUER, clock.now()).claims();
    sign(
        &json!({"alg":"RS256","typ":"JWT","kid":kid}),
        &claims,
        &rsa_key(),
        Algorithm::RS256,
    )
}

fn random_kid(i: usize) -> String {
    format!("{:016x}-{i}", rand_u64(i))
}

fn rand_u64(i: usize) -> u64 {
    // No RNG dependency needed: a mixing function is random enough for kids.
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 31;
    x.wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

const OPTS: VerifyOptions = VerifyOptions { introspect: false };

#[tokio::test]
async fn random_kid_flood_costs_at_most_one_fetch_per_cooldown() {
    let (publisher, clock, v) = setup(json!({})).await;
    let real = token(&clock, RSA_KID);
    v.verify(&real, OPTS).await.expect("control");

    // 500 concurrent + 500 sequential tokens with random kids.
    let forged: Vec<String> = (0..1000)
        .map(|i| {
            with_header(
                &real,
                &json!({"alg":"RS256","typ":"JWT","kid":random_kid(i)}),
            )
        })
        .collect();
    let results = futures::future::join_all(forged[..500].iter().map(|t| v.verify(t, OPTS))).await;
    for r in results {
        assert_eq!(r.expect_err("forged").check(), Check::Key);
    }
    for t in &forged[500..] {
        assert_eq!(
            v.verify(t, OPTS).await.expect_err("forged").check(),
            Check::Key
        );
    }
    assert_eq!(
        publisher.jwks_requests(),
        2,
        "startup + one unknown-kid refetch"
    );

    // The same kids again, still within the cooldown: no fetch.
    for t in &forged[..100] {
        assert_eq!(
            v.verify(t, OPTS).await.expect_err("forged").check(),
            Check::Key
        );
    }
    assert_eq!(publisher.jwks_requests(), 2);

    // After the cooldown: one more refetch for a whole new flood.
    clock.advance(Duration::from_secs(31));
    let more: Vec<String> = (1000..1200)
        .map(|i| with_header(&real, &json!({"alg":"RS256","kid":random_kid(i)})))
        .collect();
    let results = futures::future::join_all(more.iter().map(|t| v.verify(t, OPTS))).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_err_and(|e| e.check() == Check::Key))
    );
    assert_eq!(publisher.jwks_requests(), 3);
    // Valid tokens were never disturbed.
    v.verify(&token(&clock, RSA_KID), OPTS)
        .await
        .expect("still valid");
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_by_one_refetch() {
    let (publisher, clock, v) = setup(json!({})).await;
    let new_key = untrusted_key();
    let claims = CorpusParams::new(ISSUER, clock.now()).claims();
    let rotated = sign(
        &json!({"alg":"RS256","kid":"rotated"}),
        &claims,
        &new_key,
        Algorithm::RS256,
    );
    publisher.set_jwks(json!({"keys": [
        public_jwk(&rsa_key(), Algorithm::RS256, RSA_KID, "sig", false),
        public_jwk(&new_key, Algorithm::RS256, "rotated", "sig", false),
    ]}));
    let got = v.verify(&rotated, OPTS).await.expect("new kid accepted");
    assert_eq!(got.client_id.as_deref(), Some("agent-basic"));
    assert_eq!(publisher.jwks_requests(), 2);
    // Another token with the new kid: no fetch.
    let mut claims2 = CorpusParams::new(ISSUER, clock.now()).claims();
    claims2["jti"] = json!("2");
    let rotated2 = sign(
        &json!({"alg":"RS256","kid":"rotated"}),
        &claims2,
        &new_key,
        Algorithm::RS256,
    );
    v.verify(&rotated2, OPTS).await.expect("accepted");
    assert_eq!(publisher.jwks_requests(), 2);
}

#[tokio::test]
async fn a_kid_refused_during_the_cooldown_is_accepted_as_soon_as_it_ends() {
    // An attacker's random kid uses up the refetch; a genuine rotation lands just after.
    let (publisher, clock, v) = setup(json!({})).await;
    let real = token(&clock, RSA_KID);
    let forged = with_header(
        &real,
        &json!({"alg":"RS256","typ":"JWT","kid":random_kid(1)}),
    );
    assert!(v.verify(&forged, OPTS).await.is_err());
    assert_eq!(
        publisher.jwks_requests(),
        2,
        "the attacker's kid cost one refetch"
    );

    let new_key = untrusted_key();
    publisher.set_jwks(json!({"keys": [
        public_jwk(&rsa_key(), Algorithm::RS256, RSA_KID, "sig", false),
        public_jwk(&new_key, Algorithm::RS256, "rotated", "sig", false),
    ]}));
    clock.advance(Duration::from_secs(1));
    let rotated = sign(
        &json!({"alg":"RS256","kid":"rotated"}),
        &CorpusParams::new(ISSUER, clock.now()).claims(),
        &new_key,
        Algorithm::RS256,
    );
    let e = v.verify(&rotated, OPTS).await.unwrap_err();
    assert_eq!(
        e.check(),
        Check::Key,
        "refused within the cooldown, without a fetch"
    );
    assert_eq!(publisher.jwks_requests(), 2);

    // Long after (the adaptive cooldown after one fruitless refetch is 2 s, and a kid presented
    // again may fetch 1 s after the last refetch): the genuine kid gets its fetch now, not a
    // cooldown after it was first refused.
    clock.advance(Duration::from_secs(29));
    v.verify(&rotated, OPTS)
        .await
        .expect("new key accepted once the cooldown ends");
    assert_eq!(publisher.jwks_requests(), 3);
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_last_good_keys() {
    let (publisher, clock, v) = setup(json!({})).await;
    publisher.set_failure(Some(503));
    assert!(!v.refresh_keys().await, "refresh must fail");
    assert_eq!(publisher.jwks_requests(), 2);
    assert!(v.is_ready());
    v.verify(&token(&clock, RSA_KID), OPTS)
        .await
        .expect("cached keys still verify");
    // A garbled or empty JWKS is a failure too, never a reason to drop keys.
    publisher.set_failure(None);
    publisher.set_jwks(json!({"keys": []}));
    assert!(!v.refresh_keys().await);
    publisher.set_jwks(json!({"nothing": true}));
    assert!(!v.refresh_keys().await);
    v.verify(&token(&clock, RSA_KID), OPTS)
        .await
        .expect("still verifies");
    assert_eq!(v.status()[0].key_ids.len(), 2);
}

#[tokio::test]
async fn background_refresh_follows_the_clock_and_retries_after_failures() {
    let (publisher, clock, v) = setup(json!({})).await;
    // Nothing happens before 80 % of the TTL.
    clock.advance(Duration::from_secs(70));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(publisher.jwks_requests(), 1);
    // Past it, the refresher fetches (it re-reads the clock every second).
    clock.advance(Duration::from_secs(11));
    assert!(
        common::eventually(Duration::from_secs(5), async || publisher.jwks_requests()
            == 2)
        .await
    );
    // A failing refresh is retried (1 s by the clock, doubling), keys kept meanwhile.
    publisher.set_failure(Some(500));
    clock.advance(Duration::from_secs(81));
    assert!(
        common::eventually(Duration::from_secs(5), async || publisher.jwks_requests()
            == 3)
        .await
    );
    v.verify(&token(&clock, RSA_KID), OPTS)
        .await
        .expect("keys kept");
    clock.advance(Duration::from_secs(2));
    assert!(
        common::eventually(Duration::from_secs(5), async || publisher.jwks_requests()
            == 4)
        .await
    );
    publisher.set_failure(None);
    clock.advance(Duration::from_secs(3));
    assert!(
        common::eventually(Duration::from_secs(5), async || publisher.jwks_requests()
            == 5)
        .await
    );
    assert!(v.is_ready());
}

#[tokio::test]
async fn not_ready_until_keys_load() {
    let publisher = KeyPublisher::start(fixture_jwks()).await;
    publisher.set_failure(Some(503));
    let clock = ManualClock::starting_now();
    let v = common::verifier(&config(&publisher.jwks_url(), json!({})), &clock);
    assert!(!v.is_ready());
    v.start().await;
    assert!(!v.is_ready());
    let e = v
        .verify(&token(&clock, RSA_KID), OPTS)
        .await
        .expect_err("no keys");
    assert_eq!(e.check(), Check::KeysUnavailable);
    assert!(e.is_transient());
    assert_eq!(e.error_code(), "temporarily_unavailable");
    let err = e.into_error();
    assert_eq!(err.kind(), ErrorKind::IdpUnavailable);
    assert_eq!(err.http_status(), 503);
    publisher.set_failure(None);
    clock.advance(Duration::from_secs(2));
    assert!(common::eventually(Duration::from_secs(5), async || v.is_ready()).await);
    v.verify(&token(&clock, RSA_KID), OPTS)
        .await
        .expect("now verifies");
}

#[tokio::test]
async fn discovery_finds_the_jwks_and_must_name_the_issuer() {
    let publisher = KeyPublisher::start(fixture_jwks()).await;
    let clock = ManualClock::starting_now();
    let issuer = publisher.base_url().to_owned();
    let cfg = common::gateway(json!([{ "issuer": issuer, "audiences": ["api"] }]));
    let v = common::verifier(&cfg, &clock);
    v.start().await;
    assert!(v.is_ready());
    let claims = CorpusParams::new(issuer.clone(), clock.now()).claims();
    let t = sign(
        &json!({"alg":"RS256","kid":RSA_KID}),
        &claims,
        &rsa_key(),
        Algorithm::RS256,
    );
    v.verify(&t, OPTS).await.expect("verified via discovery");

    // A discovery document naming another issuer is refused (mix-up defence).
    let other = KeyPublisher::start(fixture_jwks()).await;
    other.set_discovery_issuer("https://evil.example");
    let cfg = common::gateway(json!([{ "issuer": other.base_url() }]));
    let v = common::verifier(&cfg, &clock);
    v.start().await;
    assert!(!v.is_ready());
    assert_eq!(other.jwks_requests(), 0);
}

/// Counters accumulated over snapshots (the debugging recorder resets counters on each snapshot).
type Seen = Vec<(String, Vec<(String, String)>, u64)>;

struct Tally {
    snap: Snapshotter,
    seen: std::cell::RefCell<Seen>,
}

impl Tally {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let mut seen = self.seen.borrow_mut();
        for (k, _, _, v) in self.snap.snapshot().into_vec() {
            if let DebugValue::Counter(c) = v {
                let ls: Vec<(String, String)> = k
                    .key()
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                seen.push((k.key().name().to_owned(), ls, c));
            }
        }
        seen.iter()
            .filter(|(n, ls, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(ln, lv)| ls.iter().any(|(k, v)| k == ln && v == lv))
            })
            .map(|(_, _, c)| c)
            .sum()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_verified_cache_never_outlives_exp_nor_the_key() {
    let recorder = DebuggingRecorder::new();
    let snap = Tally {
        snap: recorder.snapshotter(),
        seen: Default::default(),
    };
    let _guard = metrics::set_default_local_recorder(&recorder);

    let (publisher, clock, v) = setup(json!({})).await;
    let t = token(&clock, RSA_KID);
    v.verify(&t, OPTS).await.expect("first");
    v.verify(&t, OPTS).await.expect("second");
    assert_eq!(snap.get(tw_verify::METRIC_CACHE_HITS, &[]), 1);
    assert_eq!(
        snap.get(
            tw_verify::METRIC_DECISIONS,
            &[("issuer", ISSUER), ("outcome", "ok")]
        ),
        2
    );
    assert_eq!(
        snap.get(
            tw_verify::METRIC_JWKS_FETCHES,
            &[("cause", "startup"), ("result", "ok")]
        ),
        1
    );

    // exp is now + 300: one second before, still served; at exp, refused (leeway does not extend
    // the cache, but verification itself applies it: 60 s leeway).
    clock.advance(Duration::from_secs(299));
    v.verify(&t, OPTS).await.expect("before exp");
    assert_eq!(snap.get(tw_verify::METRIC_CACHE_HITS, &[]), 2);
    clock.advance(Duration::from_secs(1));
    v.verify(&t, OPTS)
        .await
        .expect("within leeway, re-verified");
    assert_eq!(
        snap.get(tw_verify::METRIC_CACHE_HITS, &[]),
        2,
        "not served from cache at exp"
    );
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        v.verify(&t, OPTS).await.expect_err("expired").check(),
        Check::Expiry
    );

    // A cached token whose key is no longer published is verified again, and refused.
    let t2 = token(&clock, RSA_KID);
    v.verify(&t2, OPTS).await.expect("fresh");
    publisher.set_jwks(
        json!({"keys": [public_jwk(&untrusted_key(), Algorithm::RS256, "other", "sig", false)]}),
    );
    assert!(v.refresh_keys().await);
    assert_eq!(
        v.verify(&t2, OPTS)
            .await
            .expect_err("key withdrawn")
            .check(),
        Check::Key
    );
    assert_eq!(
        snap.get(tw_verify::METRIC_DECISIONS, &[("outcome", "kid")]),
        1
    );
    assert_eq!(
        snap.get(tw_verify::METRIC_JWKS_FETCHES, &[("cause", "unknown_kid")]),
        1
    );
}

#[tokio::test]
async fn inspect_reports_every_step() {
    let (_publisher, clock, v) = setup(json!({})).await;
    let claims = CorpusParams::new(ISSUER, clock.now()).claims();
    let mut bad = claims.clone();
    bad["aud"] = json!("other");
    bad["exp"] = json!(clock.now().as_secs() - 1000);
    let t = sign(
        &json!({"alg":"RS256","kid":RSA_KID}),
        &bad,
        &rsa_key(),
        Algorithm::RS256,
    );
    let r = v.inspect(&t).await;
    let text = r.to_string();
    assert_eq!(r.steps.len(), tw_verify::INSPECT_ORDER.len(), "{text}");
    use tw_verify::StepStatus::*;
    let status = |c| r.step(c).unwrap().status;
    assert_eq!(status(Check::Signature), Pass, "{text}");
    assert_eq!(status(Check::Expiry), Fail, "{text}");
    assert_eq!(status(Check::Audience), Fail, "{text}");
    assert_eq!(status(Check::Introspection), Skip, "{text}");
    assert_eq!(r.verdict.as_ref().unwrap_err().check(), Check::Expiry);
    assert!(text.contains("fail  exp"), "{text}");
}

fn forged(clock: &ManualClock, kid: &str) -> String {
    with_header(
        &token(clock, RSA_KID),
        &json!({"alg":"RS256","typ":"JWT","kid":kid}),
    )
}

async fn refused_kid(v: &Verifier, t: &str) {
    assert_eq!(
        v.verify(t, OPTS).await.expect_err("unknown kid").check(),
        Check::Key
    );
}

#[tokio::test]
async fn the_cooldown_doubles_after_fruitless_refetches_and_decays_after_a_quiet_cap() {
    // Only kids never seen before: the adaptive cooldown alone decides.
    let (publisher, clock, v) = setup(json!({})).await;
    let step = |s: u64| clock.advance(Duration::from_millis(s));
    refused_kid(&v, &forged(&clock, "k0")).await; // t = 0: fetch; cooldown 1 s -> 2 s
    assert_eq!(publisher.jwks_requests(), 2);
    step(1900);
    refused_kid(&v, &forged(&clock, "k1")).await; // 1.9 s: within 2 s
    assert_eq!(publisher.jwks_requests(), 2);
    step(100);
    refused_kid(&v, &forged(&clock, "k2")).await; // 2 s: fetch; -> 4 s
    assert_eq!(publisher.jwks_requests(), 3);
    step(3900);
    refused_kid(&v, &forged(&clock, "k3")).await; // 5.9 s: within 4 s
    assert_eq!(publisher.jwks_requests(), 3);
    step(100);
    refused_kid(&v, &forged(&clock, "k4")).await; // 6 s: fetch; -> 8 s
    assert_eq!(publisher.jwks_requests(), 4);
    step(7900);
    refused_kid(&v, &forged(&clock, "k5")).await; // 13.9 s: within 8 s
    assert_eq!(publisher.jwks_requests(), 4);
    // Then a full cap (30 s) without unknown kids: back to 1 s.
    step(30_000);
    refused_kid(&v, &forged(&clock, "k6")).await; // fetch; 1 s -> 2 s (not 8 -> 16 s)
    assert_eq!(publisher.jwks_requests(), 5);
    step(2000);
    refused_kid(&v, &forged(&clock, "k7")).await;
    assert_eq!(
        publisher.jwks_requests(),
        6,
        "the cooldown decayed to the minimum after the quiet cap"
    );
}

#[tokio::test]
async fn the_cooldown_is_capped_by_jwks_refetch_cooldown() {
    let (publisher, clock, v) = setup(json!({"jwks_refetch_cooldown": "5s"})).await;
    // Fetches at 0, 2, 6 (cooldown 4 -> capped at 5), 11, 16: one per cap from then on.
    let mut fetched_at = Vec::new();
    for i in 0..200u64 {
        let n = publisher.jwks_requests();
        refused_kid(&v, &forged(&clock, &format!("k{i}"))).await;
        if publisher.jwks_requests() > n {
            fetched_at.push(i as f64 / 10.0);
        }
        clock.advance(Duration::from_millis(100));
    }
    assert_eq!(fetched_at, [0.0, 2.0, 6.0, 11.0, 16.0]);
}

#[tokio::test]
async fn a_new_key_resets_the_cooldown_to_the_minimum() {
    let (publisher, clock, v) = setup(json!({})).await;
    let step = |s: u64| clock.advance(Duration::from_millis(s));
    // Fruitless refetches at 0, 2 and 6 s: the cooldown is now 8 s.
    for (wait, kid) in [(0, "a"), (2000, "b"), (4000, "c")] {
        step(wait);
        refused_kid(&v, &forged(&clock, kid)).await;
    }
    assert_eq!(publisher.jwks_requests(), 4);
    // The IdP publishes a new key; a background refresh brings it.
    let new_key = untrusted_key();
    publisher.set_jwks(json!({"keys": [
        public_jwk(&rsa_key(), Algorithm::RS256, RSA_KID, "sig", false),
        public_jwk(&new_key, Algorithm::RS256, "rotated", "sig", false),
    ]}));
    assert!(v.refresh_keys().await);
    assert_eq!(publisher.jwks_requests(), 5);
    // 1 s after the last unknown-kid refetch, a new made-up kid may fetch again (not 8 s).
    step(1000);
    refused_kid(&v, &forged(&clock, "d")).await;
    assert_eq!(publisher.jwks_requests(), 6, "cooldown back at 1 s");
    step(1000);
    refused_kid(&v, &forged(&clock, "e")).await;
    assert_eq!(publisher.jwks_requests(), 6, "and doubled to 2 s again");
}

#[tokio::test]
async fn a_kid_confirmed_unknown_is_not_fetched_again_within_the_cap() {
    let (publisher, clock, v) = setup(json!({})).await;
    let junk = forged(&clock, "confirmed");
    refused_kid(&v, &junk).await;
    assert_eq!(publisher.jwks_requests(), 2);
    // Presented again and again, well past the cooldown and the repeated-kid interval: the fetch
    // that started after its first presentation said it is unknown; no more fetches for it.
    for _ in 0..29 {
        clock.advance(Duration::from_secs(1));
        refused_kid(&v, &junk).await;
    }
    assert_eq!(publisher.jwks_requests(), 2);
    // Other kids still get their refetches (29 s: cooldown 2 s -> 4 s); once the cap has passed
    // and that cooldown too, so does this one.
    refused_kid(&v, &forged(&clock, "other")).await;
    assert_eq!(publisher.jwks_requests(), 3);
    clock.advance(Duration::from_secs(4));
    refused_kid(&v, &junk).await;
    assert_eq!(publisher.jwks_requests(), 4);
}

#[tokio::test]
async fn made_up_kids_each_sent_twice_cost_at_most_one_fetch_per_second() {
    // The price of accepting a rotation within 2 s: kids refused once and presented again look
    // like a rotation's, and get a fetch at most once per second. Each 100 ms: a new kid, and
    // again the kid of a second ago.
    let (publisher, clock, v) = setup(json!({})).await;
    for i in 0..600usize {
        refused_kid(&v, &forged(&clock, &random_kid(i))).await;
        if i >= 10 {
            refused_kid(&v, &forged(&clock, &random_kid(i - 10))).await;
        }
        clock.advance(Duration::from_millis(100));
    }
    let fetches = publisher.jwks_requests() - 1;
    eprintln!("{fetches} JWKS fetches in 60 s of twice-sent random kids");
    assert!(fetches <= 61, "{fetches}");
    v.verify(&token(&clock, RSA_KID), OPTS)
        .await
        .expect("valid tokens undisturbed");
}
