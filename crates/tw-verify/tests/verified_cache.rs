//! The verified-token cache: bounded by bytes and entries, keyed by the exact token, expiry kept.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tw_core::ManualClock;
use tw_verify::testing::{
    CorpusParams, KeyPublisher, RSA_KID, fixture_jwks, rsa_key, sign, untrusted_key,
};
use tw_verify::{Check, Verifier, VerifyOptions};

const ISSUER: &str = "https://idp.example/realms/test";
const OPTS: VerifyOptions = VerifyOptions { introspect: false };

struct Env {
    _publisher: KeyPublisher,
    p: CorpusParams,
    clock: ManualClock,
    v: Arc<Verifier>,
}

async fn env(entries: u64, max_bytes: u64) -> Env {
    let clock = ManualClock::starting_now();
    let p = CorpusParams::new(ISSUER, tw_core::Clock::now(&clock));
    let publisher = KeyPublisher::start(fixture_jwks()).await;
    let mut cfg = p.verifier_settings(&publisher.jwks_url());
    cfg.verified_cache_entries = entries;
    cfg.verified_cache_max_bytes = max_bytes;
    let v = Arc::new(Verifier::new(&cfg, Arc::new(clock.clone())).expect("verifier"));
    v.start().await;
    assert!(v.is_ready());
    Env {
        _publisher: publisher,
        p,
        clock,
        v,
    }
}

fn header() -> Value {
    json!({"alg": "RS256", "typ": "JWT", "kid": RSA_KID})
}

fn token(p: &CorpusParams, n: u64) -> String {
    let mut c = p.claims();
    c["jti"] = json!(format!("jti-{n}"));
    sign(&header(), &c, &rsa_key(), Algorithm::RS256)
}

#[tokio::test]
async fn the_cache_is_bounded_by_bytes() {
    // Room for a handful of entries by bytes, but many more by count: the weigher must bind.
    let max_bytes = 32 * 1024;
    let e = env(10_000, max_bytes).await;
    let first = token(&e.p, 0);
    let a = e.v.verify(&first, OPTS).await.expect("valid");
    let one = e.v.cached_bytes();
    assert_eq!(e.v.cached_tokens(), 1);
    assert!(
        one > 1024,
        "an entry with a claims map weighs more than 1 KiB, got {one}"
    );
    for n in 1..200 {
        e.v.verify(&token(&e.p, n), OPTS).await.expect("valid");
    }
    let bytes = e.v.cached_bytes();
    let count = e.v.cached_tokens();
    assert!(
        bytes <= max_bytes,
        "{bytes} bytes cached, bound {max_bytes}"
    );
    assert!(count >= 1, "the cache still holds entries");
    assert!(
        count <= max_bytes / one,
        "{count} entries of ~{one} bytes in a {max_bytes}-byte cache"
    );
    // Still correct after evictions: the first token verifies (again) to the same claims.
    let again = e.v.verify(&first, OPTS).await.expect("valid");
    assert_eq!(again.claims, a.claims);
}

#[tokio::test]
async fn the_entry_cap_still_binds_under_a_large_byte_budget() {
    let e = env(5, 1 << 30).await;
    for n in 0..50 {
        e.v.verify(&token(&e.p, n), OPTS).await.expect("valid");
    }
    let count = e.v.cached_tokens();
    assert!((1..=5).contains(&count), "{count} entries, cap 5");
}

#[tokio::test]
async fn a_zero_byte_budget_disables_the_cache() {
    let e = env(10_000, 0).await;
    let t = token(&e.p, 0);
    let a = e.v.verify(&t, OPTS).await.expect("valid");
    let b = e.v.verify(&t, OPTS).await.expect("valid");
    assert!(!Arc::ptr_eq(&a, &b), "verified twice, nothing cached");
    assert_eq!(e.v.cached_tokens(), 0);
}

#[tokio::test]
async fn a_different_token_never_hits_another_tokens_entry() {
    let e = env(10_000, 16 << 20).await;
    let good = token(&e.p, 0);
    let a = e.v.verify(&good, OPTS).await.expect("valid");
    let hit = e.v.verify(&good, OPTS).await.expect("valid");
    assert!(
        Arc::ptr_eq(&a, &hit),
        "the same token is served from the cache"
    );

    // Same header and payload, signature altered: refused on the signature, not served cached.
    let (input, sig) = good.rsplit_once('.').expect("jwt");
    let flipped = if sig.starts_with('A') { 'B' } else { 'A' };
    let forged = format!("{input}.{flipped}{}", &sig[1..]);
    let err =
        e.v.verify(&forged, OPTS)
            .await
            .expect_err("forged signature");
    assert_eq!(err.check(), Check::Signature);

    // Same claims signed by a key the issuer does not publish.
    let mut c = e.p.claims();
    c["jti"] = json!("jti-0");
    let untrusted = sign(&header(), &c, &untrusted_key(), Algorithm::RS256);
    assert_ne!(untrusted, good);
    let err =
        e.v.verify(&untrusted, OPTS)
            .await
            .expect_err("untrusted key");
    assert_eq!(err.check(), Check::Signature);

    // The token with a trailing byte more is another token (and malformed).
    assert!(e.v.verify(&format!("{good}A"), OPTS).await.is_err());

    // Another valid token gets its own entry and its own claims.
    let other = e.v.verify(&token(&e.p, 1), OPTS).await.expect("valid");
    assert!(!Arc::ptr_eq(&a, &other));
    assert_eq!(other.claims["jti"], "jti-1");
    assert_eq!(a.claims["jti"], "jti-0");
    assert_eq!(e.v.cached_tokens(), 2);
}

#[tokio::test]
async fn a_cached_token_is_refused_once_expired() {
    let e = env(10_000, 16 << 20).await;
    let t = token(&e.p, 0);
    let a = e.v.verify(&t, OPTS).await.expect("valid");
    assert!(Arc::ptr_eq(
        &a,
        &e.v.verify(&t, OPTS).await.expect("cached")
    ));
    // exp is now + 300 s; past it plus the leeway, the cached entry must not be served.
    e.clock
        .advance(Duration::from_secs(300) + e.p.leeway + Duration::from_secs(1));
    let err = e.v.verify(&t, OPTS).await.expect_err("expired");
    assert_eq!(err.check(), Check::Expiry);
}
