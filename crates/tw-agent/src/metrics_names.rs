//! Names of the metrics the agent emits. The broker's own (fetches, tokens served to any caller)
//! are in `tw_broker`.

/// Counter: tokens returned by the local API, labels `profile`, `state` (fresh, stale).
pub const METRIC_API_TOKENS: &str = "tokenwarden_agent_api_tokens_total";
/// Counter: error responses of the local API, label `code`.
pub const METRIC_API_ERRORS: &str = "tokenwarden_agent_api_errors_total";
/// Counter: file sink writes, labels `profile`, `outcome` (ok or an error code).
pub const METRIC_SINK_WRITES: &str = "tokenwarden_agent_sink_writes_total";
/// Counter: callers refused before any token was touched, labels `listener` (api, proxy), `code`
/// (`caller_key_missing`, `caller_key_invalid`, `caller_key_unavailable`, `host_not_allowed`).
pub const METRIC_CALLERS_REFUSED: &str = "tokenwarden_agent_callers_refused_total";
/// Counter: proxied requests, labels `route` (its prefix), `status`.
pub const METRIC_PROXY_REQUESTS: &str = "tokenwarden_proxy_requests_total";
/// Histogram: time until the upstream's response headers, per attempt, label `route`.
pub const METRIC_PROXY_UPSTREAM_SECONDS: &str = "tokenwarden_proxy_upstream_seconds";
/// Counter: requests replayed with a new token after an upstream 401, label `route`.
pub const METRIC_PROXY_401_RETRIES: &str = "tokenwarden_proxy_401_retries_total";
/// Gauge: circuit breaker state per upstream origin: 0 closed, 1 open, 2 half-open.
pub const METRIC_PROXY_BREAKER_STATE: &str = "tokenwarden_proxy_circuit_state";
