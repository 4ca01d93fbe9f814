//! [`Agent`]: binds the token API and the proxy, starts the file sinks, runs until shutdown.

use crate::access::CallerAccess;
use crate::api::api_router;
use crate::proxy::Proxy;
use crate::settings::AgentConfig;
use crate::sink::{self, FileSink};
use axum::Router;
use futures::FutureExt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tw_broker::Broker;
use tw_core::ListenAddr;
use tw_core::{Clock, Error, SystemClock};
use tw_http::{Listener, MetricsRender};

/// The agent, configured but not yet listening.
pub struct Agent {
    config: AgentConfig,
    broker: Arc<Broker>,
    metrics: Option<MetricsRender>,
    clock: Arc<dyn Clock>,
}

impl Agent {
    /// `metrics` renders the Prometheus text for `/metrics` on the token API listener.
    pub fn new(config: &AgentConfig, broker: Arc<Broker>, metrics: Option<MetricsRender>) -> Self {
        Self {
            config: config.clone(),
            broker,
            metrics,
            clock: Arc::new(SystemClock),
        }
    }

    /// The clock for `expires_in` and the circuit breakers; give the broker's clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The configured file sinks, bound to their profiles.
    pub fn sinks(&self) -> Result<Vec<FileSink>, Error> {
        self.config
            .sinks
            .iter()
            .enumerate()
            .map(|(i, s)| FileSink::new(s, i, &self.broker))
            .collect()
    }

    /// `agent --once`: writes every file sink once and returns (see [`sink::write_all_once`]).
    pub async fn write_sinks_once(&self, patience: Duration) -> Result<(), Error> {
        sink::write_all_once(&self.sinks()?, patience).await
    }

    /// Checks who may call each listener, the routes and the sinks, then binds both listeners.
    pub async fn bind(self) -> Result<BoundAgent, Error> {
        let sinks = self.sinks()?;
        // Every check (who may call, the caller keys) before anything listens.
        let api_access = CallerAccess::from_config(&self.config.api_access(), "api")?;
        let proxy = match &self.config.proxy {
            Some(cfg) => Some(Proxy::new(cfg, &self.broker, self.clock.clone())?),
            None => None,
        };
        let proxy = match proxy {
            Some(proxy) => {
                let listener = tw_http::bind(proxy.listen(), "agent.proxy.listen").await?;
                Some((listener, proxy))
            }
            None => None,
        };
        let api = tw_http::bind(api_access.listen(), "agent.listen").await?;
        let api_requires_key = api_access.requires_key();
        let api_router = api_router(
            self.broker.clone(),
            self.clock.clone(),
            self.metrics,
            api_access,
        );
        Ok(BoundAgent {
            broker: self.broker,
            api,
            api_requires_key,
            api_router,
            proxy,
            sinks,
        })
    }

    /// [`Agent::bind`], then [`BoundAgent::run`].
    pub async fn run<F>(self, shutdown: F) -> Result<(), Error>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.bind().await?.run(shutdown).await
    }
}

/// The agent with its listeners bound (so a port `0` is already resolved).
pub struct BoundAgent {
    broker: Arc<Broker>,
    api: Listener,
    api_requires_key: bool,
    api_router: Router,
    proxy: Option<(Listener, Proxy)>,
    sinks: Vec<FileSink>,
}

impl BoundAgent {
    pub fn api_addr(&self) -> ListenAddr {
        self.api.local_addr()
    }

    pub fn proxy_addr(&self) -> Option<ListenAddr> {
        self.proxy.as_ref().map(|(l, _)| l.local_addr())
    }

    pub fn proxy(&self) -> Option<&Proxy> {
        self.proxy.as_ref().map(|(_, p)| p)
    }

    /// Starts the broker's refresh loops and the sinks, serves until `shutdown` resolves, then
    /// lets in-flight requests finish. A server failure ends the run with its error.
    pub async fn run<F>(self, shutdown: F) -> Result<(), Error>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.broker.start_background();
        let mut sink_tasks = JoinSet::new();
        for s in self.sinks {
            sink_tasks.spawn(s.run());
        }
        let shutdown = shutdown.shared();
        tracing::info!(listen = ?self.api.local_addr(), caller_key = self.api_requires_key, "token API listening");
        let api = tw_http::serve(self.api, self.api_router, shutdown.clone());
        let proxy = async {
            match self.proxy {
                Some((listener, proxy)) => {
                    tracing::info!(listen = ?listener.local_addr(), caller_key = proxy.requires_key(), "proxy listening");
                    tw_http::serve(listener, proxy.router(), shutdown.clone()).await
                }
                None => Ok(()),
            }
        };
        let result = tokio::try_join!(api, proxy);
        sink_tasks.abort_all();
        result.map(|_| ())
    }
}
