//! Throughput of the agent's HTTP outputs against baselines on the same machine, in one run:
//!
//! - `api/token` (GET /v1/token/{profile}, a cached token) vs `api/healthz` (static endpoint on
//!   the same server): the cost of serving a token;
//! - `proxy/via_agent` (GET through the injecting proxy) vs `proxy/direct` (the same upstream
//!   called directly): the cost of the proxy hop.
//!
//! Each iteration sends a batch of concurrent requests over keep-alive connections. Ratios are
//! printed at the end. Needs node and `npm ci` in testing/idp (one token is fetched from the real
//! test IdP). `cargo bench -p tw-agent` takes well under two minutes.

#[path = "../tests/common/mod.rs"]
mod common;

use common::Harness;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::sync::Arc;
use std::time::Duration;
use tw_core::SystemClock;
use tw_testkit::rates::RateBook;

/// Concurrent requests per iteration.
const BATCH: usize = 8;

/// Iterations and time per benchmark, for the ratios.
static RATES: RateBook = RateBook::new();

struct Setup {
    _harness: Harness,
    api: String,
    proxy: String,
    upstream: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

async fn setup() -> Setup {
    let harness = Harness::start().await;
    let upstream_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let upstream_addr = upstream_listener.local_addr().expect("addr");
    let upstream_app = axum::Router::new().fallback(|| async { "{\"ok\":true}" });
    tokio::spawn(async move {
        let _ = axum::serve(upstream_listener, upstream_app).await;
    });

    let toml = format!(
        r#"{profile}
[agent]
listen = "127.0.0.1:0"

[agent.proxy]
listen = "127.0.0.1:0"

[[agent.proxy.routes]]
prefix = "/"
upstream = "http://{upstream_addr}"
profile = "api"
"#,
        profile = harness.profile_toml("api"),
    );
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("recorder");
    let cfg = common::load(&toml);
    let broker = Arc::new(
        tw_broker::Broker::from_profiles(&cfg.profiles, Arc::new(SystemClock)).expect("broker"),
    );
    let bound = tw_agent::Agent::new(
        &cfg.agent,
        broker.clone(),
        Some(Arc::new(move || handle.render())),
    )
    .bind()
    .await
    .expect("bind");
    let tcp = |a: tw_config::ListenAddr| match a {
        tw_config::ListenAddr::Tcp(a) => format!("http://{a}"),
        tw_config::ListenAddr::Unix(p) => panic!("unix {}", p.display()),
    };
    let api = tcp(bound.api_addr());
    let proxy = tcp(bound.proxy_addr().expect("proxy"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.run(async {
        let _ = rx.await;
    }));
    let profile = broker.profile("api").expect("profile").clone();
    profile
        .token(tw_broker::TokenRequest::default())
        .await
        .expect("first token");
    Setup {
        _harness: harness,
        api,
        proxy,
        upstream: format!("http://{upstream_addr}"),
        stop: Some(tx),
    }
}

async fn batch(client: &reqwest::Client, url: &str) {
    let requests = (0..BATCH).map(|_| async {
        let resp = client.get(url).send().await.expect("send");
        assert!(resp.status().is_success(), "{url}: {}", resp.status());
        resp.bytes().await.expect("body");
    });
    futures::future::join_all(requests).await;
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut setup = rt.block_on(setup());
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(BATCH * 2)
        .build()
        .expect("client");

    let cases: [(&str, &'static str, String); 4] = [
        ("api", "api/token", format!("{}/v1/token/api", setup.api)),
        ("api", "api/healthz", format!("{}/healthz", setup.api)),
        ("proxy", "proxy/via_agent", format!("{}/bench", setup.proxy)),
        ("proxy", "proxy/direct", format!("{}/bench", setup.upstream)),
    ];
    for group_name in ["api", "proxy"] {
        let mut group = c.benchmark_group(group_name);
        group
            .throughput(Throughput::Elements(BATCH as u64))
            .sample_size(20)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4));
        for (_, id, url) in cases.iter().filter(|(g, _, _)| *g == group_name) {
            let name = id.split('/').nth(1).expect("id");
            group.bench_function(name, |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let client = client.clone();
                    let url = url.clone();
                    async move { RATES.time(id, iters, || batch(&client, &url)).await }
                });
            });
        }
        group.finish();
    }

    let per_second = |id: &str| RATES.per_second(id, BATCH as u64);
    let (token, healthz) = (per_second("api/token"), per_second("api/healthz"));
    let (via, direct) = (per_second("proxy/via_agent"), per_second("proxy/direct"));
    println!();
    println!(
        "tokens served:   {token:>10.0} req/s   static endpoint: {healthz:>10.0} req/s   ratio {:.2}",
        token / healthz
    );
    println!(
        "through proxy:   {via:>10.0} req/s   upstream direct: {direct:>10.0} req/s   ratio {:.2}",
        via / direct
    );

    if let Some(tx) = setup.stop.take() {
        let _ = tx.send(());
    }
    rt.block_on(async { drop(setup) });
}

criterion_group!(benches, bench);
criterion_main!(benches);
