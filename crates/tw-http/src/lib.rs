//! The HTTP surface shared by tokenwarden's servers (agent, gateway, vault).
//!
//! - [`ApiError`]: a [`tw_core::Error`] as a JSON response with a stable code.
//! - [`bind`] / [`serve`]: TCP or Unix-socket listeners (sockets are private, stale ones replaced)
//!   with graceful shutdown.
//! - [`bearer`]: the one reading of `Authorization: Bearer` and the RFC 6750 refusals
//!   ([`bearer::Refusal`]) of the gateway, the admin API and the vault.
//! - [`json`]: the one JSON body extractor ([`json::JsonBody`]), whose errors never echo input.
//! - [`Probes`] / [`probes_router`]: `/healthz`, `/readyz` (and further paths), `/metrics`.
//! - [`trace_layer`]: request spans that never record headers or query strings.
//! - [`openapi`]: the self-contained docs page and the `Error` schema of generated documents.
//! - [`forward`]: what every proxying server shares: the pooled upstream client, hop-by-hop and
//!   `X-Forwarded-*` handling, route targets, classified send failures, streamed responses.
//! - [`path`]: the canonical request path every gateway decision and forward uses.

pub mod bearer;
pub mod connections;
mod error;
pub mod forward;
mod headers;
pub mod json;
pub mod openapi;
pub mod path;
mod probes;
mod serve;
mod trace;

pub use connections::ConnectionLimits;
pub use error::{
    ApiError, ErrorCode, error_body, method_not_allowed_fallback, not_found_fallback,
    retry_after_secs,
};
pub use headers::check_custom_header;
pub use probes::{MetricsRender, Probes, Readiness, ReadinessFn, probes_router};
pub use serve::{Listener, NoDelayTcp, PeerAddr, SOCKET_MODE, bind, serve, serve_with};
pub use trace::{SafeMakeSpan, SafeOnFailure, SafeTraceLayer, trace_layer};

/// The whole body of a response, for the unit tests of this crate.
#[cfg(test)]
pub(crate) async fn body_bytes(response: axum::response::Response) -> axum::body::Bytes {
    use http_body_util::BodyExt;
    response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
}
