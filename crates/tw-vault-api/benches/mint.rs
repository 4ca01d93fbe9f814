//! Mint latency of the vault as a ratio of the bare IdP refresh round trip, in one run, against
//! the real test IdP (oidc-provider, strict refresh-token rotation):
//!
//! - `mint/idp_refresh`: a refresh_token grant straight at the IdP's token endpoint (the newest
//!   rotated token each time): the baseline;
//! - `mint/vault_refresh`: `POST /v1/access-token` through the vault with the mint cache off, so
//!   each mint is caller verification + a refresh at the IdP + the rotated token sealed and
//!   committed to SQLite before the answer;
//! - `mint/vault_cached`: the same with the cache on (a token minted within its lifetime).
//!
//! One request at a time (mint latency is what a job waits for). Needs node and `npm ci` in
//! testing/idp. `cargo bench -p tw-vault-api --bench mint` takes about a minute.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use std::time::Duration;
use tw_testkit::Idp;
use tw_testkit::rates::{RateBook, bench_client, bench_runtime};

static RATES: RateBook = RateBook::new();

struct Setup {
    idp: Idp,
    _dir: tempfile::TempDir,
    caller: String,
    /// Base URLs of the vault with the cache off and on, and the entry each mints from.
    uncached: (String, String),
    cached: (String, String),
    /// The newest refresh token of the baseline's own grant.
    baseline_token: tokio::sync::Mutex<String>,
}

async fn setup(http: &reqwest::Client) -> Setup {
    let idp = start_idp().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = sqlite_store(dir.path()).await;
    // The benchmark measures mint latency, not the per-caller budget: no practical limit.
    let unlimited = "[vault.limits]\nrate_limit = { per_second = 1000000, burst = 1000000 }";
    let config = |cache| vault_config_with(dir.path(), &idp.issuer(), cache, unlimited);
    let uncached = serve_vault(&config(false), store.clone()).await;
    let cached = serve_vault(&config(true), store).await;
    let caller = user_token(http, &idp, "alice").await;
    let mut entries = Vec::new();
    for base in [&uncached, &cached] {
        let rt = idp
            .mint_refresh_token(VAULT_CLIENT, "alice", "openid offline_access")
            .await;
        entries.push(store_entry(http, base, &caller, &rt).await);
    }
    let baseline = idp
        .mint_refresh_token(VAULT_CLIENT, "alice", "openid offline_access")
        .await;
    let cached_entry = entries.pop().expect("entry");
    let uncached_entry = entries.pop().expect("entry");
    Setup {
        idp,
        _dir: dir,
        caller,
        uncached: (uncached, uncached_entry),
        cached: (cached, cached_entry),
        baseline_token: tokio::sync::Mutex::new(baseline),
    }
}

/// The baseline: one refresh at the IdP with the newest token, keeping the rotated one.
async fn idp_refresh(http: &reqwest::Client, s: &Setup) {
    let mut current = s.baseline_token.lock().await;
    let v: Value = http
        .post(s.idp.token_url())
        .basic_auth(VAULT_CLIENT, Some(VAULT_SECRET))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", current.as_str()),
        ])
        .send()
        .await
        .expect("refresh")
        .json()
        .await
        .expect("JSON");
    *current = v["refresh_token"]
        .as_str()
        .expect("rotated refresh token")
        .to_owned();
}

async fn vault_mint(http: &reqwest::Client, caller: &str, (base, id): &(String, String)) {
    let resp = http
        .post(format!("{base}/v1/access-token"))
        .bearer_auth(caller)
        .json(&json!({ "id": id }))
        .send()
        .await
        .expect("mint");
    assert!(resp.status().is_success(), "mint: {}", resp.status());
    resp.bytes().await.expect("body");
}

fn bench(c: &mut Criterion) {
    let rt = bench_runtime();
    let http = bench_client(1);
    let setup = rt.block_on(setup(&http));
    let mut group = c.benchmark_group("mint");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("idp_refresh", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (http, s) = (&http, &setup);
            async move {
                RATES
                    .time("idp_refresh", iters, || idp_refresh(http, s))
                    .await
            }
        });
    });
    group.bench_function("vault_refresh", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (http, s) = (&http, &setup);
            async move {
                RATES
                    .time("vault_refresh", iters, || {
                        vault_mint(http, &s.caller, &s.uncached)
                    })
                    .await
            }
        });
    });
    group.bench_function("vault_cached", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (http, s) = (&http, &setup);
            async move {
                RATES
                    .time("vault_cached", iters, || {
                        vault_mint(http, &s.caller, &s.cached)
                    })
                    .await
            }
        });
    });
    group.finish();

    let latency_ms = |id: &str| 1000.0 / RATES.per_second(id, 1);
    let idp = latency_ms("idp_refresh");
    let (refresh, cached) = (latency_ms("vault_refresh"), latency_ms("vault_cached"));
    println!();
    println!(
        "mint, cache off: {refresh:>8.2} ms   bare IdP refresh: {idp:>8.2} ms   ratio {:.2}",
        refresh / idp
    );
    println!(
        "mint, cached:    {cached:>8.2} ms   bare IdP refresh: {idp:>8.2} ms   ratio {:.2}",
        cached / idp
    );
    rt.block_on(async { drop(setup) });
}

criterion_group!(benches, bench);
criterion_main!(benches);
