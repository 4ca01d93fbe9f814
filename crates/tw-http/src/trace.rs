//! Request tracing that is safe for a server handing out tokens.
//!
//! The span records method, path and protocol version only. It never records headers
//! (`Authorization` carries tokens) nor the query string (some clients put `access_token=` there).

use http::Request;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{MakeSpan, TraceLayer};
use tracing::Span;

/// The [`TraceLayer`] every tokenwarden server uses.
pub type SafeTraceLayer = TraceLayer<SharedClassifier<ServerErrorsAsFailures>, SafeMakeSpan>;

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
    TraceLayer::new_for_http().make_span_with(SafeMakeSpan)
}
