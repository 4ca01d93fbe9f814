//! Request tracing that is safe for a server handing out tokens.
//!
//! The span records method, path and protocol version only. It never records headers
//! (`Authorization` carries tokens) nor the query string (some clients put `access_token=` there).

use http::Request;
use std::time::Duration;
use tower_http::classify::{ServerErrorsAsFailures, ServerErrorsFailureClass, SharedClassifier};
use tower_http::trace::{
    DefaultOnBodyChunk, DefaultOnEos, DefaultOnRequest, DefaultOnResponse, MakeSpan, OnFailure,
    TraceLayer,
};
use tracing::Span;

/// The [`TraceLayer`] every tokenwarden server uses.
pub type SafeTraceLayer = TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    SafeMakeSpan,
    DefaultOnRequest,
    DefaultOnResponse,
    DefaultOnBodyChunk,
    DefaultOnEos,
    SafeOnFailure,
>;

/// Builds spans from the method and path only.
#[derive(Debug, Clone, Copy, Default)]
pub struct SafeMakeSpan;

impl<B> MakeSpan<B> for SafeMakeSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        tracing::info_span!(
            "http_request",
            method = %request.method(),
            path = %request.uri().path(),
            version = ?request.version(),
        )
    }
}

/// `router.layer(tw_http::trace_layer())`.
pub fn trace_layer() -> SafeTraceLayer {
    TraceLayer::new_for_http()
        .make_span_with(SafeMakeSpan)
        .on_failure(SafeOnFailure)
}

/// Logs server errors: 500-class answers at ERROR, except 503, which tokenwarden sends on purpose
/// (`/readyz` before it is ready, an upstream or the IdP's keys unavailable, too many
/// connections) and which its own code has already explained: DEBUG.
#[derive(Debug, Clone, Copy, Default)]
pub struct SafeOnFailure;

impl OnFailure<ServerErrorsFailureClass> for SafeOnFailure {
    fn on_failure(&mut self, class: ServerErrorsFailureClass, latency: Duration, _span: &Span) {
        let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        match class {
            ServerErrorsFailureClass::StatusCode(status)
                if status == http::StatusCode::SERVICE_UNAVAILABLE =>
            {
                tracing::debug!(%status, latency_ms, "service unavailable");
            }
            other => tracing::error!(classification = %other, latency_ms, "response failed"),
        }
    }
}
