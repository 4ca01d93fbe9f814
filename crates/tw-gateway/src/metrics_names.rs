//! Names of the metrics the gateway emits. The verifier's own (decisions by issuer and check, JWKS
//! fetches by cause, cache hits and misses, introspection) are in `tw_verify`.

/// Counter: requests answered by the gateway (probes excluded). Labels: `mode` (`proxy`,
/// `forward_auth`), `route` (the matched route's prefix, `host/prefix` for host routes, `none`),
/// `method` (the original request's method; uncommon ones as `other`), `outcome` (see
/// [`Outcome`](crate::Outcome)).
pub const METRIC_GATEWAY_REQUESTS: &str = "tokenwarden_gateway_requests_total";
/// Histogram: seconds from the request's arrival to the access decision (header parsing,
/// verification, the decision hook), labels `mode`, `outcome`.
pub const METRIC_GATEWAY_DECISION_SECONDS: &str = "tokenwarden_gateway_decision_seconds";
/// Histogram: seconds until the upstream's response headers (proxy mode), label `route`.
pub const METRIC_GATEWAY_UPSTREAM_SECONDS: &str = "tokenwarden_gateway_upstream_seconds";
