//! RS256 verification of a Keycloak-format token: cold (cache disabled: parse + signature + claims)
//! vs a verified-cache hit vs the floor of any cache (SHA-256 of the token + a moka lookup).
//! Short run: `cargo bench -p tw-verify --features testing --bench verify`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::Algorithm;
use serde_json::json;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tw_core::{Clock, SystemClock, TokenFingerprint};
use tw_verify::testing::{CorpusParams, KeyPublisher, RSA_KID, fixture_jwks, rsa_key, sign};
use tw_verify::{Verifier, VerifyOptions};

struct Setup {
    rt: tokio::runtime::Runtime,
    _publisher: KeyPublisher,
    cold: Arc<Verifier>,
    cached: Arc<Verifier>,
    token: String,
    moka: moka::sync::Cache<TokenFingerprint, Arc<String>>,
}

fn setup() -> Setup {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let issuer = "https://idp.example/realms/test";
    let p = CorpusParams::new(issuer, SystemClock.now());
    let publisher = rt.block_on(KeyPublisher::start(fixture_jwks()));
    let mut cfg = p.verifier_settings(&publisher.jwks_url());
    let cached = Arc::new(Verifier::new(&cfg, Arc::new(SystemClock)).unwrap());
    cfg.verified_cache_entries = 0;
    let cold = Arc::new(Verifier::new(&cfg, Arc::new(SystemClock)).unwrap());
    rt.block_on(async {
        cached.start().await;
        cold.start().await;
    });
    let token = sign(
        &json!({"alg":"RS256","typ":"JWT","kid":RSA_KID}),
        &p.claims(),
        &rsa_key(),
        Algorithm::RS256,
    );
    rt.block_on(async {
        cold.verify(&token, VerifyOptions::default())
            .await
            .expect("valid");
        cached
            .verify(&token, VerifyOptions::default())
            .await
            .expect("valid");
    });
    let moka = moka::sync::Cache::new(10_000);
    moka.insert(TokenFingerprint::of(&token), Arc::new("x".to_owned()));
    Setup {
        rt,
        _publisher: publisher,
        cold,
        cached,
        token,
        moka,
    }
}

fn per_op(n: u32, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed() / n
}

fn bench(c: &mut Criterion) {
    let s = setup();
    let opts = VerifyOptions::default();
    let mut g = c.benchmark_group("verify_rs256");
    g.bench_function("cold (signature checked)", |b| {
        b.iter(|| {
            s.rt.block_on(s.cold.verify(black_box(&s.token), opts))
                .unwrap()
        })
    });
    g.bench_function("cached hit", |b| {
        b.iter(|| {
            s.rt.block_on(s.cached.verify(black_box(&s.token), opts))
                .unwrap()
        })
    });
    g.bench_function("baseline sha256 + moka get", |b| {
        b.iter(|| {
            s.moka
                .get(&TokenFingerprint::of(black_box(&s.token)))
                .unwrap()
        })
    });
    g.finish();

    // Ratios from a direct measurement (same work as above).
    let cold = per_op(500, || {
        s.rt.block_on(s.cold.verify(&s.token, opts)).unwrap();
    });
    let hit = per_op(20_000, || {
        s.rt.block_on(s.cached.verify(&s.token, opts)).unwrap();
    });
    let base = per_op(20_000, || {
        black_box(s.moka.get(&TokenFingerprint::of(&s.token)));
    });
    println!(
        "\nRS256 token of {} bytes: cold {cold:?}, cached {hit:?}, baseline {base:?}\n\
         cold / cached = {:.1}x, cached / baseline = {:.1}x",
        s.token.len(),
        cold.as_secs_f64() / hit.as_secs_f64(),
        hit.as_secs_f64() / base.as_secs_f64(),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
