//! The agent's outputs: how tokens kept fresh by [`tw_broker`] reach other processes.
//!
//! - [`access`]: who may call the token API and the proxy (loopback unless `allow_remote`, the
//!   caller key, the DNS-rebinding `Host` check);
//! - [`api`]: local HTTP API, `GET /v1/token/{profile}` (plus `/healthz`, `/readyz`, `/metrics`);
//! - [`sink`]: files rewritten atomically (mode set before they appear) on every new token;
//! - [`proxy`]: reverse proxy that injects `Authorization: Bearer <token>`, replays once after a
//!   401, rate-limits and trips a circuit breaker per upstream;
//! - [`Agent`]: runs all of them from the configuration until shutdown.

pub mod access;
pub mod api;
mod metrics_names;
pub mod proxy;
mod runner;
pub mod settings;
pub mod sink;

pub use access::CallerAccess;
pub use metrics_names::*;
pub use proxy::{BreakerState, Proxy};
pub use runner::{Agent, BoundAgent};
pub use sink::FileSink;
