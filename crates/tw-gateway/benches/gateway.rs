//! Throughput of the gateway against baselines on the same machine, in one run:
//!
//! - `gateway_proxy/via_gateway` (GET through the verifying proxy: bearer token parsed, JWT
//!   verified with a warm cache, identity headers added, request forwarded) vs
//!   `gateway_proxy/direct` (the same upstream called directly): the cost of the gateway hop;
//! - `forward_auth/decision` (GET /auth as Traefik asks, a 200 with identity headers) vs
//!   `forward_auth/static` (GET /healthz on the same server): the cost of a decision.
//!
//! Each iteration sends a batch of concurrent requests over keep-alive connections. Ratios are
//! printed at the end. Needs node and `npm ci` in testing/idp (the token comes from the real test
//! IdP). `cargo bench -p tw-gateway` takes well under two minutes.

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::time::Duration;
use tw_testkit::rates::{RateBook, bench_client, bench_runtime};
use tw_testkit::{Idp, IdpConfig, TestServer};

/// Concurrent requests per iteration.
const BATCH: usize = 8;

/// Rates per benchmark, for the ratios.
static RATES: RateBook = RateBook::new();

struct Setup {
    _idp: Idp,
    gateway: common::RunningGateway,
    upstream: TestServer,
    token: String,
}

async fn setup() -> Setup {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("recorder");
    // Tokens outlive the run.
    let idp = Idp::start(IdpConfig::default().access_token_ttl(900)).await;
    let upstream =
        TestServer::start(axum::Router::new().fallback(|| async { "{\"ok\":true}" })).await;
    let cfg = common::gateway_config(&common::idp_gateway_toml(
        &idp,
        "allowed_azp = [\"agent-basic\"]",
        &format!(
            "[[gateway.routes]]\nprefix = \"/\"\nupstream = \"{}\"\n",
            upstream.url()
        ),
    ));
    let gateway = common::RunningGateway::start_with(
        &cfg,
        std::sync::Arc::new(tw_core::SystemClock),
        None,
        Some(std::sync::Arc::new(move || handle.render())),
    )
    .await;
    let token = common::idp_token(&idp, common::CLIENT_ID, common::CLIENT_SECRET).await;
    Setup {
        _idp: idp,
        gateway,
        upstream,
        token,
    }
}

async fn batch(client: &reqwest::Client, url: &str, token: Option<&str>) {
    let requests = (0..BATCH).map(|_| async {
        let mut req = client.get(url);
        if let Some(t) = token {
            req = req
                .bearer_auth(t)
                .header("X-Forwarded-Uri", "/api/items")
                .header("X-Forwarded-Method", "GET");
        }
        let resp = req.send().await.expect("send");
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
    // Warm the verified-token cache and the connection pools.
    rt.block_on(batch(&client, &setup.gateway.url("/bench"), Some(&token)));

    let cases: [(&str, &'static str, String, bool); 4] = [
        (
            "gateway_proxy",
            "gateway_proxy/via_gateway",
            setup.gateway.url("/bench"),
            true,
        ),
        (
            "gateway_proxy",
            "gateway_proxy/direct",
            format!("{}/bench", setup.upstream.url()),
            false,
        ),
        (
            "forward_auth",
            "forward_auth/decision",
            setup.gateway.url("/auth"),
            true,
        ),
        (
            "forward_auth",
            "forward_auth/static",
            setup.gateway.url("/healthz"),
            false,
        ),
    ];
    for group_name in ["gateway_proxy", "forward_auth"] {
        let mut group = c.benchmark_group(group_name);
        group.throughput(Throughput::Elements(BATCH as u64));
        for (_, id, url, with_token) in cases.iter().filter(|(g, ..)| *g == group_name) {
            let name = id.split('/').nth(1).expect("id");
            group.bench_function(name, |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let client = client.clone();
                    let token = with_token.then(|| token.clone());
                    async move {
                        RATES
                            .time(id, iters, || batch(&client, url, token.as_deref()))
                            .await
                    }
                });
            });
        }
        group.finish();
    }

    let per_second = |id: &str| RATES.per_second(id, BATCH as u64);
    let (via, direct) = (
        per_second("gateway_proxy/via_gateway"),
        per_second("gateway_proxy/direct"),
    );
    let (decision, fixed) = (
        per_second("forward_auth/decision"),
        per_second("forward_auth/static"),
    );
    println!();
    println!(
        "through gateway: {via:>10.0} req/s   upstream direct: {direct:>10.0} req/s   ratio {:.2}",
        via / direct
    );
    println!(
        "forward auth:    {decision:>10.0} req/s   static endpoint: {fixed:>10.0} req/s   ratio {:.2}",
        decision / fixed
    );
    rt.block_on(async { drop(setup) });
}

criterion_group! {
    name = benches;
    // Short runs: the whole bench stays well under two minutes.
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
