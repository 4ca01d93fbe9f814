//! The servers assembled from a loaded [`tw_config::Config`]: the gateway (verifier, authorizer
//! with the registry and audit log, admin API) and the agent (broker and its outputs). The
//! binary's `gateway` and `agent` commands and the demo (`tw-demo`) run them through these same
//! functions, so the demo exercises the real wiring. Process-wide concerns (logging, the metrics
//! recorder, signals) stay with the caller: each function takes what it needs as arguments.

pub mod agent;
pub mod gateway;
