//! Memory of the verifier under many distinct valid tokens: a real [`Verifier`] over an in-process
//! JWKS publisher verifies 100,000 then 300,000 distinct RS256 tokens (Keycloak-shaped claims,
//! each with its own `jti`/`sid`/`sub`), from one thread per core as the gateway's workers would,
//! and prints the resident set size (`VmRSS`) at start, after 100k and after 300k, with the
//! verified-token cache's entry count and weight.
//!
//! `cargo bench -p tw-verify --features testing --bench memory`
//! (`TW_MEM_TOKENS=20000` scales both phases down for a quick look: N, then 3N;
//! `TW_MEM_CACHE_ENTRIES=0` runs without the cache, for comparison; `TW_MEM_CACHE_BYTES=N`
//! changes the byte bound, `TW_MEM_CACHE_BYTES=18446744073709551615` is the old entries-only cap.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tw_core::{Clock, SystemClock};
use tw_verify::testing::{CorpusParams, KeyPublisher, RSA_KID, fixture_jwks, rsa_key, sign};
use tw_verify::{Verifier, VerifyOptions};

/// Resident set size in KiB, from `/proc/self/status`.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Realistic Keycloak access-token claims, distinct per `n`.
fn claims(p: &CorpusParams, n: u64) -> Value {
    let mut c = p.claims();
    let o = c.as_object_mut().expect("object");
    let now = p.now.as_secs();
    // Outlives the run, so nothing leaves the cache by expiry: only the bounds evict.
    o.insert("exp".into(), json!(now + 3600));
    o.insert(
        "jti".into(),
        json!(format!("onrtro:{n:016x}-5d3c-4b6a-9f1e")),
    );
    o.insert(
        "sid".into(),
        json!(format!("{n:08x}-1f2e-4d3c-8b7a-6e5f4d3c2b1a")),
    );
    o.insert(
        "sub".into(),
        json!(format!("{:08x}-0000-4000-8000-000000000001", n % 5000)),
    );
    o.insert("acr".into(), json!("1"));
    o.insert("allowed-origins".into(), json!(["https://app.example"]));
    o.insert("email_verified".into(), json!(false));
    o.insert("clientHost".into(), json!("10.1.2.3"));
    o.insert("clientAddress".into(), json!("10.1.2.3"));
    o.insert("client_id".into(), json!(p.azp));
    o.insert(
        "realm_access".into(),
        json!({"roles": ["default-roles-test", "offline_access", "uma_authorization", "agent"]}),
    );
    o.insert(
        "resource_access".into(),
        json!({"api": {"roles": ["read", "write"]}, "account": {"roles": ["manage-account", "view-profile"]}}),
    );
    c
}

fn main() {
    let phase: u64 = std::env::var("TW_MEM_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap();
    let issuer = "https://idp.example/realms/test";
    let p = Arc::new(CorpusParams::new(issuer, SystemClock.now()));
    let publisher = rt.block_on(KeyPublisher::start(fixture_jwks()));
    let mut cfg = p.verifier_settings(&publisher.jwks_url());
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse().ok());
    if let Some(n) = env("TW_MEM_CACHE_ENTRIES") {
        cfg.verified_cache_entries = n;
    }
    if let Some(n) = env("TW_MEM_CACHE_BYTES") {
        cfg.verified_cache_max_bytes = n;
    }
    let verifier = Arc::new(Verifier::new(&cfg, Arc::new(SystemClock)).unwrap());
    rt.block_on(verifier.start());
    assert!(verifier.is_ready(), "keys loaded");
    let key = Arc::new(rsa_key());
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": RSA_KID});
    let sample = sign(&header, &claims(&p, u64::MAX), &key, Algorithm::RS256);
    rt.block_on(verifier.verify(&sample, VerifyOptions::default()))
        .expect("sample token is valid");

    println!(
        "verified-token cache: {} entries / {} MiB max; token size {} bytes; {threads} threads",
        cfg.verified_cache_entries,
        cfg.verified_cache_max_bytes / 1048576,
        sample.len()
    );
    let start = rss_kib();
    println!("start:           RSS {:7.1} MiB", mib(start));

    let next = Arc::new(AtomicU64::new(0));
    let run_until = |end: u64| {
        let t0 = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                let (p, key, header, next, verifier) = (&p, &key, &header, &next, &verifier);
                let handle = rt.handle().clone();
                s.spawn(move || {
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= end {
                            next.fetch_sub(1, Ordering::Relaxed);
                            break;
                        }
                        let token = sign(header, &claims(p, n), key, Algorithm::RS256);
                        handle
                            .block_on(verifier.verify(&token, VerifyOptions::default()))
                            .expect("valid token");
                    }
                });
            }
        });
        t0.elapsed()
    };
    for end in [phase, 3 * phase] {
        let took = run_until(end);
        let rss = rss_kib();
        println!(
            "after {:>7} tokens: RSS {:7.1} MiB (+{:.1} MiB), cache {} entries, {:.1} MiB weighed ({:.1}s)",
            end,
            mib(rss),
            mib(rss.saturating_sub(start)),
            verifier.cached_tokens(),
            verifier.cached_bytes() as f64 / 1048576.0,
            took.as_secs_f64()
        );
    }
    drop(publisher);
}
