//! The agent of a configuration: the broker of its profiles and the agent serving them.

use std::sync::Arc;

/// The broker of `cfg`'s profiles and the agent serving them, with `/metrics` from `metrics`.
pub fn build_agent(
    cfg: &tw_config::Config,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> Result<(Arc<tw_broker::Broker>, tw_agent::Agent), tw_core::Error> {
    let broker = Arc::new(tw_broker::Broker::from_profiles(
        &cfg.profiles,
        Arc::new(tw_core::SystemClock),
    )?);
    let render: tw_http::MetricsRender = {
        let broker = broker.clone();
        Arc::new(move || {
            broker.update_gauges();
            metrics.render()
        })
    };
    let agent = tw_agent::Agent::new(&cfg.agent, broker.clone(), Some(render));
    Ok((broker, agent))
}
