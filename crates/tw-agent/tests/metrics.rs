//! The agent's metrics, rendered by a real Prometheus recorder at `/metrics`.

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tw_core::SystemClock;

const CALLER_KEY: &str = "metrics-test-caller-key-6b1d";

#[tokio::test]
async fn metrics_count_tokens_errors_proxy_requests_and_retries() {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder in this test binary");
    let h = Harness::start().await;
    let up = Upstream::start().await;
    let toml = format!(
        r#"{profile}
[agent]
listen = "127.0.0.1:0"

[agent.proxy]
listen = "127.0.0.1:0"
caller_key = {{ file = "{key}" }}

[[agent.proxy.routes]]
prefix = "/"
upstream = "{up}"
profile = "api"
"#,
        profile = h.profile_toml("api"),
        up = up.url(),
        key = h.path("caller-key").display(),
    );
    std::fs::write(h.path("caller-key"), CALLER_KEY).expect("key file");
    let cfg = load(&toml);
    let broker = Arc::new(
        tw_broker::Broker::from_profiles(&cfg.profiles, Arc::new(SystemClock)).expect("broker"),
    );
    let render: tw_http::MetricsRender = Arc::new(move || handle.render());
    let bound = tw_agent::Agent::new(&cfg.agent, broker.clone(), Some(render))
        .bind()
        .await
        .expect("bind");
    let api = bound.api_addr();
    let proxy = bound.proxy_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bound.run(async {
        let _ = rx.await;
    }));
    let url = |addr: &tw_config::ListenAddr, path: &str| match addr {
        tw_config::ListenAddr::Tcp(a) => format!("http://{a}{path}"),
        tw_config::ListenAddr::Unix(_) => unreachable!("tcp"),
    };
    let proxy = proxy.expect("proxy");
    let c = client();
    let status = |u: String| {
        let c = c.clone();
        async move {
            c.get(u)
                .header("X-Tokenwarden-Key", CALLER_KEY)
                .send()
                .await
                .expect("send")
                .status()
        }
    };

    assert_eq!(status(url(&api, "/v1/token/api")).await, 200);
    assert_eq!(status(url(&api, "/v1/token/none")).await, 404);
    up.state.reject_first_token.store(true, Ordering::SeqCst);
    assert_eq!(status(url(&proxy, "/a")).await, 200);
    assert_eq!(status(url(&proxy, "/b")).await, 200);
    let no_key = c.get(url(&proxy, "/c")).send().await.expect("send");
    assert_eq!(no_key.status(), 401);

    let text = c
        .get(url(&api, "/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    let origin = up.url();
    for line in [
        "tokenwarden_agent_api_tokens_total{profile=\"api\",state=\"fresh\"} 1".to_owned(),
        "tokenwarden_agent_api_errors_total{code=\"profile_not_found\"} 1".to_owned(),
        "tokenwarden_proxy_requests_total{route=\"/\",status=\"200\"} 2".to_owned(),
        "tokenwarden_proxy_401_retries_total{route=\"/\"} 1".to_owned(),
        "tokenwarden_proxy_upstream_seconds_count{route=\"/\"} 3".to_owned(),
        format!("tokenwarden_proxy_circuit_state{{upstream=\"{origin}\"}} 0"),
        "tokenwarden_agent_callers_refused_total{listener=\"proxy\",code=\"caller_key_missing\"} 1"
            .to_owned(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
    assert!(
        text.contains("tokenwarden_token_remaining_seconds{profile=\"api\"}"),
        "broker gauges are updated at scrape time:\n{text}"
    );

    let _ = tx.send(());
    task.await.expect("join").expect("clean stop");
}
