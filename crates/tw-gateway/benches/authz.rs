//! The cost of authorization with the account registry in the database (SQLite), in one run:
//!
//! - `authz_decision/decide` (`Authz::decide` alone: rule match, rate-limit check, permissions
//!   from the warm registry cache, audit event queued for the SQLite writer) vs
//!   `authz_decision/verify_cached` (the verifier's cached `verify` of the same token, the step
//!   before it on every request);
//! - `gateway_authz/authz_on` (GET through the proxying gateway with route rules, the registry
//!   and the audit log in SQLite) vs `gateway_authz/authz_off` (the same gateway without
//!   `[gateway.authz]`).
//!
//! Ratios, and how many audit events reached the database or were dropped (the queue never
//! blocks a request), are printed at the end. Needs node and `npm ci` in testing/idp (the token
//! comes from the real test IdP). `cargo bench -p tw-gateway --bench authz` takes about a minute.

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::sync::Arc;
use std::time::Duration;
use tw_authz::{Authz, AuthzDecision, AuthzRequest};
use tw_config::StorageConfig;
use tw_core::SystemClock;
use tw_gateway::Decision;
use tw_store::{AuditQuery, NewAccount, Store, StoreAuditSink};
use tw_testkit::rates::{RateBook, bench_client, bench_runtime};
use tw_testkit::{Idp, IdpConfig, TestServer};
use tw_verify::VerifyOptions;

/// Concurrent requests per iteration (gateway benchmarks).
const BATCH: usize = 8;
/// Decisions or verifications per iteration (in-process benchmarks).
const CALLS: usize = 64;

static RATES: RateBook = RateBook::new();

const AUTHZ: &str = r#"
[gateway.authz]
sources = ["registry"]

[gateway.authz.audit]
queue_capacity = 100000

[[gateway.authz.rules]]
name = "health"
methods = ["GET"]
paths = ["/health"]
allow_any_authenticated = true

[[gateway.authz.rules]]
name = "items-write"
methods = ["PUT", "POST"]
paths = ["/items/{id}"]
require_all = ["items:update"]

[[gateway.authz.rules]]
name = "items-read"
methods = ["GET", "HEAD"]
paths = ["/bench", "/bench/**", "/items/**"]
require_any = ["items:read", "items:search"]
"#;

struct Setup {
    _idp: Idp,
    _dir: tempfile::TempDir,
    store: Store,
    authz: Arc<Authz>,
    on: common::RunningGateway,
    off: common::RunningGateway,
    _upstream: TestServer,
    token: String,
}

async fn setup() -> Setup {
    // Tokens outlive the run.
    let idp = Idp::start(IdpConfig::default().access_token_ttl(900)).await;
    let upstream =
        TestServer::start(axum::Router::new().fallback(|| async { "{\"ok\":true}" })).await;
    let routes = format!(
        "[[gateway.routes]]\nprefix = \"/\"\nupstream = \"{}\"\n",
        upstream.url()
    );
    let off_cfg = common::gateway_config(&common::idp_gateway_toml(
        &idp,
        "allowed_azp = [\"agent-basic\"]",
        &routes,
    ));
    let on_cfg = common::gateway_config(&common::idp_gateway_toml(
        &idp,
        "allowed_azp = [\"agent-basic\"]",
        &format!("{routes}{AUTHZ}"),
    ));

    let dir = tempfile::tempdir().expect("temp dir");
    let storage = StorageConfig {
        url: format!("sqlite://{}", dir.path().join("bench.db").display()),
        ..StorageConfig::default()
    };
    let store = Store::open(&storage, Arc::new(SystemClock))
        .await
        .expect("store");
    store
        .upsert_role(
            "items-reader",
            None,
            &["items:read".into(), "items:*".into()],
        )
        .await
        .expect("role");
    store
        .create_account(NewAccount {
            roles: vec!["items-reader".into()],
            ..NewAccount::with_client_id(&idp.issuer(), common::CLIENT_ID, "bench")
        })
        .await
        .expect("account");
    // The audit spool next to the bench's database, not in the working directory.
    let mut authz_cfg = on_cfg.authz.clone().expect("authz");
    authz_cfg.audit.spool_path = dir.path().join("audit.spool");
    let build = || {
        Authz::builder(&authz_cfg)
            .registry(Arc::new(store.clone()), Some(store.watch()))
            .audit_sink(Arc::new(StoreAuditSink::new(store.clone(), "bench")))
            .build()
            .expect("authz")
    };
    let authz = Arc::new(build());
    let decision: Arc<dyn Decision> = Arc::new(build());
    let on =
        common::RunningGateway::start_with(&on_cfg, Arc::new(SystemClock), Some(decision), None)
            .await;
    let off = common::RunningGateway::start(&off_cfg).await;
    let token = common::idp_token(&idp, common::CLIENT_ID, common::CLIENT_SECRET).await;
    Setup {
        _idp: idp,
        _dir: dir,
        store,
        authz,
        on,
        off,
        _upstream: upstream,
        token,
    }
}

async fn batch(client: &reqwest::Client, url: &str, token: &str) {
    let requests = (0..BATCH).map(|_| async {
        let resp = client
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .expect("send");
        assert!(resp.status().is_success(), "{url}: {}", resp.status());
        resp.bytes().await.expect("body");
    });
    futures::future::join_all(requests).await;
}

fn bench(c: &mut Criterion) {
    let rt = bench_runtime();
    let setup = rt.block_on(setup());
    let client = bench_client(BATCH);
    let token = setup.token.clone();
    // Warm the verified-token caches, the registry caches and the connection pools.
    rt.block_on(batch(&client, &setup.on.url("/bench/1"), &token));
    rt.block_on(batch(&client, &setup.off.url("/bench/1"), &token));
    let verifier = setup.on.verifier.clone();
    let verified = rt
        .block_on(verifier.verify(&token, VerifyOptions::default()))
        .expect("verified");
    let request = AuthzRequest {
        method: "GET",
        host: None,
        path: Some("/bench/items/42"),
        token: &verified,
    };
    let first = rt.block_on(setup.authz.decide(&request));
    assert!(matches!(first, AuthzDecision::Allow { .. }), "{first:?}");

    {
        let mut group = c.benchmark_group("authz_decision");
        group.throughput(Throughput::Elements(CALLS as u64));
        let authz = setup.authz.clone();
        group.bench_function("decide", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let authz = authz.clone();
                async move {
                    RATES
                        .time("authz_decision/decide", iters, || async {
                            for _ in 0..CALLS {
                                let d = authz.decide(&request).await;
                                debug_assert!(matches!(d, AuthzDecision::Allow { .. }));
                                std::hint::black_box(d);
                            }
                        })
                        .await
                }
            });
        });
        group.bench_function("verify_cached", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let verifier = verifier.clone();
                let token = token.clone();
                async move {
                    RATES
                        .time("authz_decision/verify_cached", iters, || async {
                            for _ in 0..CALLS {
                                let v = verifier.verify(&token, VerifyOptions::default()).await;
                                std::hint::black_box(v.expect("valid"));
                            }
                        })
                        .await
                }
            });
        });
        group.finish();
    }
    let decide_drops = setup.authz.audit_queue().dropped();

    {
        let mut group = c.benchmark_group("gateway_authz");
        group.throughput(Throughput::Elements(BATCH as u64));
        for (name, url) in [
            ("authz_on", setup.on.url("/bench/items/42")),
            ("authz_off", setup.off.url("/bench/items/42")),
        ] {
            let id = format!("gateway_authz/{name}");
            group.bench_function(name, |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let (client, token, url, id) =
                        (client.clone(), token.clone(), url.clone(), id.clone());
                    async move {
                        RATES
                            .time(&id, iters, || batch(&client, &url, &token))
                            .await
                    }
                });
            });
        }
        group.finish();
    }

    let per_second = |id: &str, n: usize| RATES.per_second(id, n as u64);
    let (decide, verify) = (
        per_second("authz_decision/decide", CALLS),
        per_second("authz_decision/verify_cached", CALLS),
    );
    let (on, off) = (
        per_second("gateway_authz/authz_on", BATCH),
        per_second("gateway_authz/authz_off", BATCH),
    );
    // Let the audit writer drain, then count what reached the database.
    let written = rt.block_on(async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        setup
            .store
            .query_audit(&AuditQuery {
                limit: Some(tw_store::AUDIT_MAX_LIMIT),
                ..AuditQuery::default()
            })
            .await
            .map(|rows| rows.len())
            .unwrap_or(0)
    });
    println!();
    println!(
        "Authz::decide (warm registry cache): {:>8.2} µs/decision ({decide:>10.0}/s)   cached verify: {:>8.2} µs ({verify:>10.0}/s)   decide/verify cost ratio {:.2}",
        1e6 / decide,
        1e6 / verify,
        verify / decide
    );
    println!(
        "gateway, rules + registry + SQLite audit: {on:>8.0} req/s   authorization off: {off:>8.0} req/s   ratio {:.2}",
        on / off
    );
    println!(
        "audit: {decide_drops} events dropped during the in-process decide loop (queue full, by design never blocking); {written}{} rows in the database",
        if written >= tw_store::AUDIT_MAX_LIMIT as usize {
            "+"
        } else {
            ""
        }
    );
    rt.block_on(async { drop(setup) });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
