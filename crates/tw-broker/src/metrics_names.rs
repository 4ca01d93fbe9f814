//! Names of the metrics the broker emits (the binary exports them at `/metrics`).

/// Counter: token requests to the IdP, labels `profile`, `outcome` (ok or an error code).
pub const METRIC_FETCHES: &str = "tokenwarden_token_fetches_total";
/// Gauge: seconds until the current token expires, label `profile`.
pub const METRIC_REMAINING: &str = "tokenwarden_token_remaining_seconds";
/// Counter: tokens handed to callers, labels `profile`, `state` (fresh, stale).
pub const METRIC_SERVED: &str = "tokenwarden_tokens_served_total";
/// Histogram: IdP token request latency in seconds, label `profile`.
pub const METRIC_FETCH_SECONDS: &str = "tokenwarden_token_fetch_seconds";
